"""Deliveries in the store: the webhook's group commit inserts them, the delivery worker takes
them in arrival order and marks them processed, failed or quarantined."""

from __future__ import annotations

import time
from collections.abc import Sequence
from datetime import timedelta
from typing import Any

from pymongo import UpdateOne
from pymongo.errors import DuplicateKeyError

from receiver.records import DeliveryRecord
from receiver.store.base import StoreBase, insert_new, object_id, translated
from receiver.store.documents import Delivery, document_of, inserted, utcnow
from receiver.store.valid import SetAside, first_error, valid

FINISH_CHUNK = 25


class DeliveryStore(StoreBase):
    @translated
    async def insert_delivery(self, delivery: DeliveryRecord) -> bool:
        """Store a delivery; False when its key is already stored (a retry or HA duplicate)."""
        doc = document_of(Delivery, delivery)
        try:
            await doc.insert()
        except DuplicateKeyError:
            return False
        inserted(delivery, doc)
        return True

    @translated
    async def insert_deliveries(self, deliveries: Sequence[DeliveryRecord]) -> list[bool]:
        """Store several deliveries in one round trip; per item, False = already stored."""
        if not deliveries:
            return []
        docs = [d.model_dump(by_alias=True, exclude={"id"}) for d in deliveries]
        collection = self.ingress[self.db_name][Delivery.get_pymongo_collection().name]
        return await insert_new(collection, docs)

    @translated
    async def pending_deliveries(
        self, limit: int, now_ts: float | None = None
    ) -> list[DeliveryRecord]:
        """Unprocessed deliveries in arrival order, leaving out those waiting for a retry.

        A document that is not a valid delivery (written by hand, by another version) is
        quarantined here instead of failing the read for every delivery behind it.
        """
        now_ts = time.time() if now_ts is None else now_ts
        collection = Delivery.get_pymongo_collection()
        # one equality on the `processed` index, the time filtered after it (any `$or` made
        # the embedded server read every delivery); `backfill_attempt_times` gave documents
        # written before `next_attempt_ts` existed the field
        query = {"processed": False, "next_attempt_ts": {"$lte": now_ts}}
        cursor = collection.find(query).sort("received_at", 1).limit(limit)
        bad = SetAside()
        found = valid(Delivery, await cursor.to_list(), bad)
        for raw, err in bad.found:
            error = f"not a valid delivery document: {first_error(err)}"
            await collection.update_one(
                {"_id": raw["_id"]},
                {"$set": {"processed": True, "failed": True, "last_error": error[:500]}},
            )
        return list(found)

    @translated
    async def backfill_attempt_times(self) -> int:
        """Give pending deliveries stored without `next_attempt_ts` (by an older version, or
        written by hand) the field, due now, so the pending read takes them; how many."""
        result = await Delivery.get_pymongo_collection().update_many(
            {"processed": False, "next_attempt_ts": {"$exists": False}},
            {"$set": {"next_attempt_ts": 0.0}},
        )
        return result.modified_count

    @translated
    async def pending_depth(self) -> int:
        """How many deliveries wait (the queue-depth gauge), backfilling retry times as
        `backfill_attempt_times` does. On the embedded server one read does both (the ids
        and that one field of the pending deliveries, by the `processed` index)."""
        collection = Delivery.get_pymongo_collection()
        if not self.nx_server:
            await self.backfill_attempt_times()
            return await collection.count_documents({"processed": False})
        docs = await collection.find({"processed": False}, {"next_attempt_ts": 1}).to_list()
        missing = [d["_id"] for d in docs if "next_attempt_ts" not in d]
        if missing:
            await collection.update_many(
                {"_id": {"$in": missing}}, {"$set": {"next_attempt_ts": 0.0}}
            )
        return len(docs)

    @translated
    async def finish_deliveries(self, ids: Sequence[Any], retention: timedelta) -> None:
        """Mark several deliveries processed, FINISH_CHUNK per round trip: the embedded server
        holds its one lock for a whole bulk write (~14 ms for 200), and the webhook's inserts
        wait behind it."""
        now = utcnow()
        update = {"$set": {"processed": True, "processed_at": now, "expire_at": now + retention}}
        ops = [UpdateOne({"_id": i}, update) for i in ids if i is not None]
        for start in range(0, len(ops), FINISH_CHUNK):
            chunk = ops[start : start + FINISH_CHUNK]
            await Delivery.get_pymongo_collection().bulk_write(chunk, ordered=False)

    @translated
    async def fail_delivery(
        self, delivery: DeliveryRecord, error: str, quarantine: bool, next_attempt_ts: float
    ) -> None:
        """Record a failed attempt: retry at `next_attempt_ts`, or quarantine it."""
        fields: dict[str, Any] = {"last_error": error[:500], "next_attempt_ts": next_attempt_ts}
        if quarantine:
            fields.update(processed=True, failed=True, processed_at=utcnow())
        await Delivery.get_pymongo_collection().update_one(
            {"_id": delivery.id}, {"$inc": {"attempts": 1}, "$set": fields}
        )

    @translated
    async def retry_delivery(self, delivery_id: str) -> DeliveryRecord | None:
        """Put a delivery back in the queue with fresh attempts; None when it does not exist."""
        oid = object_id(delivery_id)
        if oid is None:
            return None
        res = await Delivery.get_pymongo_collection().update_one(
            {"_id": oid},
            {
                "$set": {
                    "processed": False,
                    "failed": False,
                    "attempts": 0,
                    "next_attempt_ts": 0.0,
                    "processed_at": None,
                }
            },
        )
        if res.matched_count == 0:
            return None
        return await Delivery.get(oid)

    @translated
    async def list_deliveries(
        self, skip: int, limit: int, status: str = ""
    ) -> tuple[list[DeliveryRecord], int]:
        """One page of deliveries, newest first, WITHOUT their bodies (`raw_json` is "").

        A body can be MAX_BODY_BYTES; a page of 500 must not pull them all into memory. Ask
        for a body with `delivery_raw`, one at a time. `status`: "", failed (quarantined),
        pending, processed.
        """
        queries: dict[str, dict[str, Any]] = {
            "": {},
            "failed": {"failed": True},
            "pending": {"processed": False},
            "processed": {"processed": True, "failed": {"$ne": True}},
        }
        query = queries[status]
        total = await self.count(Delivery, query)
        cursor = (
            Delivery.get_pymongo_collection()
            .find(query, {"raw_json": 0})
            .sort([("received_at", -1), ("_id", -1)])
            .skip(skip)
            .limit(limit)
        )
        # a document that is no delivery is quarantined when the worker reads it
        return list(valid(Delivery, await cursor.to_list())), total

    @translated
    async def delivery_raw(self, delivery: DeliveryRecord) -> str:
        """The body of one delivery as received ("" when it has gone meanwhile)."""
        doc = await Delivery.get_pymongo_collection().find_one(
            {"_id": delivery.id}, {"raw_json": 1}
        )
        raw = doc.get("raw_json") if doc else None
        return raw if isinstance(raw, str) else ""
