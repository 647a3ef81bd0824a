"""Streaming-honest outlier scores for metric series: pure numpy, no I/O.

The score of row ``i`` depends only on rows ``0..i``. Scores lie in [0, 1] and a row is an
outlier when its score is ``>= threshold`` (``DEFAULT_THRESHOLD``). Each method measures an
"excess" ``e`` and reports ``e / (e + level)``, so a score of 0.5 means "``e`` reached the
method's alarm level", whatever the method.

Methods (``DetectorConfig.method``):

- ``range`` (default): how far the value, and short rolling medians of it, lie beyond the
  range the series' own history showed over ``lookback``, relative to the width of that range
  (scale-free, no distribution assumption, one threshold fits every series). Once
  ``season_min_history`` of data exists, also the residual from the median of the same time of
  day on previous days, judged against the range of past residuals the same way.
- ``robust``: median/MAD z-score over ``lookback``, alarm at ``robust_level``.
- ``zscore``: the seed's z-score against the previous ``Z_WINDOW`` values, alarm at
  ``Z_THRESHOLD``.

Every method floors its scale (``rel_floor`` x level, ``abs_floor``) so a flat series does not
alarm on rounding noise. Rows with too little history (``min_history`` seconds and
``min_points`` samples) or a NaN value get no score (NaN internally, 0 from ``score_series``),
never an alarm. Alarms go through an episode filter (``_episodes``): an alarm needs the excess
to hold ``min_duration``; afterwards scores are damped (x ``SUPPRESSED_FACTOR``) for
``suppress`` seconds AND until the score has dropped below ``rearm`` x threshold
(hysteresis), so one event pages once.
"""

from __future__ import annotations

import bisect
import math
import os
import warnings
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, replace
from typing import Any, Literal

import numpy as np
import numpy.typing as npt

