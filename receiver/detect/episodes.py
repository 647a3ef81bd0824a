"""Warm-up scores, the episode filter and calibration: the passes every method's raw scores go
through before `outliers` answers (pure numpy, no I/O)."""

from __future__ import annotations

import bisect

import numpy as np
import numpy.typing as npt

from receiver.detect.detection import SUPPRESSED_FACTOR, WARMUP_REFRESH, DetectorConfig
from receiver.detect.methods import (
    Prior,
    Scored,
    ratio,
    scale_floor,
    score_range,
    score_robust,
    score_zscore,
)
from receiver.detect.windows import (
    FloatArray,
)

# --------------------------------------------------------------------------- warm-up


def _warmup(res: Scored, x: FloatArray, t: FloatArray, cfg: DetectorConfig) -> None:
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
        scale = scale_floor(mad, med, cfg)
        with np.errstate(invalid="ignore"):
            z = np.abs(xs[i, cols] - med) / scale
        ok = ~np.isnan(z)
        cols, z, med, scale = cols[ok], z[ok], med[ok], scale[ok]
        score[i, cols] = ratio(z, level)
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


def score_matrix(
    t: FloatArray, x: FloatArray, cfg: DetectorConfig, prior: Prior | None = None
) -> Scored:
    """Score a time-major (points, series) matrix."""
    if cfg.method == "range":
        res = score_range(x, t, cfg, prior)
    elif cfg.method == "robust":
        res = score_robust(x, t, cfg)
    else:
        res = score_zscore(x, cfg)
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
