"""The poller's configuration (`PollerConfig`), what one cycle of one target reports
(`CycleReport`: its snapshot, with the sample) and how a cycle's error is named."""

from __future__ import annotations

import math
import os
import socket
import uuid
from dataclasses import dataclass, field, replace
from datetime import timedelta

import numpy as np

from receiver.detect.fetch import Fetched, PriorSpec, SeriesRef, label_key
from receiver.detect.outliers import (
    BATCH_CONFIG,
    DEFAULT_THRESHOLD,
    BatchResult,
    DetectorConfig,
)
from receiver.detect.prometheus import (
    PrometheusError,
    PrometheusProtocolError,
    PrometheusQueryError,
    PrometheusUnavailable,
)
from receiver.detect.seasonal import SeasonSpec
from receiver.detect.selection import (
    load_recorded,
    matchers,
)
from receiver.detect.signals import SignalRules
from receiver.domain import Severity
from receiver.records import SnapshotRecord
from receiver.settings import Settings
from receiver.store.repo import StoreError

SAMPLE_SIZE = 10  # series per snapshot (highest scores first)
LEASE_PREFIX = "poll:"


@dataclass(frozen=True)
class PollerConfig:
    interval: float
    detector: DetectorConfig
    rules: SignalRules = field(default_factory=SignalRules)
    selectors: str = ""
    include_internal: bool = False
    recorded: frozenset[str] = frozenset()
    derived: frozenset[str] = frozenset()
    max_series: int = 10_000
    # one answer's size: 10,000 series x 121 points is ~35 MB of JSON; evidence queries get 2 MB
    max_bytes: int = 256 * 1024 * 1024
    window: float = 7200.0
    step: float = 60.0
    min_history: float = 86400.0
    rate_window: float = 300.0
    suppress: float = 3600.0
    query_timeout: float = 30.0
    max_docs: int = 10_000
    # seasonal profiles (range method only; None = off)
    season: SeasonSpec | None = None

    @classmethod
    def from_settings(cls, s: Settings) -> PollerConfig:
        # robust / zscore judge the window only: more history than it holds would never come
        min_history = s.detect_min_history
        if s.detect_method != "range":
            min_history = min(min_history, s.detect_window)
        detector = replace(
            BATCH_CONFIG,
            method=s.detect_method,
            threshold=DEFAULT_THRESHOLD if s.detect_threshold is None else s.detect_threshold,
            lookback=s.detect_lookback,
            min_history=min_history,
            min_duration=s.detect_min_duration,
            # the poller keeps episodes itself (open while abnormal, quiet after): no damping
            suppress=0.0,
            rearm=0.0,
            z_threshold=s.z_threshold,
        )
        recorded, derived = load_recorded(s.detect_rules_dir)
        return cls(
            interval=float(s.monitor_interval),
            detector=detector,
            rules=SignalRules(
                alertname=s.detect_alertname,
                severity=Severity(s.detect_severity),
                clear_ratio=s.detect_clear_ratio,
                settle=s.detect_settle,
            ),
            selectors=s.detect_selectors,
            include_internal=s.detect_include_internal,
            recorded=recorded,
            derived=derived,
            max_series=s.detect_max_series,
            window=s.detect_window,
            step=s.detect_step,
            min_history=min_history,
            rate_window=s.detect_rate_window,
            suppress=s.detect_suppress,
            query_timeout=s.detect_query_timeout,
            max_docs=s.max_docs,
            season=SeasonSpec(span=s.detect_season_span, refit=s.detect_season_refit)
            if s.detect_season_span > 0 and s.detect_method == "range"
            else None,
        )

    @property
    def lease_ttl(self) -> timedelta:
        """Long enough to survive a slow cycle; a dead holder's targets move within it."""
        return timedelta(seconds=max(3 * self.interval, 15.0))

    @property
    def prior(self) -> PriorSpec | None:
        if self.detector.method != "range" or self.detector.lookback <= self.window:
            return None
        return PriorSpec(self.detector.lookback, self.min_history, self.step)


class CycleReport(SnapshotRecord):
    """What one cycle of one target reports: the snapshot the poller stores, filled in as the
    cycle goes (its fields are the snapshot's, so they are listed once)."""


SeasonKey = tuple[str, str, tuple[tuple[str, str], ...]]


def season_key(target: str, ref: SeriesRef) -> SeasonKey:
    return (target, ref.selector.expr, label_key(ref.labels))


def holder_id() -> str:
    return f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"


def error_kind(err: Exception) -> str:
    if isinstance(err, PrometheusUnavailable):
        return "unavailable"
    if isinstance(err, PrometheusQueryError):
        return "query"
    if isinstance(err, PrometheusProtocolError | PrometheusError):
        return "protocol"
    if isinstance(err, StoreError):
        return "store"
    return "internal"


def _finite(x: float) -> float | None:
    return None if math.isnan(x) or math.isinf(x) else round(x, 6)


def warming_names(fetched: Fetched, result: BatchResult) -> list[str]:
    """Names of the first `SAMPLE_SIZE` series the warm-up method judged this cycle (metric
    and labels: a custom selector's expression alone would not say which of its series)."""
    rows = np.flatnonzero(result.warming)[:SAMPLE_SIZE]
    refs = [fetched.refs[int(i)] for i in rows]
    return [ref.metric + matchers(ref.labels) for ref in refs]


def snapshot_sample(fetched: Fetched, result: BatchResult) -> list[dict[str, object]]:
    last = np.nan_to_num(result.scores[:, -1], nan=-1.0)
    top = np.argsort(-last, kind="stable")[:SAMPLE_SIZE]
    out: list[dict[str, object]] = []
    for i in top:
        ref = fetched.refs[int(i)]
        score = float(result.scores[int(i), -1])
        out.append(
            {
                "metric": ref.metric,
                "instance": ref.instance,
                "labels": {k: v for k, v in ref.labels.items() if k != "__name__"},
                "value": _finite(float(result.values[int(i), -1])),
                "score": _finite(score),
                "flagged": bool(not math.isnan(score) and score >= result.threshold),
                "warming": bool(result.warming[int(i)]),
            }
        )
    return out
