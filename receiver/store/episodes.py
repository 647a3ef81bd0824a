"""Episodes in the store, as ingest sees them (`Episode` domain objects in, out)."""

from __future__ import annotations

from collections.abc import Collection, Mapping, Sequence
from datetime import datetime
from typing import Any

from pymongo import UpdateOne

from receiver.domain import Episode
from receiver.store.base import StoreBase, insert_new, object_id, translated
from receiver.store.convert import episode_document, episode_of
from receiver.store.documents import Anomaly, utcnow
from receiver.store.filters import EpisodeFilter, episode_query
from receiver.store.valid import valid


class EpisodeStore(StoreBase):
    @translated
    async def group_episodes(self, group_id: str, keys: Collection[str]) -> dict[str, Episode]:
        """The group's (`normalise.group_id`) firing episodes and those keyed `keys`, by key.

        One equality on the single-field `group_id` index: the embedded server reads every
        episode for a `$in` of keys. Only those asked for are validated, not the group's whole
        resolved history. An episode that does not validate is left out.
        """
        found = await Anomaly.get_pymongo_collection().find({"group_id": group_id}).to_list()
        wanted = [d for d in found if d.get("status") == "firing" or d.get("episode_key") in keys]
        return {a.episode_key: episode_of(a) for a in valid(Anomaly, wanted)}

    @translated
    async def insert_episodes(self, episodes: Sequence[Episode]) -> list[str]:
        """Insert new episodes; return the keys that already existed (lost a race)."""
        if not episodes:
            return []
        docs = [episode_document(e).model_dump(by_alias=True, exclude={"id"}) for e in episodes]
        stored = await insert_new(Anomaly.get_pymongo_collection(), docs)
        return [e.episode_key for e, new in zip(episodes, stored, strict=True) if not new]

    @translated
    async def resolve_episode(
        self,
        key: str,
        ends_at: datetime | None,
        annotations: Mapping[str, str],
        resolved_by: str,
    ) -> bool:
        """firing → resolved; False when it was not firing (already resolved)."""
        res = await Anomaly.get_pymongo_collection().update_one(
            {"episode_key": key, "status": "firing"},
            {
                "$set": {
                    "status": "resolved",
                    "ends_at": ends_at or utcnow(),
                    "annotations": dict(annotations),
                    "resolved_by": resolved_by,
                    "last_seen": utcnow(),
                }
            },
        )
        return res.modified_count == 1

    @translated
    async def update_firing_episodes(self, changes: Mapping[str, Mapping[str, Any]]) -> int:
        """Set fields on episodes (by id) that still fire, in one round trip; `last_seen` too.
        How many changed: one another replica resolved meanwhile is left alone."""
        now = utcnow()
        ops = [
            UpdateOne({"_id": oid, "status": "firing"}, {"$set": {**fields, "last_seen": now}})
            for episode_id, fields in changes.items()
            if (oid := object_id(episode_id)) is not None
        ]
        if not ops:
            return 0
        result = await Anomaly.get_pymongo_collection().bulk_write(ops, ordered=False)
        return result.modified_count

    @translated
    async def firing_episodes(self, source: str, started_before: datetime) -> list[Episode]:
        found = await Anomaly.find(
            {"source": source, "status": "firing", "starts_at": {"$lt": started_before}}
        ).to_list()
        return [episode_of(a) for a in found]

    @translated
    async def count_firing(self, incident_id: str) -> int:
        return await self.count(Anomaly, {"incident_id": incident_id, "status": "firing"})

    @translated
    async def episodes_of(self, incident_id: str, limit: int = 500) -> list[Anomaly]:
        return (
            await Anomaly.find({"incident_id": incident_id})
            .sort("-starts_at")
            .limit(limit)
            .to_list()
        )

    @translated
    async def list_episodes(
        self, filters: EpisodeFilter, skip: int, limit: int
    ) -> tuple[list[Anomaly], int]:
        return await self.page(Anomaly, episode_query(filters), "starts_at", skip, limit)

    @translated
    async def distinct_in_incident(self, incident_id: str, field: str) -> list[str]:
        """The distinct non-empty values of an episode field (`instance`, `alertname`)."""
        found = await Anomaly.get_pymongo_collection().distinct(field, {"incident_id": incident_id})
        return [v for v in found if isinstance(v, str) and v]
