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
never an alarm. Alarms go through an episode filter (module ``episodes``): an alarm needs the excess
to hold ``min_duration``; afterwards scores are damped (x ``SUPPRESSED_FACTOR``) for
``suppress`` seconds AND until the score has dropped below ``rearm`` x threshold
(hysteresis), so one event pages once.
"""

from __future__ import annotations

import os
import warnings
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import numpy.typing as npt

from receiver.detect.detection import (
    BATCH_CONFIG,
    DAY,
    DEFAULT_CONFIG,
    DEFAULT_THRESHOLD,
    HOUR,
    MINUTE,
    SEED_CONFIG,
    WARMUP,
    Z_THRESHOLD,
    BatchResult,
    Detection,
    DetectorConfig,
    finite_or_none,
)
from receiver.detect.episodes import score_matrix
from receiver.detect.methods import Prior, Scored, active_period, season_strength
from receiver.detect.seasonal import SeasonBatch
from receiver.detect.windows import (
    FloatArray,
    to_seconds,
)

# Callers import these from here; they live in the modules above since the split.
__all__ = [
    "BATCH_CONFIG",
    "DAY",
    "DEFAULT_CONFIG",
    "DEFAULT_THRESHOLD",
    "HOUR",
    "MINUTE",
    "SEED_CONFIG",
    "WARMUP",
    "Z_THRESHOLD",
    "BatchResult",
    "Detection",
    "DetectorConfig",
    "active_period",
    "explain_last",
    "score_batch",
    "score_detail",
    "score_seed",
    "score_series",
    "season_strength",
]

# --------------------------------------------------------------------------- public API


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
    res = score_matrix(t, x, config)
    return [_detection(res, i, t, x, config) for i in range(t.size)]


def explain_last(
    timestamps: npt.ArrayLike, values: npt.ArrayLike, config: DetectorConfig = DEFAULT_CONFIG
) -> Detection:
    """The last row's score and band (what the service stores on an anomaly document)."""
    t, x = _prepare(timestamps, values)
    if t.size == 0:
        raise ValueError("explain_last needs at least one row")
    return _detection(score_matrix(t, x, config), t.size - 1, t, x, config)


def _detection(res: Scored, i: int, t: FloatArray, x: FloatArray, cfg: DetectorConfig) -> Detection:
    return Detection(
        method=WARMUP if res.is_warm(i) else cfg.method,
        score=float(res.score[i]),
        threshold=cfg.threshold,
        value=float(x[i]),
        baseline=finite_or_none(res.baseline[i]),
        band_low=finite_or_none(res.band_low[i]),
        band_high=finite_or_none(res.band_high[i]),
        timestamp=float(t[i]),
        expected=None if res.expected is None else finite_or_none(res.expected[i]),
        period=None if res.period is None else finite_or_none(res.period[i]),
    )


def score_series(
    timestamps: npt.ArrayLike, values: npt.ArrayLike, config: DetectorConfig = DEFAULT_CONFIG
) -> FloatArray:
    """One score in [0, 1] per row, from rows 0..i only; 0 where a row has no score.

    ``timestamps``: datetime64 or unix seconds, non-decreasing. This is the NAB entry point.
    """
    t, x = _prepare(timestamps, values)
    res = score_matrix(t, x, config)
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
        prior = None if lo is None or hi is None else Prior(lo, hi)
        res = score_matrix(t, np.ascontiguousarray(xa.T), config, prior)
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
