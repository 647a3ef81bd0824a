"""Payloads and polling helpers for the enrichment tests that run the real service."""

from __future__ import annotations

import asyncio
import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import quote_plus

from receiver.settings import Settings
from receiver.store.embedded import EmbeddedStore
from tests.enrich.conftest import ALERT_AT
from tests.support.payloads import alert, webhook
from tests.support.service import Running, make_settings

CPU_EXPR = "instance:cpu_usage:percent > 80"


def iso(ts: float) -> str:
    return datetime.fromtimestamp(ts, UTC).isoformat().replace("+00:00", "Z")


def generator_url(expr: str) -> str:
    return f"http://prometheus.example:9090/graph?g0.expr={quote_plus(expr)}&g0.tab=1"


def cpu_alert(
    instance: str,
    *,
    name: str = "HighCPUUsage",
    starts: float = ALERT_AT,
    expr: str = CPU_EXPR,
    status: str = "firing",
    ends: str = "0001-01-01T00:00:00Z",
    **labels: str,
) -> dict[str, Any]:
    """An alert as Prometheus' HighCPUUsage rule sends it (job node, a real generatorURL)."""
    body = alert(name, instance, status=status, starts=iso(starts), ends=ends, job="node", **labels)
    body["generatorURL"] = generator_url(expr)
    body["annotations"] = {
        "summary": f"CPU usage on {instance} is above 80%",
        "runbook_url": "https://runbooks.example/alerts/HighCPUUsage",
    }
    return body


def settings(store: EmbeddedStore, tmp_path: Path, **overrides: Any) -> Settings:
    """Service settings with a quick enrichment loop (poll 0.3 s, settle 0.1 s)."""
    values: dict[str, Any] = {
        "enrich_poll_seconds": 0.3,
        "enrich_settle_seconds": 0.1,
        "llm_timeout_seconds": 10.0,
    }
    values.update(overrides)
    return make_settings(store.uri, tmp_path, **values)


async def post(svc: Running, alerts: list[dict[str, Any]], group: str) -> None:
    resp = await svc.post_alerts(webhook(alerts, group=group))
    assert resp.status_code == 200, resp.text
    assert resp.json()["status"] == "accepted"


async def incident_of(svc: Running, group: str, within: float = 20.0) -> dict[str, Any]:
    """The open incident of `group` once the delivery worker has made it."""
    key = f'{{}}:{{group="{group}"}}'
    body = await svc.wait_for(
        "/api/v1/incidents",
        lambda b: any(i["key"] == key for i in b["incidents"]),
        within=within,
        limit=500,
    )
    found: dict[str, Any] = next(i for i in body["incidents"] if i["key"] == key)
    return found


async def analysis(svc: Running, incident_id: str, within: float = 20.0) -> dict[str, Any]:
    """GET /api/v1/incidents/{id}/analysis once it answers with the incident's current one.

    (Between storing the analysis and recording it on the incident, the newest analysis is
    served with `current: false`.)
    """
    deadline = asyncio.get_running_loop().time() + within
    last = ""
    while asyncio.get_running_loop().time() < deadline:
        resp = await svc.client.get(f"{svc.url}/api/v1/incidents/{incident_id}/analysis")
        if resp.status_code == 200 and resp.json()["current"]:
            body: dict[str, Any] = resp.json()
            return body
        last = resp.text
        await asyncio.sleep(0.05)
    raise AssertionError(f"incident {incident_id} was not analysed in {within}s: {last}")


async def metric(svc: Running, line_prefix: str) -> float:
    """The value of the first /metrics line starting with `line_prefix` (0 if absent)."""
    text = (await svc.client.get(f"{svc.url}/metrics")).text
    for line in text.splitlines():
        if line.startswith(line_prefix + " "):
            return float(line.split()[-1])
    return 0.0


def user_prompt(body: bytes) -> str:
    """The user message of a recorded chat request (Ollama or OpenAI)."""
    messages = json.loads(body)["messages"]
    text: str = next(m["content"] for m in messages if m["role"] == "user")
    return text
