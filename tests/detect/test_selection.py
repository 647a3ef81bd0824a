"""What the poller watches: default enumeration, custom selectors, per-series expressions."""

from __future__ import annotations

from pathlib import Path

from receiver.detect.fetch import Grid, PriorSpec
from receiver.detect.selection import (
    Selector,
    auto_selectors,
    job_matcher,
    load_recorded,
    parse_selectors,
)

NAMES = [
    "node_load1",
    "http_requests_total",
    "http_request_duration_seconds_bucket",
    "http_request_duration_seconds_count",
    "http_request_duration_seconds_sum",
    "http_request_duration_seconds_created",
    "go_goroutines",
    "prometheus_tsdb_head_series",
    "process_cpu_seconds_total",
    "scrape_duration_seconds",
    "promhttp_metric_handler_requests_total",
    "ALERTS",
    "up",
    "job:http_requests:rate5m",
    "job:http_requests:rate5m:z_score_1w",
]


def test_auto_skips_internal_series_rates_counters_and_puts_recorded_first() -> None:
    """Internal, bucket, _created and derived series are dropped; counters become rate();
    recording-rule series come first."""
    chosen = auto_selectors(
        NAMES,
        recorded=frozenset({"job:http_requests:rate5m", "instance:cpu_usage:percent"}),
        derived=frozenset({"job:http_requests:rate5m:z_score_1w"}),
        rate_window=300,
    )
    assert [s.expr for s in chosen] == [
        "job:http_requests:rate5m",
        "rate(http_request_duration_seconds_count[5m])",
        "rate(http_request_duration_seconds_sum[5m])",
        "rate(http_requests_total[5m])",
        "node_load1",
        "up",
    ]
    assert chosen[0].recorded
    assert chosen[1].metric == "http_request_duration_seconds_count"
    assert chosen[1].rate_window == 300


def test_internal_series_are_kept_when_asked() -> None:
    """DETECT_INCLUDE_INTERNAL keeps prometheus_*, go_*, process_* ... (counters still rated)."""
    chosen = {s.expr for s in auto_selectors(NAMES, include_internal=True, rate_window=60)}
    assert "go_goroutines" in chosen
    assert "prometheus_tsdb_head_series" in chosen
    assert "rate(process_cpu_seconds_total[1m])" in chosen
    assert "ALERTS" in chosen


def test_job_scopes_the_enumeration_and_each_selector() -> None:
    """A target's job becomes a matcher on the name lookup and on every generated selector."""
    chosen = auto_selectors(["up", "x_total"], job='api "blue"', rate_window=30)
    assert [s.expr for s in chosen] == [
        'up{job="api \\"blue\\""}',
        'rate(x_total{job="api \\"blue\\""}[30s])',
    ]
    assert job_matcher("api") == ['{job="api"}']
    assert job_matcher("") == []


def test_parse_selectors_separates_custom_and_auto() -> None:
    """`;` separates selectors; empty means auto; `auto` may be combined with custom ones."""
    assert parse_selectors("") == ([], True)
    assert parse_selectors(" ; ") == ([], True)
    assert parse_selectors("up; sum by (job) (rate(x[5m]))") == (
        ["up", "sum by (job) (rate(x[5m]))"],
        False,
    )
    assert parse_selectors("AUTO; node_load1") == (["node_load1"], True)


def test_series_expr_names_one_series() -> None:
    """The episode's query selects exactly that series (quotes escaped); custom stays as is."""
    labels = {"__name__": "x_total", "instance": 'h"1', "job": "j"}
    rated = Selector("rate(x_total[5m])", metric="x_total", rate_window=300)
    assert rated.series_expr(labels) == 'rate(x_total{instance="h\\"1",job="j"}[5m])'
    plain = Selector("up", metric="up")
    assert plain.series_expr({"job": "j"}) == 'up{job="j"}'
    custom = Selector("sum(up)", custom=True)
    assert custom.series_expr({}) == "sum(up)"
    assert custom.metric_of({}) == "sum(up)"
    assert custom.metric_of({"__name__": "up"}) == "up"


def test_recorded_series_come_from_the_rule_specs() -> None:
    """The repository's rules/specs name the recorded series and the derived z-score ones."""
    recorded, derived = load_recorded(Path(__file__).parents[2] / "rules" / "specs")
    assert "instance:cpu_usage:percent" in recorded
    assert "job:http_requests:rate5m" in recorded
    assert derived
    assert all(":" in name for name in derived)
    assert not recorded & derived
    assert load_recorded(Path("/nonexistent")) == (frozenset(), frozenset())


def test_prior_queries_cover_history_before_the_window_only() -> None:
    """Priors span lookback - window ending at the window's start, gated on old-enough samples;
    none when the window already holds the lookback."""
    grid = Grid.ending(1_000_000.5, window=3600, step=60)
    assert (grid.start, grid.end) == (996_360.0, 999_960.0)
    low, high = PriorSpec(14 * 86400, 86400, 60).queries("up", grid) or ("", "")
    assert low.startswith("min_over_time((up)[1w6d23h:5m2s] @ 996360.000)")
    assert high.startswith("max_over_time((up)[1w6d23h:5m2s] @ 996360.000)")
    assert low.endswith(" and present_over_time((up)[1w6d:5m2s] @ 913560.000)")
    assert PriorSpec(3600, 600, 60).queries("up", grid) is None
    no_gate = PriorSpec(7200, 0, 60).queries("up", grid)
    assert no_gate is not None
    assert "present_over_time" not in no_gate[0]
