"""Replay threshold rules over history with `query_range`: firing episodes, flaps, series touched.

Evaluation is approximated on the query grid: the alert expression is true at a step when the
range query returns a point there. A run of consecutive true steps is one *activation*; it fires
when the run lasts at least the rule's `for` (as Prometheus' pending → firing), and resolves at
the first false step. A *flap* is a firing episode that starts within `flap_window` of the
previous episode of the same series resolving.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass
from typing import Any

import httpx

from receiver.durations import format_duration, parse_duration
from receiver.rulegen.generate import alert_expr, number
from receiver.rulegen.spec import RuleSet, ThresholdRule

# Prometheus refuses more than 11,000 points per series in one query_range.
MAX_POINTS_PER_QUERY = 10_000


class BacktestError(Exception):
    """The backtest could not run: Prometheus unreachable, or it rejected a query."""


@dataclass(frozen=True)
class SeriesStats:
    activations: int  # runs of consecutive true steps
    episodes: int  # activations that lasted `for` (would have fired)
    flaps: int  # episodes starting within flap_window of the previous one resolving
    firing_steps: int  # steps in firing state (past `for`)


@dataclass(frozen=True)
class RuleReport:
    alert: str
    severity: str
    expr: str
    query: str
    fired: int  # firing episodes over all series
    flaps: int
    pending_only: int  # activations that never reached `for`
    series_crossed: int  # series that crossed the threshold at least once
    series_fired: int  # series with at least one firing episode
    firing_seconds: float  # time in firing state, summed over series

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def series_stats(
    timestamps: Sequence[float], step: float, hold: float, flap_window: float
) -> SeriesStats:
    """Episodes of one series from the (sorted) timestamps at which its expression was true."""
    runs: list[tuple[float, float]] = []
    for ts in timestamps:
        # A gap of more than one step means at least one false evaluation in between.
        if runs and ts - runs[-1][1] <= step * 1.5:
            runs[-1] = (runs[-1][0], ts)
        else:
            runs.append((ts, ts))
    episodes = flaps = firing_steps = 0
    last_resolved: float | None = None
    for start, end in runs:
        if end - start < hold:
            continue
        episodes += 1
        # evaluations at or after start + hold, up to the run's last true step
        firing_steps += math.floor((end - start - hold) / step + 1e-9) + 1
        if last_resolved is not None and start - last_resolved < flap_window:
            flaps += 1
        last_resolved = end + step
    return SeriesStats(len(runs), episodes, flaps, firing_steps)


def backtest_query(rule: ThresholdRule, rule_set: RuleSet, inline: bool = True) -> str:
    """The alert expression, with a recorded `metric` replaced by its definition when `inline`
    so the backtest works on raw history, even before the recording rule existed."""
    if inline and rule.metric is not None:
        recording = rule_set.recorded.get(rule.metric)
        if recording is not None:
            return f"({recording.expr}) {rule.op} {number(rule.threshold)}"
    return alert_expr(rule)


def query_range(
    client: httpx.Client, prom_url: str, query: str, start: float, end: float, step: float
) -> dict[tuple[tuple[str, str], ...], list[float]]:
    """Timestamps with a value per series, querying in windows Prometheus accepts."""
    out: dict[tuple[tuple[str, str], ...], list[float]] = {}
    window = step * (MAX_POINTS_PER_QUERY - 1)
    chunk_start = start
    while chunk_start <= end:
        chunk_end = min(end, chunk_start + window)
        for metric, values in _query_range_once(
            client, prom_url, query, chunk_start, chunk_end, step
        ):
            out.setdefault(tuple(sorted(metric.items())), []).extend(ts for ts, _ in values)
        chunk_start = chunk_end + step
    return out


def _query_range_once(
    client: httpx.Client, prom_url: str, query: str, start: float, end: float, step: float
) -> list[tuple[dict[str, str], list[tuple[float, str]]]]:
    url = f"{prom_url.rstrip('/')}/api/v1/query_range"
    form = {"query": query, "start": repr(start), "end": repr(end), "step": repr(step)}
    try:
        response = client.post(url, data=form)
    except httpx.HTTPError as err:
        raise BacktestError(f"cannot reach Prometheus at {prom_url}: {err}") from err
    try:
        body = response.json()
    except ValueError as err:
        raise BacktestError(
            f"Prometheus at {prom_url} answered HTTP {response.status_code} without JSON"
        ) from err
    if not isinstance(body, dict) or body.get("status") != "success":
        detail = body.get("error", "") if isinstance(body, dict) else ""
        kind = body.get("errorType", "") if isinstance(body, dict) else ""
        raise BacktestError(
            f"Prometheus rejected the query (HTTP {response.status_code} {kind}): {detail}"
        )
    data = body.get("data")
    if not isinstance(data, dict) or data.get("resultType") != "matrix":
        raise BacktestError(f"expected a matrix result from {url}, got {str(data)[:200]}")
    return [
        (dict(item["metric"]), [(float(ts), value) for ts, value in item["values"]])
        for item in data["result"]
    ]


def run_backtest(
    rule_set: RuleSet,
    prom_url: str,
    start: float,
    end: float,
    step: float,
    flap_window: float,
    names: Iterable[str] = (),
    inline: bool = True,
    timeout: float = 60.0,
) -> list[RuleReport]:
    """One report per threshold rule (or per rule in `names`), in spec order."""
    wanted = set(names)
    known = {rule.name for _, rule in rule_set.thresholds()}
    unknown = sorted(wanted - known)
    if unknown:
        raise BacktestError(
            f"unknown rule(s): {', '.join(unknown)} (known: {', '.join(sorted(known))})"
        )
    reports: list[RuleReport] = []
    with httpx.Client(timeout=timeout) as client:
        for _, rule in rule_set.thresholds():
            if wanted and rule.name not in wanted:
                continue
            query = backtest_query(rule, rule_set, inline)
            try:
                matrix = query_range(client, prom_url, query, start, end, step)
            except BacktestError as err:
                raise BacktestError(f"rule {rule.name}: {err}") from err
            hold = parse_duration(rule.for_) / 1000
            stats = [series_stats(sorted(ts), step, hold, flap_window) for ts in matrix.values()]
            firing_seconds = sum(s.firing_steps for s in stats) * step
            reports.append(
                RuleReport(
                    alert=rule.name,
                    severity=rule.severity,
                    expr=alert_expr(rule),
                    query=query,
                    fired=sum(s.episodes for s in stats),
                    flaps=sum(s.flaps for s in stats),
                    pending_only=sum(s.activations - s.episodes for s in stats),
                    series_crossed=len(stats),
                    series_fired=sum(1 for s in stats if s.episodes),
                    firing_seconds=firing_seconds,
                )
            )
    return reports


def format_table(reports: Sequence[RuleReport]) -> str:
    """A fixed-width table, one line per rule."""
    header = (
        "alert",
        "severity",
        "fired",
        "flaps",
        "pending-only",
        "series fired/crossed",
        "firing time",
    )
    rows = [
        (
            r.alert,
            r.severity,
            str(r.fired),
            str(r.flaps),
            str(r.pending_only),
            f"{r.series_fired}/{r.series_crossed}",
            format_duration(round(r.firing_seconds * 1000)),
        )
        for r in reports
    ]
    widths = [max(len(row[i]) for row in [header, *rows]) for i in range(len(header))]
    lines = [
        "  ".join(
            cell.ljust(w) if i < 2 else cell.rjust(w)
            for i, (cell, w) in enumerate(zip(row, widths, strict=True))
        )
        for row in [header, *rows]
    ]
    return "\n".join(line.rstrip() for line in lines)
