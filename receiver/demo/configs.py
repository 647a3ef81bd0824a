"""The demo's timings (`Timeline`) and the configuration it writes for what it starts: the rules
with demo timings, `prometheus.yml`, `alertmanager.yml` and the receiver's environment."""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from receiver.demo.exporter import API, NODES
from receiver.rulegen.generate import GENERATED_DIR, render_all
from receiver.rulegen.generate import write as write_files
from receiver.rulegen.load import load_specs
from receiver.settings import Settings

LATENCY_SERIES = "job:http_request_latency_seconds:p95"
RECIPIENT = "oncall@example.com"
SENDER = "monitor@example.com"
PASS_THROUGH = ("LLM_", "LANGFUSE_")  # the only settings the caller's environment may set


@dataclass(frozen=True)
class Timeline:
    """Seconds after the script starts; the rule and detector timings that fit them."""

    cpu_start: float
    cpu_end: float
    slow_start: float
    slow_end: float
    deadline: float  # give up waiting for the outcome this long after the start
    rule_for: str  # HighCPUUsage `for`
    rate_window: str  # rate() windows of the recorded CPU and HTTP series
    monitor_interval: int
    detect_window: float
    group_interval: str


NORMAL = Timeline(15, 45, 60, 85, 150, "10s", "10s", 2, 120.0, "2s")
FAST = Timeline(6, 22, 26, 42, 100, "4s", "6s", 1, 60.0, "1s")


def demo_rules(specs: Path, root: Path, timeline: Timeline) -> list[Path]:
    """The shipped specs with demo timings, generated into `root`/rules/generated."""
    target = root / "rules" / "specs"
    target.mkdir(parents=True, exist_ok=True)
    for path in sorted(specs.glob("*.yml")):
        spec: dict[str, Any] = yaml.safe_load(path.read_text(encoding="utf-8"))
        if path.name in ("node.yml", "http.yml"):
            spec["interval"] = "1s"
            for rule in spec.get("recording", []):
                rule["expr"] = rule["expr"].replace("[5m]", f"[{timeline.rate_window}]")
                rule["examples"] = []  # written for 5m windows; promtool is not run on these
            for alert in spec.get("thresholds", []):
                alert["for"] = timeline.rule_for
                alert.pop("examples", None)
        (target / path.name).write_text(yaml.safe_dump(spec, sort_keys=False), encoding="utf-8")
    write_files(root, render_all(load_specs(target, root)))
    return sorted((root / GENERATED_DIR).glob("*.yml"))


def prometheus_config(exporter: str, rule_files: Sequence[Path], alertmanager: str) -> str:
    scrape = [
        {
            # one scrape config per path; the static labels give each its instance and job
            "job_name": node,
            "metrics_path": f"/{node}/metrics",
            "static_configs": [
                {"targets": [exporter], "labels": {"instance": f"{node}:9100", "job": "node"}}
            ],
        }
        for node in NODES
    ]
    scrape.append(
        {
            "job_name": "api",
            "metrics_path": f"/{API}/metrics",
            "static_configs": [{"targets": [exporter], "labels": {"instance": f"{API}:8080"}}],
        }
    )
    config = {
        "global": {"scrape_interval": "1s", "evaluation_interval": "1s"},
        "rule_files": [str(p) for p in rule_files],
        "alerting": {"alertmanagers": [{"static_configs": [{"targets": [alertmanager]}]}]},
        "scrape_configs": scrape,
    }
    return yaml.safe_dump(config, sort_keys=False)


def alertmanager_config(webhook: str, token_file: Path, timeline: Timeline) -> str:
    """alertmanager.example.yml with demo timings."""
    config = {
        "route": {
            "receiver": "ai-devops-monitor",
            "group_by": ["alertname", "cluster", "job", "instance"],
            "group_wait": "1s",
            "group_interval": timeline.group_interval,
            "repeat_interval": "4h",
        },
        "receivers": [
            {
                "name": "ai-devops-monitor",
                "webhook_configs": [
                    {
                        "url": webhook,
                        "send_resolved": True,
                        "max_alerts": 100,
                        "http_config": {
                            "authorization": {
                                "type": "Bearer",
                                "credentials_file": str(token_file),
                            },
                            "follow_redirects": False,
                        },
                    }
                ],
            }
        ],
    }
    return yaml.safe_dump(config, sort_keys=False)


def receiver_env(
    *,
    data: Path,
    port: int,
    token: str,
    prom_url: str,
    smtp_port: int,
    rules: Path,
    specs: Path,
    timeline: Timeline,
) -> dict[str, str]:
    """The receiver's environment: ours, plus only LLM_*/LANGFUSE_* from the caller's."""
    own = {name.upper() for name in Settings.model_fields}
    env = {
        k: v
        for k, v in os.environ.items()
        if k.upper() not in own or k.upper().startswith(PASS_THROUGH)
    }
    llm = bool(os.environ.get("LLM_URL", "").strip())
    env.update(
        {
            "RECEIVER_HOST": "127.0.0.1",
            "RECEIVER_PORT": str(port),
            "PUBLIC_URL": f"http://127.0.0.1:{port}",
            "DATA_DIR": str(data),
            "WEBHOOK_TOKEN": token,
            "PROM_URL": prom_url,
            "LLM_PROVIDER": os.environ.get("LLM_PROVIDER", "auto") if llm else "offline",
            "ENRICH_RULES_DIR": str(rules),
            "ENRICH_POLL_SECONDS": "1",
            "MONITOR_INTERVAL": str(timeline.monitor_interval),
            "DETECT_RULES_DIR": str(specs),
            "DETECT_SELECTORS": LATENCY_SERIES,
            "DETECT_METHOD": "robust",
            "DETECT_WINDOW": f"{timeline.detect_window:g}",
            "DETECT_STEP": "1",
            "DETECT_MIN_HISTORY": "10",
            "DETECT_MIN_DURATION": "2",
            "DETECT_SUPPRESS": "30",
            "SMTP_HOST": "127.0.0.1",
            "SMTP_PORT": str(smtp_port),
            "SMTP_MODE": "plain",
            "SMTP_FROM": SENDER,
            "SMTP_TO": RECIPIENT,
            "NOTIFY_ROUTES": "critical=email;high=email;medium=email;low=email",
            "NOTIFY_RCA_WAIT_SECONDS": "15",
            "NOTIFY_POLL_SECONDS": "0.5",
            "NOTIFY_RATE_LIMIT": "0",  # a demo sends a handful of mails
            "WATCHDOG_TIMEOUT_SECONDS": "0",
            "LOG_LEVEL": "info",
        }
    )
    return env
