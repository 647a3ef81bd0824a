"""Store operations by collection name: counts for /stats and the deletes retention asks for.

Works on raw collections, so collections other stages add (or have not created yet) need no
Beanie model here: a missing collection counts as empty. Which documents may be deleted is
the caller's decision, passed in as a filter.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from typing import Any

from pymongo.asynchronous.collection import AsyncCollection

from receiver.store.repo import Store, translated

DELETE_BATCH = 500


class Collections:
    def __init__(self, store: Store) -> None:
        self.store = store

    def _collection(self, name: str) -> AsyncCollection[dict[str, Any]]:
        return self.store.client[self.store.db_name][name]

    @translated
    async def names(self) -> set[str]:
        return set(await self.store.client[self.store.db_name].list_collection_names())

    @translated
    async def count(self, name: str, query: Mapping[str, Any] | None = None) -> int:
        """`Store.count_in` (fast on the embedded server) by collection name."""
        return await self.store.count_in(self._collection(name), query or {})

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
