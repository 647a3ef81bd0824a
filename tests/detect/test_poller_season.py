"""The poller's seasonal profiles against a real `prometheus` with 9 backfilled days.

Two series follow a daily shape (a 3-hour-wide peak 100 above a base of 50, noise 1): `night`
peaks 12 hours from now, so it is at its base now; `peak` peaks now. A third series, `young`,
has one hour of history (the warm-up method judges it). A step of +40 at night stays far below
the daily peak, so the plain range method (raw value against 14 days' extremes) sees nothing;
against the series' daily profile it is an outlier. The daytime peak is normal for its hour.
"""

from __future__ import annotations

import asyncio
import dataclasses
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest
from prometheus_client import CollectorRegistry

from receiver.detect.metrics import DetectorMetrics
from receiver.detect.poller import OutlierPoller, PollerConfig
from receiver.detect.targets import default_target
from receiver.ingest.processor import SignalProcessor
from receiver.settings import Settings
from receiver.store.detect import DetectStore
from receiver.store.embedded import EmbeddedStore
from receiver.store.repo import Store
from tests.detect.test_poller import metrics_text, sample, scraped, snapshots, wait_cycles
from tests.support.exporter import SyntheticExporter
from tests.support.prom import prometheus
from tests.support.service import make_settings, serve

METRIC = "season_demo"
BASE, AMP, WIDTH, NOISE, STEP_UP = 50.0, 100.0, 3 * 3600.0, 1.0, 40.0
DAY = 86400.0


def daily(t: np.ndarray, peak_at: float) -> np.ndarray:
    """BASE plus a Gaussian bump of AMP around `peak_at` (mod one day)."""
    phase = np.mod(t - peak_at + DAY / 2, DAY) - DAY / 2
    out: np.ndarray = BASE + AMP * np.exp(-0.5 * (phase / WIDTH) ** 2)
    return out


@dataclass(frozen=True)
class SeasonEnv:
    url: str
    exporter: SyntheticExporter
    now: float

    def normal(self) -> None:
        self.exporter.set(
            METRIC, {"series": "night"}, float(daily(np.array([self.now]), self.now - DAY / 2)[0])
        )
        self.exporter.set(
            METRIC, {"series": "peak"}, float(daily(np.array([self.now]), self.now)[0])
        )
        self.exporter.set(METRIC, {"series": "young"}, 20.0)


@pytest.fixture(scope="module")
def season_prom(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SeasonEnv]:
    work = tmp_path_factory.mktemp("season-prom")
    rng = np.random.default_rng(7)
    with SyntheticExporter() as exporter:
        now = time.time()
        labels = f'instance="{exporter.target}",job="synthetic"'
        lines = [f"# TYPE {METRIC} gauge"]
        t = np.arange(now - 9 * DAY, now - 90, 60.0)
        for name, peak_at in (("night", now - DAY / 2), ("peak", now)):
            values = daily(t, peak_at) + rng.normal(0.0, NOISE, t.size)
            prefix = f'{METRIC}{{{labels},series="{name}"}} '
            lines += [f"{prefix}{v:.4f} {int(s)}" for s, v in zip(t, values, strict=True)]
        young = np.arange(now - 3600, now - 90, 10.0)
        prefix = f'{METRIC}{{{labels},series="young"}} '
        lines += [f"{prefix}{20 + rng.normal(0.0, NOISE):.4f} {int(s)}" for s in young]
        (work / "history.om").write_text("\n".join(lines) + "\n# EOF\n")
        subprocess.run(
            ["promtool", "tsdb", "create-blocks-from", "openmetrics", "history.om", "tsdb"],
            cwd=work,
            check=True,
            capture_output=True,
            timeout=120,
        )
        env = SeasonEnv("", exporter, now)
        env.normal()
        with prometheus(work, scrape_targets=[exporter.target], tsdb_path=work / "tsdb") as ep:
            scraped(ep.url)
            yield SeasonEnv(ep.url, exporter, now)


def settings_for(url: str) -> dict[str, Any]:
    return {
        "prom_url": url,
        "monitor_interval": 1,
        "detect_step": "10s",
        "detect_selectors": METRIC,
        "detect_rules_dir": Path("/nonexistent"),
    }


