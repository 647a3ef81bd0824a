"""Evidence charts of an incident: which series to draw (from its episodes and analysis), the
time window around it, the range queries against Prometheus, and the PNG.

`chart_specs` is pure and deterministic, so a chart is addressed by its index on the incident
page (`/ui/incidents/{id}/chart.png?n=0`) and PromQL never comes from the request. The
expression of an alert comes from the detector's query, else the generatorURL, else the rule
files; a trailing `> 80` becomes the threshold line; a detector's band becomes the shaded band.
Prometheus down or a bad expression gives a chart without data and a reason, never an error.
"""

from __future__ import annotations

import asyncio
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

import httpx
import numpy as np
import numpy.typing as npt

from receiver.detect.prometheus import (
    PrometheusClient,
    PrometheusError,
    PrometheusTooLarge,
    PrometheusUnavailable,
    RangeResult,
    Series,
)
from receiver.detect.promql import generator_expression, label_matcher, scoped
from receiver.enrich.context import RuleIndex, split_threshold
from receiver.records import AnalysisRecord, EpisodeRecord, IncidentRecord
from receiver.timeutil import aware
from receiver.ui.chart import Band, Line, Panel, render_chart, render_panels
from receiver.ui.units import unit_of

MAX_CHARTS = 6
MAX_CANDIDATE_CHARTS = 2
MAX_LINES = 5
POINTS = 240
QUERY_TIMEOUT = 5.0
MAX_EXPR = 1_000
EMAIL_SCALE = 2  # the email chart's pixels per CSS pixel; its HTML shows it 640 wide
_RANK = {"critical": 4, "high": 3, "medium": 2, "low": 1}


@dataclass(frozen=True)
class ChartSpec:
    """One chart: what to query and what to draw beside it."""

    title: str
    expr: str  # the value expression (threshold split off)
    labels: Mapping[str, str] = field(default_factory=dict)  # scope: the alert's instance/job
    threshold: float | None = None
    threshold_text: str = ""  # e.g. "> 80"
    band: tuple[float, float] | None = None
    evidence_id: str = ""  # the analysis' evidence item this chart shows, if any
    kind: str = "alert"  # alert | detector | candidate | sibling
    season: Season | None = None  # a detector's seasonal expectation: the band follows it
    onset: float | None = None  # a detector's first flagged point (unix seconds)


@dataclass(frozen=True)
class Season:
    """A detector's daily/weekly profile, anchored so that it gives `expected` at `at`."""

    profile: tuple[float, ...]  # per phase bin of `step` seconds, zero-mean
    step: float
    period: float
    expected: float
    at: float

    def values(self, t: npt.NDArray[np.float64]) -> npt.NDArray[np.float64]:
        """The expectation at times t (profile linearly interpolated between bins)."""
        prof = np.asarray(self.profile, dtype=np.float64)
        bins = prof.size

        def at(times: npt.NDArray[np.float64]) -> npt.NDArray[np.float64]:
            u = np.mod(times, self.period) / self.step
            i0 = np.floor(u).astype(np.intp) % bins
            w = u - np.floor(u)
            out: npt.NDArray[np.float64] = prof[i0] * (1.0 - w) + prof[(i0 + 1) % bins] * w
            return out

        anchor = self.expected - float(at(np.array([self.at]))[0])
        out: npt.NDArray[np.float64] = anchor + at(t)
        return out


def _season(detector: Mapping[str, object], onset: float | None) -> Season | None:
    profile, step = detector.get("season_profile"), _finite(detector.get("season_step"))
    period, expected = _finite(detector.get("period_seconds")), _finite(detector.get("expected"))
    if not isinstance(profile, list) or not profile or onset is None:
        return None
    values = tuple(v for v in (_finite(p) for p in profile) if v is not None)
    if step is None or period is None or expected is None or len(values) != len(profile):
        return None
    if step <= 0 or abs(len(values) * step - period) > 1e-6 * period:
        return None
    return Season(values, step, period, expected, onset)


