"""A scripted node- and HTTP-style exporter for the demo: one HTTP server, one path per
instance (`/node-a/metrics`, `/node-b/metrics`, `/api-1/metrics`); counters are integrated
exactly at each scrape from the busy fraction and latency profile the script sets."""

from __future__ import annotations

import math
import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler

from receiver.ports import LoopbackHTTP, ServedOverHTTP, respond

CPUS = ("0", "1")
NODES = ("node-a", "node-b")
API = "api-1"
REQUESTS_PER_SECOND = 40.0
ERROR_SHARE = 0.002
BUCKETS = (0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
# cumulative share of requests at or below each bucket bound
NORMAL = (0.30, 0.70, 0.97, 0.995, 1.0, 1.0, 1.0, 1.0)  # p95 ~ 0.24 s
SLOW = (0.05, 0.10, 0.20, 0.40, 0.70, 0.985, 1.0, 1.0)  # p95 ~ 2.3 s: below the 5 s alert
GIB = 1024.0**3


@dataclass
class _State:
    busy: dict[str, float] = field(default_factory=lambda: dict.fromkeys(NODES, 0.25))
    slow: bool = False
    counters: dict[str, float] = field(default_factory=dict)


def _labels(**labels: str) -> str:
    inner = ",".join(f'{k}="{v}"' for k, v in labels.items())
    return "{" + inner + "}" if inner else ""


class ScriptedExporter(ServedOverHTTP):
    """Serves the metrics; `set_busy(node, fraction)` and `set_slow(flag)` steer them."""

    def __init__(self, host: str = "127.0.0.1", port: int = 0) -> None:
        self._lock = threading.Lock()
        self._state = _State()
        self._started = time.monotonic()
        exporter = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                instance = self.path.split("?")[0].removesuffix("/metrics").strip("/")
                if instance not in (*NODES, API):
                    self.send_error(404)
                    return
                body = exporter.render(instance).encode()
                respond(self, 200, body, "text/plain; version=0.0.4")

            def log_message(self, format: str, *args: object) -> None:
                return

        self._http = LoopbackHTTP(Handler, port, host)
        self.port: int = self._http.port
        # an hour of uptime already: counters that start at 0 make rate() underestimate at
        # first (it does not extrapolate below zero), which reads as a CPU spike at start-up
        self._last = self._started - 3600.0
        self._advance(self._started)

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"

    def set_busy(self, node: str, fraction: float) -> None:
        with self._lock:
            self._advance(time.monotonic())
            self._state.busy[node] = fraction

    def set_slow(self, slow: bool) -> None:
        with self._lock:
            self._advance(time.monotonic())
            self._state.slow = slow

    def _add(self, key: str, delta: float) -> None:
        self._state.counters[key] = self._state.counters.get(key, 0.0) + delta

    def _advance(self, now: float) -> None:
        """Integrate every counter from the last call to `now` (exactly: no ticking jitter).

        The load wobbles as 0.03 x sin(t/6); its integral is -0.18 x cos(t/6).
        """
        t0, t1 = self._last - self._started, now - self._started
        self._last = now
        seconds = t1 - t0
        if seconds <= 0:
            return
        wobble = -0.18 * (math.cos(t1 / 6.0) - math.cos(t0 / 6.0))  # integral of 0.03 sin
        for node in NODES:
            busy = self._state.busy[node] * seconds + wobble
            for cpu in CPUS:
                self._add(f"{node}|cpu|{cpu}|idle", seconds - busy)
                self._add(f"{node}|cpu|{cpu}|user", busy * 0.8)
                self._add(f"{node}|cpu|{cpu}|system", busy * 0.2)
        n = REQUESTS_PER_SECOND * seconds
        shares = SLOW if self._state.slow else NORMAL
        for bound, share in zip(BUCKETS, shares, strict=True):
            # a little wobble in the fastest buckets keeps the latency from being a flat line
            tweak = REQUESTS_PER_SECOND * wobble / 3 if bound <= 0.1 and not self._state.slow else 0
            self._add(f"bucket|{bound:g}", n * share + tweak)
        self._add("bucket|+Inf", n)
        self._add("count", n)
        self._add("sum", n * (1.2 if self._state.slow else 0.12))
        self._add("requests|200", n * (1 - ERROR_SHARE))
        self._add("requests|500", n * ERROR_SHARE)

    def render(self, instance: str) -> str:
        with self._lock:
            self._advance(time.monotonic())
            c = dict(self._state.counters)
        lines: list[str] = []
        if instance in NODES:
            lines.append("# TYPE node_cpu_seconds_total counter")
            for cpu in CPUS:
                for mode in ("idle", "user", "system"):
                    value = c.get(f"{instance}|cpu|{cpu}|{mode}", 0.0)
                    lines.append(f"node_cpu_seconds_total{_labels(cpu=cpu, mode=mode)} {value!r}")
            total = 16 * GIB
            available = (0.55 if instance == "node-a" else 0.48) * total
            lines += [
                f"node_memory_MemTotal_bytes {total!r}",
                f"node_memory_MemAvailable_bytes {available!r}",
            ]
            fs = _labels(device="/dev/sda1", fstype="ext4", mountpoint="/")
            lines += [
                f"node_filesystem_size_bytes{fs} {200 * GIB!r}",
                f"node_filesystem_avail_bytes{fs} {(84 if instance == 'node-a' else 71) * GIB!r}",
            ]
        else:
            lines.append("# TYPE http_request_duration_seconds histogram")
            for bound in BUCKETS:
                value = c.get(f"bucket|{bound:g}", 0.0)
                lines.append(
                    f"http_request_duration_seconds_bucket{_labels(le=f'{bound:g}')} {value!r}"
                )
            inf = c.get("bucket|+Inf", 0.0)
            lines.append(f'http_request_duration_seconds_bucket{{le="+Inf"}} {inf!r}')
            lines.append(f"http_request_duration_seconds_count {c.get('count', 0.0)!r}")
            lines.append(f"http_request_duration_seconds_sum {c.get('sum', 0.0)!r}")
            lines.append("# TYPE http_requests_total counter")
            for code in ("200", "500"):
                value = c.get(f"requests|{code}", 0.0)
                lines.append(f"http_requests_total{_labels(code=code)} {value!r}")
        return "\n".join(lines) + "\n"