async def test_night_step_is_flagged_against_the_daily_profile_and_the_peak_is_not(
    season_prom: SeasonEnv, embedded_store: EmbeddedStore, tmp_path: Path
) -> None:
    """With profiles fitted from the backfilled days, a night-time step far below the daily
    peak opens one detector incident whose evidence carries the period, the expectation and
    the profile; the daytime peak opens none; /prom-metrics, /metrics and the console count
    the seasonal and the warming series."""
    settings = make_settings(embedded_store.uri, tmp_path, **settings_for(season_prom.url))
    try:
        async with serve(settings) as svc:
            # the first cycle fits the profiles; the next ones score with them
            deadline = time.monotonic() + 60
            while not any(s["seasonal"] == 2 for s in await snapshots(svc)):
                assert time.monotonic() < deadline, (await snapshots(svc))[:2]
                await asyncio.sleep(0.2)
            assert (await svc.get("/api/v1/incidents", source="detector"))["total"] == 0

            season_prom.exporter.set(METRIC, {"series": "night"}, BASE + STEP_UP)
            body = await svc.wait_for(
                "/api/v1/incidents", lambda b: b["total"] >= 1, within=60, source="detector"
            )
            (incident,) = body["incidents"]
            detail = await svc.get(f"/api/v1/incidents/{incident['id']}")
            (episode,) = detail["episodes"]
            assert episode["labels"]["series"] == "night"
            det = episode["detector"]
            assert det["method"] == "range"
            assert det["period_seconds"] == DAY
            assert abs(det["expected"] - BASE) < 10.0
            assert det["band_high"] < BASE + STEP_UP < BASE + AMP
            assert len(det["season_profile"]) == DAY / det["season_step"]
            assert max(det["season_profile"]) - min(det["season_profile"]) > AMP / 2
            assert det["onset"]

            await wait_cycles(svc, "default", 3)
            assert (await svc.get("/api/v1/incidents"))["total"] == 1  # not the peak

            snap = (await snapshots(svc))[0]
            assert snap["seasonal"] == 2
            assert snap["warming"] == 1
            assert any('series="young"' in s for s in snap["warming_series"])
            text = await metrics_text(svc)
            assert sample(text, "detector_series_seasonal", target="default") == 2
            assert sample(text, "detector_series_warming", target="default") == 1
            # young has no history before the window: nothing of it to fit
            assert sample(text, "detector_season_fits_total", target="default") == 2

            page = (await svc.client.get(f"{svc.url}/ui")).text
            assert 'data-warming="1"' in page
            assert "young" in page
            assert "2 with a daily/weekly profile" in page
    finally:
        season_prom.normal()


async def test_without_profiles_the_night_step_goes_unseen(
    season_prom: SeasonEnv, store: Store
) -> None:
    """The same window scored twice by one poller: the first cycle (no profile yet) flags no
    point of the last two hours although the night step is in it; once fitted, the second
    opens an episode for the night series and only it."""
    settings = Settings(**{"_env_file": None, **settings_for(season_prom.url)})
    # a span over the whole window: every flagged point of it counts, not just the newest
    config = dataclasses.replace(PollerConfig.from_settings(settings), interval=3 * 3600.0)
    target = default_target(settings)
    assert target is not None
    season_prom.exporter.set(METRIC, {"series": "night"}, BASE + STEP_UP)
    try:
        await asyncio.sleep(12)  # at least one 10 s grid point holds the step
        async with httpx.AsyncClient() as http:
            poller = OutlierPoller(
                config,
                store,
                SignalProcessor(store),
                http,
                DetectorMetrics(CollectorRegistry()),
                target,
            )
            first = await poller.poll(target)
            assert first.error == ""
            assert first.series == 3
            assert first.seasonal == 0
            assert first.fitted == 2  # young has no history before the window
            assert first.flagged == first.opened == 0
            second = await poller.poll(target)
            assert second.seasonal == 2
            assert second.fitted == 0  # cached until DETECT_SEASON_REFIT
            assert second.flagged == second.opened == 1
            episodes = await DetectStore(store).open_episodes("default")
            assert [e.labels["series"] for e in episodes.values()] == ["night"]
    finally:
        season_prom.normal()
