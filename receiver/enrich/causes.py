"""Find the cause candidates of one incident: discover (candidates.py), fetch, time (timeline.py),
check recurrence on earlier days, rank. Returns the ranked timeline and what it cost.

Never raises for Prometheus trouble: what failed is listed in `CauseReport.errors`, and what
was found before the failure is still ranked.
"""

from __future__ import annotations

import asyncio
import math
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime

import numpy as np

from receiver.detect.prometheus import (
    PrometheusAPI,
    PrometheusClient,
    PrometheusError,
    RangeResult,
)
from receiver.detect.promql import label_matcher, promql_string
from receiver.domain import Signal
from receiver.enrich.candidates import (
    AGGREGATED_AWAY,
    MAX_PER_QUERY,
    Discovery,
    Finder,
    build,
    expression_metrics,
    selector,
)
from receiver.enrich.evidence import EvidenceBundle
from receiver.enrich.relations import relate
from receiver.enrich.timeline import (
    CHANGE_SIZE,
    Candidate,
    Departure,
    Scope,
    as_data,
    departure,
    event_departure,
    host_of,
    rank,
    recurring,
    restart_departure,
)

LOOKBACK = 3 * 3600.0  # seconds before the alert looked at
BASELINE = 3600.0  # the first part of the window is the normal
AFTER = 300.0
MAX_POINTS = 400
MIN_STEP = 15.0
CANDIDATE_MAX_BYTES = 32 * 1024 * 1024  # one batched answer: 600 series x 400 points is ~8 MB
QUERY_BUDGET = 40  # every Prometheus request of one incident, the alert's own included
RECURRENCE_DAYS = (1, 2)
RECURRENCE_TOP = 6  # candidates checked for a daily pattern
TOLERANCE = 300.0  # "the same clock time" ± this


@dataclass
class CauseReport:
    """The ranked candidates and the cost of finding them."""

    ranked: list[Candidate] = field(default_factory=list)
    looked_at: int = 0  # candidate series timed
    info: Discovery = field(default_factory=Discovery)
    queries: int = 0
    seconds: float = 0.0
    alert_at: float = 0.0
    window: tuple[float, float, float] = (0.0, 0.0, 0.0)  # start, end, step


def window(alert_at: float, now: float) -> tuple[float, float, float, float]:
    """(start, end, step, baseline end) of the candidate search."""
    start = alert_at - LOOKBACK
    end = max(min(alert_at + AFTER, now), alert_at)
    step = max(MIN_STEP, math.ceil((end - start) / MAX_POINTS / MIN_STEP) * MIN_STEP)
    base_end = min(start + BASELINE, alert_at - 600.0)
    return start, end, step, base_end


def _changes(candidates: Sequence[Candidate], base_end: float, alert_at: float) -> None:
    """`*_info` series: a label set that replaces another one of the same instance is a change
    (a new version/revision) at its first sample."""
    groups: dict[tuple[str, str, str], list[Candidate]] = {}
    for c in candidates:
        if c.kind == "info":
            key = (c.metric, c.labels.get("job", ""), c.labels.get("instance", ""))
            groups.setdefault(key, []).append(c)
    for members in groups.values():
        firsts: list[tuple[int, Candidate]] = []
        for c in members:
            idx = np.nonzero(np.isfinite(c.values))[0]
            if idx.size:
                firsts.append((int(idx[0]), c))
        firsts.sort(key=lambda f: f[0])
        for n, (first, c) in enumerate(firsts):
            if n == 0 or first == 0:
                continue
            previous = firsts[n - 1][1]
            at = float(c.timestamps[first])
            c.change = {
                k: f"{previous.labels.get(k, '')} → {v}"
                for k, v in c.labels.items()
                if previous.labels.get(k) != v
            }
            if at > alert_at:
                continue  # not a candidate, but part of a rollout (relations.py)
            present = bool(np.isfinite(c.values[c.timestamps <= alert_at]).any())
            c.departure = Departure(
                at, "changed", CHANGE_SIZE, 1.0 if present else 0.5, None, None, None
            )


def time_candidates(candidates: Sequence[Candidate], base_end: float, alert_at: float) -> None:
    """Attach each candidate's departure (restarts and changes have their own rules)."""
    for c in candidates:
        if c.kind == "info":
            continue
        if c.kind == "start":
            c.departure = restart_departure(c.timestamps, c.values, base_end, alert_at)
        elif c.kind == "event":
            c.departure = event_departure(c.timestamps, c.values, base_end, alert_at)
        else:
            c.departure = departure(c.timestamps, c.values, base_end, alert_at)
    _changes(candidates, base_end, alert_at)


