"""Outlier scores on synthetic series: what alarms, what stays quiet, and causality."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import numpy.typing as npt
import pytest

from receiver.detect.outliers import (
    BATCH_CONFIG,
    DAY,
    DEFAULT_CONFIG,
    DEFAULT_THRESHOLD,
    HOUR,
    MINUTE,
    SEED_CONFIG,
    WARMUP,
    Z_THRESHOLD,
    DetectorConfig,
    active_period,
    explain_last,
    score_batch,
    score_detail,
    score_seed,
    score_series,
)

STEP = 5 * MINUTE
T0 = 1.7e9
Floats = npt.NDArray[np.float64]


def grid(days: float, step: float = STEP) -> Floats:
    return T0 + step * np.arange(int(days * DAY / step), dtype=np.float64)


def noise(n: int, seed: int = 1, level: float = 10.0, sd: float = 1.0) -> Floats:
    return level + np.random.default_rng(seed).normal(0.0, sd, n)


def flagged(scores: Floats) -> npt.NDArray[np.intp]:
    return np.flatnonzero(scores >= DEFAULT_THRESHOLD)


def test_spike_is_flagged_and_noise_is_not() -> None:
    """A 20-sigma spike after 3 days of noise alarms at that point and nowhere else."""
    t = grid(3)
    x = noise(t.size)
    x[-10] = 30.0
    assert flagged(score_series(t, x)).tolist() == [t.size - 10]


def test_level_shift_is_flagged_within_an_hour() -> None:
    """A sustained shift of 5 sigma is flagged within an hour of its start, once."""
    t = grid(4)
    x = noise(t.size)
    start = t.size - 100
    x[start:] += 5.0
    hits = flagged(score_series(t, x))
    assert hits.size == 1
    assert 0 <= t[hits[0]] - t[start] <= HOUR


def test_daily_seasonal_pattern_does_not_alarm() -> None:
    """Ten days of a daily sine wave with noise never alarm, but a night-time step does."""
    t = grid(10)
    x = 50.0 + 20.0 * np.sin(2 * np.pi * t / DAY) + noise(t.size, level=0.0)
    assert flagged(score_series(t, x)).size == 0
    trough = int(np.argmin(x[-288:])) + t.size - 288
    y = x.copy()
    y[trough - 6 : trough + 6] += 30.0  # daytime level at night: inside the range, off-season
    assert flagged(score_series(t, y)).size > 0


def test_flat_line_does_not_alarm_on_rounding_noise() -> None:
    """A flat series with 1e-9 jitter stays quiet (variance floor); a real step alarms."""
    t = grid(3)
    x = 45.0 + np.random.default_rng(3).normal(0.0, 1e-9, t.size)
    assert flagged(score_series(t, x)).size == 0
    x[-5:] = 60.0
    assert flagged(score_series(t, x)).tolist() == [t.size - 5]


def test_nan_gaps_get_no_score_and_do_not_alarm() -> None:
    """NaN and +Inf rows score 0, the hour after a gap stays quiet, and scoring resumes."""
    t = grid(3)
    x = noise(t.size)
    x[500:560] = np.nan
    x[700] = np.inf
    x[-1] = 40.0
    s = score_series(t, x)
    assert np.all(np.isfinite(s))
    assert np.all(s[500:560] == 0.0)
    assert s[700] == 0.0
    assert np.all(s[560:572] < DEFAULT_THRESHOLD)
    assert s[-1] >= DEFAULT_THRESHOLD
    assert np.isnan(score_detail(t, x)[530].score)


def test_too_short_history_is_not_scored() -> None:
    """Before `warmup_points` samples nothing is scored, even a huge jump."""
    t = grid(0.5)[: DEFAULT_CONFIG.warmup_points]
    x = noise(t.size)
    x[-1] = 1000.0
    assert np.all(score_series(t, x) == 0.0)
    last = explain_last(t, x)
    assert np.isnan(last.score)
    assert not last.flagged


def test_new_series_is_scored_by_the_warm_up_method_within_an_hour() -> None:
    """At a 1-minute step a 40-minute-old series is scored by the warm-up robust z: a jump
    far beyond its spread alarms, ordinary noise does not, and the detection says warm-up."""
    t = grid(40 / (24 * 60), MINUTE)
    x = noise(t.size)
    assert flagged(score_series(t, x)).size == 0
    x[-1] = 30.0
    assert flagged(score_series(t, x)).tolist() == [t.size - 1]
    last = explain_last(t, x)
    assert last.method == WARMUP
    assert last.band_high is not None
    assert last.band_high < 30.0


def test_z_threshold_sets_the_warm_up_cut_off() -> None:
    """The warm-up alarms at robust |z| >= warmup_factor x z_threshold: raising Z_THRESHOLD
    silences a jump the default flags."""
    t = grid(0.5)
    x = noise(t.size)
    x[-1] = 10.0 + 12 * 1.0  # about 12 robust z: above 3 x 3, below 3 x 5
    assert score_series(t, x)[-1] >= DEFAULT_THRESHOLD
    strict = replace(DEFAULT_CONFIG, z_threshold=5.0)
    assert score_series(t, x, strict)[-1] < DEFAULT_THRESHOLD


def test_suppression_is_in_time_not_rows() -> None:
    """Two spikes 2 h apart page once; 8 h apart twice, whatever the scrape interval."""
    for step in (60.0, 300.0):
        t = grid(3, step)
        for gap, pages in ((2 * HOUR, 1), (8 * HOUR, 2)):
            x = noise(t.size)
            first = t.size - int(10 * HOUR / step)
            x[first] = 40.0
            x[first + int(gap / step)] = 45.0
            assert flagged(score_series(t, x)).size == pages, (step, gap)


def test_min_duration_needs_the_excess_to_hold() -> None:
    """With min_duration, a lone spike does not alarm but a 30-minute excursion does.

    (Robust method: with `range` a value stops being "beyond the range" once the range
    includes it, so a hold time mostly suits `robust` / `zscore`.)
    """
    cfg = replace(DEFAULT_CONFIG, method="robust", min_duration=15 * MINUTE)
    t = grid(3)
    x = noise(t.size)
    x[-100] = 40.0
    assert flagged(score_series(t, x, cfg)).size == 0
    x[-50:-44] = 40.0
    hits = flagged(score_series(t, x, cfg))
    assert hits.size == 1
    assert t[hits[0]] - t[t.size - 50] >= 15 * MINUTE


@pytest.mark.parametrize("method", ["range", "robust", "zscore"])
def test_scores_are_causal(method: str) -> None:
    """Scoring a prefix gives exactly the full run's scores on those rows (every method)."""
    cfg = replace(DEFAULT_CONFIG, method=method, lookback=2 * DAY)  # type: ignore[arg-type]
    t = grid(5)
    x = 50.0 + 20.0 * np.sin(2 * np.pi * t / DAY) + noise(t.size, level=0.0)
    x[900:1000] += 200.0
    x[1100] = np.nan
    full = score_series(t, x, cfg)
    assert flagged(full).size > 0
    for cut in (400, 999, 1101, 1300):
        np.testing.assert_array_equal(score_series(t[:cut], x[:cut], cfg), full[:cut])


