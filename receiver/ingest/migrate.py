"""Start-up pass: incidents and episodes written before a group was (source, receiver, groupKey).

Up to fd02813 an open incident's `open_key` was the bare groupKey and an episode's key was
`alertmanager:<fingerprint>:<startsAt>` with no `group_id`; the processor looks both up by the
new identity, so such an incident would never be found again (its alerts would open a second
one and its resolve would be lost). The delivery worker runs this once before its first drain:
it moves each legacy open incident to `group_id(source, receiver, key)` and gives each legacy
episode its group and group-scoped key. Idempotent (documents already keyed are left alone) and
bounded per round; a key that is already taken (a newer incident or episode of the same group)
is left as it was and logged. Incidents and episodes written since keep their keys: adding the
source changed nothing for Alertmanager's, whose keys already start with `alertmanager:`.
"""

from __future__ import annotations

import logging
from datetime import UTC, datetime
from typing import Any

from pymongo.errors import DuplicateKeyError

from receiver.domain import Source
from receiver.ingest.normalise import WEBHOOK_SOURCES, episode_key, group_id
from receiver.store.documents import Anomaly, Incident
from receiver.store.repo import object_id, translated

log = logging.getLogger(__name__)

BATCH = 500
_SOURCES = sorted(s.value for s in WEBHOOK_SOURCES)


def _aware(value: datetime) -> datetime:
    return value if value.tzinfo is not None else value.replace(tzinfo=UTC)


@translated
async def _incidents() -> int:
    collection = Incident.get_pymongo_collection()
    moved = 0
    cursor = collection.find({"status": "firing", "source": {"$in": _SOURCES}})
    async for raw in cursor:
        source = Source(raw["source"])
        if str(raw.get("open_key", "")).startswith(f"{source.value}:"):
            continue
        new = group_id(source, str(raw.get("receiver", "")), str(raw.get("key", "")))
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
async def _episodes() -> int:
    collection = Anomaly.get_pymongo_collection()
    legacy = {
        "source": {"$in": _SOURCES},
        "$or": [{"group_id": ""}, {"group_id": {"$exists": False}}],
    }
    rekeyed = 0
    while True:
        batch = await collection.find(legacy).limit(BATCH).to_list(BATCH)
        if not batch:
            return rekeyed
        groups = await _groups_of({str(r.get("incident_id", "")) for r in batch})
        for raw in batch:
            source = Source(raw["source"])
            receiver, key = groups.get(str(raw.get("incident_id", "")), ("", ""))
            group = group_id(source, receiver, str(raw.get("group_key") or key))
            fields: dict[str, Any] = {"group_id": group}
            new_key = episode_key(
                source, str(raw.get("fingerprint", "")), _aware(raw["starts_at"]), group
            )
            try:
                await collection.update_one(
                    {"_id": raw["_id"]}, {"$set": {**fields, "episode_key": new_key}}
                )
                rekeyed += 1
            except DuplicateKeyError:
                # the group already holds this episode under its new key: keep the old one
                # out of the legacy query, and out of the way
                await collection.update_one({"_id": raw["_id"]}, {"$set": fields})


async def migrate_groups() -> tuple[int, int]:
    """Re-key legacy open incidents and episodes; returns (incidents, episodes) moved.

    Works on the database the documents are bound to (`Store.connect`)."""
    incidents = await _incidents()
    episodes = await _episodes()
    if incidents or episodes:
        log.info("migrated %d incident(s) and %d episode(s) to group keys", incidents, episodes)
    return incidents, episodes