def _recurrence_selectors(candidates: Sequence[Candidate]) -> list[str]:
    """One selector per label set, its metric names as a regex: `a or b` matches on the labels
    without the name, so `x{l} offset 1d or y{l} offset 1d` would drop y."""
    names: dict[tuple[tuple[str, str], ...], list[str]] = {}
    for c in candidates:
        if c.kind in ("share", "total"):
            continue  # derived on the client; their parts are not single series
        labels = tuple(sorted((k, v) for k, v in c.labels.items() if k not in AGGREGATED_AWAY))
        wanted = [c.metric + "_sum", c.metric + "_count"] if c.kind == "mean" else [c.metric]
        group = names.setdefault(labels, [])
        group.extend(n for n in wanted if n not in group)
    return [
        selector(
            [
                f"__name__=~{promql_string('|'.join(group))}",
                *(label_matcher(k, v) for k, v in labels),
            ]
        )
        for labels, group in names.items()
    ]


async def _recurrence(
    finder: Finder,
    top: Sequence[Candidate],
    step: float,
    args: tuple[set[str], set[str], set[str], set[str]],
) -> None:
    """Mark candidates whose departure also happened at the same clock time 1 or 2 days ago."""
    timed = [c for c in top if c.departure is not None and c.departure.onset is not None]
    if not timed:
        return
    onsets = [c.departure.onset for c in timed if c.departure and c.departure.onset is not None]
    start = min(onsets) - 6 * TOLERANCE - 300
    end = max(onsets) + 3 * TOLERANCE
    selectors = _recurrence_selectors(timed)
    if not selectors:
        return
    days = [d for d in RECURRENCE_DAYS if finder.queries < finder.budget]
    finder.queries += len(days)

    async def one(day: int) -> RangeResult | None:
        promql = " or ".join(f"{s} offset {day}d" for s in selectors)
        try:
            return await finder.prometheus.query_range(
                promql, start, end, step, query_timeout=finder.query_timeout
            )
        except PrometheusError as err:
            finder.info.errors.append(f"recurrence: {type(err).__name__}")
            return None

    answers = await asyncio.gather(*(one(d) for d in days))
    for answer in answers:
        if answer is None or not answer.series:
            continue
        _, earlier = build([answer], *args)
        by_key = {(e.metric, tuple(sorted(e.labels.items()))): e for e in earlier}
        for c in timed:
            e = by_key.get((c.metric, tuple(sorted(c.labels.items()))))
            if e is None or c.recurring or c.departure is None:
                continue
            # `x offset 1d` answers at today's timestamps with yesterday's values: the clock
            # times already line up
            if recurring(c.departure, e.timestamps, e.values, TOLERANCE):
                c.recurring = True


async def find_causes(
    prometheus: PrometheusAPI,
    alert_labels: Sequence[Mapping[str, str]],
    alert_at: float,
    expression: str,
    *,
    now: float,
    query_timeout: float,
    budget: int = QUERY_BUDGET,
) -> CauseReport:
    """Discover, time and rank the candidates for an alert that started at `alert_at`."""
    t0 = time.perf_counter()
    if isinstance(prometheus, PrometheusClient):
        # the evidence client stops at 50 series / 2 MB per answer; one batched candidate
        # query brings up to MAX_PER_QUERY series of MAX_POINTS points
        prometheus = prometheus.widened(max_series=MAX_PER_QUERY, max_bytes=CANDIDATE_MAX_BYTES)
    start, end, step, base_end = window(alert_at, now)
    finder = Finder(prometheus, query_timeout=query_timeout, budget=budget)
    report = CauseReport(info=finder.info, alert_at=alert_at, window=(start, end, step))
    chosen, job_hosts, dep_keys = await finder.discover(alert_labels, start, end)
    symptoms = expression_metrics(expression) if expression else set()
    jobs = {lab["job"] for lab in alert_labels if lab.get("job")}
    hosts = {host_of(lab["instance"]) for lab in alert_labels if lab.get("instance")}
    args = (dep_keys, symptoms, jobs, hosts)
    results = await finder.fetch(chosen, start, end, step) if chosen else []
    _, candidates = build(results, *args)
    finder.info.metrics = len({c.metric for c in candidates})
    time_candidates(candidates, base_end, alert_at)
    candidates = relate(candidates, base_end, alert_at)
    shared = not hosts or (len(hosts) >= 2 and len(hosts & job_hosts) >= 2 * len(job_hosts) / 3)
    scope = Scope(
        alert_at, step, frozenset(hosts), frozenset(jobs), shared, frozenset(symptoms), base_end
    )
    ranked = rank(candidates, scope, job_hosts)
    if ranked:
        await _recurrence(finder, ranked[:RECURRENCE_TOP], step, args)
        if any(c.recurring for c in ranked):
            ranked = rank(candidates, scope, job_hosts)
    report.ranked = ranked
    report.looked_at = len(candidates)
    report.queries = finder.queries
    report.seconds = time.perf_counter() - t0
    return report


# --- evidence ----------------------------------------------------------------------------------

MAX_CANDIDATE_ITEMS = 8


