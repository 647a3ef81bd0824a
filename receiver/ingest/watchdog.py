"""Dead man's switch: the always-firing `Watchdog` alert proves the alerting pipeline works.

The Watchdog alert is recognised at the webhook (before deduplication, because Alertmanager's
repeats of it are byte-identical deliveries) and never becomes an incident. If it stops arriving
for WATCHDOG_TIMEOUT_SECONDS after it has been seen once, the receiver raises its own critical
incident "AlertingPipelineDown" through the normal pipeline (same episodes, same notifications),
and resolves it when the heartbeat comes back. The last heartbeat lives in the store, so every
replica sees the same one.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Iterable
from datetime import datetime, timedelta

from prometheus_client import CollectorRegistry, Gauge

from receiver.domain import Severity, Signal, Source, Status
from receiver.ingest.normalise import fingerprint
from receiver.ingest.processor import SignalBatch, SignalProcessor
from receiver.store.repo import Store, StoreError
from receiver.work import REAL_CLOCK, Clock, WorkMetrics, every

log = logging.getLogger(__name__)

PIPELINE_DOWN = "AlertingPipelineDown"
GROUP_KEY = "receiver:watchdog"
_LABELS = {"alertname": PIPELINE_DOWN, "severity": "critical", "source": "receiver"}


class Watchdog:
    def __init__(
        self,
        store: Store,
        processor: SignalProcessor,
        alertname: str,
        timeout_seconds: float,
        registry: CollectorRegistry,
        *,
        clock: Clock = REAL_CLOCK,
        work: WorkMetrics | None = None,
    ) -> None:
        self.clock = clock
        self.work = work
        self.store = store
        self.processor = processor
        self.alertname = alertname
        self.timeout = timedelta(seconds=timeout_seconds)
        self._last_write: datetime | None = None
        self._writes: set[asyncio.Task[None]] = set()
        self.age = Gauge(
            "watchdog_heartbeat_age_seconds",
            "Seconds since Alertmanager's Watchdog alert last arrived (-1 = never)",
            registry=registry,
        )
        self.age.set(-1)

    @property
    def enabled(self) -> bool:
        return self.timeout > timedelta(0)

    def is_heartbeat(self, alertname: str) -> bool:
        return self.enabled and alertname == self.alertname

    def seen(self, alertnames: Iterable[str]) -> None:
        """Record a heartbeat if a delivery carried the Watchdog (debounced store write)."""
        if not any(self.is_heartbeat(n) for n in alertnames):
            return
        now = self.clock.now()
        debounce = min(timedelta(seconds=5), self.timeout / 4)
        if self._last_write is not None and now - self._last_write < debounce:
            return
        self._last_write = now
        task = asyncio.create_task(self._write(now))
        self._writes.add(task)
        task.add_done_callback(self._writes.discard)

    async def _write(self, at: datetime) -> None:
        try:
            await self.store.set_heartbeat(self.alertname, at)
        except StoreError as err:  # the next heartbeat writes again
            self._last_write = None
            log.warning("watchdog heartbeat not stored: %s", err)

    def _signal(self, status: Status, starts_at: datetime, last: datetime) -> Signal:
        return Signal(
            source=Source.RECEIVER,
            fingerprint=fingerprint(_LABELS),
            status=status,
            starts_at=starts_at,
            ends_at=self.clock.now() if status is Status.RESOLVED else None,
            labels=dict(_LABELS),
            annotations={
                "summary": "The alerting pipeline is down: no Watchdog heartbeat",
                "description": (
                    f"Alertmanager's always-firing {self.alertname} alert last arrived at "
                    f"{last.isoformat()}; Prometheus, Alertmanager or the route to this receiver "
                    "may be broken, so other alerts may not arrive either."
                ),
            },
            alertname=PIPELINE_DOWN,
            severity=Severity.CRITICAL,
            metric=self.alertname,
            reason=f"no {self.alertname} heartbeat since {last.isoformat()}",
        )

    async def check(self) -> None:
        """Raise or resolve AlertingPipelineDown from the stored heartbeat."""
        last = await self.store.get_heartbeat(self.alertname)
        if last is None:
            return  # never seen: nothing to miss yet
        now = self.clock.now()
        self.age.set((now - last).total_seconds())
        down_since = last + self.timeout
        if now >= down_since:
            signal = self._signal(Status.FIRING, down_since, last)
            await self.processor.apply(SignalBatch(Source.RECEIVER, GROUP_KEY, [signal]))
            return
        open_episodes = await self.store.firing_episodes(Source.RECEIVER.value, now)
        stale = [e for e in open_episodes if e.alertname == PIPELINE_DOWN]
        if stale:
            await self.processor.close_episodes(stale, "receiver")
            log.info("watchdog heartbeat is back; alerting pipeline incident resolved")

    async def run(self, interval: float) -> None:
        await every(interval, self.round, self.clock)

    async def round(self) -> None:
        """One timed check; a store outage skips it and the next check tries again."""
        try:
            await self.check()
        except StoreError as err:
            if self.work is not None:
                self.work.outages.labels("watchdog").inc()
            log.warning("watchdog check skipped: %s", err)
