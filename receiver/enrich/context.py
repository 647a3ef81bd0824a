"""The evidence gatherer: the alert's expression as a range around its start, sibling series
of the same instance/job, the ranked cause candidates (causes.py) and similar past incidents
(history.py). Rule files and thresholds live in rules.py, series descriptions in describe.py.

Nothing here stops an analysis: Prometheus down, a bad expression or an empty answer becomes a
`note` item or no item. Queries are bounded (points, series shown, timeout); text is bounded by
the bundle. Label values from alerts are untrusted: they enter PromQL only as quoted strings.
"""

from __future__ import annotations

import asyncio
import logging
import math
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import numpy as np

from receiver.detect.prometheus import (
    PrometheusAPI,
    PrometheusError,
    PrometheusTooLarge,
    PrometheusUnavailable,
    RangeResult,
)
from receiver.detect.promql import (
    generator_expression,
    label_matcher,
    scoped,
)
from receiver.domain import IncidentView, Signal, Status
from receiver.enrich.causes import QUERY_BUDGET, add_candidates, find_causes
from receiver.enrich.describe import clock, describe, matches, series_name, trend
from receiver.enrich.evidence import (
    EvidenceBundle,
    clean_text,
    evidence_from_incident,
    primary_signal,
)
from receiver.enrich.history import (
    SIGNIFICANT_LABELS,
    HistoryLookup,
    PastIncident,
    history_text,
    rank_similar,
)
from receiver.enrich.rules import RuleIndex, Threshold, split_threshold
from receiver.safety import mask_url
from receiver.timeutil import aware

__all__ = [
    "SIGNIFICANT_LABELS",
    "ContextGatherer",
    "HistoryLookup",
    "PastIncident",
    "RuleIndex",
    "Threshold",
    "describe",
    "rank_similar",
    "split_threshold",
    "trend",
]

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


def utcnow() -> datetime:
    return datetime.now(UTC)


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
                f"{expr}\nno series between {clock(answer.start)} and {clock(answer.end)} UTC",
                {"expr": expr, "series": 0},
            )
            return
        ordered = sorted(answer.series, key=lambda s: not matches(s, primary.labels))
        parts: list[str] = []
        described: list[dict[str, Any]] = []
        for series in ordered[:MAX_SERIES_SHOWN]:
            text, data = describe(series, at, threshold)
            parts.append(f"{series_name(series)}:\n{text}")
            described.append({"series": series_name(series), **data})
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
            prefix = f"{series_name(series)}:\n" if len(ordered) > 1 else ""
            parts.append(prefix + text)
            described.append({"series": series_name(series), **data})
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
                history_text(past),
                {
                    "incident_id": past.id,
                    "duration_seconds": past.duration.total_seconds() if past.duration else None,
                },
            )
