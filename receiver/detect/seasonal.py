"""Seasonal profiles for the batch scorer: fitted per series from a coarse history, cached
between poll cycles, applied by `outliers.score_batch` (pure numpy, no I/O).

A fit looks at `SeasonSpec.span` of history on a coarse grid (`fit_step`, a divisor of a day)
that ends before the poll window starts, so a profile never contains the points it judges.
Per series it decides the period (the candidate in `periods` whose autocorrelation of the ranks
of the detrended history reaches `acf`, as `outliers.season_strength` decides it with
statsmodels; here the same statistic is computed for many series at once) and keeps:

- the seasonal profile: per phase bin, the median over the cycles of the deviation from a
  centred moving average one period long, minus its mean (so it carries no level);
- the extremes of the de-seasonalised history (value minus profile), which take the place of
  the raw `min/max_over_time` prior when the series is scored.

`score_batch(..., season=SeasonBatch)` scores a seasonal series' value minus the profile at its
phase with the same range method (raw and rolling means) as every other series, then adds the
profile back onto the band, so the band follows the time of day. A series without a period
keeps the plain range method. `SeasonCache` holds the fits in memory (per replica), keyed by
series identity, at most `max_entries`, oldest dropped first.
"""

from __future__ import annotations

import math
import time
import warnings
from collections import OrderedDict
from collections.abc import Hashable, Sequence
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from receiver.detect.windows import FloatArray

DAY = 86400.0
# Fit grid steps: each divides a day (and a week), so phase bins line up across cycles.
FIT_STEPS = (60.0, 120.0, 300.0, 600.0, 900.0, 1800.0, 3600.0)
MIN_COVERAGE = 0.8  # share of the fit grid that must hold samples


@dataclass(frozen=True)
class SeasonSpec:
    """How seasonal profiles are fitted and kept (0 span = off)."""

    span: float = 8 * DAY  # history one fit looks at
    refit: float = 3600.0  # a series' fit is renewed this often
    periods: tuple[float, ...] = (DAY, 7 * DAY)  # weekly needs span >= cycles weeks
    cycles: int = 3  # a period is judged once the history holds this many cycles
    acf: float = 0.4  # least rank autocorrelation at the period that counts as seasonal
    margin: float = 0.1  # a longer period must beat a shorter one's by this much
    max_points: int = 400  # fit grid points per series (bounds Prometheus' answer)
    max_entries: int = 200_000  # cached fits (one per series)

    def fit_step(self, step: float) -> float:
        """The coarsest grid needed: at most `max_points` points over `span`, a divisor of a
        day, never finer than the poll step."""
        want = max(step, self.span / max(self.max_points, 1))
        for s in FIT_STEPS:
            if s >= want:
                return s
        return FIT_STEPS[-1]


@dataclass(frozen=True)
class SeasonFit:
    """One series' fit. `period` 0 = no season (the plain range method scores it)."""

    period: float
    step: float
    profile: npt.NDArray[np.float32]  # (period / step,) zero-mean; empty without a period
    low: float  # extremes of the de-seasonalised history
    high: float
    fitted_at: float
    strength: float = math.nan


NO_SEASON = SeasonFit(0.0, 0.0, np.zeros(0, np.float32), math.nan, math.nan, 0.0)


