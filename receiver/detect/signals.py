"""Scored series → detector signals with stable episode identity.

A series is identified by its labels, metric name and target (the fingerprint). An outlier
episode opens when a point since the previous cycle is flagged (`recent_flags`), with startsAt =
the first point of that flagged run and the detector's explanation of that point (score, value,
baseline, band). While it stays open the stored startsAt is reused, so a moving window or a
restart never splits it.

It stays open while the series is abnormal: a point flagged since the previous cycle, a latest
score at or above `clear_ratio` x threshold, or a latest value still outside the band the episode
opened against (the range method judges each point against its own recent past, which soon holds
the outlier itself, so the score alone would close a lasting excursion after one cycle). It
resolves when none of these holds, when the latest point is gone (stale), when the series is no
longer returned by a complete cycle, or, for a level shift that lasts, once it has been open
`settle` seconds with a calm score. After an episode ends, the series stays quiet for `suppress`
seconds (the poller's job: it passes the `quiet` fingerprints).
"""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from urllib.parse import quote

import numpy as np
import numpy.typing as npt

from receiver.detect.fetch import SeriesRef
from receiver.detect.outliers import BatchResult, Detection, DetectorConfig, score_batch
from receiver.detect.seasonal import SeasonBatch
from receiver.domain import DetectorInfo, Episode, Severity, Signal, Source, Status
from receiver.ingest.normalise import fingerprint
from receiver.ingest.processor import SignalBatch

TARGET_LABEL = "__target__"  # only inside the fingerprint: one series, one identity per target


@dataclass(frozen=True)
class SignalRules:
    alertname: str = "OutlierDetected"
    severity: Severity = Severity.MEDIUM
    clear_ratio: float = 0.8
    settle: float = 6 * 3600.0  # 0 = a lasting excursion stays open until it ends


@dataclass(frozen=True)
class Flag:
    """A series' first flagged point since the previous cycle, explained."""

    row: int
    start: float  # first point of the flagged run it belongs to (the episode's startsAt)
    detection: Detection


@dataclass
class Plan:
    batches: list[SignalBatch] = field(default_factory=list)
    opened: int = 0
    kept: int = 0
    resolved: int = 0


def series_fingerprint(target: str, ref: SeriesRef) -> str:
    labels = {k: v for k, v in ref.labels.items() if k != "__name__"}
    return fingerprint({**labels, "__name__": ref.metric, TARGET_LABEL: target})


def group_key(target: str, metric: str, instance: str) -> str:
    return f"detector:{target}:{metric}:{instance}"


def at(seconds: float) -> datetime:
    return datetime.fromtimestamp(seconds, UTC)


def run_start(scores: np.ndarray, timestamps: np.ndarray, threshold: float) -> float:
    """The time of the first point of the flagged run that ends at the last point."""
    above = np.nan_to_num(scores, nan=0.0) >= threshold
    below = np.flatnonzero(~above)
    first = int(below[-1]) + 1 if below.size else 0
    return float(timestamps[min(first, timestamps.size - 1)])


def recent_flags(result: BatchResult, span: float) -> dict[int, tuple[int, float]]:
    """Series with a flagged point in the last `span` seconds → (first such row, run start).

    The poller passes its interval plus one step, so no point between two cycles goes unseen
    (a point seen twice is harmless: the episode key dedups it).
    """
    t = result.timestamps
    if t.size == 0:
        return {}
    first = int(np.searchsorted(t, t[-1] - span, side="right"))
    recent = np.nan_to_num(result.scores[:, first:], nan=0.0) >= result.threshold
    out: dict[int, tuple[int, float]] = {}
    for i in np.flatnonzero(recent.any(axis=1)):
        j = first + int(np.argmax(recent[i]))
        out[int(i)] = (j, run_start(result.scores[i, : j + 1], t[: j + 1], result.threshold))
    return out


def explain_flags(
    result: BatchResult,
    values: npt.NDArray[np.float64],
    config: DetectorConfig,
    *,
    span: float,
    prior_low: npt.NDArray[np.float64] | None = None,
    prior_high: npt.NDArray[np.float64] | None = None,
    season: SeasonBatch | None = None,
) -> dict[int, Flag]:
    """`recent_flags` with each flagged point explained. A point before the last is re-scored
    alone on its prefix (scores are causal: the same score), which gives the band it was
    judged against; only flagged series pay for this."""
    last = result.timestamps.size - 1
    flags: dict[int, Flag] = {}
    for i, (j, start) in recent_flags(result, span).items():
        if j == last:
            detection = result.detail(i)
        else:
            prefix = score_batch(
                result.timestamps[: j + 1],
                values[i : i + 1, : j + 1],
                config,
                prior_low=None if prior_low is None else prior_low[i : i + 1],
                prior_high=None if prior_high is None else prior_high[i : i + 1],
                season=None if season is None else season.take(slice(i, i + 1)),
            )
            detection = prefix.detail(0)
        flags[i] = Flag(j, start, detection)
    return flags


def _outside(stored: DetectorInfo | None, value: float) -> bool:
    """Whether `value` lies outside the band an episode opened against (unknown band: no)."""
    if stored is None:
        return False
    low, high = stored.band_low, stored.band_high
    return (low is not None and value < low) or (high is not None and value > high)


def _num(value: float | None) -> str:
    return "n/a" if value is None or math.isnan(value) else f"{value:.6g}"


def _reason(metric: str, d: Detection) -> str:
    season = ""
    if d.expected is not None and d.period is not None:
        season = f"expected {_num(d.expected)} at this time of {_period_name(d.period)}; "
    return (
        f"{metric} = {_num(d.value)} outside [{_num(d.band_low)}, {_num(d.band_high)}] "
        f"({season}baseline {_num(d.baseline)}; {d.method} score {_num(d.score)} "
        f">= {d.threshold:g})"
    )


