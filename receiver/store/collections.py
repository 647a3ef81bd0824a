"""Store operations by collection name: counts for /stats and the deletes retention asks for.

Works on raw collections, so collections other stages add (or have not created yet) need no
Beanie model here: a missing collection counts as empty. How old and how many is retention's
decision; which rows are still needed (and so never deleted) is written here, next to the
fields it reads.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from typing import Any

from bson import ObjectId
from pymongo.asynchronous.collection import AsyncCollection

from receiver.store.repo import Store, translated

DELETE_BATCH = 500

UNFINISHED = ["pending", "sending", "waiting"]

# Rows a later stage still needs: unprocessed deliveries, firing episodes, incidents still firing
# or waiting for their notification, unsent notifications (see `_notification_guard` too).
_STILL_NEEDED: dict[str, dict[str, Any]] = {
    "deliveries": {"processed": True},
    "anomalies": {"status": {"$ne": "firing"}},
    "incidents": {"status": {"$ne": "firing"}, "needs_notification": {"$ne": True}},
    "notifications": {"status": {"$in": ["sent", "suppressed"]}},
}


class Collections:
    def __init__(self, store: Store) -> None:
        self.store = store

    def _collection(self, name: str) -> AsyncCollection[dict[str, Any]]:
        return self.store.client[self.store.db_name][name]

    @translated
    async def names(self) -> set[str]:
        return set(await self.store.client[self.store.db_name].list_collection_names())

    @translated
    async def count(self, name: str, /, **equals: Any) -> int:
        """Documents of `name` whose fields equal `equals` (all of them, if none given)."""
        return await self._count(name, equals)

    async def quarantined(self) -> dict[str, int]:
        """Items a stage gave up on after its last attempt (an operator retries them)."""
        return {
            "deliveries": await self.count("deliveries", failed=True),
            "analyses": await self.count("incidents", analysis_failed=True),
            "notifications": await self.count("notifications", status="failed"),
        }

    async def _count(self, name: str, query: Mapping[str, Any]) -> int:
        # `Store.count_in`: fast on the embedded server
        return await self.store.count_in(self._collection(name), query)

    @translated
    async def values(self, name: str, field: str, query: Mapping[str, Any]) -> set[Any]:
        """The values of `field` among documents matching `query`.

        A projected find, not `distinct`: the embedded server answers `distinct` on `_id` with
        "JSON path error near '_id'".
        """
        docs = await self._collection(name).find(dict(query), {field: 1}).to_list()
        return {d[field] for d in docs if field in d}

    @translated
    async def find_one(self, name: str, query: Mapping[str, Any]) -> dict[str, Any] | None:
        return await self._collection(name).find_one(dict(query))

    @translated
    async def active_sessions(self, active_after: datetime) -> int:
        """Chat sessions with activity after `active_after`."""
        return await self._count("chat_sessions", {"last_activity": {"$gte": active_after}})

    async def _notification_guard(self) -> dict[str, Any]:
        """Rows of open (or not yet re-planned) incidents, and members of unsent digests, stay."""
        open_ids = await self.values(
            "incidents",
            "_id",
            {"$or": [{"status": {"$ne": "resolved"}}, {"needs_notification": True}]},
        )
        unsent = await self.values(
            "notifications", "key", {"event": "digest", "status": {"$in": UNFINISHED}}
        )
        guard: dict[str, Any] = {}
        if open_ids:
            guard["incident_id"] = {"$nin": sorted(str(i) for i in open_ids)}
        if unsent:
            guard["digest_key"] = {"$nin": sorted(str(k) for k in unsent)}
        return guard

    async def prune(
        self, name: str, *, created_before: datetime | None, keep_at_most: int | None
    ) -> tuple[int, int]:
        """Delete the rows of `name` no stage needs any more that were created before
        `created_before`, then the oldest of them past `keep_at_most` rows in all.

        Returns (deleted by age, deleted by count); None skips that step.
        """
        deletable = dict(_STILL_NEEDED.get(name, {}))
        if name == "notifications":
            deletable.update(await self._notification_guard())
        by_age = by_count = 0
        if created_before is not None:
            cutoff = ObjectId.from_datetime(created_before)
            by_age = await self.delete_older_than(name, "_id", cutoff, deletable)
        if keep_at_most is not None:
            excess = await self.count(name) - keep_at_most
            if excess > 0:
                by_count = await self.delete_oldest(name, excess, "_id", deletable)
        return by_age, by_count

    @translated
    async def delete_older_than(
        self, name: str, field: str, cutoff: datetime | Any, deletable: Mapping[str, Any]
    ) -> int:
        """Delete deletable documents whose `field` is before `cutoff`; returns how many."""
        query = {**deletable, field: {"$lt": cutoff}}
        result = await self._collection(name).delete_many(query)
        return int(result.deleted_count)

    @translated
    async def delete_oldest(
        self, name: str, excess: int, order_field: str, deletable: Mapping[str, Any]
    ) -> int:
        """Delete up to `excess` deletable documents, oldest `order_field` first."""
        collection = self._collection(name)
        deleted = 0
        while deleted < excess:
            batch = min(DELETE_BATCH, excess - deleted)
            docs = (
                await collection.find(dict(deletable), {"_id": 1})
                .sort([(order_field, 1), ("_id", 1)])
                .limit(batch)
                .to_list()
            )
            if not docs:
                break
            # the filter again: a document may have become protected since it was read
            ids = [d["_id"] for d in docs]
            result = await collection.delete_many({**deletable, "_id": {"$in": ids}})
            deleted += int(result.deleted_count)
            if result.deleted_count == 0:
                break
        return deleted
