"""A new storm's first analysis (and so its page) waits while its members keep joining, so the
page lists the burst; it never waits past STORM_SETTLE_SECONDS after the storm formed.

The correlator runs on a fake clock; the store is the embedded server (real wire protocol)."""

from __future__ import annotations

import time

import pytest

from receiver.ingest.models import WebhookPayload
from receiver.ingest.processor import SignalProcessor
from receiver.ingest.storms import StormCorrelator, StormOptions
from receiver.ingest.worker import batch_from
from receiver.store.rca import AnalysisStore
from receiver.store.repo import Store
from tests.support.payloads import alert, webhook


class Clock:
    def __init__(self) -> None:
        self.now = time.time()

    def __call__(self) -> float:
        return self.now


async def _open(processor: SignalProcessor, first: int, count: int) -> None:
    """`count` incidents of job "api", one group per instance (as group_by instance sends)."""
    for i in range(first, first + count):
        payload = webhook([alert("ApiDown", f"api-{i}:8080")], group=f"api-{i}")
        payload["commonLabels"] = {"alertname": "ApiDown", "job": "api"}
        await processor.apply(batch_from(WebhookPayload.model_validate(payload)))


async def _storm_due(analyses: AnalysisStore, at: float) -> bool:
    return any(i.source == "storm" for i in await analyses.pending(at, 100))


async def test_joins_push_the_first_analysis_until_the_burst_pauses(store: Store) -> None:
    """Formed at t, joined at t+2: not due at t+4.9 (hold 3 after the join), due at t+5.1."""
    clock = Clock()
    processor = SignalProcessor(store, hold_for_storms=True)
    correlator = StormCorrelator(store, StormOptions(min_size=3, hold=3.0), clock=clock)
    analyses = AnalysisStore(store)
    start = clock.now
    await _open(processor, 0, 4)
    await correlator.correlate()  # forms the storm: its analysis waits `hold`
    assert not await _storm_due(analyses, start + 2.9)
    assert await _storm_due(analyses, start + 3.1)

    clock.now = start + 2.0
    await _open(processor, 4, 2)
    assert await correlator.correlate() == 2  # both joined the open storm
    assert not await _storm_due(analyses, start + 4.9)
    assert await _storm_due(analyses, start + 5.1)


async def test_a_burst_that_never_pauses_is_analysed_settle_seconds_after_forming(
    store: Store,
) -> None:
    """Members joining every 2 s (hold 3) push the analysis on, but not past formed + settle."""
    clock = Clock()
    processor = SignalProcessor(store, hold_for_storms=True)
    options = StormOptions(min_size=3, hold=3.0, settle=7.0)
    correlator = StormCorrelator(store, options, clock=clock)
    analyses = AnalysisStore(store)
    start = clock.now
    await _open(processor, 0, 3)
    await correlator.correlate()
    for step in range(1, 6):  # joins at +2, +4, +6, +8, +10
        clock.now = start + 2.0 * step
        await _open(processor, 10 * step, 1)
        assert await correlator.correlate() == 1
    assert not await _storm_due(analyses, start + 6.9)
    assert await _storm_due(analyses, start + 7.1)


async def test_a_claimed_storm_is_not_pushed_back(store: Store) -> None:
    """Once an analysis holds the storm, later joins leave its lease alone."""
    clock = Clock()
    processor = SignalProcessor(store, hold_for_storms=True)
    correlator = StormCorrelator(store, StormOptions(min_size=3, hold=3.0), clock=clock)
    analyses = AnalysisStore(store)
    start = clock.now
    await _open(processor, 0, 3)
    await correlator.correlate()
    storm = next(i for i in await analyses.pending(start + 3.1, 100) if i.source == "storm")
    claimed = await analyses.claim(storm.id, "tok", start + 3.1, start + 100.0)
    assert claimed is not None
    clock.now = start + 4.0
    await _open(processor, 3, 1)
    await correlator.correlate()
    again = await analyses.claim(storm.id, "tok", start + 3.1, start + 100.0)
    assert again is None  # still held by "tok" until +100, so not claimable
    held = await store.get_incident(str(storm.id))
    assert held is not None
    assert held.analysis_claim_until == pytest.approx(start + 100.0, abs=1e-3)