def _period_name(seconds: float) -> str:
    return {86400.0: "day", 604800.0: "week"}.get(seconds, f"{seconds:g}s cycle")


class SignalBuilder:
    """Turns one target's scored cycle into SignalBatches (one per synthetic group key)."""

    def __init__(self, target: str, url: str, rules: SignalRules) -> None:
        self.target = target
        self.url = url
        self.rules = rules

    def plan(
        self,
        refs: Sequence[SeriesRef],
        result: BatchResult | None,
        open_episodes: Mapping[str, Episode],
        *,
        flags: Mapping[int, Flag],
        quiet: set[str],
        complete: bool,
        end: datetime,
    ) -> Plan:
        """Signals for one cycle ending at `end`.

        `result` scores `refs` (None when nothing was returned); `flags` are the series (by row)
        with a flagged point since the previous cycle; `open_episodes` are the stored firing
        episodes by fingerprint; `quiet` fingerprints may not open an episode now; `complete`
        says every selector answered, so open series missing from `refs` are gone.
        """
        plan = Plan()
        groups: dict[str, list[Signal]] = defaultdict(list)
        seen: set[str] = set()
        if result is not None:
            self._scored(refs, result, flags, open_episodes, quiet, end, plan, groups, seen)
        if complete:
            for fp, episode in open_episodes.items():
                if fp not in seen:
                    groups[episode.group_key].append(_resolved(episode, end))
                    plan.resolved += 1
        plan.batches = [self._batch(k, signals) for k, signals in sorted(groups.items())]
        return plan

    def _scored(
        self,
        refs: Sequence[SeriesRef],
        result: BatchResult,
        flags: Mapping[int, Flag],
        open_episodes: Mapping[str, Episode],
        quiet: set[str],
        end: datetime,
        plan: Plan,
        groups: dict[str, list[Signal]],
        seen: set[str],
    ) -> None:
        for i, ref in enumerate(refs):
            fp = series_fingerprint(self.target, ref)
            seen.add(fp)
            episode = open_episodes.get(fp)
            flag = flags.get(i)
            if episode is not None:
                latest = result.detail(i)
                if self._abnormal(episode, latest, flag is not None, end):
                    signal = self._firing(fp, ref, latest, episode.starts_at)
                    plan.kept += 1
                else:
                    signal = _resolved(episode, end)
                    plan.resolved += 1
                groups[episode.group_key].append(signal)
            elif flag is not None and fp not in quiet:
                key = group_key(self.target, ref.metric, ref.instance)
                groups[key].append(self._firing(fp, ref, flag.detection, at(flag.start)))
                plan.opened += 1

    def _abnormal(self, episode: Episode, latest: Detection, flagged: bool, end: datetime) -> bool:
        if math.isnan(latest.value):
            return False  # stale: the series is gone
        if flagged or math.isnan(latest.score):
            return True  # a fresh outlier, or no verdict this cycle: keep what we have
        if latest.score >= self.rules.clear_ratio * latest.threshold:
            return True
        if not _outside(episode.detector, latest.value):
            return False
        age = (end - episode.starts_at).total_seconds()
        return self.rules.settle <= 0 or age < self.rules.settle

    def fingerprints(self, refs: Sequence[SeriesRef], rows: Iterable[int]) -> list[str]:
        return [series_fingerprint(self.target, refs[i]) for i in rows]

    def _firing(self, fp: str, ref: SeriesRef, d: Detection, starts: datetime) -> Signal:
        metric = ref.metric
        query = ref.selector.series_expr(ref.labels)
        labels = {k: v for k, v in ref.labels.items() if k != "__name__"}
        labels["alertname"] = self.rules.alertname
        labels.setdefault("metric", metric)
        labels.setdefault("severity", self.rules.severity.value)
        reason = _reason(metric, d)
        return Signal(
            source=Source.DETECTOR,
            fingerprint=fp,
            status=Status.FIRING,
            starts_at=starts,
            labels=labels,
            annotations={
                "summary": reason,
                "score": _num(d.score),
                "baseline": _num(d.baseline),
                "band": f"[{_num(d.band_low)}, {_num(d.band_high)}]",
                "query": query,
            },
            generator_url=f"{self.url}/graph?g0.expr={quote(query, safe='')}&g0.tab=0",
            alertname=self.rules.alertname,
            instance=ref.instance,
            severity=self.rules.severity,
            metric=metric,
            value=None if math.isnan(d.value) else d.value,
            reason=reason,
            detector=DetectorInfo(
                method=d.method,
                score=d.score,
                threshold=d.threshold,
                value=d.value,
                baseline=d.baseline,
                band_low=d.band_low,
                band_high=d.band_high,
                query=query,
                target=self.target,
                expected=d.expected,
                period_seconds=d.period,
                onset=starts.isoformat(),
                season_profile=None if d.profile is None else list(d.profile),
                season_step=d.profile_step,
            ),
        )

    def _batch(self, key: str, signals: list[Signal]) -> SignalBatch:
        first = signals[0]
        common = dict(first.labels)
        for s in signals[1:]:
            common = {k: v for k, v in common.items() if s.labels.get(k) == v}
        return SignalBatch(
            source=Source.DETECTOR,
            group_key=key,
            signals=signals,
            receiver="detector",
            group_labels={
                "target": self.target,
                "metric": first.metric,
                "instance": first.instance,
            },
            common_labels=common,
            external_url=self.url,
        )


def _resolved(episode: Episode, end: datetime) -> Signal:
    return episode.signal().model_copy(
        update={
            "source": Source.DETECTOR,
            "status": Status.RESOLVED,
            "ends_at": max(end, episode.starts_at),
        }
    )
