"""PromQL and history evidence: the alert's expression as a range around its start, sibling
series of the same instance/job, and similar past incidents with their analysis and duration.

Nothing here stops an analysis: Prometheus down, a bad expression or an empty answer becomes a
`note` item or no item. Queries are bounded (points, series shown, timeout); text is bounded by
the bundle. Label values from alerts are untrusted: they enter PromQL only as quoted strings.
"""

from __future__ import annotations

import asyncio
import logging
import math
import re
import time
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
import yaml

from receiver.detect.prometheus import (
    PrometheusAPI,
    PrometheusError,
    PrometheusTooLarge,
    PrometheusUnavailable,
    RangeResult,
    Series,
)
from receiver.detect.promql import (
    generator_expression,
    label_matcher,
    scoped,
)
from receiver.domain import IncidentView, Signal, Status
from receiver.enrich.causes import QUERY_BUDGET, add_candidates, find_causes
from receiver.enrich.evidence import (
    EvidenceBundle,
    clean_text,
    evidence_from_incident,
    primary_signal,
)
from receiver.safety import mask_url
from receiver.timeutil import aware

log = logging.getLogger(__name__)

RANGE_BEFORE = timedelta(minutes=30)
RANGE_AFTER = timedelta(minutes=5)
MAX_POINTS = 60  # per series and query: enough for a shape, small enough for a prompt
MIN_STEP = 15.0
MAX_SERIES_SHOWN = 3
QUERY_TIMEOUT = 5.0
MAX_EXPR = 1_000
MAX_HISTORY = 3
MAX_GROUP_ITEMS = 10
DOWN_SECONDS = 15.0  # after Prometheus failed every query, skip it for this long

# The generated recording rules (rules/specs/node.yml, http.yml): (name, label it is keyed by).
SIBLINGS: tuple[tuple[str, str, str], ...] = (
    ("instance:cpu_usage:percent", "instance", "CPU usage %"),
    ("instance:memory_usage:percent", "instance", "memory usage %"),
    ("instance:disk_usage:percent", "instance", "disk usage %"),
    ("job:http_request_latency_seconds:p95", "job", "p95 HTTP latency (s)"),
    ("job:http_error_rate:percent", "job", "HTTP 5xx error rate %"),
)
# Labels that make two incidents of the same alert "the same kind of trouble" when they agree.
SIGNIFICANT_LABELS = ("job", "service", "namespace", "cluster", "env", "environment", "app")


def utcnow() -> datetime:
    return datetime.now(UTC)


# --- rules -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class RuleIndex:
    """Alert expressions by alertname, read from generated Prometheus rule files."""

    alerts: Mapping[str, str] = field(default_factory=dict)

    @classmethod
    def load(cls, directory: Path) -> RuleIndex:
        """Read `directory/*.yml`; a missing directory or a broken file is skipped, logged."""
        alerts: dict[str, str] = {}
        if not directory.is_dir():
            return cls(alerts)
        for path in sorted([*directory.glob("*.yml"), *directory.glob("*.yaml")]):
            try:
                doc = yaml.safe_load(path.read_text(encoding="utf-8"))
            except (OSError, UnicodeDecodeError, yaml.YAMLError) as err:
                log.warning("rule file %s skipped: %s", path, err)
                continue
            groups = doc.get("groups") if isinstance(doc, dict) else None
            for group in groups if isinstance(groups, list) else []:
                rules = group.get("rules") if isinstance(group, dict) else None
                for rule in rules if isinstance(rules, list) else []:
                    if not isinstance(rule, dict):
                        continue
                    name, expr = rule.get("alert"), rule.get("expr")
                    if isinstance(name, str) and isinstance(expr, str) and expr.strip():
                        alerts.setdefault(name, " ".join(expr.split()))
        return cls(alerts)


# --- expressions -----------------------------------------------------------------------------


FloatArray = npt.NDArray[np.float64]
BoolArray = npt.NDArray[np.bool_]
_COMPARE: dict[str, np.ufunc] = {
    ">": np.greater,
    ">=": np.greater_equal,
    "<": np.less,
    "<=": np.less_equal,
    "==": np.equal,
    "!=": np.not_equal,
}


@dataclass(frozen=True)
class Threshold:
    """The `<op> <number>` an alert expression ends with (`x > 80`)."""

    op: str
    value: float

    def holds(self, values: FloatArray) -> BoolArray:
        compare = _COMPARE[self.op]
        with np.errstate(invalid="ignore"):
            result: BoolArray = compare(values, self.value)
        return result

    def __str__(self) -> str:
        return f"{self.op} {self.value:g}"


