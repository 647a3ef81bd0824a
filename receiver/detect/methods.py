"""The detector's scoring methods (range, robust, zscore) over a time-major (points, series)
matrix, and the season measures the range method uses (pure numpy, no I/O); see `outliers`."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt

from receiver.detect.detection import DetectorConfig
from receiver.detect.windows import (
    FloatArray,
    IntArray,
    PrefixSums,
    nanmedian_last,
    past_extreme,
    rolling_mean,
    rolling_median,
    stack_window,
    window_start,
)


@dataclass
class Scored:
    """Time-major (points, series) score and alarm band; `warm` marks warm-up rows."""

    score: FloatArray
    baseline: FloatArray
    band_low: FloatArray
    band_high: FloatArray
    warm: npt.NDArray[np.bool_] | None = None
    expected: FloatArray | None = None  # seasonal expectation (NaN: no season active)
    period: FloatArray | None = None  # its period in seconds

    @classmethod
    def empty(cls, shape: tuple[int, ...]) -> Scored:
        return cls(*(np.full(shape, np.nan) for _ in range(4)))

    def is_warm(self, i: int) -> bool:
        return self.warm is not None and bool(self.warm.reshape(self.warm.shape[0], -1)[i, 0])


@dataclass(frozen=True)
class Prior:
    """Per-series extremes seen before the first point (e.g. max_over_time in Prometheus)."""

    low: FloatArray  # (series,), NaN = unknown
    high: FloatArray

    @property
    def known(self) -> npt.NDArray[np.bool_]:
        return np.isfinite(self.low) & np.isfinite(self.high)


def ratio(e: FloatArray, level: float) -> FloatArray:
    with np.errstate(invalid="ignore"):
        return np.asarray(e / (e + level), dtype=np.float64)


def scale_floor(scale: FloatArray, center: FloatArray, cfg: DetectorConfig) -> FloatArray:
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
    f: FloatArray, start: IntArray, cfg: DetectorConfig, prior: Prior | None
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


def score_range(x: FloatArray, t: FloatArray, cfg: DetectorConfig, prior: Prior | None) -> Scored:
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
        return Scored(
            ratio(best, cfg.range_level),
            offset + 0.5 * (lo + hi),
            offset + lo - margin,
            offset + hi + margin,
            expected=expected,
            period=period,
        )


# --------------------------------------------------------------------------- robust / seed


def score_robust(x: FloatArray, t: FloatArray, cfg: DetectorConfig) -> Scored:
    stack = stack_window(x, t, cfg.lookback, include_current=False)
    med = nanmedian_last(stack)
    mad = 1.4826 * nanmedian_last(np.abs(stack - med[..., None]))
    enough = _enough((~np.isnan(stack)).sum(axis=-1), t, cfg)
    scale = scale_floor(mad, med, cfg)
    with np.errstate(invalid="ignore"):
        z = np.abs(x - med) / scale
    z[~enough] = np.nan
    k = cfg.robust_level
    return Scored(ratio(z, k), med, med - k * scale, med + k * scale)


def score_zscore(x: FloatArray, cfg: DetectorConfig) -> Scored:
    """The seed: z of each value against mean/std of the previous `z_window` values."""
    n, w = x.shape[0], cfg.z_window
    out = Scored.empty(x.shape)
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