@dataclass(frozen=True)
class SeasonBatch:
    """Fits of many series as arrays (what `score_batch` takes): period 0 = none."""

    period: FloatArray  # (series,)
    step: FloatArray
    bins: npt.NDArray[np.intp]
    profile: FloatArray  # (series, max bins), zero padded
    low: FloatArray
    high: FloatArray

    @classmethod
    def of(cls, fits: Sequence[SeasonFit]) -> SeasonBatch:
        n = len(fits)
        width = max((f.profile.size for f in fits), default=0)
        profile = np.zeros((n, max(width, 1)))
        period = np.zeros(n)
        step = np.ones(n)
        bins = np.ones(n, dtype=np.intp)
        low = np.full(n, np.nan)
        high = np.full(n, np.nan)
        for i, f in enumerate(fits):
            if f.period <= 0 or f.profile.size == 0:
                continue
            period[i], step[i], bins[i] = f.period, f.step, f.profile.size
            profile[i, : f.profile.size] = f.profile
            low[i], high[i] = f.low, f.high
        return cls(period, step, bins, profile, low, high)

    def __len__(self) -> int:
        return int(self.period.size)

    @property
    def active(self) -> npt.NDArray[np.bool_]:
        return np.asarray(self.period > 0)

    def take(self, rows: slice | npt.NDArray[np.intp]) -> SeasonBatch:
        return SeasonBatch(
            self.period[rows],
            self.step[rows],
            self.bins[rows],
            self.profile[rows],
            self.low[rows],
            self.high[rows],
        )

    def expectation(self, t: FloatArray) -> FloatArray:
        """(series, points): the profile at each time's phase, linearly interpolated between
        bins (0 where a series has no period)."""
        e = np.zeros((len(self), t.size))
        # series share a handful of (period, step) pairs: one phase index per pair
        pairs = np.stack([self.period, self.step], axis=1)
        for period, step in np.unique(pairs[self.active], axis=0):
            rows = np.flatnonzero((self.period == period) & (self.step == step) & self.active)
            bins = round(period / step)
            u = np.mod(t, period) / step
            base = np.floor(u)
            w = u - base
            i0 = base.astype(np.intp) % bins
            i1 = (i0 + 1) % bins
            prof = self.profile[rows]
            e[rows] = prof[:, i0] * (1.0 - w) + prof[:, i1] * w
        return e


# --------------------------------------------------------------------------- fitting


def _fill(x: FloatArray) -> FloatArray:
    """Gaps filled with the previous sample (leading gaps with the first): enough for a
    moving average and ranks, and vectorised over rows."""
    n, m = x.shape
    ok = ~np.isnan(x)
    idx = np.where(ok, np.arange(m)[None, :], 0)
    np.maximum.accumulate(idx, axis=1, out=idx)
    filled = x[np.arange(n)[:, None], idx]
    first = np.argmax(ok, axis=1)
    lead = np.arange(m)[None, :] < first[:, None]
    filled[lead] = np.broadcast_to(x[np.arange(n), first][:, None], (n, m))[lead]
    return np.asarray(filled)


def _detrend(y: FloatArray, lag: int) -> tuple[FloatArray, int]:
    """y minus its centred moving average one period (`lag` points) long, and the offset of
    the first row that has one."""
    c = np.zeros((y.shape[0], y.shape[1] + 1))
    np.cumsum(y, axis=1, out=c[:, 1:])
    trend = (c[:, lag:] - c[:, :-lag]) / lag
    half = lag // 2
    return y[:, half : half + trend.shape[1]] - trend, half


