"""The one shape of every background stage: claim → process → record, on an injected clock.

A stage supplies `step()`: one pass that claims what is due, processes it item by item
(an item's own failure is recorded on the item through `ItemFailure`, never raised) and
answers whether there may be more to do. `Worker` runs the passes: at once while busy, on the
wake-up event or every `poll` seconds while idle, after a backoff with jitter while the store
(or another outage the stage names) is down. `supervise` restarts a loop that dies of a bug.

Every wait goes through a `Clock`: `RealClock` in the service, `FakeClock` in tests, which
then move time forward instead of sleeping through backoffs, leases and retry delays.
"""

from __future__ import annotations

import asyncio
import contextlib
import heapq
import itertools
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Protocol

from prometheus_client import CollectorRegistry, Counter

from receiver.retry import RetryPolicy, StageFailures

log = logging.getLogger(__name__)


class Clock(Protocol):
    def now(self) -> datetime:
        """The wall time, timezone-aware UTC."""
        ...

    def time(self) -> float:
        """The wall time in epoch seconds (what stored retry times are compared with)."""
        ...

    def monotonic(self) -> float:
        """Seconds on a clock that never goes back, for intervals inside one process."""
        ...

    async def sleep(self, seconds: float) -> None: ...

    async def wait_for_wake(self, wake: asyncio.Event, seconds: float) -> bool:
        """Wait until `wake` is set or `seconds` pass; True when woken."""
        ...


class RealClock:
    def now(self) -> datetime:
        return datetime.now(UTC)

    def time(self) -> float:
        return time.time()

    def monotonic(self) -> float:
        return time.monotonic()

    async def sleep(self, seconds: float) -> None:
        await asyncio.sleep(seconds)

    async def wait_for_wake(self, wake: asyncio.Event, seconds: float) -> bool:
        # asyncio.timeout, not wait_for: on 3.11 wait_for can swallow a cancellation that
        # lands as its timeout fires, and shutdown then waits on a loop that goes on.
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(seconds):
                await wake.wait()
                return True
        return wake.is_set()


REAL_CLOCK = RealClock()


