"""One outlier poll cycle against a real Prometheus: prints one JSON line.

20 metrics x 100 instances (2,000 series) with 26 hours of 1-minute history are backfilled with
`promtool tsdb create-blocks-from openmetrics`; 1 % of the series end on a spike. The poller
runs with its default detector settings (range method, 2 h window at 60 s, 14 d lookback with
extremes fetched from Prometheus, 1 d minimum history) against the embedded store. Reported:
wall time of a first and a second cycle (the second only updates open episodes), HTTP calls
by endpoint, series scored, flagged and episodes opened.
"""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

import httpx
import numpy as np
from prometheus_client import CollectorRegistry

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from receiver.detect.metrics import DetectorMetrics
from receiver.detect.poller import OutlierPoller, PollerConfig
from receiver.detect.targets import default_target
from receiver.ingest.processor import SignalProcessor
from receiver.settings import Settings
from receiver.store.embedded import EmbeddedStore
from receiver.store.repo import Store
from tests.support.prom import prometheus

METRICS = 20
INSTANCES = 100
HOURS = 26
STEP = 60
SPIKY = 0.01


def backfill(work: Path, now: int, rng: np.random.Generator) -> int:
    times = np.arange(now - HOURS * 3600, now - 30, STEP)
    spikes = 0
    with (work / "history.om").open("w") as out:
        for m in range(METRICS):
            name = f"bench_metric_{m:02d}"
            out.write(f"# TYPE {name} gauge\n")
            for i in range(INSTANCES):
                level = rng.lognormal(3.0, 1.0)
                values = level * (1 + 0.2 * np.sin(2 * np.pi * times / 86400.0))
                values = values + rng.normal(0, 0.02 * level, times.size)
                if rng.random() < SPIKY:
                    values[-1] = level * 5
                    spikes += 1
                labels = f'instance="host-{i:03d}:9100",job="bench"'
                out.writelines(
                    f"{name}{{{labels}}} {v:.6g} {int(t)}\n"
                    for t, v in zip(times, values, strict=True)
                )
        out.write("# EOF\n")
    subprocess.run(
        ["promtool", "tsdb", "create-blocks-from", "openmetrics", "history.om", "tsdb"],
        cwd=work,
        check=True,
        capture_output=True,
        timeout=600,
    )
    return spikes


async def main() -> None:
    rng = np.random.default_rng(7)
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        now = int(time.time())
        t0 = time.perf_counter()
        spikes = backfill(work, now, rng)
        backfill_s = time.perf_counter() - t0
        with prometheus(work / "prom", tsdb_path=work / "tsdb") as prom:
            async with EmbeddedStore(work / "store") as embedded:
                store = await Store.connect(embedded.uri, "bench", 10.0, "embedded")
                calls: Counter[str] = Counter()

                async def count(request: httpx.Request) -> None:
                    calls[request.url.path] += 1

                settings = Settings(_env_file=None, prom_url=prom.url)
                async with httpx.AsyncClient(event_hooks={"request": [count]}) as http:
                    poller = OutlierPoller(
                        PollerConfig.from_settings(settings),
                        store,
                        SignalProcessor(store),
                        http,
                        DetectorMetrics(CollectorRegistry()),
                        default_target(settings),
                    )
                    assert poller.default is not None
                    first = await poller.poll(poller.default)
                    first_calls = dict(calls)
                    second = await poller.poll(poller.default)
                await store.close()
    print(
        json.dumps(
            {
                "bench": "poller",
                "series": first.series,
                "selectors": first.selectors,
                "spiked_series": spikes,
                "flagged": first.flagged,
                "opened": first.opened,
                "first_cycle_s": round(first.duration_seconds, 3),
                "second_cycle_s": round(second.duration_seconds, 3),
                "second_opened": second.opened,
                "http_calls_first_cycle": first_calls,
                "backfill_s": round(backfill_s, 1),
                "error": first.error or None,
            }
        )
    )


if __name__ == "__main__":
    asyncio.run(main())