def _clock(ts: float) -> str:
    return datetime.fromtimestamp(ts, UTC).strftime("%H:%M:%S")


def _n(value: float | None) -> str:
    return "?" if value is None or not math.isfinite(value) else f"{value:.4g}"


def where(c: Candidate) -> str:
    """Where a candidate lives, for people: instance, else job, else its labels."""
    for key in ("instance", "job"):
        if c.labels.get(key):
            return c.labels[key]
    return ", ".join(f"{k}={v}" for k, v in sorted(c.labels.items())) or "(no labels)"


def _details(c: Candidate) -> str:
    skip = {"instance", "job"}
    parts = [f"{k}={v}" for k, v in sorted(c.labels.items()) if k not in skip]
    return f" [{', '.join(parts)}]" if parts else ""


def story(c: Candidate, alert_at: float) -> str:
    """One sentence: what the series did, when, with values."""
    d = c.departure
    if d is None or d.onset is None:
        return f"{c.metric} of {where(c)} did not leave its normal"
    lead = alert_at - d.onset
    when = f"{abs(lead) / 60:.0f} min {'before' if lead >= 0 else 'after'} the alert"
    name = f"{c.metric}{_details(c)} of {where(c)}"
    if d.direction == "changed":
        what = "; ".join(f"{k} {v}" for k, v in sorted(c.change.items())) or "new labels"
        return f"{name} changed at {_clock(d.onset)} UTC ({when}): {what}"
    if d.direction == "step":
        return (
            f"{name}: the process restarted at {_clock(d.onset)} UTC ({when}); start time "
            f"{_n(d.baseline)} → {_n(d.value)}"
        )
    verb = "rose" if d.direction == "up" else "fell"
    return (
        f"{name} {verb} from {_n(d.baseline)} to {_n(d.value)} starting {_clock(d.onset)} UTC "
        f"({when}), {d.size:.0f} times its normal noise"
    )


def _text(c: Candidate, alert_at: float, total: int) -> str:
    d = c.departure
    lines = [story(c, alert_at) + "."]
    if d is not None and d.scale is not None:
        lines.append(
            f"normal {_n(d.baseline)} ± {_n(d.scale)}; out of that band {d.persistence:.0%} "
            "of the time from the onset to the alert"
        )
    lines.append(f"query: {c.query}")
    lines.append(
        f"rank {c.rank} of {total}, score {c.score:.2f}, role {c.role}"
        + (f": {'; '.join(c.why)}" if c.why else "")
    )
    lines.append(
        "recurring: the same departure happened at this clock time on an earlier day"
        if c.recurring
        else "not seen at this clock time on the days checked"
    )
    return "\n".join(lines)


def add_candidates(bundle: EvidenceBundle, report: CauseReport, primary: Signal) -> None:
    """The ranked timeline as evidence: one `candidate` item per top candidate, then one
    `timeline` item saying what was searched and what was not."""
    total = len(report.ranked)
    for c in report.ranked[:MAX_CANDIDATE_ITEMS]:
        d = c.departure
        verb = {"up": "rose", "down": "fell", "step": "restarted", "changed": "changed"}
        at = f" at {_clock(d.onset)} UTC" if d is not None and d.onset is not None else ""
        title = (
            f"cause candidate #{c.rank}: {c.metric}{_details(c)} of {where(c)} "
            f"{verb.get(d.direction if d else '', 'moved')}{at}"
        )
        bundle.add("candidate", title, _text(c, report.alert_at, total), as_data(c))
    info = report.info
    start, end, step = report.window
    departed = sum(1 for c in report.ranked if c.departure and c.departure.onset is not None)
    lines = [
        f"looked at {report.looked_at} series of {info.metrics} metrics from "
        f"{_clock(start)} to {_clock(end)} UTC (step {step:g}s), found by: "
        + "; ".join(info.scopes or ["(the alert has no instance or job label)"]),
        "dependencies named by labels: " + (", ".join(info.dependencies) or "none"),
        f"{departed} left their normal and were still out at the alert; "
        f"{report.queries} Prometheus queries, {report.seconds:.2f}s",
        "not looked at: logs, traces, Kubernetes events, config diffs, series outside these "
        "scopes"
        + (", and series beyond the cap" if info.capped else "")
        + ("; queries that failed: " + ", ".join(sorted(set(info.errors))) if info.errors else ""),
    ]
    name = primary.alertname or "the alert"
    bundle.add(
        "timeline",
        f"what the cause search covered for {name}",
        "\n".join(lines),
        {
            "series": report.looked_at,
            "metrics": info.metrics,
            "departed": departed,
            "queries": report.queries,
            "seconds": round(report.seconds, 4),
            "scopes": list(info.scopes),
            "dependencies": list(info.dependencies),
            "capped": info.capped,
            "errors": sorted(set(info.errors)),
        },
    )
