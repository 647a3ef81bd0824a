"""Baseline, onset, recurrence and ranking of cause candidates on synthetic numpy series."""

from __future__ import annotations

import numpy as np

from receiver.enrich.candidates import expression_metrics, families, rate
from receiver.enrich.timeline import (
    Candidate,
    Scope,
    departure,
    host_of,
    rank,
    recurring,
    restart_departure,
)

STEP = 30.0
TS = np.arange(0.0, 3 * 3600 + STEP, STEP)
ALERT = 2.5 * 3600
BASE_END = 3600.0


def _noisy(level: float, seed: int, rel: float = 0.02) -> np.ndarray:
    return level * (1 + rel * np.random.default_rng(seed).standard_normal(TS.size))


def test_onset_is_where_a_sustained_departure_began_not_a_blip() -> None:
    """A ramp from 40 min before the alert is dated to its start; a one-point blip is not."""
    values = _noisy(100, 1)
    values[TS == 4000] = 500  # a blip long before
    ramp = np.clip((TS - (ALERT - 2400)) / 2400, 0, 1)
    values = values * (1 + ramp)
    d = departure(TS, values, BASE_END, ALERT)
    assert d.onset is not None
    assert ALERT - 2400 - 300 <= d.onset <= ALERT - 2400 + 600
    assert d.direction == "up"
    assert d.size > 20


def test_a_series_back_in_band_at_the_alert_has_no_onset() -> None:
    """A departure that ended before the alert does not explain it."""
    values = _noisy(100, 2)
    values[(TS > ALERT - 3000) & (TS < ALERT - 1800)] *= 3
    assert departure(TS, values, BASE_END, ALERT).onset is None


def test_a_flat_series_gets_a_scale_floor_and_a_drop_is_down() -> None:
    """A constant baseline (MAD 0) still gives finite sizes; a fall is direction down."""
    values = np.where(TS < ALERT - 600, 1.0, 0.0)
    d = departure(TS, values, BASE_END, ALERT)
    assert d.direction == "down"
    assert d.onset == ALERT - 600
    assert d.scale is not None
    assert d.scale > 0
    assert 0 < d.size <= 200


def test_a_daily_drift_in_the_baseline_is_not_an_onset() -> None:
    """A clear linear trend in the baseline is extrapolated instead of flagged."""
    values = _noisy(100, 3, 0.005) * (1 + 0.2 * TS / 3600)
    assert departure(TS, values, BASE_END, ALERT).onset is None


def test_a_restart_is_dated_by_the_new_start_time() -> None:
    """process_start_time_seconds jumping gives a step at the new start time."""
    values = np.where(TS < ALERT - 95, -5000.0, ALERT - 100)
    d = restart_departure(TS, values, BASE_END, ALERT)
    assert d is not None
    assert (d.onset, d.direction) == (ALERT - 100, "step")


def test_recurrence_needs_the_same_departure_at_the_same_clock_time() -> None:
    """Yesterday's identical rise marks it recurring; a flat yesterday does not."""
    today = _noisy(100, 4)
    today[TS >= ALERT - 900] *= 2
    d = departure(TS, today, BASE_END, ALERT)
    assert d.onset is not None
    assert recurring(d, TS, today, 300.0)
    assert not recurring(d, TS, _noisy(100, 5), 300.0)


def _candidate(metric: str, instance: str, role: str, values: np.ndarray) -> Candidate:
    c = Candidate(
        metric=metric,
        labels={"instance": instance, "job": "web"},
        query=f'{metric}{{instance="{instance}"}}',
        role=role,
        timestamps=TS,
        values=values,
        host=host_of(instance),
    )
    c.departure = departure(TS, values, BASE_END, ALERT)
    return c


def _rise(at: float, seed: int, factor: float = 2.0) -> np.ndarray:
    values = _noisy(100, seed)
    values[at <= TS] *= factor
    return values


