"""Shared paths and helpers for the rulegen tests (also usable by service-level e2e tests)."""

from __future__ import annotations

import shutil
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import yaml

from tests.support.exporter import SyntheticExporter

REPO = Path(__file__).resolve().parents[2]
DATA = REPO / "tests" / "data" / "rulegen"


def copy_repo_rules(dest: Path) -> Path:
    """A scratch repository root holding a copy of the shipped specs and generated files."""
    shutil.copytree(REPO / "rules", dest / "rules")
    shutil.copy(REPO / "prometheus-rules.example.yml", dest / "prometheus-rules.example.yml")
    return dest


CPUS = ("0", "1")


class CpuLoad:
    """Advances node_cpu_seconds_total like node_exporter would at a chosen busy fraction."""

    def __init__(self, exporter: SyntheticExporter) -> None:
        self._exporter = exporter
        self._busy = 0.0
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def set_busy(self, fraction: float) -> None:
        with self._lock:
            self._busy = fraction

    def _tick(self, seconds: float) -> None:
        with self._lock:
            busy = self._busy
        for cpu in CPUS:
            self._exporter.add(
                "node_cpu_seconds_total", {"cpu": cpu, "mode": "idle"}, seconds * (1 - busy)
            )
            self._exporter.add(
                "node_cpu_seconds_total", {"cpu": cpu, "mode": "user"}, seconds * busy
            )

    def _run(self) -> None:
        last = time.monotonic()
        while not self._stop.wait(0.1):
            now = time.monotonic()
            self._tick(now - last)
            last = now

    @contextmanager
    def running(self) -> Iterator[CpuLoad]:
        self._tick(0.0)
        self._thread.start()
        try:
            yield self
        finally:
            self._stop.set()
            self._thread.join(timeout=5)


def write_fast_specs(root: Path) -> None:
    """Shipped specs under `root`/rules/specs, with node.yml made fast for a live Prometheus:
    evaluation every 1s, the CPU rate window 5s and HighCPUUsage's `for` 2s. Run
    `receiver rules generate --root root` afterwards; do not run promtool on the variant."""
    specs = root / "rules" / "specs"
    specs.mkdir(parents=True)
    for path in sorted((REPO / "rules" / "specs").glob("*.yml")):
        (specs / path.name).write_text(path.read_text())
    node: dict[str, Any] = yaml.safe_load((REPO / "rules" / "specs" / "node.yml").read_text())
    node["interval"] = "1s"
    [cpu] = [r for r in node["recording"] if r["record"] == "instance:cpu_usage:percent"]
    assert "[5m]" in cpu["expr"]
    cpu["expr"] = cpu["expr"].replace("[5m]", "[5s]")
    cpu["examples"] = []  # written for the 5m window; promtool is not run on this variant
    [alert] = [r for r in node["thresholds"] if r["name"] == "HighCPUUsage"]
    alert["for"] = "2s"
    (specs / "node.yml").write_text(yaml.safe_dump(node, sort_keys=False))
