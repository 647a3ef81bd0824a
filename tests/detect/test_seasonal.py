"""Seasonal profiles for the batch scorer: the fit, the cache and their use in score_batch."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import numpy.typing as npt

from receiver.detect.outliers import BATCH_CONFIG, score_batch, season_strength
from receiver.detect.seasonal import (
    NO_SEASON,
    SeasonBatch,
    SeasonCache,
    SeasonSpec,
    fit_matrix,
)

DAY = 86400.0
SPEC = SeasonSpec()
FIT_STEP = SPEC.fit_step(60.0)
END = 1.7e9 // DAY * DAY  # midnight UTC: the fit history ends here
FloatArray = npt.NDArray[np.float64]
HISTORY: FloatArray = (
    END - SPEC.span + FIT_STEP * np.arange(int(SPEC.span // FIT_STEP), dtype=np.float64)
)


def daily(t: FloatArray, peak_hour: float = 14.0) -> FloatArray:
    hour = np.mod(t, DAY) / 3600.0
    out: FloatArray = 100.0 + 80.0 * np.exp(-((hour - peak_hour) ** 2) / 8.0)
    return out


def histories(rng: np.random.Generator) -> FloatArray:
    """Rows: daily, daily, white noise."""
    noise = rng.normal(0.0, 2.0, (3, HISTORY.size))
    x = np.vstack([daily(HISTORY), daily(HISTORY), np.full(HISTORY.size, 100.0)]) + noise
    x[1, rng.random(HISTORY.size) < 0.05] = np.nan  # gaps
    return x


def test_fit_step_divides_a_day_and_bounds_the_points() -> None:
    """The fit grid is a divisor of a day, never finer than the poll step, at most max_points
    over the span."""
    assert FIT_STEP == 1800.0
    assert DAY % FIT_STEP == 0
    assert SPEC.span / FIT_STEP <= SPEC.max_points
    assert SeasonSpec(span=DAY).fit_step(600.0) == 600.0


def test_period_strength_matches_statsmodels_acf() -> None:
    """The vectorised rank autocorrelation gives statsmodels' number for every row."""
    x = histories(np.random.default_rng(3))
    fits = fit_matrix(HISTORY, x, SPEC, now=END)
    for row in (0, 1):
        reference = season_strength(x[row], HISTORY, DAY, SPEC.cycles)
        assert (
            fits[row].strength == np.float64(reference)
            or abs(fits[row].strength - reference) < 0.02
        )  # row 1's gaps are filled differently (previous sample vs bin means)
    assert abs(fits[0].strength - season_strength(x[0], HISTORY, DAY, SPEC.cycles)) < 1e-9


def test_daily_rows_get_a_profile_and_noise_does_not() -> None:
    """A daily shape gets period 1 d and a 48-bin zero-mean profile peaking at its hour; white
    noise and a history under three days get no period."""
    x = histories(np.random.default_rng(4))
    fits = fit_matrix(HISTORY, x, SPEC, now=END)
    for fit in fits[:2]:
        assert fit.period == DAY
        assert fit.profile.size == DAY / FIT_STEP
        assert abs(float(fit.profile.mean())) < 1e-3
        assert int(np.argmax(fit.profile)) * FIT_STEP / 3600.0 == 14.0
        assert fit.low < 100.0 - float(fit.profile.min()) < fit.high
    assert fits[2].period == 0.0
    assert fits[2].fitted_at == END  # stamped: not refitted before SeasonSpec.refit
    short = fit_matrix(HISTORY[-96:], x[:1, -96:], SPEC, now=END)  # two days
    assert short[0].period == 0.0


def test_cache_is_bounded_and_refits_on_its_cadence() -> None:
    """The cache drops the oldest fit past max_entries; a group is due again after refit."""
    cache = SeasonCache(max_entries=2)
    for key in ("a", "b", "c"):
        cache.put(key, NO_SEASON)
    assert len(cache) == 2
    assert cache.get("a") is None
    assert cache.get("c") is NO_SEASON
    assert cache.due("sel", 100.0, 3600.0)
    cache.fitted("sel", 100.0)
    assert not cache.due("sel", 3000.0, 3600.0)
    assert cache.due("sel", 3700.0, 3600.0)


def window(start_hour: float) -> FloatArray:
    """A 2 h poll window at 60 s, starting `start_hour` after midnight a day after the fit."""
    out: FloatArray = END + DAY + start_hour * 3600.0 + 60.0 * np.arange(121, dtype=np.float64)
    return out


def test_night_step_flagged_against_the_profile_peak_not() -> None:
    """A +40 step at 3 am (far below the 180 peak) is flagged with the profile and not
    without; the 2 pm peak is flagged by neither; the band and expectation follow the hour."""
    rng = np.random.default_rng(5)
    fits = fit_matrix(HISTORY, histories(rng), SPEC, now=END)
    season = SeasonBatch.of(fits[:2])
    cfg = replace(BATCH_CONFIG, suppress=0.0)
    prior = (np.full(2, 95.0), np.full(2, 185.0))  # the raw extremes of 14 days
    for start, step, expect_flag in ((1.0, 40.0, True), (12.0, 0.0, False)):
        t = window(start)
        x = np.vstack([daily(t), daily(t)]) + rng.normal(0.0, 2.0, (2, t.size))
        x[0, -1] += step
        with_profile = score_batch(
            t, x, cfg, prior_low=prior[0], prior_high=prior[1], season=season
        )
        plain = score_batch(t, x, cfg, prior_low=prior[0], prior_high=prior[1])
        assert bool(with_profile.scores[0, -1] >= 0.5) is expect_flag
        assert plain.scores[0, -1] < 0.5
        assert (np.nan_to_num(with_profile.scores[1]) < 0.5).all()
        d = with_profile.detail(0)
        assert d.period == DAY
        assert d.profile is not None
        assert len(d.profile) == DAY / FIT_STEP
        assert d.expected is not None
        assert abs(d.expected - float(daily(t[-1:])[0])) < 5.0
        assert d.band_low is not None
        assert d.band_high is not None
        assert d.band_low < float(daily(t[-1:])[0]) < d.band_high


def test_series_without_a_period_score_as_before() -> None:
    """A batch where no series has a period gives exactly the plain scores."""
    t = window(3.0)
    x = np.random.default_rng(6).normal(100.0, 2.0, (3, t.size))
    season = SeasonBatch.of([NO_SEASON] * 3)
    a = score_batch(t, x, prior_low=np.full(3, 90.0), prior_high=np.full(3, 110.0), season=season)
    b = score_batch(t, x, prior_low=np.full(3, 90.0), prior_high=np.full(3, 110.0))
    np.testing.assert_array_equal(a.scores, b.scores)
    assert a.season is None