def _onset(detector: Mapping[str, object]) -> float | None:
    raw = detector.get("onset")
    if not isinstance(raw, str):
        return None
    try:
        return aware(datetime.fromisoformat(raw.replace("Z", "+00:00"))).timestamp()
    except ValueError:
        return None


@dataclass(frozen=True)
class Window:
    start: float
    end: float
    step: float
    marks: tuple[float, ...]  # incident start (and end)


@dataclass(frozen=True)
class ChartData:
    lines: tuple[Line, ...] = ()
    # why there is no data: "" | "unreachable" | "no data" | "query error" | the byte cap's note
    problem: str = ""
    note: str = ""  # what is missing from the lines drawn (the series cap's note)


def _ordered(episodes: Sequence[EpisodeRecord]) -> list[EpisodeRecord]:
    """Firing first, most severe first, oldest first (the enrichment's primary comes first)."""
    return sorted(
        episodes,
        key=lambda e: (
            e.status != "firing",
            -_RANK.get(e.severity, 2),
            aware(e.starts_at),
            e.fingerprint,
        ),
    )


def _episode_expr(episode: EpisodeRecord, rules: RuleIndex | None) -> str:
    detector = episode.detector or {}
    query = detector.get("query")
    if isinstance(query, str) and query.strip():
        return query.strip()[:MAX_EXPR]
    expr = generator_expression(episode.generator_url).expr
    if expr:
        return expr
    if rules is not None and episode.alertname:
        return rules.alerts.get(episode.alertname, "")[:MAX_EXPR]
    return ""


def rules_for(episodes: Sequence[EpisodeRecord], rules_dir: Path) -> RuleIndex | None:
    """The rule files' alert expressions, read only when some episode's expression can come
    from nowhere else (no detector query, no expression in its generatorURL)."""
    needed = any(
        not (e.detector or {}).get("query") and not generator_expression(e.generator_url).expr
        for e in episodes
    )
    return RuleIndex.load(rules_dir) if needed else None


def _finite(value: object) -> float | None:
    if isinstance(value, int | float) and math.isfinite(value):
        return float(value)
    return None


def _evidence_id(rca: AnalysisRecord | None, kind: str, expr: str) -> str:
    if rca is None:
        return ""
    for item in rca.evidence:
        data = item.get("data") or {}
        if item.get("kind") != kind:
            continue
        if kind == "detector" or (isinstance(data, dict) and data.get("expr") == expr):
            return str(item.get("id", ""))
    return ""


def chart_specs(
    incident: IncidentRecord,
    episodes: Sequence[EpisodeRecord],
    rca: AnalysisRecord | None,
    rules: RuleIndex | None = None,
    limit: int = MAX_CHARTS,
) -> list[ChartSpec]:
    """The charts of an incident, most important first: its alerts' expressions (one chart per
    distinct expression), then the sibling series the analysis cited."""
    specs: list[ChartSpec] = []
    seen: set[str] = set()
    for episode in _ordered(episodes):
        expr = _episode_expr(episode, rules)
        if not expr:
            continue
        value_expr, threshold = split_threshold(expr)
        scope = {k: episode.labels[k] for k in ("instance", "job") if episode.labels.get(k)}
        key = value_expr + repr(sorted(scope.items()))
        if key in seen:
            continue
        seen.add(key)
        detector = episode.detector or {}
        band: tuple[float, float] | None = None
        low, high = _finite(detector.get("band_low")), _finite(detector.get("band_high"))
        if low is not None and high is not None:
            band = (min(low, high), max(low, high))
        is_detector = bool(detector)
        onset = _onset(detector) if is_detector else None
        # an outlier's alertname says little: name its series instead
        name = (episode.metric if is_detector else "") or episode.alertname or "alert"
        where = episode.instance or episode.labels.get("job", "")
        specs.append(
            ChartSpec(
                title=f"{name} on {where}" if where else name,
                expr=value_expr,
                # a detector's query already names its one series
                labels={} if is_detector else scope,
                threshold=threshold.value if threshold else None,
                threshold_text=str(threshold) if threshold else "",
                band=band,
                evidence_id=_evidence_id(
                    rca, "detector" if is_detector else "expression", value_expr
                ),
                kind="detector" if is_detector else "alert",
                season=_season(detector, onset) if is_detector else None,
                onset=onset,
            )
        )
    specs.extend(_candidate_specs(rca, seen))
    for item in rca.evidence if rca is not None else []:
        data = item.get("data")
        if item.get("kind") != "sibling" or not isinstance(data, dict):
            continue
        metric, label, value = data.get("metric"), data.get("label"), data.get("value")
        if not all(isinstance(x, str) and x for x in (metric, label, value)):
            continue
        assert isinstance(metric, str)
        assert isinstance(label, str)
        assert isinstance(value, str)
        expr = f"{metric}{{{label_matcher(label, value)}}}"
        if expr in seen:
            continue
        seen.add(expr)
        specs.append(
            ChartSpec(
                title=str(item.get("title") or metric),
                expr=expr,
                evidence_id=str(item.get("id", "")),
                kind="sibling",
            )
        )
    return specs[:limit]