class FakeClock:
    """Time that moves only when a test calls `advance`; sleepers wake when it passes them."""

    def __init__(self, start: datetime | None = None) -> None:
        self._wall = (start or datetime(2024, 1, 1, tzinfo=UTC)).timestamp()
        self._mono = 1000.0
        self._order = itertools.count()
        self._sleepers: list[tuple[float, int, asyncio.Future[None]]] = []
        self._parked = asyncio.Event()
        self.parks = 0  # waits ever parked: `until_parked(after=...)` waits for a new one

    def now(self) -> datetime:
        return datetime.fromtimestamp(self._wall, UTC)

    def time(self) -> float:
        return self._wall

    def monotonic(self) -> float:
        return self._mono

    @property
    def sleepers(self) -> int:
        """How many waits are parked on this clock (a loop that went idle is one)."""
        return sum(1 for _, _, f in self._sleepers if not f.done())

    def _park(self, seconds: float) -> asyncio.Future[None]:
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        heapq.heappush(self._sleepers, (self._mono + max(seconds, 0.0), next(self._order), future))
        self.parks += 1
        self._parked.set()
        return future

    async def sleep(self, seconds: float) -> None:
        if seconds <= 0:
            await asyncio.sleep(0)
            return
        await self._park(seconds)

    async def wait_for_wake(self, wake: asyncio.Event, seconds: float) -> bool:
        if wake.is_set():
            return True
        timer = self._park(seconds)
        woken: asyncio.Future[None] = asyncio.ensure_future(_until(wake))
        try:
            await asyncio.wait({timer, woken}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            timer.cancel()
            woken.cancel()
        return wake.is_set()

    async def advance(self, seconds: float) -> None:
        """Move time forward, wake every sleeper whose time has come, and let them run."""
        self._mono += seconds
        self._wall += seconds
        while self._sleepers and self._sleepers[0][0] <= self._mono:
            _, _, future = heapq.heappop(self._sleepers)
            if not future.done():
                future.set_result(None)
        for _ in range(5):  # a woken task may need a few turns to reach its next await
            await asyncio.sleep(0)

    async def until_parked(
        self, count: int = 1, after: int | None = None, limit: float = 30.0
    ) -> None:
        """Wait (on real time, bounded by `limit`) until `count` waits are parked here, that is
        until the loops under test have finished their real I/O and gone to sleep; with
        `after` (a value of `parks`), only once a wait parked since then."""
        async with asyncio.timeout(limit):
            while self.sleepers < count or (after is not None and self.parks <= after):
                self._parked.clear()
                await self._parked.wait()


async def _until(event: asyncio.Event) -> None:
    await event.wait()


class WorkMetrics:
    """Per-stage counters of the worker loops (failures of items are in `StageFailures`)."""

    def __init__(self, registry: CollectorRegistry) -> None:
        self.items = Counter(
            "pipeline_items_processed_total",
            "Items a background stage handled, by stage",
            ["stage"],
            registry=registry,
        )
        self.outages = Counter(
            "pipeline_loop_backoffs_total",
            "Passes of a background stage that failed as a whole (store down) and backed off",
            ["stage"],
            registry=registry,
        )
        self.restarts = Counter(
            "pipeline_loop_restarts_total",
            "Times a background loop died of a bug and was started again",
            ["stage"],
            registry=registry,
        )


@dataclass(frozen=True)
class Outcome:
    """What recording one failed attempt decided: quarantined now, or retried at `retry_at`."""

    attempts: int
    quarantined: bool
    retry_at: float  # epoch seconds; 0 when quarantined
    delay: float


class ItemFailure:
    """The record step of a stage: count one item's failure and decide its retry or quarantine."""

    def __init__(
        self,
        stage: str,
        policy: RetryPolicy,
        clock: Clock,
        failures: StageFailures | None = None,
    ) -> None:
        self.stage = stage
        self.policy = policy
        self.clock = clock
        self.failures = failures

    def decide(self, previous_attempts: int) -> Outcome:
        attempts = previous_attempts + 1
        quarantined = self.policy.exhausted(attempts)
        delay = 0.0 if quarantined else self.policy.delay(attempts)
        if self.failures is not None:
            self.failures.failed(self.stage, quarantined)
        return Outcome(
            attempts, quarantined, 0.0 if quarantined else self.clock.time() + delay, delay
        )

    def retry_at(self, outcome: Outcome) -> datetime:
        return self.clock.now() + timedelta(seconds=outcome.delay)


class Worker:
    """Runs `step` until cancelled: again at once while it reports more work, on `wake()` or
    every `poll` seconds when idle, and after a backoff with jitter when it raises one of
    `outages` (the store is down: the same items are taken again once it is back)."""

    def __init__(
        self,
        stage: str,
        step: Callable[[], Awaitable[bool]],
        *,
        poll: float,
        clock: Clock = REAL_CLOCK,
        outages: tuple[type[BaseException], ...] = (),
        backoff_cap: float = 30.0,
        metrics: WorkMetrics | None = None,
        idle: Callable[[], Awaitable[None]] | None = None,
        event: asyncio.Event | None = None,
    ) -> None:
        self.stage = stage
        self.step = step
        self.poll = poll
        self.clock = clock
        self.outages = outages
        self.backoff = RetryPolicy(base_seconds=poll, cap_seconds=backoff_cap, max_attempts=0)
        self.metrics = metrics
        self.idle = idle
        self.event = event if event is not None else asyncio.Event()

    def wake(self) -> None:
        self.event.set()

    async def run(self) -> None:
        failures = 0
        task = asyncio.current_task()
        while True:
            if task is not None and task.cancelling():
                # On 3.11 a cancellation landing in asyncio.wait_for (pymongo's socket send
                # uses it) can be swallowed; the request is still recorded, so honour it here.
                raise asyncio.CancelledError
            try:
                busy = await self.step()
                failures = 0
            except self.outages as err:
                failures += 1
                delay = self.backoff.delay(failures)
                log.warning("%s: %s; retrying in %.1fs", self.stage, err, delay)
                if self.metrics is not None:
                    self.metrics.outages.labels(self.stage).inc()
                await self.clock.sleep(delay)
                continue
            if not busy:
                if self.idle is not None:
                    await self.idle()
                else:
                    await self.clock.wait_for_wake(self.event, self.poll)
                    self.event.clear()


async def every(
    interval: float, step: Callable[[], Awaitable[object]], clock: Clock = REAL_CLOCK
) -> None:
    """A timer stage: wait `interval`, run `step`, forever (a failing pass is the caller's)."""
    while True:
        await clock.sleep(interval)
        await step()


async def supervise(
    name: str,
    run: Callable[[], Awaitable[None]],
    delay: float = 1.0,
    *,
    clock: Clock = REAL_CLOCK,
    metrics: WorkMetrics | None = None,
) -> None:
    """Run a background loop; if it dies of a bug, log it and start it again after `delay`."""
    while True:
        try:
            await run()
            return
        except asyncio.CancelledError:
            raise
        except Exception:
            log.exception("%s crashed; restarting in %.0fs", name, delay)
            if metrics is not None:
                metrics.restarts.labels(name).inc()
            await clock.sleep(delay)