_COMPARISON = re.compile(
    r"^(?P<lhs>.+?)\s*(?P<op>>=|<=|==|!=|>|<)\s*(?:bool\s+)?"
    r"(?P<num>[-+]?(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?)\s*$",
    re.DOTALL,
)
_QUOTED = re.compile(r'"(?:[^"\\]|\\.)*"|\'(?:[^\'\\]|\\.)*\'|`[^`]*`')
_PARENS = re.compile(r"\([^()]*\)")
_MATCHERS = re.compile(r"\{[^{}]*\}")  # label matchers may hold =, != and =~
_SET_OPERATOR = re.compile(r"\b(and|or|unless)\b|[<>=!]=|[<>]", re.IGNORECASE)


def split_threshold(expr: str) -> tuple[str, Threshold | None]:
    """`lhs <op> number` → (lhs, threshold) so the value itself can be graphed; else (expr, None).

    Only splits when the comparison is the outermost operator: the left side has balanced
    brackets and no other comparison or set operator (`a and b > 5` is left alone).
    """
    match = _COMPARISON.match(expr.strip())
    if match is None:
        return expr.strip(), None
    lhs = match.group("lhs").strip()
    bare = _QUOTED.sub('""', lhs)
    balanced = all(bare.count(a) == bare.count(b) for a, b in ("()", "{}", "[]"))
    if not lhs or not balanced:
        return expr.strip(), None
    outer = _MATCHERS.sub("{}", bare)
    while (inner := _PARENS.sub("_", outer)) != outer:  # only the top level decides
        outer = inner
    if _SET_OPERATOR.search(outer):
        return expr.strip(), None
    return lhs, Threshold(match.group("op"), float(match.group("num")))


# --- describing a series ---------------------------------------------------------------------


def _n(value: float) -> str:
    if math.isnan(value):
        return "NaN"
    return f"{value:.4g}"


def _clock(ts: float) -> str:
    return datetime.fromtimestamp(ts, UTC).strftime("%H:%M:%S")


def _minutes(seconds: float) -> str:
    minutes = abs(seconds) / 60
    return f"{minutes:.0f} min" if minutes >= 1 else f"{abs(seconds):.0f} s"


