"""End to end: a real Alertmanager posts to the service, which analyses the incident with
evidence from a real Prometheus and the fake OpenAI-compatible model."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import httpx

from receiver.store.embedded import EmbeddedStore
from tests.enrich.conftest import ALERT_AT, NODE
from tests.enrich.factories import answer
from tests.enrich.helpers import CPU_EXPR, analysis, generator_url, iso, settings, user_prompt
from tests.support.fake_llm import FakeLLM, openai_chat
from tests.support.prom import alertmanager
from tests.support.service import TOKEN, serve


def _pushed(instance: str) -> dict[str, Any]:
    """An alert as Prometheus pushes it to Alertmanager's v2 API (no endsAt = firing)."""
    return {
        "labels": {
            "alertname": "HighCPUUsage",
            "instance": instance,
            "job": "node",
            "severity": "high",
        },
        "annotations": {"summary": f"CPU usage on {instance} is above 80%"},
        "startsAt": iso(ALERT_AT),
        "generatorURL": generator_url(CPU_EXPR),
    }


async def test_alertmanager_to_an_analysis_citing_prometheus_evidence(
    embedded_store: EmbeddedStore, tmp_path: Path, fake_llm: FakeLLM, prom_history: str
) -> None:
    """Alertmanager's webhook becomes an incident whose stored analysis cites the range of the
    alert's expression; the model was reached over the OpenAI protocol with the evidence."""
    reply = answer(
        hypotheses=[
            {"claim": "CPU on node-7 ramped past 80%.", "evidence_ids": ["E4"], "confidence": 0.8},
            {"claim": "Latency rose with it.", "evidence_ids": ["E7"], "confidence": 0.5},
        ]
    )
    fake_llm.script(openai_chat(json.dumps(reply)))
    cfg = settings(
        embedded_store,
        tmp_path,
        llm_url=f"{fake_llm.url}/v1",
        llm_model="gpt-4o-mini",
        llm_prices_per_1k={"gpt-4o-mini": (1.0, 2.0)},
        prom_url=prom_history,
    )
    async with serve(cfg) as svc:
        with alertmanager(tmp_path / "am", svc.webhook, token=TOKEN) as am:
            async with httpx.AsyncClient(base_url=am.url, timeout=10) as client:
                resp = await client.post("/api/v2/alerts", json=[_pushed(NODE)])
                assert resp.status_code == 200
            body = await svc.wait_for("/api/v1/incidents", lambda b: b["total"] == 1)
            incident = body["incidents"][0]
            found = await analysis(svc, incident["id"])

    assert fake_llm.requests[0].path == "/v1/chat/completions"
    assert "first past the threshold" in user_prompt(fake_llm.requests[0].body)
    assert found["provider"] == "openai"
    assert found["cost_estimate"] == 1.0 * 1_000 / 1_000 + 2.0 * 200 / 1_000  # LLM_PRICES_PER_1K
    cited = {e["id"]: e for h in found["hypotheses"] for e in h["evidence"]}
    assert sorted(cited) == ["E4", "E7"]
    assert cited["E4"]["kind"] == "expression"
    assert cited["E4"]["text"].startswith(f'instance:cpu_usage:percent{{instance="{NODE}"')
    assert cited["E7"]["kind"] == "sibling"
    assert "p95 HTTP latency" in cited["E7"]["title"]