def test_ranking_prefers_the_alerting_host_the_earlier_element_and_non_symptoms() -> None:
    """One instance alerting: its own early resource rise beats the symptom and another host."""
    scope = Scope(ALERT, STEP, frozenset({"web-2"}), frozenset({"web"}), False, frozenset())
    cause = _candidate(
        "process_resident_memory_bytes", "web-2:8080", "resource", _rise(ALERT - 1800, 6)
    )
    other = _candidate("process_open_fds", "web-1:8080", "resource", _rise(ALERT - 1800, 7))
    symptom = _candidate("http_latency", "web-2:8080", "symptom", _rise(ALERT - 300, 8, 5.0))
    ranked = rank([symptom, other, cause], scope, {"web-1", "web-2", "web-3"})
    assert [c.metric for c in ranked] == [
        "process_resident_memory_bytes",
        "process_open_fds",
        "http_latency",
    ]
    assert ranked[0].rank == 1
    assert "on the alerting instance" in ranked[0].why


def test_a_restart_after_an_earlier_rise_on_the_same_host_ranks_below_it() -> None:
    """leak → restart: the earlier memory rise is named first (the chain's upstream)."""
    scope = Scope(ALERT, STEP, frozenset({"web-2"}), frozenset({"web"}), False, frozenset())
    leak = _candidate(
        "process_resident_memory_bytes", "web-2:8080", "resource", _rise(ALERT - 2400, 9, 1.5)
    )
    restart = _candidate("process_start_time_seconds", "web-2:8080", "restart", TS * 0)
    restart.departure = restart_departure(
        TS, np.where(TS < ALERT - 60, 0.0, ALERT - 60), BASE_END, ALERT
    )
    ranked = rank([restart, leak], scope, {"web-2"})
    assert [c.metric for c in ranked] == [
        "process_resident_memory_bytes",
        "process_start_time_seconds",
    ]
    assert any("follows process_resident_memory_bytes" in w for w in ranked[1].why)


def test_whole_job_alerting_favours_a_move_on_every_instance() -> None:
    """All instances alert: a rise on all three beats a bigger rise on one host."""
    scope = Scope(
        ALERT, STEP, frozenset({"web-1", "web-2", "web-3"}), frozenset({"web"}), True, frozenset()
    )
    shared = [
        _candidate("http_requests_total", f"web-{i}:8080", "load", _rise(ALERT - 900, 10 + i))
        for i in (1, 2, 3)
    ]
    single = _candidate("process_open_fds", "web-1:8080", "resource", _rise(ALERT - 900, 20, 4.0))
    ranked = rank([single, *shared], scope, {"web-1", "web-2", "web-3"})
    assert ranked[0].metric == "http_requests_total"
    assert ranked[-1].metric == "process_open_fds"


def test_a_recurring_departure_ranks_low() -> None:
    """The same candidate scores five times lower when marked recurring."""
    scope = Scope(ALERT, STEP, frozenset({"web-2"}), frozenset({"web"}), False, frozenset())
    c = _candidate(
        "node_disk_io_time_seconds_total", "web-2:9100", "resource", _rise(ALERT - 900, 30)
    )
    first = rank([c], scope, {"web-2"})[0].score
    c.recurring = True
    assert rank([c], scope, {"web-2"})[0].score == first * 0.2


def test_counters_become_rates_across_a_reset() -> None:
    """A counter reset counts as the new value, not a negative rate."""
    counter = np.array([0.0, 30, 60, 90, 15, 45, 75])
    rates = rate(counter, 15.0)
    assert np.all(rates[np.isfinite(rates)] >= 0)
    # six increments of 30 and one post-reset 15 over six 15 s steps
    assert rates[-1] == 165 / 90


def test_families_and_expression_symptoms() -> None:
    """_sum/_count pairs are means, *_total counters, *_info changes; the expression's metrics
    (buckets included) are symptoms."""
    kinds = {f.name: f.kind for f in families(["a_sum", "a_count", "b_total", "c_info", "d"])}
    assert kinds == {"a": "mean", "b_total": "counter", "c_info": "info", "d": "gauge"}
    expr = (
        "histogram_quantile(0.99, sum by (le) "
        '(rate(http_request_duration_seconds_bucket{job="x"}[5m]))) > 2'
    )
    assert "http_request_duration_seconds" in expression_metrics(expr)
    assert "le" not in expression_metrics(expr)
    assert "sum" not in expression_metrics(expr)
