"""A real Prometheus loads the generated rules, scrapes node-exporter-shaped data and fires.

The CPU recording rule's 5m rate window and HighCPUUsage's 5m `for` are shortened in a spec
variant (written like any spec and run through `receiver rules generate`) so the test takes
seconds; everything else — expressions, labels, annotations — is the shipped spec.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import pytest

from receiver.ingest.normalise import parse_value
from receiver.rulegen.cli import main
from tests.rulegen.helpers import CpuLoad, write_fast_specs
from tests.support.exporter import SyntheticExporter
from tests.support.prom import prometheus


def _alerts(url: str, name: str) -> list[dict[str, Any]]:
    body = httpx.get(f"{url}/api/v1/alerts", timeout=5).json()
    return [a for a in body["data"]["alerts"] if a["labels"]["alertname"] == name]


def _wait(check: Callable[[], bool], timeout: float, what: str, debug: Callable[[], str]) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():
            return
        time.sleep(0.25)
    raise AssertionError(f"{what} within {timeout}s; {debug()}")


def test_high_cpu_fires_and_resolves_in_real_prometheus(tmp_path: Path) -> None:
    """HighCPUUsage goes firing with the spec's labels/annotations when CPU > 80 %, and stops
    firing once CPU drops; all generated groups load healthy."""
    root = tmp_path / "repo"
    write_fast_specs(root)
    assert main(["generate", "--root", str(root)]) == 0
    rule_files = sorted((root / "rules" / "generated").glob("*.yml"))
    with (
        SyntheticExporter() as exporter,
        CpuLoad(exporter).running() as load,
        prometheus(
            tmp_path / "prom",
            scrape_targets=[exporter.target],
            rule_files=rule_files,
            interval="1s",
        ) as prom,
    ):

        def debug() -> str:
            query = httpx.get(
                f"{prom.url}/api/v1/query",
                params={"query": "instance:cpu_usage:percent"},
                timeout=5,
            ).json()
            return f"cpu={query['data']['result']} alerts={_alerts(prom.url, 'HighCPUUsage')}"

        groups = httpx.get(f"{prom.url}/api/v1/rules", timeout=5).json()["data"]["groups"]
        assert sorted(g["name"] for g in groups) == [
            "app",
            "availability",
            "http",
            "http-zscore",
            "node",
            "node-zscore",
        ]

        load.set_busy(0.95)
        _wait(
            lambda: any(a["state"] == "firing" for a in _alerts(prom.url, "HighCPUUsage")),
            30,
            "HighCPUUsage did not fire",
            debug,
        )
        [alert] = _alerts(prom.url, "HighCPUUsage")
        assert alert["labels"] == {
            "alertname": "HighCPUUsage",
            "family": "cpu",
            "instance": exporter.target,
            "job": "synthetic",
            "metric": "cpu_usage",
            "owner": "sre-oncall",
            "severity": "high",
            "team": "sre",
        }
        assert alert["annotations"]["summary"] == f"CPU usage on {exporter.target} is above 80%"
        assert alert["annotations"]["runbook_url"] == "https://runbooks.example/alerts/HighCPUUsage"
        assert float(alert["value"]) > 80
        # the seed's value line: humanized by Prometheus, read back to a number at ingest
        assert parse_value(alert["annotations"]["value"]) == pytest.approx(
            float(alert["value"]), rel=1e-3
        )

        load.set_busy(0.10)
        _wait(
            lambda: not _alerts(prom.url, "HighCPUUsage"),
            30,
            "HighCPUUsage did not stop firing",
            debug,
        )
        # The target stayed up: no ServiceDown. No rule failed to evaluate (groups with a 1m
        # interval may not have run yet: their health is still "unknown").
        assert _alerts(prom.url, "ServiceDown") == []
        groups = httpx.get(f"{prom.url}/api/v1/rules", timeout=5).json()["data"]["groups"]
        health = {r["name"]: r["health"] for g in groups for r in g["rules"]}
        assert set(health.values()) <= {"ok", "unknown"}, health
        assert health["instance:cpu_usage:percent"] == health["HighCPUUsage"] == "ok"
