"""Start-up re-keying of incidents and episodes written before a group was (source, receiver,
groupKey): the database side of `receiver.ingest.migrate`, which supplies the new keys.

Idempotent (documents already keyed are left alone) and bounded per round; a key that is
already taken (a newer incident or episode of the same group) is left as it was and logged.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Collection
from datetime import UTC, datetime
from typing import Any

from pymongo.errors import DuplicateKeyError

from receiver.store.documents import Anomaly, Incident
from receiver.store.repo import object_id, translated

log = logging.getLogger(__name__)

BATCH = 500

# (source, receiver, groupKey) → the group's open key
GroupOf = Callable[[str, str, str], str]
# (source, fingerprint, startsAt, group) → the episode's key
EpisodeKeyOf = Callable[[str, str, datetime, str], str]


def _aware(value: datetime) -> datetime:
    return value if value.tzinfo is not None else value.replace(tzinfo=UTC)


@translated
async def rekey_incidents(sources: Collection[str], group_of: GroupOf) -> int:
    """Move each open incident of `sources` whose open key does not start with its source to
    `group_of(source, receiver, key)`; returns how many moved."""
    collection = Incident.get_pymongo_collection()
    moved = 0
    cursor = collection.find({"status": "firing", "source": {"$in": sorted(sources)}})
    async for raw in cursor:
        source = str(raw["source"])
        if str(raw.get("open_key", "")).startswith(f"{source}:"):
            continue
        new = group_of(source, str(raw.get("receiver", "")), str(raw.get("key", "")))
        try:
            await collection.update_one({"_id": raw["_id"]}, {"$set": {"open_key": new}})
        except DuplicateKeyError:
            log.warning("legacy incident %s: its group already has an open incident", raw["_id"])
            continue
        moved += 1
    return moved


async def _groups_of(ids: set[str]) -> dict[str, tuple[str, str]]:
    """(receiver, key) of the incidents `ids`."""
    found: dict[str, tuple[str, str]] = {}
    for incident_id in ids:
        oid = object_id(incident_id)
        if oid is None:
            continue
        raw = await Incident.get_pymongo_collection().find_one(
            {"_id": oid}, {"receiver": 1, "key": 1}
        )
        if raw is not None:
            found[incident_id] = (str(raw.get("receiver", "")), str(raw.get("key", "")))
    return found


@translated
async def rekey_episodes(
    sources: Collection[str], group_of: GroupOf, episode_key_of: EpisodeKeyOf
) -> int:
    """Give each episode of `sources` without a group its group (from its incident) and a
    group-scoped key; returns how many were re-keyed."""
    collection = Anomaly.get_pymongo_collection()
    legacy = {
        "source": {"$in": sorted(sources)},
        "$or": [{"group_id": ""}, {"group_id": {"$exists": False}}],
    }
    rekeyed = 0
    while True:
        batch = await collection.find(legacy).limit(BATCH).to_list(BATCH)
        if not batch:
            return rekeyed
        groups = await _groups_of({str(r.get("incident_id", "")) for r in batch})
        for raw in batch:
            source = str(raw["source"])
            receiver, key = groups.get(str(raw.get("incident_id", "")), ("", ""))
            group = group_of(source, receiver, str(raw.get("group_key") or key))
            fields: dict[str, Any] = {"group_id": group}
            fingerprint = str(raw.get("fingerprint", ""))
            new_key = episode_key_of(source, fingerprint, _aware(raw["starts_at"]), group)
            try:
                await collection.update_one(
                    {"_id": raw["_id"]}, {"$set": {**fields, "episode_key": new_key}}
                )
                rekeyed += 1
            except DuplicateKeyError:
                # the group already holds this episode under its new key: keep the old one
                # out of the legacy query, and out of the way
                await collection.update_one({"_id": raw["_id"]}, {"$set": fields})