def trend(values: FloatArray) -> str:
    """rising / falling / flat / spike, from the first and last quarter of the window."""
    finite = values[np.isfinite(values)]
    if finite.size < 4:
        return "too few points for a trend"
    quarter = max(1, finite.size // 4)
    first, last = float(np.median(finite[:quarter])), float(np.median(finite[-quarter:]))
    spread = float(finite.max() - finite.min())
    if spread == 0:
        return "flat"
    change = f"{last - first:+.4g} from the first to the last quarter of the window"
    relative = (last - first) / spread
    if relative > 0.3:
        return f"rising ({change})"
    if relative < -0.3:
        return f"falling ({change})"
    if float(finite.max()) - max(first, last) > 0.5 * spread:
        return f"spiked and came back ({change})"
    return f"roughly flat ({change})"


def describe(series: Series, at: float, threshold: Threshold | None) -> tuple[str, dict[str, Any]]:
    """Text about one series around the alert start (key fact first) and its numbers."""
    ts, values = series.timestamps, series.values
    finite = np.isfinite(values)
    if not finite.any():
        return "no numeric samples in the window", {}
    before_at = np.nonzero(finite & (ts <= at))[0]
    at_idx = int(before_at[-1]) if before_at.size else int(np.nonzero(finite)[0][0])
    value_at = float(values[at_idx])
    lo, hi = float(np.nanmin(values[finite])), float(np.nanmax(values[finite]))
    hi_ts = float(ts[finite][int(np.argmax(values[finite]))])
    last = float(values[np.nonzero(finite)[0][-1]])
    earlier = values[finite & (ts < at - 60)]
    baseline = float(np.median(earlier)) if earlier.size else math.nan

    first = f"at alert start {_n(value_at)}"
    if threshold is not None:
        first += f" (alert threshold {threshold})"
        breach = threshold.holds(values) & finite
        if breach.any():
            since = float(ts[int(np.argmax(breach))])
            when = "before" if since <= at else "after"
            first += f"; first past the threshold at {_clock(since)} UTC, "
            first += f"{_minutes(at - since)} {when} the alert start"
        else:
            first += "; not past the threshold anywhere in the window"
    if not math.isnan(baseline):
        first += f"; median before the alert {_n(baseline)}"
    direction = trend(values)
    step = float(ts[1] - ts[0]) if ts.size > 1 else 0.0
    lines = [
        first,
        f"min {_n(lo)}, max {_n(hi)} at {_clock(hi_ts)} UTC, last {_n(last)}",
        f"trend: {direction}",
        f"window {_clock(float(ts[0]))}-{_clock(float(ts[-1]))} UTC, "
        f"{int(finite.sum())} points, step {step:g}s",
    ]
    data = {
        "at_start": value_at,
        "min": lo,
        "max": hi,
        "last": last,
        "baseline": None if math.isnan(baseline) else baseline,
        "trend": direction.split(" (")[0],
    }
    return "\n".join(lines), data


def _series_name(series: Series) -> str:
    labels = {k: v for k, v in series.labels.items() if k != "__name__"}
    name = series.labels.get("__name__", "")
    inner = ",".join(label_matcher(k, v) for k, v in sorted(labels.items()))
    return clean_text(f"{name}{{{inner}}}", 300, multiline=False)


def _matches(series: Series, labels: Mapping[str, str]) -> bool:
    return all(labels[k] == v for k, v in series.labels.items() if k in labels and k != "__name__")


# --- past incidents --------------------------------------------------------------------------


@dataclass(frozen=True)
class PastIncident:
    """A resolved incident of the same alert, with what its analysis said."""

    id: str
    key: str
    title: str
    started_at: datetime
    resolved_at: datetime | None
    labels: Mapping[str, str]  # group + common labels
    instances: Sequence[str] = ()
    summary: str = ""
    cause: str = ""
    offline: bool = True

    @property
    def duration(self) -> timedelta | None:
        if self.resolved_at is None:
            return None
        return aware(self.resolved_at) - aware(self.started_at)


HistoryLookup = Callable[[str, str], Awaitable[list[PastIncident]]]
"""(alertname, current incident id) → resolved incidents of that alert, newest first."""


def rank_similar(
    incident: IncidentView, primary: Signal, candidates: Sequence[PastIncident], limit: int
) -> list[PastIncident]:
    """Past incidents whose significant labels do not contradict the primary alert's, best first.

    Same group key weighs most, then a shared instance, then each agreeing significant label.
    """
    wanted = {k: primary.labels[k] for k in SIGNIFICANT_LABELS if primary.labels.get(k)}
    scored: list[tuple[int, float, PastIncident]] = []
    for past in candidates:
        if past.id == incident.id:
            continue
        if any(past.labels.get(k, v) != v for k, v in wanted.items()):
            continue
        score = 4 * (past.key == incident.key) + 2 * (primary.instance in past.instances)
        score += sum(past.labels.get(k) == v for k, v in wanted.items())
        scored.append((score, aware(past.started_at).timestamp(), past))
    scored.sort(key=lambda s: (-s[0], -s[1]))
    return [past for _, _, past in scored[:limit]]


def _history_text(past: PastIncident) -> str:
    duration = past.duration
    lasted = f"lasted {_minutes(duration.total_seconds())}" if duration else "end unknown"
    lines = [
        f"started {aware(past.started_at):%Y-%m-%d %H:%M} UTC, {lasted}",
    ]
    if past.instances:
        lines.append("instances: " + ", ".join(clean_text(i, 80) for i in past.instances[:5]))
    if past.summary:
        source = "offline analysis" if past.offline else "analysis"
        lines.append(f"{source}: {clean_text(past.summary, 500)}")
    if past.cause and not past.offline:
        lines.append(f"cause given: {clean_text(past.cause, 500)}")
    return "\n".join(lines)


# --- gathering -------------------------------------------------------------------------------


@dataclass
class _Query:
    """One range query to run and where its answer goes."""

    promql: str
    fallback: str | None = None  # unscoped expression when the scoped one finds nothing


class ContextGatherer:
    """Builds the evidence bundle for an incident: its own items, PromQL ranges, history."""

    def __init__(
        self,
        prometheus: PrometheusAPI | None,
        *,
        prom_url: str,
        rules: RuleIndex | None = None,
        history: HistoryLookup | None = None,
        query_timeout: float = QUERY_TIMEOUT,
        now: Callable[[], datetime] = utcnow,
    ) -> None:
        self.prometheus = prometheus
        self.prom_url = prom_url
        self.rules = rules or RuleIndex()
        self.history = history
        self.query_timeout = query_timeout
        self.now = now
        self._down_until = 0.0  # monotonic; Prometheus is not asked again before then

    async def gather(self, incident: IncidentView) -> EvidenceBundle:
        started = time.perf_counter()
        bundle = evidence_from_incident(incident, max_group_items=MAX_GROUP_ITEMS)
        primary = primary_signal(incident)
        if primary is None:
            return bundle
        if self.prometheus is not None:
            expr = await self._metrics(bundle, primary)
            if expr is not None:
                await self._causes(bundle, incident, primary, expr)
        if self.history is not None:
            await self._history(bundle, incident, primary)
        bundle.seconds = round(time.perf_counter() - started, 4)
        return bundle

    async def _causes(
        self, bundle: EvidenceBundle, incident: IncidentView, primary: Signal, expr: str
    ) -> None:
        assert self.prometheus is not None
        firing = [s for s in incident.signals if s.status == Status.FIRING] or [primary]
        report = await find_causes(
            self.prometheus,
            [s.labels for s in firing],
            aware(primary.starts_at).timestamp(),
            expr,
            now=self.now().timestamp(),
            query_timeout=self.query_timeout,
            budget=QUERY_BUDGET - bundle.queries,
        )
        bundle.queries += report.queries
        add_candidates(bundle, report, primary)

    # -- prometheus -------------------------------------------------------------------------

    def _expression(self, bundle: EvidenceBundle, primary: Signal) -> str | None:
        if primary.detector is not None and primary.detector.query:
            return clean_text(primary.detector.query, MAX_EXPR, multiline=False)
        # a refused generatorURL expression was noted with the alert; the rules may still know it
        found = generator_expression(primary.generator_url).expr
        if found:
            return found
        expr = self.rules.alerts.get(primary.alertname)
        if expr:
            bundle.add(
                "expression",
                f"alert expression of {clean_text(primary.alertname, 80)} (from the rule files)",
                expr,
                {"expr": expr, "source": "rules"},
            )
            return expr[:MAX_EXPR]
        return None

    def _window(self, primary: Signal) -> tuple[float, float, float, float]:
        at = aware(primary.starts_at).timestamp()
        now = self.now().timestamp()
        start = at - RANGE_BEFORE.total_seconds()
        end = max(min(at + RANGE_AFTER.total_seconds(), now), start + MIN_STEP)
        step = max(MIN_STEP, math.ceil((end - start) / (MAX_POINTS - 1)))
        return at, start, end, step

    async def _range(self, promql: str, start: float, end: float, step: float) -> RangeResult:
        assert self.prometheus is not None
        return await self.prometheus.query_range(
            promql, start, end, step, query_timeout=self.query_timeout
        )

    async def _metrics(self, bundle: EvidenceBundle, primary: Signal) -> str | None:
        """The alert's expression and sibling series; returns the alert's expression ("" when
        unknown), or None when Prometheus did not answer."""
        at, start, end, step = self._window(primary)
        expr = self._expression(bundle, primary)
        value_expr, threshold = split_threshold(expr) if expr else ("", None)
        siblings = [
            (metric, label, what)
            for metric, label, what in SIBLINGS
            if primary.labels.get(label) and metric not in value_expr
        ]
        queries: list[str] = []
        if value_expr:
            queries.append(scoped(value_expr, primary.labels))
        for metric, label, _ in siblings:
            queries.append(f"{metric}{{{label_matcher(label, primary.labels[label])}}}")
        if time.monotonic() < self._down_until:
            # it just failed for another incident: a storm while Prometheus is down (a common
            # pairing) should not wait for connection retries once per incident
            self._unreachable(bundle, f"did not answer in the last {DOWN_SECONDS:g}s")
            return None
        if not queries:
            return expr or ""
        bundle.queries += len(queries)
        answers = await asyncio.gather(
            *(self._range(q, start, end, step) for q in queries), return_exceptions=True
        )
        unavailable = [a for a in answers if isinstance(a, PrometheusUnavailable)]
        if unavailable and len(unavailable) == len(answers):
            self._down_until = time.monotonic() + DOWN_SECONDS
            self._unreachable(bundle, f"did not answer ({type(unavailable[0]).__name__})")
            return None
        for answer in answers:
            if isinstance(answer, BaseException) and not isinstance(answer, PrometheusError):
                raise answer
        if value_expr:
            first = answers[0]
            if isinstance(first, RangeResult) and not first.series:
                # the scoped query found nothing: the series may lack instance/job
                bundle.queries += 1
                try:
                    first = await self._range(value_expr, start, end, step)
                except PrometheusError as err:
                    first = err
            self._add_expression(bundle, primary, value_expr, threshold, first, at)
            answers = answers[1:]
        for (metric, label, what), answer in zip(siblings, answers, strict=True):
            if isinstance(answer, RangeResult) and answer.series:
                self._add_sibling(bundle, primary, metric, label, what, answer, at)
        return expr or ""

    def _unreachable(self, bundle: EvidenceBundle, why: str) -> None:
        # the text is the same whether asked or skipped, so the evidence (and its cache key)
        # does not depend on which incident happened to find Prometheus down first
        bundle.add(
            "note",
            "Prometheus could not be reached",
            f"Prometheus at {mask_url(self.prom_url)} did not answer; no metric history was "
            "gathered, so nothing is known about how the series moved around the alert.",
            {"prometheus": "unreachable", "why": why},
        )

    def _add_expression(
        self,
        bundle: EvidenceBundle,
        primary: Signal,
        expr: str,
        threshold: Threshold | None,
        answer: RangeResult | BaseException,
        at: float,
    ) -> None:
        name = clean_text(primary.alertname or "the alert", 80)
        if isinstance(answer, PrometheusTooLarge):
            bundle.add(
                "note",
                f"the expression of {name} was not read",
                f"{expr}\n{answer.note}",
                {"expr": expr, "error": type(answer).__name__, "limit_bytes": answer.limit},
            )
            return
        if isinstance(answer, BaseException):
            bundle.add(
                "note",
                f"the expression of {name} could not be evaluated",
                clean_text(f"{expr}\n{type(answer).__name__}: {answer}", 600),
                {"expr": expr, "error": type(answer).__name__},
            )
            return
        if not answer.series:
            bundle.add(
                "note",
                f"the expression of {name} returned no data around the alert",
                f"{expr}\nno series between {_clock(answer.start)} and {_clock(answer.end)} UTC",
                {"expr": expr, "series": 0},
            )
            return
        ordered = sorted(answer.series, key=lambda s: not _matches(s, primary.labels))
        parts: list[str] = []
        described: list[dict[str, Any]] = []
        for series in ordered[:MAX_SERIES_SHOWN]:
            text, data = describe(series, at, threshold)
            parts.append(f"{_series_name(series)}:\n{text}")
            described.append({"series": _series_name(series), **data})
        if len(ordered) > MAX_SERIES_SHOWN:
            parts.append(f"({len(ordered) - MAX_SERIES_SHOWN} more series not shown)")
        bundle.add(
            "expression",
            f"{name} expression around the alert start: {expr}",
            "\n".join(parts),
            {
                "expr": expr,
                "threshold": str(threshold) if threshold else None,
                "series": described,
            },
        )
        if answer.dropped:
            bundle.add(
                "note",
                f"the expression of {name} matched more series than were read",
                f"{expr}\n{answer.cap_note}",
                {"expr": expr, "series_read": len(answer.series), "dropped": answer.dropped},
            )

    def _add_sibling(
        self,
        bundle: EvidenceBundle,
        primary: Signal,
        metric: str,
        label: str,
        what: str,
        answer: RangeResult,
        at: float,
    ) -> None:
        # several series (disks by mountpoint): the fullest/highest ones matter most
        ordered = sorted(
            answer.series,
            key=lambda s: -float(np.nanmax(s.values)) if np.isfinite(s.values).any() else 0.0,
        )
        parts: list[str] = []
        described: list[dict[str, Any]] = []
        for series in ordered[:MAX_SERIES_SHOWN]:
            text, data = describe(series, at, None)
            prefix = f"{_series_name(series)}:\n" if len(ordered) > 1 else ""
            parts.append(prefix + text)
            described.append({"series": _series_name(series), **data})
        if answer.dropped:
            parts.append(f"({answer.cap_note})")
        value = clean_text(primary.labels[label], 120, multiline=False)
        bundle.add(
            "sibling",
            f"{what} of {label} {value} ({metric})",
            "\n".join(parts),
            {"metric": metric, "label": label, "value": value, "series": described},
        )

    # -- history ----------------------------------------------------------------------------

    async def _history(
        self, bundle: EvidenceBundle, incident: IncidentView, primary: Signal
    ) -> None:
        assert self.history is not None
        if not primary.alertname:
            return
        candidates = await self.history(primary.alertname, incident.id)
        for past in rank_similar(incident, primary, candidates, MAX_HISTORY):
            bundle.add(
                "history",
                f"past incident: {clean_text(past.title, 120)}",
                _history_text(past),
                {
                    "incident_id": past.id,
                    "duration_seconds": past.duration.total_seconds() if past.duration else None,
                },
            )
