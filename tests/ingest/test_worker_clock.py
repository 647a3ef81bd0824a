"""The delivery worker on a fake clock: a poison delivery's retries and quarantine follow the
clock's time, not real sleeps, while the deliveries beside it are applied at once."""

from __future__ import annotations

import asyncio
import contextlib
import json
from datetime import timedelta

from prometheus_client import CollectorRegistry

from receiver.ingest.metrics import IngestMetrics
from receiver.ingest.processor import SignalProcessor
from receiver.ingest.worker import DeliveryWorker
from receiver.retry import RetryPolicy, StageFailures
from receiver.store.documents import Delivery, Incident
from receiver.store.repo import Store
from receiver.work import FakeClock, WorkMetrics
from tests.support.payloads import alert, webhook


async def _poison(store: Store) -> Delivery:
    found = await Delivery.find_one({"delivery_key": "poison"})
    assert found is not None
    return found


async def test_poison_delivery_retries_and_quarantine_follow_the_fake_clock(store: Store) -> None:
    """Attempt n+1 waits for the clock to pass base·2^(n-1); the last attempt quarantines it;
    the good delivery is applied on the first pass and never waits for the poison one."""
    clock, registry = FakeClock(), CollectorRegistry()
    good = webhook([alert("DiskFull", "db-1")], group="disk")
    await store.insert_deliveries(
        [
            Delivery(delivery_key="poison", raw_json="{not json", group_key="p"),
            Delivery(delivery_key="good", raw_json=json.dumps(good), group_key="disk"),
        ]
    )
    policy = RetryPolicy(base_seconds=60.0, max_attempts=3, jitter=0.0)
    worker = DeliveryWorker(
        store,
        SignalProcessor(store),
        IngestMetrics(registry),
        retention=timedelta(days=1),
        poll_seconds=5.0,
        failures=StageFailures(registry),
        policy=policy,
        clock=clock,
        work_metrics=WorkMetrics(registry),
    )
    task = asyncio.create_task(worker.run())
    try:
        await clock.until_parked()
        assert await Incident.find_all().count() == 1
        poison = await _poison(store)
        assert (poison.attempts, poison.failed) == (1, False)
        assert poison.next_attempt_ts == clock.time() + 60.0

        await clock.advance(30.0)  # polled, but the retry is not due yet
        await clock.until_parked()
        assert (await _poison(store)).attempts == 1

        await clock.advance(31.0)
        await clock.until_parked()
        poison = await _poison(store)
        assert (poison.attempts, poison.failed) == (2, False)
        assert poison.next_attempt_ts == clock.time() + 120.0

        await clock.advance(121.0)
        await clock.until_parked()
        poison = await _poison(store)
        assert (poison.attempts, poison.failed, poison.processed) == (3, True, True)
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
    errors = "pipeline_item_errors_total"
    assert registry.get_sample_value(errors, {"stage": "delivery", "outcome": "retry"}) == 2
    assert registry.get_sample_value(errors, {"stage": "delivery", "outcome": "quarantined"}) == 1
    processed = registry.get_sample_value("pipeline_items_processed_total", {"stage": "delivery"})
    assert processed == 1