def _candidate_specs(rca: AnalysisRecord | None, seen: set[str]) -> list[ChartSpec]:
    """The analysis' top cause candidates (their own fully-labelled query), best first."""
    specs: list[ChartSpec] = []
    for item in rca.evidence if rca is not None else []:
        data = item.get("data")
        if item.get("kind") != "candidate" or not isinstance(data, dict):
            continue
        query = data.get("query")
        if not isinstance(query, str) or not query or query in seen:
            continue
        seen.add(query)
        rank = data.get("rank")
        specs.append(
            ChartSpec(
                title=f"cause #{rank}: {data.get('metric', '')}"[:120],
                expr=query[:MAX_EXPR],
                evidence_id=str(item.get("id", "")),
                kind="candidate",
            )
        )
        if len(specs) >= MAX_CANDIDATE_CHARTS:
            break
    return specs


def chart_window(incident: IncidentRecord, now: datetime | None = None) -> Window:
    """From well before the start to a little after the end (or now), ~POINTS points."""
    current = (now or datetime.now(UTC)).timestamp()
    started = aware(incident.started_at).timestamp()
    resolved = aware(incident.resolved_at).timestamp() if incident.resolved_at else None
    span = max((resolved or current) - started, 0.0)
    before = min(max(3 * span, 120.0), 1800.0)
    after = min(max(span / 2, 60.0), 600.0)
    start = started - before
    end = min((resolved + after) if resolved is not None else current, current)
    end = max(end, start + 60.0)
    step = max(1.0, math.ceil((end - start) / POINTS))
    marks = (started,) if resolved is None else (started, resolved)
    return Window(start, end, step, marks)


def _line_label(series: Series, several: bool) -> str:
    labels = series.labels
    for key in ("instance", "job", "mountpoint", "device"):
        if labels.get(key):
            return labels[key]
    if several:
        return ",".join(f"{k}={v}" for k, v in sorted(labels.items()) if k != "__name__")[:40]
    return ""


async def fetch_chart(
    http: httpx.AsyncClient,
    prom_url: str,
    spec: ChartSpec,
    window: Window,
    *,
    query_timeout: float = QUERY_TIMEOUT,
) -> ChartData:
    """Run the spec's range query; the scoped expression first, unscoped if it finds nothing."""
    client = PrometheusClient(prom_url, http=http, retries=0)
    queries = [scoped(spec.expr, spec.labels)]
    if spec.labels:
        queries.append(spec.expr)
    answer: RangeResult | None = None
    try:
        async with asyncio.timeout(query_timeout + 1.0):
            for promql in queries:
                answer = await client.query_range(
                    promql, window.start, window.end, window.step, query_timeout=query_timeout
                )
                if answer.series:
                    break
    except (PrometheusUnavailable, TimeoutError):
        return ChartData(problem="unreachable")
    except PrometheusTooLarge as err:
        return ChartData(problem=err.note)
    except PrometheusError:
        return ChartData(problem="query error")
    if answer is None or not answer.series:
        return ChartData(problem="no data")
    several = len(answer.series) > 1
    lines = tuple(
        Line(s.timestamps, s.values, _line_label(s, several)) for s in answer.series[:MAX_LINES]
    )
    return ChartData(lines=lines, note=answer.cap_note)


