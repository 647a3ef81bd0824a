"""Drains stored deliveries into episodes and incidents, in arrival order.

The webhook only stores the delivery (one insert) and answers; this worker does the rest from the
database, so a restart resumes where it stopped and ingest never waits on processing.
"""

from __future__ import annotations

import asyncio
import json
import logging
from datetime import timedelta

from receiver.ingest.metrics import IngestMetrics
from receiver.ingest.migrate import migrate_groups
from receiver.ingest.models import WebhookPayload
from receiver.ingest.normalise import to_signals
from receiver.ingest.processor import SignalBatch, SignalProcessor
from receiver.ingest.senders import parse_payload
from receiver.ingest.storms import StormCorrelator
from receiver.records import DeliveryRecord
from receiver.retry import RetryPolicy, StageFailures, describe
from receiver.store.repo import Store, StoreError
from receiver.work import REAL_CLOCK, Clock, ItemFailure, Worker, WorkMetrics

log = logging.getLogger(__name__)


def batch_from(
    payload: WebhookPayload, ignore_alertnames: frozenset[str] = frozenset()
) -> SignalBatch:
    """The delivery as a signal batch; `ignore_alertnames` (the Watchdog) never become episodes."""
    return SignalBatch(
        source=payload.source,
        group_key=payload.groupKey,
        signals=[s for s in to_signals(payload) if s.alertname not in ignore_alertnames],
        receiver=payload.receiver,
        group_labels=dict(payload.groupLabels),
        common_labels=dict(payload.commonLabels),
        external_url=payload.externalURL,
    )


class DeliveryWorker:
    def __init__(
        self,
        store: Store,
        processor: SignalProcessor,
        metrics: IngestMetrics,
        retention: timedelta,
        poll_seconds: float = 1.0,
        ignore_alertnames: frozenset[str] = frozenset(),
        failures: StageFailures | None = None,
        policy: RetryPolicy | None = None,
        concurrency: int = 8,
        correlator: StormCorrelator | None = None,
        clock: Clock = REAL_CLOCK,
        work_metrics: WorkMetrics | None = None,
    ) -> None:
        self.clock = clock
        self.work_metrics = work_metrics
        self.concurrency = concurrency
        self.correlator = correlator
        self.failures = failures
        self.policy = policy or RetryPolicy()
        self.ignore_alertnames = ignore_alertnames
        self.store = store
        self.processor = processor
        self.metrics = metrics
        self.retention = retention
        self.poll_seconds = poll_seconds
        self.record = ItemFailure("delivery", self.policy, clock, failures)
        self.worker = Worker(
            "delivery worker",
            self.step,
            poll=poll_seconds,
            clock=clock,
            outages=(StoreError,),
            metrics=work_metrics,
        )
        self._migrated = False

    def wake(self) -> None:
        self.worker.wake()

    async def run(self) -> None:
        await self.worker.run()

    async def step(self) -> bool:
        """One pass: migrate once, drain a batch, correlate storms; True when it took any."""
        if not self._migrated:
            # before the first delivery: legacy incidents must be found by group id, legacy
            # deliveries by their retry time
            await migrate_groups()
            await self.store.backfill_attempt_times()
            self._migrated = True
        drained = await self.drain()
        await self._correlate()
        return drained > 0

    async def _correlate(self) -> None:
        """Storm correlation after each batch (and each idle tick, to release held incidents);
        a bug in it must not stop deliveries from being processed."""
        if self.correlator is None:
            return
        try:
            await self.correlator.correlate()
        except StoreError:
            raise
        except Exception:
            log.exception("storm correlation failed; held incidents wait for the next pass")
            if self.failures is not None:
                self.failures.failed("storm", False)

    async def drain(self, limit: int = 200) -> int:
        """Process pending deliveries once; return how many were handled.

        One read takes a batch; deliveries of one group are applied in arrival order, groups
        side by side (at most `concurrency` at once), and the batch is marked processed in one
        write. A failing delivery fails alone; a store outage stops its group's later
        deliveries (they must not overtake it) and propagates once the others are done.
        """
        pending = await self.store.pending_deliveries(limit, self.clock.time())
        if pending:  # at least these, until a batch that is not full reads the exact count
            self.metrics.queue_depth.set(len(pending))
        groups: dict[tuple[str, str], list[DeliveryRecord]] = {}
        for delivery in pending:
            groups.setdefault((delivery.receiver, delivery.group_key), []).append(delivery)
        slots = asyncio.Semaphore(self.concurrency)
        applied: list[DeliveryRecord] = []

        async def run_group(items: list[DeliveryRecord]) -> None:
            async with slots:
                for delivery in items:
                    if await self.process(delivery):
                        applied.append(delivery)

        results = await asyncio.gather(
            *(run_group(items) for items in groups.values()), return_exceptions=True
        )
        if applied:
            await self.store.finish_deliveries([d.id for d in applied], self.retention)
            self.metrics.processed.inc(len(applied))
            if self.work_metrics is not None:
                self.work_metrics.items.labels("delivery").inc(len(applied))
        for result in results:
            if isinstance(result, BaseException):
                raise result
        if len(pending) < limit:
            # exact once the backlog is small: the embedded server reads every pending
            # delivery to count them (~30 ms per 1,000), holding up the webhook's inserts
            self.metrics.queue_depth.set(await self.store.pending_depth() if pending else 0)
        return len(pending)

    async def process(self, delivery: DeliveryRecord) -> bool:
        """Apply one delivery; True when applied (the caller marks it processed). Any failure
        of its own is recorded on it, never raised.

        Only the store being unreachable propagates (the loop backs off and the same delivery
        is taken again): everything else is this delivery's problem, so it is retried later
        and quarantined after the last attempt while the deliveries behind it go on.
        """
        try:
            payload = parse_payload(json.loads(delivery.raw_json))
            await self.processor.apply(batch_from(payload, self.ignore_alertnames))
        except asyncio.CancelledError:
            raise
        except StoreError as err:
            if err.retryable:
                raise
            await self._failed(delivery, err)
            return False
        except Exception as err:
            await self._failed(delivery, err)
            return False
        return True

    async def _failed(self, delivery: DeliveryRecord, err: Exception) -> None:
        outcome = self.record.decide(delivery.attempts)
        log.error(
            "delivery %s failed (attempt %d/%d%s): %s",
            delivery.delivery_key[:12],
            outcome.attempts,
            self.policy.max_attempts,
            ", quarantined" if outcome.quarantined else "",
            describe(err),
        )
        self.metrics.failed.inc()
        await self.store.fail_delivery(
            delivery, describe(err), outcome.quarantined, outcome.retry_at
        )