from receiver.detect.seasonal import SeasonBatch
from receiver.detect.windows import (
    FloatArray,
    IntArray,
    PrefixSums,
    nanmedian_last,
    past_extreme,
    rolling_mean,
    rolling_median,
    stack_window,
    to_seconds,
    window_start,
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
            expected = None if self.expected is None else _opt(self.expected[series])
        return Detection(
            method=WARMUP if self.warming[series] else self.method,
            score=float(self.scores[series, -1]),
            threshold=self.threshold,
            value=float(self.values[series, -1]),
            baseline=_opt(self.baseline[series]),
            band_low=_opt(self.band_low[series]),
            band_high=_opt(self.band_high[series]),
            timestamp=float(self.timestamps[-1]),
            expected=expected,
            period=period,
            profile=profile,
            profile_step=step,
        )


def _opt(x: float | np.floating) -> float | None:
    v = float(x)
    return None if math.isnan(v) else v


@dataclass
class _Scored:
    """Time-major (points, series) score and alarm band; `warm` marks warm-up rows."""

    score: FloatArray
    baseline: FloatArray
    band_low: FloatArray
    band_high: FloatArray
    warm: npt.NDArray[np.bool_] | None = None
    expected: FloatArray | None = None  # seasonal expectation (NaN: no season active)
    period: FloatArray | None = None  # its period in seconds

    @classmethod
    def empty(cls, shape: tuple[int, ...]) -> _Scored:
        return cls(*(np.full(shape, np.nan) for _ in range(4)))

    def is_warm(self, i: int) -> bool:
        return self.warm is not None and bool(self.warm.reshape(self.warm.shape[0], -1)[i, 0])


@dataclass(frozen=True)
class _Prior:
    """Per-series extremes seen before the first point (e.g. max_over_time in Prometheus)."""

    low: FloatArray  # (series,), NaN = unknown
    high: FloatArray

    @property
    def known(self) -> npt.NDArray[np.bool_]:
        return np.isfinite(self.low) & np.isfinite(self.high)


def _ratio(e: FloatArray, level: float) -> FloatArray:
    with np.errstate(invalid="ignore"):
        return np.asarray(e / (e + level), dtype=np.float64)


def _scale_floor(scale: FloatArray, center: FloatArray, cfg: DetectorConfig) -> FloatArray:
    return np.fmax(np.fmax(scale, cfg.rel_floor * np.abs(center)), cfg.abs_floor)


def _enough(
    count: npt.NDArray[np.floating[Any] | np.integer[Any]], t: FloatArray, cfg: DetectorConfig
) -> npt.NDArray[np.bool_]:
    old = (t - t[0] >= cfg.min_history).reshape(-1, *([1] * (count.ndim - 1)))
    res: npt.NDArray[np.bool_] = (count >= cfg.min_points) & old
    return res


# --------------------------------------------------------------------------- seasonality


def _regular(x: FloatArray, t: FloatArray) -> tuple[FloatArray, float]:
    """x on a regular grid at its median spacing (bin means, gaps interpolated)."""
    step = float(np.median(np.diff(t))) if t.size > 1 else 0.0
    if step <= 0:
        return x, 0.0
    idx = np.floor((t - t[0]) / step + 0.5).astype(np.intp)
    n = int(idx[-1]) + 1
    sums = np.bincount(idx, weights=np.nan_to_num(x), minlength=n)
    cnt = np.bincount(idx, weights=(~np.isnan(x)).astype(np.float64), minlength=n)
    with np.errstate(invalid="ignore", divide="ignore"):
        y = sums / cnt
    ok = cnt > 0
    if ok.sum() < 2:
        return y, step
    rows = np.arange(n)
    return np.interp(rows, rows[ok], y[ok]), step


def season_strength(x: FloatArray, t: FloatArray, period: float, cycles: int) -> float:
    """Autocorrelation at one period of the ranks of x after removing a moving average one
    period long (a slow drift or level shift is not seasonality); NaN when the history holds
    fewer than `cycles` periods. Ranks keep a few spikes from hiding a daily pattern."""
    from statsmodels.tsa.stattools import acf  # heavy import: only when a fit runs

    keep = ~np.isnan(x)
    x, t = x[keep], t[keep]
    if t.size < 4 or t[-1] - t[0] < cycles * period:
        return math.nan
    y, step = _regular(x, t)
    lag = round(period / step) if step > 0 else 0
    if lag < 4 or y.size < 2 * lag + 4:
        return math.nan
    c = np.concatenate(([0.0], np.cumsum(y)))
    trend = (c[lag:] - c[:-lag]) / lag  # mean of y[j : j + lag]
    half = lag // 2
    resid = y[half : half + trend.size] - trend
    ranks = np.argsort(np.argsort(resid, kind="stable"), kind="stable").astype(np.float64)
    if np.ptp(ranks) == 0:
        return math.nan
    slack = max(1, lag // 50)
    r = acf(ranks, nlags=lag + slack, fft=True, adjusted=True)
    return float(np.max(r[lag - slack : lag + slack + 1]))


def active_period(x: FloatArray, t: FloatArray, cfg: DetectorConfig) -> FloatArray:
    """Per row, the season (seconds) its seasonal residual uses, 0 = none.

    Decided once per `season_refit` from the rows BEFORE each refit time only (causal): the
    candidate in `periods` with the strongest `season_strength`, if it reaches `season_acf`.
    """
    out = np.zeros(t.size)
    if t.size < 2 or not cfg.periods:
        return out
    epoch = np.floor((t - t[0]) / cfg.season_refit)
    for e in np.unique(epoch):
        if e == 0:
            continue
        rows = np.flatnonzero(epoch == e)
        cut = t[0] + e * cfg.season_refit
        past = t < cut
        since = np.searchsorted(t, cut - cfg.season_fit_span, side="left")
        hx, ht = x[since:][past[since:]], t[since:][past[since:]]
        best, strength = 0.0, cfg.season_acf
        for p in cfg.periods:
            s = season_strength(hx, ht, p, cfg.season_cycles)
            # a longer period must beat a shorter one clearly: a daily pattern repeats weekly too
            if not math.isnan(s) and s >= strength:
                best, strength = p, s + (cfg.season_margin if best else 0.0)
        out[rows] = best
    return out


# --------------------------------------------------------------------------- range


def _range_excess(
    f: FloatArray, start: IntArray, cfg: DetectorConfig, prior: _Prior | None
) -> tuple[FloatArray, FloatArray, FloatArray]:
    """Excess of f beyond [min, max] of its own past (rows start..i-1), relative to the width.

    Returns (excess, min, max); the excess is NaN where the past is empty.
    """
    fmin = past_extreme(f, start, np.fmin)
    fmax = past_extreme(f, start, np.fmax)
    if prior is not None:
        np.fmin(fmin, prior.low, out=fmin)
        np.fmax(fmax, prior.high, out=fmax)
    width = _width(fmin, fmax, cfg)
    e = f - fmax
    np.fmax(e, fmin - f, out=e)
    e /= width
    np.maximum(e, 0.0, out=e)
    return e, fmin, fmax


def _width(fmin: FloatArray, fmax: FloatArray, cfg: DetectorConfig) -> FloatArray:
    """max - min, floored at rel_floor x |level| and abs_floor (minimum-variance floor)."""
    level = np.fmax(np.abs(fmin), np.abs(fmax))
    level *= cfg.rel_floor
    np.fmax(level, fmax - fmin, out=level)
    np.fmax(level, cfg.abs_floor, out=level)
    return level


def _seasonal_baseline(x: FloatArray, t: FloatArray, period: float, cycles: int) -> FloatArray:
    """Median of the samples at the same phase on up to `cycles` previous periods."""
    n = x.shape[0]
    rows = np.arange(n)
    # local spacing around each past sample (rows <= i only, so causal)
    gap = np.diff(t, prepend=t[:1])
    spacing = np.maximum(gap, np.r_[gap[1:], 0.0]) if n else gap
    picks = np.full((*x.shape, cycles), np.nan)
    for d in range(1, cycles + 1):
        target = t - d * period
        j = np.clip(np.searchsorted(t, target), 0, n - 1)
        jm = np.clip(j - 1, 0, n - 1)
        j = np.where(np.abs(t[jm] - target) < np.abs(t[j] - target), jm, j)
        ok = (np.abs(t[j] - target) <= np.maximum(spacing[j] / 2, 1.0)) & (j < rows)
        picks[ok, ..., d - 1] = x[j[ok]]
    return nanmedian_last(picks)


def _seasonal_expectation(x: FloatArray, t: FloatArray, period: float, cycles: int) -> FloatArray:
    """Level + season: the mean of the last period before each row (rows < i) plus the median
    of the same phase's deviation from its own such level on up to `cycles` previous periods.

    Both terms lag a linear drift by the same amount, so a drift cancels out of the expectation
    (a plain same-phase median lags it by half the cycles it spans)."""
    n = t.size
    level = PrefixSums(x).mean(window_start(t, period, closed=True), np.arange(n, dtype=np.intp))
    return level + _seasonal_baseline(x - level, t, period, cycles)


def _seasonal_excess(
    x: FloatArray, t: FloatArray, start: IntArray, cfg: DetectorConfig
) -> tuple[FloatArray, FloatArray, FloatArray, FloatArray, FloatArray]:
    """Range excess of the residual from the seasonal baseline of each row's active period
    (NaN where none is active): (excess, residual min, residual max, baseline, period)."""
    shape = x.shape
    cols = x.reshape(shape[0], -1)
    out = [np.full(cols.shape, np.nan) for _ in range(5)]
    for c in range(cols.shape[1]):
        xc = cols[:, c]
        period = active_period(xc, t, cfg) if cfg.periods else np.full(t.size, cfg.season)
        for p in np.unique(period[period > 0]):
            base = _seasonal_expectation(xc, t, float(p), cfg.season_days)
            resid = xc - base
            if cfg.season_level > 0:
                lvl = rolling_median(resid, t, cfg.season_level)
                resid = resid - np.r_[np.nan, lvl[:-1]]
                base = xc - resid
            e, fmin, fmax = _range_excess(resid, start, cfg, None)
            # the residual's own range needs `season_min_history` of residuals before it judges one
            valid = np.flatnonzero(~np.isnan(resid))
            born = t[valid[0]] if valid.size else math.inf
            rows = (period == p) & (t - t[0] >= cfg.season_min_history)
            rows &= t - born >= cfg.season_min_history
            for arr, val in zip(out, (e, fmin, fmax, base, period), strict=True):
                arr[rows, c] = val[rows]
    e, fmin, fmax, base, period = (a.reshape(shape) for a in out)
    return e, fmin, fmax, base, period


def _score_range(
    x: FloatArray, t: FloatArray, cfg: DetectorConfig, prior: _Prior | None
) -> _Scored:
    """Largest excess over the scales (raw, rolling medians, seasonal residual)."""
    smooth = rolling_median if cfg.smoother == "median" else rolling_mean
    start = window_start(t, cfg.lookback, closed=True)
    prefix = PrefixSums(x)
    enough = _enough(prefix.count(start, np.arange(t.size, dtype=np.intp)), t, cfg)
    if prior is not None:
        enough |= prior.known
    with np.errstate(invalid="ignore"):
        best = np.full(x.shape, -np.inf)
        lo = np.full(x.shape, np.nan)
        hi = np.full(x.shape, np.nan)
        offset = np.zeros(x.shape)
        expected = period = None
        for span in cfg.smooth:
            e, fmin, fmax = _range_excess(smooth(x, t, span, prefix), start, cfg, prior)
            win = e > best
            np.copyto(best, e, where=win)
            np.copyto(lo, fmin, where=win)
            np.copyto(hi, fmax, where=win)
        if cfg.season_days > 0 and t.size and t[-1] - t[0] >= cfg.season_min_history:
            e, fmin, fmax, base, period = _seasonal_excess(x, t, start, cfg)
            expected = base
            win = e > best
            np.copyto(best, e, where=win)
            np.copyto(lo, fmin, where=win)
            np.copyto(hi, fmax, where=win)
            np.copyto(offset, base, where=win)
        best[~enough | np.isnan(x) | (best == -np.inf)] = np.nan
        margin = cfg.range_level * _width(lo, hi, cfg)
        return _Scored(
            _ratio(best, cfg.range_level),
            offset + 0.5 * (lo + hi),
            offset + lo - margin,
            offset + hi + margin,
            expected=expected,
            period=period,
        )


# --------------------------------------------------------------------------- robust / seed


def _score_robust(x: FloatArray, t: FloatArray, cfg: DetectorConfig) -> _Scored:
    stack = stack_window(x, t, cfg.lookback, include_current=False)
    med = nanmedian_last(stack)
    mad = 1.4826 * nanmedian_last(np.abs(stack - med[..., None]))
    enough = _enough((~np.isnan(stack)).sum(axis=-1), t, cfg)
    scale = _scale_floor(mad, med, cfg)
    with np.errstate(invalid="ignore"):
        z = np.abs(x - med) / scale
    z[~enough] = np.nan
    k = cfg.robust_level
    return _Scored(_ratio(z, k), med, med - k * scale, med + k * scale)


def _score_zscore(x: FloatArray, cfg: DetectorConfig) -> _Scored:
    """The seed: z of each value against mean/std of the previous `z_window` values."""
    n, w = x.shape[0], cfg.z_window
    out = _Scored.empty(x.shape)
    if n <= w:
        return out
    win = np.lib.stride_tricks.sliding_window_view(x, w, axis=0)[: n - w]
    mean, std = win.mean(axis=-1), win.std(axis=-1)
    dev = np.abs(x[w:] - mean)
    with np.errstate(all="ignore"):
        z = np.where(std > 0, dev / std, np.where(dev > 0, np.inf, 0.0))
        out.score[w:] = np.where(np.isinf(z), 1.0, z / (z + cfg.z_threshold))
    out.baseline[w:] = mean
    out.band_low[w:] = mean - cfg.z_threshold * std
    out.band_high[w:] = mean + cfg.z_threshold * std
    return out


# --------------------------------------------------------------------------- warm-up


def _warmup(res: _Scored, x: FloatArray, t: FloatArray, cfg: DetectorConfig) -> None:
    """In place: rows younger than `min_history` that the main method left unscored get a
    robust z of the value against median / MAD of the series' samples so far (rows < i, at
    least `warmup_points`), alarming at `warmup_factor` x `z_threshold`."""
    if cfg.min_history <= 0 or cfg.warmup_points <= 0 or t.size == 0:
        return
    young = int(np.searchsorted(t, t[0] + cfg.min_history, side="left"))
    if young <= cfg.warmup_points:
        return
    score = res.score.reshape(t.size, -1)
    xs = x.reshape(t.size, -1)
    warm = np.zeros(score.shape, dtype=bool)
    count = np.cumsum(~np.isnan(xs), axis=0)
    level = cfg.warmup_factor * cfg.z_threshold
    outs = [a.reshape(t.size, -1) for a in (res.baseline, res.band_low, res.band_high)]
    ref_at, ref = -1, (np.empty(0), np.empty(0))
    for i in range(cfg.warmup_points, young):
        cols = np.flatnonzero(
            np.isnan(score[i]) & ~np.isnan(xs[i]) & (count[i - 1] >= cfg.warmup_points)
        )
        if cols.size == 0:
            continue
        # median / MAD of the rows before the latest refresh point (every WARMUP_REFRESH rows):
        # one per row and series would cost ~50 s for 100k new series
        c = cfg.warmup_points + (i - cfg.warmup_points) // WARMUP_REFRESH * WARMUP_REFRESH
        if c != ref_at:
            ref_at, ref = c, _median_mad(xs[:c])
        med, mad = ref[0][cols], ref[1][cols]
        scale = _scale_floor(mad, med, cfg)
        with np.errstate(invalid="ignore"):
            z = np.abs(xs[i, cols] - med) / scale
        ok = ~np.isnan(z)
        cols, z, med, scale = cols[ok], z[ok], med[ok], scale[ok]
        score[i, cols] = _ratio(z, level)
        outs[0][i, cols] = med
        outs[1][i, cols] = med - level * scale
        outs[2][i, cols] = med + level * scale
        warm[i, cols] = True
    res.warm = warm.reshape(x.shape)


def _median_mad(past: FloatArray) -> tuple[FloatArray, FloatArray]:
    """Column-wise median and 1.4826 x MAD ignoring NaN, by sorting (np.nanmedian loops)."""
    med = _sorted_median(past)
    return med, 1.4826 * _sorted_median(np.abs(past - med))


def _sorted_median(a: FloatArray) -> FloatArray:
    srt = np.sort(a, axis=0)  # NaN sorts last
    n = (~np.isnan(a)).sum(axis=0)
    lo = np.take_along_axis(srt, np.maximum((n - 1) // 2, 0)[None, :], axis=0)[0]
    hi = np.take_along_axis(srt, np.maximum(n // 2, 0)[None, :], axis=0)[0]
    out: FloatArray = np.where(n > 0, 0.5 * (lo + hi), np.nan)
    return out


# --------------------------------------------------------------------------- episodes


def _episodes(score: FloatArray, t: FloatArray, cfg: DetectorConfig) -> None:
    """In place: hold `min_duration` before alarming, then damp until quiet and re-armed.

    Sequential over time, vectorised over series; rows where nothing is above the threshold
    and no hold is running are skipped.
    """
    if cfg.suppress <= 0 and cfg.min_duration <= 0 and cfg.rearm <= 0:
        return
    flat = score.reshape(score.shape[0], -1)  # a view: the caller's array is contiguous
    if not np.shares_memory(flat, score):  # pragma: no cover - defensive
        raise ValueError("score must be contiguous")
    filled = np.nan_to_num(flat, nan=0.0)
    above = filled >= cfg.threshold
    rearm = filled < cfg.rearm * cfg.threshold if cfg.rearm > 0 else None
    shape = flat.shape[1:]
    run_start = np.full(shape, np.inf)
    quiet_until = np.full(shape, -np.inf)
    armed = np.ones(shape, dtype=bool)
    busy: npt.NDArray[np.bool_] = np.asarray(above.any(axis=1))
    holding = cfg.min_duration > 0
    for i in range(flat.shape[0]):
        if rearm is not None:
            armed |= rearm[i]
        if not busy[i]:
            if holding:
                run_start[...] = np.inf
            continue
        a = above[i]
        if holding:
            run_start = np.where(a, np.fmin(run_start, t[i]), np.inf)
            held = a & (t[i] - run_start >= cfg.min_duration)
        else:
            held = a
        fire = held & armed & (t[i] >= quiet_until)
        np.multiply(flat[i], SUPPRESSED_FACTOR, out=flat[i], where=a & ~fire)
        np.copyto(quiet_until, t[i] + cfg.suppress, where=fire)
        if rearm is not None:
            armed &= ~fire


# --------------------------------------------------------------------------- public API


def _score_matrix(
    t: FloatArray, x: FloatArray, cfg: DetectorConfig, prior: _Prior | None = None
) -> _Scored:
    """Score a time-major (points, series) matrix."""
    if cfg.method == "range":
        res = _score_range(x, t, cfg, prior)
    elif cfg.method == "robust":
        res = _score_robust(x, t, cfg)
    else:
        res = _score_zscore(x, cfg)
    _warmup(res, x, t, cfg)
    _episodes(res.score, t, cfg)
    if cfg.calibrate:
        _calibrate(res.score)
    return res


def _calibrate(score: FloatArray) -> None:
    """In place, per series: score x the share of its earlier rows that scored lower (rows
    without a score count as 0). A level a series reaches often is damped; a rare one keeps
    its score. Causal: row i looks at rows < i only."""
    flat = score.reshape(score.shape[0], -1)
    for c in range(flat.shape[1]):
        col = flat[:, c]
        seen: list[float] = []
        for i, v in enumerate(col.tolist()):
            if v != v:  # NaN: no score, and a 0 in the history
                bisect.insort(seen, 0.0)
                continue
            if v > 0:
                col[i] = v * (bisect.bisect_left(seen, v) / len(seen) if seen else 0.0)
            bisect.insort(seen, v)


def _prepare(timestamps: npt.ArrayLike, values: npt.ArrayLike) -> tuple[FloatArray, FloatArray]:
    t = to_seconds(timestamps).reshape(-1)
    x = np.asarray(values, dtype=np.float64).reshape(-1)
    if x.size != t.size:
        raise ValueError(f"{t.size} timestamps for {x.size} values")
    return t, np.where(np.isfinite(x), x, np.nan)


def score_detail(
    timestamps: npt.ArrayLike, values: npt.ArrayLike, config: DetectorConfig = DEFAULT_CONFIG
) -> list[Detection]:
    """Every row's score and band (NaN score = not scored), as `score_series` computes them."""
    t, x = _prepare(timestamps, values)
    res = _score_matrix(t, x, config)
    return [_detection(res, i, t, x, config) for i in range(t.size)]


def explain_last(
    timestamps: npt.ArrayLike, values: npt.ArrayLike, config: DetectorConfig = DEFAULT_CONFIG
) -> Detection:
    """The last row's score and band (what the service stores on an anomaly document)."""
    t, x = _prepare(timestamps, values)
    if t.size == 0:
        raise ValueError("explain_last needs at least one row")
    return _detection(_score_matrix(t, x, config), t.size - 1, t, x, config)


def _detection(
    res: _Scored, i: int, t: FloatArray, x: FloatArray, cfg: DetectorConfig
) -> Detection:
    return Detection(
        method=WARMUP if res.is_warm(i) else cfg.method,
        score=float(res.score[i]),
        threshold=cfg.threshold,
        value=float(x[i]),
        baseline=_opt(res.baseline[i]),
        band_low=_opt(res.band_low[i]),
        band_high=_opt(res.band_high[i]),
        timestamp=float(t[i]),
        expected=None if res.expected is None else _opt(res.expected[i]),
        period=None if res.period is None else _opt(res.period[i]),
    )


def score_series(
    timestamps: npt.ArrayLike, values: npt.ArrayLike, config: DetectorConfig = DEFAULT_CONFIG
) -> FloatArray:
    """One score in [0, 1] per row, from rows 0..i only; 0 where a row has no score.

    ``timestamps``: datetime64 or unix seconds, non-decreasing. This is the NAB entry point.
    """
    t, x = _prepare(timestamps, values)
    res = _score_matrix(t, x, config)
    return np.clip(np.nan_to_num(res.score, nan=0.0), 0.0, 1.0)


def score_seed(timestamps: npt.ArrayLike, values: npt.ArrayLike) -> FloatArray:
    """The seed's detector: |z| over the previous 10 values, |z| = 3 scores 0.5."""
    return score_series(timestamps, values, SEED_CONFIG)


BATCH_CHUNK = 4096


def score_batch(
    timestamps: npt.ArrayLike,
    values: npt.ArrayLike,
    config: DetectorConfig = BATCH_CONFIG,
    *,
    prior_low: npt.ArrayLike | None = None,
    prior_high: npt.ArrayLike | None = None,
    season: SeasonBatch | None = None,
    workers: int | None = None,
) -> BatchResult:
    """Score many series sharing one time grid: values (series, points), NaN = gap.

    Vectorised over series, `BATCH_CHUNK` series at a time to bound memory. The default
    `BATCH_CONFIG` is the `range` method with rolling MEANS instead of medians and without
    the seasonal residual (cheaper; a poller's window is rarely days long). With the same
    config every row equals `score_detail` of that row. `prior_low` / `prior_high` (one per
    series, NaN = unknown) widen the range with extremes from before the window, e.g.
    `min_over_time(x[14d])` / `max_over_time(x[14d])` from Prometheus, and count as enough
    history; they apply to the `range` method only. `season` (one fit per series, see
    `receiver.detect.seasonal`) makes the range method judge a seasonal series' value minus
    its profile at that phase, against the extremes of its de-seasonalised history instead of
    the raw prior; bands are shifted back by the profile. Chunks run on `workers` threads
    (default: CPU count, at most 4); numpy releases the GIL inside the array operations.
    """
    t = to_seconds(timestamps).reshape(-1)
    x = np.asarray(values, dtype=np.float64)
    if x.ndim != 2 or x.shape[1] != t.size:
        raise ValueError(f"values must be (series, {t.size}), got {x.shape}")
    if np.isinf(x).any():  # copy only when needed: the matrix can be large
        x = np.where(np.isinf(x), np.nan, x)
    n_series = x.shape[0]
    plo, phi = _prior(prior_low, n_series), _prior(prior_high, n_series)
    if season is not None and len(season) != n_series:
        raise ValueError(f"season has {len(season)} fits for {n_series} series")
    if season is not None and (config.method != "range" or not season.active.any()):
        season = None
    scores = np.full(x.shape, np.nan)
    last = np.full((3, n_series), np.nan)
    expected = np.full(n_series, np.nan) if season is not None else None
    warming = np.zeros(n_series, dtype=bool)

    def run(a: int) -> None:
        b = min(n_series, a + BATCH_CHUNK)
        xa, lo, hi = x[a:b], _rows(plo, a, b), _rows(phi, a, b)
        shift: FloatArray | None = None
        if season is not None:
            part = season.take(slice(a, b))
            if part.active.any():
                shift = part.expectation(t)
                xa = xa - shift
                lo = np.where(part.active, part.low, np.nan if lo is None else lo)
                hi = np.where(part.active, part.high, np.nan if hi is None else hi)
        prior = None if lo is None or hi is None else _Prior(lo, hi)
        res = _score_matrix(t, np.ascontiguousarray(xa.T), config, prior)
        scores[a:b] = res.score.T
        if t.size:
            last[:, a:b] = (res.baseline[-1], res.band_low[-1], res.band_high[-1])
            if res.warm is not None:
                warming[a:b] = res.warm[-1]
            if shift is not None and expected is not None:
                last[:, a:b] += shift[:, -1]
                # the level the window showed before this point, plus this phase's profile
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore", RuntimeWarning)
                    level = np.nanmean(xa[:, :-1], axis=1) if t.size > 1 else xa[:, -1]
                act = np.asarray(part.active)
                expected[a:b] = np.where(act, level + shift[:, -1], np.nan)

    starts = range(0, n_series, BATCH_CHUNK)
    n_workers = min(len(starts), workers or min(os.cpu_count() or 1, 4))
    if n_workers <= 1:
        for a in starts:
            run(a)
    else:
        with ThreadPoolExecutor(n_workers) as pool:
            list(pool.map(run, starts))
    return BatchResult(
        method=config.method,
        threshold=config.threshold,
        timestamps=t,
        values=x,
        scores=scores,
        baseline=last[0],
        band_low=last[1],
        band_high=last[2],
        warming=warming,
        season=season,
        expected=expected,
    )


def _rows(arr: FloatArray | None, a: int, b: int) -> FloatArray | None:
    return None if arr is None else arr[a:b]


def _prior(raw: npt.ArrayLike | None, n_series: int) -> FloatArray | None:
    if raw is None:
        return None
    arr = np.asarray(raw, dtype=np.float64).reshape(-1)
    if arr.size != n_series:
        raise ValueError(f"prior has {arr.size} values for {n_series} series")
    return np.where(np.isfinite(arr), arr, np.nan)