def rank_acf(resid: FloatArray, lag: int) -> FloatArray:
    """Per row, the largest autocorrelation of the ranks of `resid` at lags lag ± lag/50, as
    statsmodels' `acf(ranks, adjusted=True)` computes it (same estimator, many rows at once)."""
    n = resid.shape[1]
    ranks = np.argsort(np.argsort(resid, axis=1, kind="stable"), axis=1, kind="stable")
    r = ranks.astype(np.float64)
    r -= r.mean(axis=1, keepdims=True)
    var = (r * r).sum(axis=1) / n
    slack = max(1, lag // 50)
    best = np.full(resid.shape[0], -np.inf)
    for k in range(lag - slack, min(lag + slack, n - 1) + 1):
        cov = np.einsum("ij,ij->i", r[:, :-k], r[:, k:]) / (n - k)
        np.fmax(best, cov, out=best)
    with np.errstate(invalid="ignore", divide="ignore"):
        out = best / var
    out[var == 0] = np.nan
    return np.asarray(out)


def fit_matrix(
    t: FloatArray, x: FloatArray, spec: SeasonSpec, now: float | None = None
) -> list[SeasonFit]:
    """Fit every row of `x` (series, points) on the regular grid `t` (step a divisor of the
    periods). Rows with too little history, or no period reaching `spec.acf`, get `NO_SEASON`
    (stamped with the fit time, so they are not refitted before `spec.refit`)."""
    stamp = time.time() if now is None else now
    n = x.shape[0]
    none = SeasonFit(0.0, 0.0, np.zeros(0, np.float32), math.nan, math.nan, stamp)
    if n == 0 or t.size < 4:
        return [none] * n
    step = float(t[1] - t[0])
    ok = ~np.isnan(x)
    enough = ok.mean(axis=1) >= MIN_COVERAGE
    y = _fill(np.where(enough[:, None], x, 0.0))
    chosen = np.zeros(n)
    strength = np.full(n, spec.acf)
    found = np.full(n, np.nan)
    for p in spec.periods:
        lag = round(p / step)
        if lag < 4 or t[-1] - t[0] < spec.cycles * p or t.size < 2 * lag + 4:
            continue
        resid, _ = _detrend(y, lag)
        s = rank_acf(resid, lag)
        win = enough & ~np.isnan(s) & (s >= strength)
        chosen[win] = p
        found[win] = s[win]
        # a longer period must beat the shorter one clearly: a daily pattern repeats weekly too
        strength = np.where(win, s + spec.margin, strength)
    fits = [none] * n
    for p in np.unique(chosen[chosen > 0]):
        rows = np.flatnonzero(chosen == p)
        profiles, low, high = _profiles(t, x[rows], y[rows], float(p), step)
        for k, row in enumerate(rows):
            fits[int(row)] = SeasonFit(
                float(p),
                step,
                profiles[k].astype(np.float32),
                float(low[k]),
                float(high[k]),
                stamp,
                float(found[row]),
            )
    return fits


def _profiles(
    t: FloatArray, x: FloatArray, y: FloatArray, period: float, step: float
) -> tuple[FloatArray, FloatArray, FloatArray]:
    """Per row: the zero-mean median deviation per phase bin, and the extremes of x minus a
    profile that did not see them (cross-fitted: even cycles judged by the odd cycles' profile
    and vice versa). In-sample residuals are narrower than the ones later points will show, so
    a range taken from them would alarm on noise."""
    lag = round(period / step)
    resid, half = _detrend(y, lag)
    rows = np.arange(half, half + resid.shape[1])
    resid = np.where(np.isnan(x[:, rows]), np.nan, resid)
    slot = np.rint(t / step).astype(np.int64)
    phase = slot % lag
    cycle = slot // lag - slot[0] // lag
    cube = np.full((x.shape[0], int(cycle[-1]) + 1, lag), np.nan)
    cube[:, cycle[rows], phase[rows]] = resid
    profile = _median_profile(cube)
    even, odd = _median_profile(cube[:, 0::2]), _median_profile(cube[:, 1::2])
    other = np.where((cycle % 2 == 0)[None, :], odd[:, phase], even[:, phase])
    d = x - other
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # all-NaN rows stay NaN
        low, high = np.nanmin(d, axis=1), np.nanmax(d, axis=1)
    return profile, low, high


def _median_profile(cube: FloatArray) -> FloatArray:
    """Median over the cycles (axis 1) per phase, empty bins 0, minus its mean."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # all-NaN bins: filled below
        profile = np.nanmedian(cube, axis=1)
    profile = np.nan_to_num(profile, nan=0.0)
    profile -= profile.mean(axis=1, keepdims=True)
    return np.asarray(profile)


# --------------------------------------------------------------------------- the cache


class SeasonCache:
    """Fits by series key, at most `max_entries` (least recently stored dropped first), and
    when each group of series (a selector) was last fitted."""

    def __init__(self, max_entries: int) -> None:
        self.max_entries = max_entries
        self._fits: OrderedDict[Hashable, SeasonFit] = OrderedDict()
        self._groups: OrderedDict[Hashable, float] = OrderedDict()

    def __len__(self) -> int:
        return len(self._fits)

    def get(self, key: Hashable) -> SeasonFit | None:
        return self._fits.get(key)

    def put(self, key: Hashable, fit: SeasonFit) -> None:
        self._fits[key] = fit
        self._fits.move_to_end(key)
        while len(self._fits) > self.max_entries:
            self._fits.popitem(last=False)

    def batch(self, keys: Sequence[Hashable]) -> SeasonBatch:
        return SeasonBatch.of([self._fits.get(k, NO_SEASON) for k in keys])

    def fitted(self, group: Hashable, at: float) -> None:
        self._groups[group] = at
        self._groups.move_to_end(group)
        while len(self._groups) > self.max_entries:
            self._groups.popitem(last=False)

    def due(self, group: Hashable, now: float, refit: float) -> bool:
        last = self._groups.get(group)
        return last is None or now - last >= refit

    @property
    def seasonal(self) -> int:
        """Cached series with a period."""
        return sum(1 for f in self._fits.values() if f.period > 0)
