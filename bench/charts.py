"""Chart rendering speed: prints one JSON line.

Times `render_chart` for the console's chart (640x240, a threshold, 240 points) and the email's
two-panel chart at twice the pixels (a seasonal band and expectation above a cause candidate),
each RUNS times after one warm-up render, and eight console charts rendered at once in worker
threads (`asyncio.to_thread`, as the service does) against the same eight one after another.
"""

from __future__ import annotations

import asyncio
import json
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from receiver.ui.chart import Band, Line, Panel, render_chart, render_panels
from receiver.ui.units import unit_of

RUNS = 30
POINTS = 240
T0 = 1_790_000_000.0


def _console(i: int = 0) -> bytes:
    t = T0 + np.arange(POINTS) * 15.0
    v = 40 + 10 * np.sin(np.arange(POINTS) / 8.0) + i
    v[160:190] = 92.0
    return render_chart(
        [Line(t, v, "node-1:9100")], threshold=80.0, marks=[t[160], t[190]], title=""
    )


def _email() -> bytes:
    t = T0 + np.arange(POINTS) * 15.0
    expected = 10 + 2 * np.sin(np.arange(POINTS) / 30.0)
    v = expected + np.random.default_rng(1).normal(0, 0.3, POINTS)
    v[200:] = 400.0
    panels = [
        Panel(
            [Line(t, v, "orders"), Line(t, expected, "expected", role="expected")],
            band=Band(expected - 1, expected + 1, t),
            marks=[t[200]],
            title="queue_bytes on node-1",
            unit=unit_of("queue_bytes"),
        ),
        Panel(
            [Line(t, np.linspace(0.1, 0.9, POINTS), "sda")],
            title="cause #1: node_disk_io_time_seconds_total",
            unit=unit_of("rate(node_disk_io_time_seconds_total[1m])"),
        ),
    ]
    return render_panels(panels, height=180, scale=2)


def _timed(render: Callable[[], bytes]) -> dict[str, float]:
    render()
    times = []
    for _ in range(RUNS):
        start = time.perf_counter()
        render()
        times.append((time.perf_counter() - start) * 1000)
    return {"median_ms": round(statistics.median(times), 1), "max_ms": round(max(times), 1)}


async def main() -> None:
    figures: dict[str, object] = {
        "console_640x240": _timed(_console),
        "email_2_panels_1280x720": _timed(_email),
        "png_bytes": {"console": len(_console()), "email": len(_email())},
    }
    start = time.perf_counter()
    serial = [_console(i) for i in range(8)]
    serial_ms = (time.perf_counter() - start) * 1000
    start = time.perf_counter()
    threaded = await asyncio.gather(*(asyncio.to_thread(_console, i) for i in range(8)))
    threaded_ms = (time.perf_counter() - start) * 1000
    figures["eight_charts"] = {
        "serial_ms": round(serial_ms, 1),
        "threads_ms": round(threaded_ms, 1),
        "identical": list(threaded) == serial,
    }
    print(json.dumps(figures))


if __name__ == "__main__":
    asyncio.run(main())
