"""Store operations of the outlier poller: targets, leases, poll snapshots, detector episodes.

A lease is a document per name: renewed by its holder, taken over once `expires_at` has passed,
created through the unique index (two replicas inserting at once: one gets DuplicateKey). Each
step is a single-document write, atomic on MongoDB and on the embedded server.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from datetime import datetime, timedelta
from typing import Any

from pydantic import ValidationError
from pymongo import DESCENDING
from pymongo.errors import DuplicateKeyError

from receiver.domain import Episode
from receiver.records import SnapshotRecord, TargetRecord
from receiver.store.convert import episode_of
from receiver.store.documents import (
    Anomaly,
    Lease,
    PollSnapshot,
    Target,
    document_of,
    inserted,
    utcnow,
)
from receiver.store.repo import Store, translated
from receiver.store.valid import first_error

log = logging.getLogger(__name__)

DETECTOR = "detector"


class DetectStore:
    """Thin operations over the poller's collections; no business rules."""

    def __init__(self, store: Store) -> None:
        self.store = store
        # target documents the last read skipped: (id, name, first validation error)
        self.invalid_targets: list[tuple[str, str, str]] = []
        self._warned: set[str] = set()

    # targets --------------------------------------------------------------------------------

    @translated
    async def list_targets(self, enabled_only: bool = False, warn: bool = True) -> list[Target]:
        """Targets by name. A document that is not a valid target is skipped, kept in
        `invalid_targets` and, with `warn`, logged once per document for this store object."""
        query: dict[str, Any] = {"enabled": True} if enabled_only else {}
        found: list[Target] = []
        invalid: list[tuple[str, str, str]] = []
        async for raw in Target.get_pymongo_collection().find(query).sort("name", 1):
            try:
                found.append(Target.model_validate(raw))
            except ValidationError as err:
                doc_id, name = str(raw.get("_id"))[:40], str(raw.get("name", ""))[:64]
                invalid.append((doc_id, name, first_error(err)))
                if warn and doc_id not in self._warned:
                    self._warned.add(doc_id)
                    log.warning(
                        "target document %s (name %r) skipped until fixed: %s",
                        doc_id,
                        name,
                        invalid[-1][2],
                    )
        self.invalid_targets = invalid
        return found

    @translated
    async def get_target(self, name: str) -> Target | None:
        """The target named `name`; None also when its document is not a valid target."""
        raw = await Target.get_pymongo_collection().find_one({"name": name})
        if raw is None:
            return None
        try:
            target: Target = Target.model_validate(raw)
            return target
        except ValidationError:
            return None

    @translated
    async def insert_target(self, target: TargetRecord) -> None:
        """Raises `DuplicateKey` when the name is taken."""
        doc = document_of(Target, target)
        await doc.insert()
        inserted(target, doc)

    @translated
    async def update_target(
        self,
        name: str,
        fields: Mapping[str, Any],
        on_new_url: Mapping[str, Any] | None = None,
    ) -> Target | None:
        """Set `fields`; when they hold a `url` other than the stored one, set `on_new_url` too.

        The URL is compared in the write itself (the filter matches the stored URL), so an
        update racing this one cannot pair `on_new_url`'s absence with a URL it did not see.
        """
        coll = Target.get_pymongo_collection()
        changes = {**fields, "updated_at": utcnow()}
        url = fields.get("url")
        if not on_new_url or url is None:
            res = await coll.update_one({"name": name}, {"$set": changes})
            return await Target.find_one(Target.name == name) if res.matched_count else None
        for _ in range(5):
            moved = await coll.update_one(
                {"name": name, "url": {"$ne": url}}, {"$set": {**changes, **on_new_url}}
            )
            if moved.matched_count:
                break
            kept = await coll.update_one({"name": name, "url": url}, {"$set": changes})
            if kept.matched_count:
                break
            if await coll.find_one({"name": name}, {"_id": 1}) is None:
                return None
        else:
            # the URL kept moving under us: resetting is the side that cannot leak
            await coll.update_one({"name": name}, {"$set": {**changes, **on_new_url}})
        return await Target.find_one(Target.name == name)

    @translated
    async def delete_target(self, name: str) -> bool:
        res = await Target.get_pymongo_collection().delete_one({"name": name})
        return res.deleted_count == 1

    # leases ---------------------------------------------------------------------------------

    @translated
    async def acquire_lease(self, name: str, holder: str, ttl: timedelta) -> bool:
        """Renew our lease, take over an expired one, or create it; False if another holds it."""
        coll = Lease.get_pymongo_collection()
        now = utcnow()
        expires = now + ttl
        renewed = await coll.update_one(
            {"name": name, "holder": holder}, {"$set": {"expires_at": expires}}
        )
        if renewed.matched_count:
            return True
        taken = await coll.update_one(
            {"name": name, "expires_at": {"$lt": now}},
            {"$set": {"holder": holder, "expires_at": expires, "acquired_at": now}},
        )
        if taken.matched_count:
            return True
        try:
            await coll.insert_one(
                {"name": name, "holder": holder, "expires_at": expires, "acquired_at": now}
            )
        except DuplicateKeyError:
            return False
        return True

    @translated
    async def release_lease(self, name: str, holder: str) -> bool:
        res = await Lease.get_pymongo_collection().delete_one({"name": name, "holder": holder})
        return res.deleted_count == 1

    @translated
    async def leases(self, names: Sequence[str]) -> dict[str, Lease]:
        if not names:
            return {}
        found = await Lease.find({"name": {"$in": list(names)}}).to_list()
        return {lease.name: lease for lease in found}

    # snapshots ------------------------------------------------------------------------------

    @translated
    async def insert_snapshot(self, snapshot: SnapshotRecord, max_docs: int) -> int:
        """Store a cycle's snapshot and delete the oldest beyond `max_docs`; returns deleted."""
        doc = document_of(PollSnapshot, snapshot)
        await doc.insert()
        inserted(snapshot, doc)
        coll = PollSnapshot.get_pymongo_collection()
        if await self.store.count(PollSnapshot, {}) <= max_docs:
            return 0
        boundary = (
            await coll.find({}, {"created_at": 1})
            .sort([("created_at", DESCENDING), ("_id", DESCENDING)])
            .skip(max_docs)
            .limit(1)
            .to_list()
        )
        if not boundary:
            return 0
        at, oid = boundary[0]["created_at"], boundary[0]["_id"]
        res = await coll.delete_many(
            {"$or": [{"created_at": {"$lt": at}}, {"created_at": at, "_id": {"$lte": oid}}]}
        )
        return res.deleted_count

    @translated
    async def snapshots(
        self, target: str | None, skip: int, limit: int
    ) -> tuple[Sequence[SnapshotRecord], int]:
        query: dict[str, Any] = {} if target is None else {"target": target}
        total = await self.store.count(PollSnapshot, query)
        items = (
            await PollSnapshot.find(query)
            .sort("-created_at", "-_id")
            .skip(skip)
            .limit(limit)
            .to_list()
        )
        return items, total

    # detector episodes ----------------------------------------------------------------------

    @translated
    async def open_episodes(self, target: str) -> dict[str, Episode]:
        """Firing detector episodes of one target, by fingerprint (the newest per fingerprint)."""
        found = (
            await Anomaly.find({"source": DETECTOR, "status": "firing", "detector.target": target})
            .sort("+starts_at")
            .to_list()
        )
        return {a.fingerprint: episode_of(a) for a in found}

    @translated
    async def resolved_since(self, fingerprints: Sequence[str], since: datetime) -> set[str]:
        """Fingerprints with a detector episode that ended at or after `since`."""
        if not fingerprints:
            return set()
        found = await Anomaly.get_pymongo_collection().distinct(
            "fingerprint",
            {
                "source": DETECTOR,
                "status": "resolved",
                "fingerprint": {"$in": list(fingerprints)},
                "ends_at": {"$gte": since},
            },
        )
        return {str(fp) for fp in found}
