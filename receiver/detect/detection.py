"""What the outlier detector is configured with (`DetectorConfig`) and what it answers for one row
(`Detection`) or for a batch of series (`BatchResult`); see `outliers` for the methods."""

from __future__ import annotations

import math
from dataclasses import dataclass, replace
from typing import Literal

import numpy as np
import numpy.typing as npt

from receiver.detect.seasonal import SeasonBatch
from receiver.detect.windows import (
    FloatArray,
)

Method = Literal["range", "robust", "zscore"]

MINUTE = 60.0
HOUR = 3600.0
DAY = 86400.0

DEFAULT_THRESHOLD = 0.5
WARMUP = "warmup"  # Detection.method of a row scored by the warm-up method
WARMUP_REFRESH = 10  # rows between refreshes of the warm-up median / MAD
Z_THRESHOLD = 3.0
Z_WINDOW = 10
SUPPRESSED_FACTOR = 0.5


@dataclass(frozen=True)
class DetectorConfig:
    """Tunables, in seconds where they relate to time (scrape intervals differ)."""

    method: Method = "range"
    threshold: float = DEFAULT_THRESHOLD
    # range / robust: how much history a value is judged against, and the least to judge.
    lookback: float = 14 * DAY
    min_history: float = 1 * DAY
    min_points: int = 12
    # range: rolling-median spans judged beside the raw value (0 = the raw value).
    smooth: tuple[float, ...] = (0.0, 1 * HOUR, 6 * HOUR)
    # "median" resists single spikes; "mean" is O(n) (the batch default).
    smoother: Literal["median", "mean"] = "median"
    # range: alarm when a value lies this fraction of the history's width beyond it.
    range_level: float = 0.1
    # range: seasonal residual from the same phase on up to `season_days` previous cycles
    # (0 = off), for the candidate period in `periods` the history shows (`active_period`).
    season: float = DAY
    season_days: int = 7
    season_min_history: float = 3 * DAY
    periods: tuple[float, ...] = (DAY, 7 * DAY)
    season_cycles: int = 3  # a period is judged once the history holds this many cycles
    season_acf: float = 0.4  # least autocorrelation at the period that counts as seasonal
    season_margin: float = 0.1  # a longer period must beat a shorter one's by this much
    season_refit: float = DAY  # how often the period is re-decided
    season_fit_span: float = 8 * 7 * DAY  # history a period decision looks at
    season_level: float = 2 * DAY  # residual minus its recent median over this span (0 = off)
    # robust: alarm at this robust z.
    robust_level: float = 6.0
    # minimum-variance floor for every scale.
    rel_floor: float = 0.01
    abs_floor: float = 1e-9
    # episodes: hold time before an alarm, quiet time after it, re-arm level (x threshold).
    min_duration: float = 0.0
    suppress: float = 3 * HOUR
    rearm: float = 0.0
    z_window: int = Z_WINDOW
    z_threshold: float = Z_THRESHOLD
    # warm-up: before `min_history`, a robust z over the (at least `warmup_points`) samples so
    # far alarms at `warmup_factor` x z_threshold (stricter: little history, wide tails).
    warmup_points: int = 30
    warmup_factor: float = 3.0
    # calibration: a score counts as far as it is rare for this series (x the share of the
    # series' earlier scores below it), so one threshold transfers across kinds of series
    calibrate: bool = True


DEFAULT_CONFIG = DetectorConfig()
# The seed as it was: no history requirement, no episodes.
SEED_CONFIG = DetectorConfig(method="zscore", min_history=0.0, min_points=Z_WINDOW, suppress=0.0)
# The batch default: the range method with rolling MEANS (O(n)) instead of medians and no
# seasonal residual (a poller's window is rarely days long).
# The poller keeps no per-series history of scores, so it does not calibrate.
BATCH_CONFIG = replace(DEFAULT_CONFIG, smoother="mean", season_days=0, calibrate=False)


@dataclass(frozen=True)
class Detection:
    """One row's score and the band its value was judged against (maps onto DetectorInfo).

    ``band_low`` / ``band_high`` are where the score reaches the threshold; ``score`` is NaN
    when the row could not be scored (too little history, NaN value).
    """

    method: str
    score: float
    threshold: float
    value: float
    baseline: float | None
    band_low: float | None
    band_high: float | None
    timestamp: float
    # the seasonal expectation of the value and its period (None: no season active)
    expected: float | None = None
    period: float | None = None
    # the cached seasonal profile it was judged with (poller only): value per phase bin
    profile: tuple[float, ...] | None = None
    profile_step: float | None = None

    @property
    def flagged(self) -> bool:
        return not math.isnan(self.score) and self.score >= self.threshold


@dataclass(frozen=True)
class BatchResult:
    """Scores of many series on one time grid and the band of each series' last point."""

    method: str
    threshold: float
    timestamps: FloatArray  # (points,)
    values: FloatArray  # (series, points)
    scores: FloatArray  # (series, points), NaN = no score
    baseline: FloatArray  # (series,), last point
    band_low: FloatArray
    band_high: FloatArray
    warming: npt.NDArray[np.bool_]  # (series,), last point scored by the warm-up method
    # the seasonal profiles applied (None: none) and, per series, the expectation of the last
    # point (NaN: no season)
    season: SeasonBatch | None = None
    expected: FloatArray | None = None

    def flagged_last(self) -> npt.NDArray[np.intp]:
        """Indices of the series whose last point is an outlier."""
        last = np.nan_to_num(self.scores[:, -1], nan=0.0)
        return np.flatnonzero(last >= self.threshold)

    def detail(self, series: int) -> Detection:
        """The last point of one series, explained."""
        season = self.season
        seasonal = season is not None and bool(season.active[series])
        profile = step = period = expected = None
        if seasonal and season is not None:
            bins = int(season.bins[series])
            profile = tuple(round(float(v), 9) for v in season.profile[series, :bins])
            step, period = float(season.step[series]), float(season.period[series])
            expected = None if self.expected is None else finite_or_none(self.expected[series])
        return Detection(
            method=WARMUP if self.warming[series] else self.method,
            score=float(self.scores[series, -1]),
            threshold=self.threshold,
            value=float(self.values[series, -1]),
            baseline=finite_or_none(self.baseline[series]),
            band_low=finite_or_none(self.band_low[series]),
            band_high=finite_or_none(self.band_high[series]),
            timestamp=float(self.timestamps[-1]),
            expected=expected,
            period=period,
            profile=profile,
            profile_step=step,
        )


def finite_or_none(x: float | np.floating) -> float | None:
    v = float(x)
    return None if math.isnan(v) else v