def test_explain_last_gives_band_that_was_crossed() -> None:
    """A flagged point's detail carries a band that the value lies outside."""
    t = grid(3)
    x = noise(t.size)
    x[-1] = 30.0
    d = explain_last(t, x)
    assert d.flagged
    assert d.method == "range"
    assert d.value == 30.0
    assert d.band_low is not None
    assert d.band_high is not None
    assert d.baseline is not None
    assert d.band_low < d.baseline < d.band_high < d.value
    assert 9.0 < d.baseline < 11.0


def test_seed_zscore_alarms_at_z_threshold() -> None:
    """The seed method scores exactly 0.5 at |z| = Z_THRESHOLD over the previous 10 values."""
    t = grid(1)
    x = np.tile([9.0, 11.0], t.size // 2)  # mean 10, population std 1
    x[-1] = 10.0 + Z_THRESHOLD
    s = score_seed(t, x)
    assert s[-1] == pytest.approx(DEFAULT_THRESHOLD)
    assert np.all(s[:-1] < DEFAULT_THRESHOLD)
    assert SEED_CONFIG.z_threshold == Z_THRESHOLD


def test_batch_matches_single_series() -> None:
    """score_batch rows equal score_detail of each row under the same config (gaps and all)."""
    t = grid(2, 600.0)
    rng = np.random.default_rng(7)
    x = 10.0 + rng.normal(0.0, 1.0, (50, t.size))
    x[::7, -1] = 40.0
    x[3, 100:120] = np.nan
    x[4, -1] = np.nan
    for cfg in (BATCH_CONFIG, replace(DEFAULT_CONFIG, season_days=0)):
        res = score_batch(t, x, cfg)
        for row in (0, 3, 4, 7, 21, 49):
            want = np.array([d.score for d in score_detail(t, x[row], cfg)])
            np.testing.assert_allclose(res.scores[row], want, rtol=0, atol=1e-12)
    flagged_rows = score_batch(t, x).flagged_last().tolist()
    assert flagged_rows == list(range(0, 50, 7))
    d = score_batch(t, x).detail(7)
    assert d.flagged
    assert d.band_high is not None
    assert d.value > d.band_high


def test_batch_priors_count_as_history() -> None:
    """With prior extremes, a short window is judged at once; within the prior it is quiet."""
    t = grid(0.25)
    x = np.vstack([noise(t.size, seed=s) for s in range(4)])
    x[0, -1] = 30.0
    x[1, -1] = 14.0  # beyond the window's range, inside the prior one
    warm = score_batch(t, x)  # too young for the range: the warm-up judges it
    assert warm.flagged_last().tolist() == [0]  # 4 sigma is within the stricter cut-off
    assert warm.warming.all()
    res = score_batch(t, x, prior_low=np.full(4, 5.0), prior_high=np.full(4, 15.0))
    assert res.flagged_last().tolist() == [0]
    assert not res.warming.any()


def test_batch_rejects_misshaped_input() -> None:
    """A values matrix whose width is not the number of timestamps is an error."""
    with pytest.raises(ValueError, match="values must be"):
        score_batch(grid(1), np.zeros((3, 5)))


def test_detector_config_constants_are_in_time() -> None:
    """The time-related defaults are seconds, so they mean the same at any scrape interval."""
    cfg = DetectorConfig()
    assert cfg.suppress == 3 * HOUR
    assert cfg.season_level == 2 * DAY
    assert cfg.season_refit == DAY
    assert cfg.min_history == DAY
    assert cfg.lookback == 14 * DAY


def test_period_is_found_only_where_the_history_repeats() -> None:
    """A noisy daily wave gets a daily period after three days; noise and a drift get none."""
    t = grid(6)
    wave = 50.0 + 20.0 * np.sin(2 * np.pi * t / DAY) + noise(t.size, level=0.0, sd=3.0)
    periods = active_period(wave, t, DEFAULT_CONFIG)
    assert set(periods[t - T0 < 3 * DAY].tolist()) == {0.0}
    assert set(periods[t - T0 >= 4 * DAY].tolist()) == {DAY}
    drift = noise(t.size, sd=3.0) + np.linspace(0.0, 100.0, t.size)
    assert not active_period(drift, t, DEFAULT_CONFIG).any()
    assert not active_period(noise(t.size), t, DEFAULT_CONFIG).any()


def test_weekly_pattern_wins_over_daily_when_weekends_differ() -> None:
    """Quiet weekends on a daily wave make the period weekly, and a weekend at weekday level
    alarms while the ordinary weekdays and weekends before it do not."""
    step = 15 * MINUTE
    t = grid(30, step)
    weekday = ((t - T0) // DAY) % 7 < 5
    x = 10.0 + np.where(weekday, 40.0, 0.0) * (1 + np.sin(2 * np.pi * t / DAY)) / 2
    x += noise(t.size, level=0.0, sd=1.0)
    assert active_period(x, t, DEFAULT_CONFIG)[-1] == 7 * DAY
    assert flagged(score_series(t, x)).size == 0
    busy = x.copy()
    last_weekend = np.flatnonzero(~weekday)[-int(DAY / step) :]
    busy[last_weekend] += 40.0 * (1 + np.sin(2 * np.pi * t[last_weekend] / DAY)) / 2
    hits = flagged(score_series(t, busy))
    assert hits.size > 0
    assert hits.min() >= last_weekend[0]


def test_seasonal_series_with_slow_drift_stays_quiet() -> None:
    """A daily wave whose level climbs 2 % a day raises no alarm; a night-time step still does."""
    t = grid(14)
    x = (50.0 + 20.0 * np.sin(2 * np.pi * t / DAY)) * (1 + 0.02 * (t - T0) / DAY)
    x += noise(t.size, level=0.0, sd=1.0)
    assert flagged(score_series(t, x)).size == 0
    trough = int(np.argmin(x[-288:])) + t.size - 288
    x[trough - 6 : trough + 6] += 30.0
    hits = flagged(score_series(t, x))
    assert hits.size == 1
    assert trough - 6 <= hits[0] <= trough + 6


def test_seasonal_scores_are_causal() -> None:
    """With the seasonal residual active, scoring a prefix reproduces the full run's scores."""
    t = grid(8)
    x = 50.0 + 20.0 * np.sin(2 * np.pi * t / DAY) + noise(t.size, level=0.0, sd=2.0)
    x[-200] += 40.0
    full = score_series(t, x)
    for cut in (int(3.5 * DAY / STEP), int(5.2 * DAY / STEP), t.size - 150):
        np.testing.assert_array_equal(score_series(t[:cut], x[:cut]), full[:cut])


def test_seasonal_detection_explains_its_expectation() -> None:
    """A night-time step on a daily wave is explained with the value expected at that time of
    day and the daily period, and that expectation lies near the wave, not the step."""
    t = grid(10)
    x = 50.0 + 20.0 * np.sin(2 * np.pi * t / DAY) + noise(t.size, level=0.0)
    trough = int(np.argmin(x[-288:])) + t.size - 288
    x[trough - 6 : trough + 6] += 30.0
    hit = next(d for d in score_detail(t, x) if d.flagged)
    assert hit.period == DAY
    assert hit.expected is not None
    assert abs(hit.expected - 30.0) < 5.0


def test_calibration_damps_a_level_the_series_reaches_often() -> None:
    """With calibration a score is multiplied by the share of the series' earlier scores below
    it: the first spike keeps its score, the tenth identical spike of a spiky series does not;
    every row still depends on earlier rows only."""
    rng = np.random.default_rng(11)
    t = np.arange(4000, dtype=np.float64) * 300.0
    x = 100.0 + rng.normal(0.0, 1.0, t.size)
    spikes = np.arange(1000, 4000, 300)
    x[spikes] += 30.0 + np.arange(spikes.size)  # each a little higher: each a new range
    cfg = replace(DEFAULT_CONFIG, suppress=0.0)
    raw = score_series(t, x, replace(cfg, calibrate=False))
    calibrated = score_series(t, x, cfg)
    assert raw[spikes[0]] >= 0.5
    assert calibrated[spikes[0]] >= 0.99 * raw[spikes[0]]
    assert (calibrated <= raw + 1e-12).all()
    scored = np.flatnonzero(raw > 0)
    assert scored.size > spikes.size  # noise scores too: the calibration has work to do
    for i in scored:
        assert calibrated[i] == pytest.approx(raw[i] * float(np.mean(raw[:i] < raw[i])))
    np.testing.assert_array_equal(score_series(t[:2500], x[:2500], cfg), calibrated[:2500])
