"""A pending delivery an older version stored without `next_attempt_ts` is still processed:
the pending read filters on that field, so the worker gives it the field at start-up."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

from prometheus_client import CollectorRegistry

from receiver.ingest.metrics import IngestMetrics
from receiver.ingest.processor import SignalProcessor
from receiver.ingest.worker import DeliveryWorker
from receiver.store.documents import Delivery, Incident
from receiver.store.repo import Store
from receiver.work import FakeClock
from tests.support.payloads import alert, webhook


async def test_delivery_without_a_retry_time_is_processed(store: Store) -> None:
    """A raw pending document lacking `next_attempt_ts` opens its incident on the first pass."""
    body = webhook([alert("DiskFull", "db-1")], group="legacy")
    await Delivery.get_pymongo_collection().insert_one(
        {
            "delivery_key": "legacy",
            "received_at": datetime.now(UTC),
            "raw_json": json.dumps(body),
            "receiver": "monitor",
            "group_key": body["groupKey"],
            "processed": False,
            "attempts": 0,
        }
    )
    worker = DeliveryWorker(
        store,
        SignalProcessor(store),
        IngestMetrics(CollectorRegistry()),
        retention=timedelta(days=1),
        clock=FakeClock(),
    )
    assert await worker.step()
    stored = await Delivery.find_one({"delivery_key": "legacy"})
    assert stored is not None
    assert (stored.processed, stored.failed, stored.next_attempt_ts) == (True, False, 0.0)
    assert await Incident.find({"key": body["groupKey"]}).count() == 1