async def fetch_charts(
    http: httpx.AsyncClient,
    prom_url: str,
    specs: Sequence[ChartSpec],
    window: Window,
    *,
    query_timeout: float = QUERY_TIMEOUT,
) -> list[ChartData]:
    """Every spec's data, queried concurrently."""
    jobs = (fetch_chart(http, prom_url, s, window, query_timeout=query_timeout) for s in specs)
    return list(await asyncio.gather(*jobs))


def _band(spec: ChartSpec, data: ChartData) -> Band | None:
    """The detector's band: constant, or (seasonal) the expectation over time plus the band's
    offsets from it at the flagged point."""
    if spec.band is None:
        return None
    low, high = spec.band
    if spec.season is None or not data.lines:
        return Band(low, high)
    t = np.asarray(data.lines[0].timestamps, dtype=np.float64)
    expected = spec.season.values(t)
    return Band(
        expected + (low - spec.season.expected), expected + (high - spec.season.expected), t
    )


def _lines(spec: ChartSpec, data: ChartData) -> list[Line]:
    """The data, plus a seasonal detector's expectation as a line of its own."""
    lines = list(data.lines)
    if spec.season is not None and lines:
        t = np.asarray(lines[0].timestamps, dtype=np.float64)
        lines.append(Line(t, spec.season.values(t), "expected", role="expected"))
    return lines


def _marks(spec: ChartSpec, window: Window) -> tuple[float, ...]:
    """The incident's marks and a detector's onset (when it is not one of them already)."""
    if spec.onset is None or any(abs(m - spec.onset) <= window.step for m in window.marks):
        return window.marks
    return (*window.marks, spec.onset)


def chart_png(
    spec: ChartSpec, data: ChartData, window: Window, *, title: bool = False, scale: int = 1
) -> bytes:
    """The PNG of one chart; `title` puts the spec's title into the image (for emails).
    CPU-bound (tens of ms): async callers run it in a thread."""
    return render_chart(
        _lines(spec, data),
        threshold=spec.threshold,
        band=_band(spec, data),
        marks=_marks(spec, window),
        title=spec.title if title else "",
        unit=unit_of(spec.expr),
        scale=scale,
    )


async def main_chart_png(
    http: httpx.AsyncClient,
    prom_url: str,
    incident: IncidentRecord,
    episodes: Sequence[EpisodeRecord],
    rca: AnalysisRecord | None = None,
    *,
    rules: RuleIndex | None = None,
    query_timeout: float = QUERY_TIMEOUT,
) -> bytes | None:
    """The incident's main evidence chart as PNG (for an email attachment), with the analysis'
    top cause candidate as a second panel below it when it has data; None when there is no
    expression to draw or Prometheus has no data for it (unreachable included). Drawn at
    EMAIL_SCALE times the console's pixels, so it stays sharp on high-density screens."""
    specs = chart_specs(incident, episodes, rca, rules)
    main = [s for s in specs if s.kind != "candidate"][:1]
    if not main:
        return None
    window = chart_window(incident)
    data = await fetch_chart(http, prom_url, main[0], window, query_timeout=query_timeout)
    if not data.lines:
        return None
    cause = [s for s in specs if s.kind == "candidate"][:1]
    extra = (
        await fetch_chart(http, prom_url, cause[0], window, query_timeout=query_timeout)
        if cause
        else ChartData()
    )
    if not extra.lines:
        return await asyncio.to_thread(
            chart_png, main[0], data, window, title=True, scale=EMAIL_SCALE
        )
    panels = [_panel(spec, chart, window) for spec, chart in ((main[0], data), (cause[0], extra))]
    return await asyncio.to_thread(render_panels, panels, height=180, scale=EMAIL_SCALE)


def _panel(spec: ChartSpec, data: ChartData, window: Window) -> Panel:
    lines, band, marks = _lines(spec, data), _band(spec, data), _marks(spec, window)
    return Panel(lines, spec.threshold, band, marks, spec.title, unit=unit_of(spec.expr))
