"""A detector episode's evidence chart: the seasonal expectation and band over time, the onset."""

from __future__ import annotations

from datetime import UTC, datetime

import numpy as np

from receiver.store.documents import Anomaly, Incident
from receiver.store.repo import Store
from receiver.ui.chart import BAND, EXPECTED, MARK, Line
from receiver.ui.evidence import ChartData, Window, _band, chart_png, chart_specs
from tests.ui import pngs

DAY = 86400.0
STEP = 1800.0
# a daily profile: +30 around 14:00, -10 elsewhere (zero-mean is not required to draw it)
PROFILE = [30.0 if 12 <= i * STEP / 3600 < 16 else -10.0 for i in range(48)]
ONSET = datetime(2026, 3, 2, 13, 0, tzinfo=UTC)


def episode(detector: dict[str, object]) -> Anomaly:
    return Anomaly(
        episode_key="detector:fp:1",
        source="detector",
        fingerprint="fp",
        status="firing",
        starts_at=ONSET,
        alertname="OutlierDetected",
        metric="queue_depth",
        instance="h1:9100",
        group_key="g",
        detector=detector,
    )


def incident() -> Incident:
    return Incident(key="g", open_key="g", source="detector", started_at=ONSET)


DETECTOR: dict[str, object] = {
    "method": "range",
    "score": 0.9,
    "threshold": 0.5,
    "value": 140.0,
    "band_low": 80.0,
    "band_high": 100.0,
    "query": 'queue_depth{queue="orders"}',
    "expected": 90.0,
    "period_seconds": DAY,
    "onset": ONSET.isoformat(),
    "season_profile": PROFILE,
    "season_step": STEP,
}


async def test_seasonal_band_follows_the_profile_and_the_onset_is_marked(store: Store) -> None:
    """A seasonal detector's chart shades the band around the expectation of each hour (it
    rises by 40 into the 12-16 h peak), draws the expectation as a line and marks the onset."""
    (spec,) = chart_specs(incident(), [episode(DETECTOR)], None)
    assert spec.kind == "detector"
    assert spec.season is not None
    assert spec.onset == ONSET.timestamp()
    t = ONSET.timestamp() - 3 * 3600 + 60.0 * np.arange(6 * 60)  # 10:00 .. 16:00
    data = ChartData(lines=(Line(t, np.full(t.size, 95.0), "h1"),))
    band = _band(spec, data)
    assert band is not None
    low, high = np.asarray(band.low), np.asarray(band.high)
    at_13 = int(np.searchsorted(t, ONSET.timestamp()))
    assert low[at_13] == 80.0
    assert high[at_13] == 100.0
    assert low[0] == 40.0  # 10:00 is outside the peak: 40 below
    assert low[at_13 + 120] == 80.0  # 15:00, still in the peak
    window = Window(t[0], t[-1], 60.0, (t[0] + 600.0,))
    pixels = pngs.decode(chart_png(spec, data, window))
    assert pngs.count(pixels, BAND) > 2_000
    assert pngs.count(pixels, EXPECTED) > 200  # the expectation line, dashed
    # the onset is a second mark; when it is the incident's own mark it is drawn once
    same = pngs.decode(chart_png(spec, data, Window(t[0], t[-1], 60.0, (ONSET.timestamp(),))))
    assert pngs.count(pixels, MARK) > 1.5 * pngs.count(same, MARK) > 0


async def test_without_a_profile_the_band_stays_constant(store: Store) -> None:
    """A detector without a seasonal profile keeps the constant band and no extra line."""
    plain = {k: v for k, v in DETECTOR.items() if k not in ("season_profile", "season_step")}
    (spec,) = chart_specs(incident(), [episode(plain)], None)
    assert spec.season is None
    band = _band(spec, ChartData(lines=(Line([1.0, 2.0], [1.0, 2.0]),)))
    assert band is not None
    assert (band.low, band.high) == (80.0, 100.0)
