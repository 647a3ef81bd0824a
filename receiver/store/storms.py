"""Store operations of storm correlation: the incidents waiting for it, the recent ones it
compares them with, storms (incidents with source "storm") and their members.

What makes a storm lives in `receiver.ingest.storms`; here only reads and writes. Updates go
out as one bulk write of per-`_id` operations: the embedded server scans the whole collection
for an `update_many` that filters on more than `_id`.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from pymongo import UpdateOne

from receiver.store.documents import Anomaly, Incident, Notification, utcnow
from receiver.store.repo import Store, object_id, translated
from receiver.store.valid import valid

STORM_SOURCE = "storm"


async def _each(ids: Sequence[Any], condition: Mapping[str, Any], update: Mapping[str, Any]) -> int:
    ops = [UpdateOne({"_id": i, **condition}, dict(update)) for i in ids if i is not None]
    if not ops:
        return 0
    result = await Incident.get_pymongo_collection().bulk_write(ops, ordered=False)
    return result.modified_count


def _valid(docs: Sequence[Mapping[str, Any]]) -> list[Incident]:
    # the enrichment and outbox reads set invalid documents aside
    return valid(Incident, docs)


class StormStore:
    def __init__(self, store: Store) -> None:
        self.store = store

    @translated
    async def correlating(self, limit: int) -> list[Incident]:
        """Incidents held back until the correlator decides on them, oldest first."""
        docs = (
            await Incident.get_pymongo_collection()
            .find({"correlating": True})
            .sort([("opened_ts", 1)])
            .limit(limit)
            .to_list()
        )
        return _valid(docs)

    @translated
    async def recent(self, since_ts: float, limit: int) -> list[Incident]:
        """Firing incidents (not storms) the receiver opened since `since_ts`."""
        docs = (
            await Incident.get_pymongo_collection()
            .find({"opened_ts": {"$gte": since_ts}})
            .sort([("opened_ts", -1)])
            .limit(limit)
            .to_list()
        )
        return [
            i
            for i in _valid(docs)
            if i.source != STORM_SOURCE and i.status == "firing"  # filtered here: one index
        ]

    @translated
    async def open_storms(self) -> list[Incident]:
        docs = (
            await Incident.get_pymongo_collection()
            .find({"source": STORM_SOURCE, "status": "firing"})
            .to_list()
        )
        return _valid(docs)

    @translated
    async def join(self, storm_id: str, ids: Sequence[Any]) -> int:
        """Make `ids` members of the storm (each joins at most one storm); how many joined.

        A member is no longer analysed on its own (the storm's analysis covers it) and no
        longer held back.
        """
        return await _each(
            ids,
            {"storm_id": ""},
            {"$set": {"storm_id": storm_id, "correlating": False, "needs_analysis": False}},
        )

    @translated
    async def release(self, ids: Sequence[Any]) -> int:
        """Let held incidents go on alone (analysis and paging as usual)."""
        return await _each(ids, {"correlating": True}, {"$set": {"correlating": False}})

    @translated
    async def count_members(self, storm_id: str, firing_only: bool = False) -> int:
        query: dict[str, Any] = {"storm_id": storm_id}
        if firing_only:
            query["status"] = "firing"
        return await self.store.count(Incident, query)

    @translated
    async def grew(self, storm_id: Any, members: int, joined_ts: float) -> None:
        """Record the member count; a storm already paged is flagged for an update."""
        await Incident.get_pymongo_collection().update_one(
            {"_id": storm_id},
            {
                "$max": {"storm_members": members, "storm_joined_ts": joined_ts},
                "$set": {"needs_notification": True, "updated_at": utcnow()},
            },
        )

    @translated
    async def delay_first_analysis(self, storm_id: Any, until: float) -> None:
        """Push a storm's first analysis to `until` unless it is claimed or done already."""
        await Incident.get_pymongo_collection().update_one(
            {"_id": storm_id, "analysis_id": "", "analysis_claim_token": ""},
            {"$max": {"analysis_claim_until": until}},
        )

    @translated
    async def paged(self, storm_id: Any, members: int) -> None:
        """How many members the storm's latest page or update listed."""
        await Incident.get_pymongo_collection().update_one(
            {"_id": storm_id}, {"$max": {"storm_paged_members": members}}
        )

    @translated
    async def suppress_member_pages(self, incident_ids: Sequence[str]) -> int:
        """First pages of new members not sent yet: the storm's page lists them instead."""
        if not incident_ids:
            return 0
        rows = (
            await Notification.get_pymongo_collection()
            .find(
                {"incident_id": {"$in": list(incident_ids)}, "event": "firing"},
                {"_id": 1, "status": 1},
            )
            .to_list()
        )
        ops = [
            UpdateOne(
                {"_id": r["_id"], "status": "pending"},
                {"$set": {"status": "suppressed", "reason": "storm", "hold_until": None}},
            )
            for r in rows
            if r.get("status") == "pending"
        ]
        if not ops:
            return 0
        result = await Notification.get_pymongo_collection().bulk_write(ops, ordered=False)
        return result.modified_count

    @translated
    async def members(self, storm_id: str, skip: int = 0, limit: int = 0) -> list[Incident]:
        """Members of a storm in the order they opened."""
        cursor = (
            Incident.get_pymongo_collection()
            .find({"storm_id": storm_id})
            .sort([("opened_ts", 1), ("_id", 1)])
            .skip(skip)
        )
        if limit:
            cursor = cursor.limit(limit)
        return _valid(await cursor.to_list())

    @translated
    async def member_episodes(self, storm_id: str, limit: int) -> list[Anomaly]:
        """Newest episodes across a storm's members (what its one analysis looks at)."""
        ids = [
            str(d["_id"])
            for d in await Incident.get_pymongo_collection()
            .find({"storm_id": storm_id}, {"_id": 1})
            .to_list()
        ]
        if not ids:
            return []
        return (
            await Anomaly.find({"incident_id": {"$in": ids}})
            .sort("-starts_at", "-_id")
            .limit(limit)
            .to_list()
        )

    @translated
    async def get(self, storm_id: str) -> Incident | None:
        oid = object_id(storm_id)
        if oid is None:
            return None
        incident = await Incident.get(oid)
        return incident if incident is not None and incident.source == STORM_SOURCE else None

    @translated
    async def page(self, skip: int, limit: int) -> tuple[list[Incident], int]:
        return await self.store.page(Incident, {"source": STORM_SOURCE}, "started_at", skip, limit)
