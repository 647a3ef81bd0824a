"""Scored series → detector signals: opening, keeping identity, resolving, quiet time."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime
from typing import Any

import numpy as np
import pytest

from receiver.detect.fetch import SeriesRef
from receiver.detect.outliers import BATCH_CONFIG, BatchResult, score_batch
from receiver.detect.selection import Selector
from receiver.detect.signals import (
    Flag,
    Plan,
    SignalBuilder,
    SignalRules,
    at,
    explain_flags,
    group_key,
    run_start,
    series_fingerprint,
)
from receiver.domain import DetectorInfo, Episode, Severity, Source, Status

T0 = 1_700_000_000.0
CFG = replace(BATCH_CONFIG, lookback=60.0, min_history=10.0, suppress=0.0)
SEL = Selector("queue_depth", metric="queue_depth")
REFS = [
    SeriesRef(SEL, {"__name__": "queue_depth", "instance": "h1:9100", "queue": "orders"}),
    SeriesRef(SEL, {"__name__": "queue_depth", "instance": "h1:9100", "queue": "billing"}),
]
END = at(T0 + 59)
FP = series_fingerprint("prom-a", REFS[0])


def matrix(orders_tail: list[float]) -> np.ndarray:
    """60 one-second points: orders at 10 then `orders_tail`, billing flat at 20."""
    orders = np.full(60, 10.0)
    orders[60 - len(orders_tail) :] = orders_tail
    return np.vstack([orders, np.full(60, 20.0)])


def scored(orders_tail: list[float], span: float = 1.0, **cfg: Any) -> tuple[BatchResult, Any]:
    config = replace(CFG, **cfg)
    values = matrix(orders_tail)
    result = score_batch(T0 + np.arange(60.0), values, config)
    return result, explain_flags(result, values, config, span=span)


def builder(target: str = "prom-a", **rules: Any) -> SignalBuilder:
    return SignalBuilder(target, "http://prom:9090", SignalRules(severity=Severity.HIGH, **rules))


def plan(
    result: BatchResult | None,
    flags: dict[int, Flag],
    stored: dict[str, Episode],
    b: SignalBuilder | None = None,
    quiet: frozenset[str] = frozenset(),
    complete: bool = True,
    refs: list[SeriesRef] = REFS,
) -> Plan:
    return (b or builder()).plan(
        refs if result is not None else [],
        result,
        stored,
        flags=flags,
        quiet=set(quiet),
        complete=complete,
        end=END,
    )


def episode(starts: datetime, band: tuple[float, float] | None = (9.9, 10.1)) -> Episode:
    detector = None
    if band is not None:
        detector = DetectorInfo(
            method="mad", score=9.0, threshold=3.5, value=12.0, band_low=band[0], band_high=band[1]
        )
    return Episode(
        episode_key=f"detector:{FP}:{starts.isoformat()}",
        source=Source.DETECTOR,
        fingerprint=FP,
        status=Status.FIRING,
        starts_at=starts,
        alertname="OutlierDetected",
        metric="queue_depth",
        instance="h1:9100",
        labels={"queue": "orders"},
        group_key="g",
        detector=detector,
        incident_id="i1",
    )


def test_run_start_is_the_first_point_of_the_trailing_flagged_run() -> None:
    """The run ending at the last point starts after the last unflagged point."""
    t = np.arange(6.0)
    assert run_start(np.array([0.9, 0.1, np.nan, 0.6, 0.7, 0.8]), t, 0.5) == 3.0
    assert run_start(np.array([0.9, 0.9, 0.9]), t[:3], 0.5) == 0.0


async def test_a_spike_opens_one_episode_explained() -> None:
    """A spike on the latest point opens one firing signal carrying the detector's verdict;
    the steady series opens nothing."""
    result, flags = scored([100.0])
    assert list(flags) == [0]
    p = plan(result, flags, {})
    assert (p.opened, p.kept, p.resolved) == (1, 0, 0)
    (batch,) = p.batches
    assert batch.group_key == group_key("prom-a", "queue_depth", "h1:9100")
    (signal,) = batch.signals
    assert signal.status is Status.FIRING
    assert signal.fingerprint == FP
    assert signal.starts_at == at(T0 + 59)
    assert signal.severity is Severity.HIGH
    assert signal.labels == {
        "instance": "h1:9100",
        "queue": "orders",
        "alertname": "OutlierDetected",
        "metric": "queue_depth",
        "severity": "high",
    }
    d = signal.detector
    assert d is not None
    assert d.value == signal.value == 100.0
    assert d.score >= d.threshold
    assert d.band_high is not None
    assert d.band_high < 100.0
    assert d.target == "prom-a"
    assert d.query == 'queue_depth{instance="h1:9100",queue="orders"}'
    assert d.onset == signal.starts_at.isoformat()  # the evidence says when the run began
    assert d.expected is None  # a 1-minute window shows no season
    assert "queue_depth%7Binstance" in signal.generator_url


async def test_a_point_flagged_between_cycles_is_not_missed() -> None:
    """With a poll interval longer than the step, a spike that is no longer the latest point
    still opens an episode, explained as of that point (its own value and band)."""
    result, flags = scored([100.0, 10.0, 10.0], span=5.0)
    assert result.flagged_last().size == 0
    (flag,) = flags.values()
    assert flag.row == 57
    assert flag.detection.value == 100.0
    assert flag.detection.score == pytest.approx(float(result.scores[0, 57]))
    p = plan(result, flags, {})
    assert p.opened == 1
    assert p.batches[0].signals[0].starts_at == at(T0 + 57)
    _, narrow = scored([100.0, 10.0, 10.0], span=1.0)
    assert narrow == {}


async def test_min_duration_holds_the_start_to_the_first_alarm() -> None:
    """With a minimum duration the episode starts at the first point the hold let through."""
    result, flags = scored([100.0] * 5, span=10.0, min_duration=2.0)
    (flag,) = flags.values()
    assert flag.start == T0 + 57  # 55 and 56 are held back
    assert plan(result, flags, {}).batches[0].signals[0].starts_at == at(T0 + 57)


async def test_an_open_episode_keeps_its_stored_start() -> None:
    """While the series stays abnormal, the stored startsAt is reused (a moving window or a
    restart never splits the episode)."""
    stored = datetime(2023, 11, 14, 22, 0, tzinfo=UTC)
    result, flags = scored([100.0])
    p = plan(result, flags, {FP: episode(stored)})
    assert (p.opened, p.kept, p.resolved) == (0, 1, 0)
    (signal,) = p.batches[0].signals
    assert signal.status is Status.FIRING
    assert signal.starts_at == stored
    assert p.batches[0].group_key == "g"  # the episode's own group


async def test_outside_its_band_an_episode_stays_open_though_the_score_is_calm() -> None:
    """A lasting excursion soon fills the detector's own past, so the score calms (here on the
    raw scale alone); the episode stays open while the value is outside the band it opened
    against."""
    result, flags = scored([100.0] * 8, smooth=(0.0,))
    assert result.scores[0, -1] < 0.4
    assert flags == {}
    p = plan(result, flags, {FP: episode(at(T0 + 52))})
    assert (p.kept, p.resolved) == (1, 0)
    no_band = plan(result, flags, {FP: episode(at(T0 + 52), band=None)})
    assert no_band.resolved == 1


async def test_a_lasting_shift_settles() -> None:
    """Outside its band but calm for longer than `settle`, the episode resolves."""
    result, flags = scored([100.0] * 8, smooth=(0.0,))
    settled = plan(result, flags, {FP: episode(at(T0 + 52))}, b=builder(settle=5.0))
    assert settled.resolved == 1
    forever = plan(result, flags, {FP: episode(at(T0 + 52))}, b=builder(settle=0.0))
    assert forever.kept == 1


async def test_back_to_normal_resolves_the_open_episode() -> None:
    """Once the latest value is back inside the band and calm, the episode resolves."""
    stored = at(T0 + 50)
    result, flags = scored([100.0] * 5 + [10.0] * 3)
    p = plan(result, flags, {FP: episode(stored)})
    assert (p.opened, p.kept, p.resolved) == (0, 0, 1)
    (signal,) = p.batches[0].signals
    assert signal.status is Status.RESOLVED
    assert (signal.starts_at, signal.ends_at) == (stored, END)


async def test_vanished_series_resolve_only_after_a_complete_cycle() -> None:
    """An open episode whose series is no longer returned resolves when every selector
    answered, and is left alone when the cycle was partial (an error or the series cap)."""
    gone = episode(at(T0)).model_copy(update={"fingerprint": "f" * 16})
    stored = {gone.fingerprint: gone}
    result, flags = scored([10.0])
    assert plan(result, flags, stored, complete=False).batches == []
    done = plan(result, flags, stored)
    assert done.resolved == 1
    assert done.batches[0].signals[0].status is Status.RESOLVED
    assert plan(None, {}, stored).resolved == 1


async def test_stale_series_resolves_its_episode() -> None:
    """A series whose latest point is missing (stale in Prometheus) is no longer abnormal."""
    result, flags = scored([100.0] * 5 + [float("nan")])
    assert plan(result, flags, {FP: episode(at(T0 + 55))}).resolved == 1


def test_quiet_series_do_not_open() -> None:
    """A series inside its quiet time after an episode opens nothing."""
    result, flags = scored([100.0])
    p = plan(result, flags, {}, quiet=frozenset({FP}))
    assert p.batches == []
    assert p.opened == 0


def test_identity_depends_on_target_and_labels_only() -> None:
    """The same series seen through two targets are two identities; two selectors returning
    the same series share one."""
    other = SeriesRef(Selector("queue_depth{queue='orders'}", custom=True), REFS[0].labels)
    assert series_fingerprint("prom-a", REFS[0]) == series_fingerprint("prom-a", other)
    assert series_fingerprint("prom-a", REFS[0]) != series_fingerprint("prom-b", REFS[0])
    assert series_fingerprint("prom-a", REFS[0]) != series_fingerprint("prom-a", REFS[1])
