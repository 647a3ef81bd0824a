"""alertmanager.example.yml: amtool accepts it, it routes to the receiver, and its inhibit works."""

from __future__ import annotations

import subprocess
from pathlib import Path
from typing import Any

import httpx
import yaml

from receiver.rulegen.load import load_specs
from tests.rulegen.helpers import REPO
from tests.support.procs import free_port, running

EXAMPLE = REPO / "alertmanager.example.yml"


def _config() -> dict[str, Any]:
    config: dict[str, Any] = yaml.safe_load(EXAMPLE.read_text())
    return config


def test_amtool_check_config_accepts_the_example() -> None:
    """`amtool check-config alertmanager.example.yml` succeeds."""
    result = subprocess.run(
        ["amtool", "check-config", str(EXAMPLE)],
        capture_output=True,
        text=True,
        check=False,
        timeout=60,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "SUCCESS" in result.stdout
    assert "1 inhibit rules" in result.stdout


def test_example_routes_everything_to_the_receiver_webhook() -> None:
    """One receiver: the webhook path, bearer auth from a file, resolved alerts, capped batch."""
    config = _config()
    route = config["route"]
    assert route["receiver"] == "ai-devops-monitor"
    assert "routes" not in route
    assert route["group_by"] == ["alertname", "cluster", "job"]
    assert (route["group_wait"], route["group_interval"], route["repeat_interval"]) == (
        "30s",
        "5m",
        "4h",
    )
    [receiver] = config["receivers"]
    [webhook] = receiver["webhook_configs"]
    assert webhook["url"] == "http://127.0.0.1:8000/api/v1/alerts"
    assert webhook["send_resolved"] is True
    assert webhook["max_alerts"] == 100
    assert webhook["http_config"]["authorization"] == {
        "type": "Bearer",
        "credentials_file": "/etc/alertmanager/receiver-token",
    }


def test_inhibit_rule_uses_labels_every_generated_alert_carries() -> None:
    """The inhibit rule matches on severity/family, which every generated alert sets."""
    [rule] = _config()["inhibit_rules"]
    assert rule == {
        "source_matchers": ['severity="critical"'],
        "target_matchers": ['severity="high"'],
        "equal": ["family", "instance", "job"],
    }
    families = {r.family_label for _, r in load_specs(REPO / "rules" / "specs").thresholds()}
    assert families == {
        "availability",
        "cpu",
        "database",
        "disk",
        "errors",
        "latency",
        "memory",
        "queue",
    }


def test_real_alertmanager_inhibits_high_by_critical_of_same_family(tmp_path: Path) -> None:
    """Loaded by a real Alertmanager, a critical alert suppresses the high alert of the same
    family and instance, and nothing else."""
    config = _config()
    token = tmp_path / "token"
    token.write_text("test-token")
    webhook = config["receivers"][0]["webhook_configs"][0]
    # Nothing listens there: with group_wait 30s no notification is attempted during the test.
    webhook["url"] = f"http://127.0.0.1:{free_port()}/api/v1/alerts"
    webhook["http_config"]["authorization"]["credentials_file"] = str(token)
    cfg = tmp_path / "alertmanager.yml"
    cfg.write_text(yaml.safe_dump(config))
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    argv = [
        "prometheus-alertmanager",
        f"--config.file={cfg}",
        f"--storage.path={tmp_path / 'amdata'}",
        f"--web.listen-address=127.0.0.1:{port}",
        "--cluster.listen-address=",
    ]
    common = {"instance": "host-1:9100", "job": "node", "team": "sre", "owner": "sre-oncall"}
    alerts = [
        {"labels": {**common, "alertname": "DiskFull", "severity": "critical", "family": "disk"}},
        {"labels": {**common, "alertname": "DiskFilling", "severity": "high", "family": "disk"}},
        {"labels": {**common, "alertname": "HighCPUUsage", "severity": "high", "family": "cpu"}},
        {
            "labels": {
                **common,
                "instance": "host-2:9100",
                "alertname": "DiskFilling",
                "severity": "high",
                "family": "disk",
            }
        },
    ]
    with running(argv, tmp_path / "alertmanager.log", ready_url=f"{url}/-/ready", timeout=60):
        posted = httpx.post(f"{url}/api/v2/alerts", json=alerts, timeout=10)
        assert posted.status_code == 200
        got = httpx.get(f"{url}/api/v2/alerts", timeout=10).json()
    states = {
        (a["labels"]["alertname"], a["labels"]["instance"]): a["status"]["state"] for a in got
    }
    assert states == {
        ("DiskFull", "host-1:9100"): "active",
        ("DiskFilling", "host-1:9100"): "suppressed",
        ("HighCPUUsage", "host-1:9100"): "active",
        ("DiskFilling", "host-2:9100"): "active",
    }
