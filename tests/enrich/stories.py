"""Small synthetic incidents for the cause search: a web job on three hosts with node and
process series, a dependency job, noise and a distraction, and one cause (leak, deploy,
dependency slowdown or surge) chosen by the caller. OpenMetrics text for promtool backfill."""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

STEP = 15
HOURS = 5


@dataclass(frozen=True)
class Story:
    kind: str  # leak | deploy | dependency | surge
    start: int  # unix seconds of the first sample
    alert_at: int
    instance: str  # the alerting instance (leak) or "" (the whole job alerts)
    cause_metric: str
    cause_instance: str
    text: str  # OpenMetrics


def _labels(labels: dict[str, str]) -> str:
    return "{" + ",".join(f'{k}="{v}"' for k, v in sorted(labels.items())) + "}"


def story(kind: str, seed: int, end: int) -> Story:
    """One incident ending at `end` (unix seconds); `seed` varies noise, onset and victim."""
    rng = np.random.default_rng(seed)
    start = end - HOURS * 3600
    ts = np.arange(start, end + 1, STEP)
    alert_at = end - int(rng.integers(20, 40)) * 60
    onset = alert_at - int(rng.integers(10, 50)) * 60
    hosts = ["web-1", "web-2", "web-3"]
    victim = hosts[int(rng.integers(0, 3))]
    lines: dict[str, list[str]] = {}

    def emit(name: str, kind_: str, labels: dict[str, str], values: np.ndarray) -> None:
        out = lines.setdefault(name, [f"# TYPE {name} {kind_}"])
        lab = _labels(labels)
        for t, v in zip(ts, values, strict=True):
            if math.isfinite(v):
                out.append(f"{name}{lab} {v:.6g} {t}")

    def noise(level: float, rel: float = 0.03) -> np.ndarray:
        return level * (1 + rel * rng.standard_normal(ts.size))

    def after(t0: int, ramp: int = 0) -> np.ndarray:
        if ramp <= 0:
            return (ts >= t0).astype(float)
        return np.clip((ts - t0) / ramp, 0.0, 1.0)

    daily = 1 + 0.15 * np.sin(2 * np.pi * (ts % 86400) / 86400)
    dep_slow = after(onset, 120) if kind == "dependency" else np.zeros(ts.size)
    surge = 1 + 1.5 * after(onset, 180) if kind == "surge" else np.ones(ts.size)
    deploy_at = {h: onset + 60 * i for i, h in enumerate(hosts)}
    for h in hosts:
        web = {"job": "web", "instance": f"{h}:8080"}
        node = {"job": "node", "instance": f"{h}:9100"}
        deployed = after(deploy_at[h]) if kind == "deploy" else np.zeros(ts.size)
        leak = after(onset, alert_at - onset) if kind == "leak" and h == victim else 0 * ts
        rps = 50 * daily * surge * (1 + 0.03 * rng.standard_normal(ts.size))
        emit("http_requests_total", "counter", {**web, "code": "200"}, np.cumsum(rps * STEP))
        latency = 0.05 * (1 + 4 * deployed + 6 * dep_slow + 3 * (surge - 1)) * noise(1.0)
        latency = latency * (1 + 8 * np.clip(leak - 0.7, 0, 1))
        emit("http_request_duration_seconds_sum", "counter", web, np.cumsum(rps * latency * STEP))
        emit("http_request_duration_seconds_count", "counter", web, np.cumsum(rps * STEP))
        client = 0.02 * (1 + 15 * dep_slow) * noise(1.0)
        dep = {**web, "upstream": "payments"}
        emit("http_client_request_duration_seconds_sum", "counter", dep, np.cumsum(client * STEP))
        emit("http_client_request_duration_seconds_count", "counter", dep, np.cumsum(ts * 0 + STEP))
        rss = 400e6 * noise(1.0, 0.01) * (1 + 1.2 * leak)
        emit("process_resident_memory_bytes", "gauge", web, rss)
        emit("process_start_time_seconds", "gauge", web, np.full(ts.size, float(start - 3600)))
        emit("process_open_fds", "gauge", web, np.round(noise(80, 0.05)))
        for cpu in ("0", "1"):
            busy = 0.2 * daily * surge * noise(1.0, 0.05)
            if h == hosts[0]:  # the distraction: a short CPU burst on another host long before
                busy = busy + 0.6 * (np.abs(ts - (alert_at - 7200)) < 300)
            for mode, share in (("user", busy), ("system", busy / 3), ("iowait", 0.01 * noise(1))):
                emit(
                    "node_cpu_seconds_total",
                    "counter",
                    {**node, "cpu": cpu, "mode": mode},
                    np.cumsum(share * STEP),
                )
        emit("node_memory_MemAvailable_bytes", "gauge", node, 8e9 - rss)
        if kind == "deploy":
            old = {**web, "version": "1.4.2"}
            new = {**web, "version": "1.5.0"}
            emit("web_build_info", "gauge", old, np.where(deployed > 0, np.nan, 1.0))
            emit("web_build_info", "gauge", new, np.where(deployed > 0, 1.0, np.nan))
        else:
            emit("web_build_info", "gauge", {**web, "version": "1.4.2"}, np.ones(ts.size))
    pay = {"job": "payments", "instance": "payments-1:8080"}
    pay_latency = 0.02 * (1 + 15 * dep_slow) * noise(1.0)
    emit("http_request_duration_seconds_sum", "counter", pay, np.cumsum(20 * pay_latency * STEP))
    emit("http_request_duration_seconds_count", "counter", pay, np.cumsum(ts * 0 + 20 * STEP))
    text = "\n".join(line for block in lines.values() for line in block) + "\n# EOF\n"
    causes: dict[str, tuple[str, str]] = {
        "leak": ("process_resident_memory_bytes", f"{victim}:8080"),
        "deploy": ("web_build_info", f"{hosts[0]}:8080"),
        "dependency": ("http_client_request_duration_seconds", ""),
        "surge": ("http_requests_total", ""),
    }
    metric, where = causes[kind]
    return Story(
        kind,
        start,
        alert_at,
        f"{victim}:8080" if kind == "leak" else "",
        metric,
        where,
        text,
    )


Check = Callable[[dict[str, object]], bool]
