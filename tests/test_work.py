"""The worker abstraction on a fake clock: backoff, wake-up, idle polling, supervision, records."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Callable, Coroutine
from datetime import timedelta
from typing import Any

import pytest
from prometheus_client import CollectorRegistry

from receiver.retry import RetryPolicy, StageFailures
from receiver.work import FakeClock, ItemFailure, RealClock, Worker, WorkMetrics, supervise


class Down(Exception):
    """The outage a test stage reports (stands in for the store being down)."""


class Steps:
    """A stage whose passes follow a script: an exception to raise, or busy/idle."""

    def __init__(self, script: list[bool | BaseException]) -> None:
        self.script = script
        self.calls = 0

    async def __call__(self) -> bool:
        self.calls += 1
        item = self.script.pop(0) if self.script else False
        if isinstance(item, BaseException):
            raise item
        return item


@contextlib.asynccontextmanager
async def running(
    run: Callable[[], Coroutine[Any, Any, None]],
) -> AsyncIterator[asyncio.Task[None]]:
    task = asyncio.create_task(run())
    try:
        yield task
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


def sample(registry: CollectorRegistry, name: str, **labels: str) -> float:
    return registry.get_sample_value(name, labels) or 0.0


async def test_outage_backs_off_with_growing_jittered_delays() -> None:
    """A pass that fails with an outage is retried after poll·2^(n-1) ±20%, not at once."""
    clock, registry = FakeClock(), CollectorRegistry()
    steps = Steps([Down("store down"), Down("store down"), False])
    worker = Worker(
        "test", steps, poll=10.0, clock=clock, outages=(Down,), metrics=WorkMetrics(registry)
    )
    async with running(worker.run):
        await clock.until_parked()
        assert steps.calls == 1
        await clock.advance(7.9)  # below the shortest first delay (10 - 20%)
        assert steps.calls == 1
        await clock.advance(4.2)  # past the longest first delay (10 + 20%)
        await clock.until_parked()
        assert steps.calls == 2
        await clock.advance(15.9)  # the second delay is 20 ± 20%
        assert steps.calls == 2
        await clock.advance(8.2)
        await clock.until_parked()
        assert steps.calls == 3
    assert sample(registry, "pipeline_loop_backoffs_total", stage="test") == 2


async def test_an_error_that_is_not_an_outage_ends_the_loop() -> None:
    """Only the named outages are backed off; a bug propagates (for `supervise` to restart)."""
    worker = Worker(
        "test", Steps([ValueError("bug")]), poll=1.0, clock=FakeClock(), outages=(Down,)
    )
    with pytest.raises(ValueError, match="bug"):
        await worker.run()


async def test_busy_passes_run_back_to_back_and_idle_waits_for_the_poll() -> None:
    """While a pass reports more work the next runs without waiting; idle, it waits `poll`."""
    clock = FakeClock()
    steps = Steps([True, True, False, False])
    worker = Worker("test", steps, poll=5.0, clock=clock)
    async with running(worker.run):
        await clock.until_parked()
        assert steps.calls == 3
        await clock.advance(4.9)
        assert steps.calls == 3
        await clock.advance(0.2)
        await clock.until_parked()
        assert steps.calls == 4


async def test_wake_runs_a_pass_without_time_moving() -> None:
    """`wake()` starts the next pass at once, however long the poll interval is."""
    clock = FakeClock()
    steps = Steps([])
    worker = Worker("test", steps, poll=3600.0, clock=clock)
    async with running(worker.run):
        await clock.until_parked()
        assert steps.calls == 1
        parks = clock.parks
        worker.wake()
        await clock.until_parked(after=parks)
        assert steps.calls == 2
        assert clock.monotonic() == 1000.0


async def test_supervise_restarts_a_loop_that_dies_of_a_bug() -> None:
    """A crashed loop is logged, counted and started again after the delay; a clean end ends it."""
    clock, registry = FakeClock(), CollectorRegistry()
    runs: list[int] = []

    async def loop() -> None:
        runs.append(1)
        if len(runs) < 3:
            raise RuntimeError("bug")

    task = asyncio.create_task(
        supervise("stage", loop, delay=2.0, clock=clock, metrics=WorkMetrics(registry))
    )
    await clock.until_parked()
    assert len(runs) == 1
    await clock.advance(2.0)
    await clock.until_parked()
    assert len(runs) == 2
    await clock.advance(2.0)
    await task
    assert len(runs) == 3
    assert sample(registry, "pipeline_loop_restarts_total", stage="stage") == 2


async def test_item_failure_retries_then_quarantines_on_the_clock() -> None:
    """Recording a failure schedules the retry from the clock's time and quarantines at the
    last attempt, counting both outcomes."""
    clock, registry = FakeClock(), CollectorRegistry()
    policy = RetryPolicy(base_seconds=10.0, max_attempts=3, jitter=0.0)
    record = ItemFailure("delivery", policy, clock, StageFailures(registry))
    first = record.decide(0)
    assert (first.attempts, first.quarantined) == (1, False)
    assert first.retry_at == clock.time() + 10.0
    assert record.retry_at(first) == clock.now() + timedelta(seconds=10)
    second = record.decide(1)
    assert second.retry_at == clock.time() + 20.0
    last = record.decide(2)
    assert (last.attempts, last.quarantined, last.retry_at) == (3, True, 0.0)
    errors = "pipeline_item_errors_total"
    assert sample(registry, errors, stage="delivery", outcome="retry") == 2
    assert sample(registry, errors, stage="delivery", outcome="quarantined") == 1


async def test_fake_clock_moves_wall_and_monotonic_time_together() -> None:
    """`advance` moves both clocks by the same amount and only wakes sleepers that are due."""
    clock = FakeClock()
    wall, mono = clock.time(), clock.monotonic()
    early = asyncio.create_task(clock.sleep(5.0))
    late = asyncio.create_task(clock.sleep(50.0))
    await clock.until_parked(2)
    await clock.advance(10.0)
    assert early.done()
    assert not late.done()
    assert (clock.time() - wall, clock.monotonic() - mono) == (10.0, 10.0)
    assert clock.now().timestamp() == clock.time()
    late.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await late


async def test_real_clock_wait_for_wake_reports_whether_it_was_woken() -> None:
    """The real clock's wait ends early when woken (True) and after the timeout otherwise."""
    clock, event = RealClock(), asyncio.Event()
    assert await clock.wait_for_wake(event, 0.01) is False
    asyncio.get_running_loop().call_soon(event.set)
    assert await clock.wait_for_wake(event, 60.0) is True
