"""The analysis API, re-analysis and its cache, budgets, the per-analysis timeout and history,
through the running service."""

from __future__ import annotations

import asyncio
import dataclasses
from pathlib import Path

from receiver.store.embedded import EmbeddedStore
from tests.enrich.conftest import ALERT_AT, NODE
from tests.enrich.factories import answer_json
from tests.enrich.helpers import (
    analysis,
    cpu_alert,
    incident_of,
    iso,
    metric,
    post,
    settings,
)
from tests.support.fake_llm import FakeLLM, ollama_chat
from tests.support.payloads import resolved
from tests.support.service import serve


async def test_reanalyse_with_unchanged_evidence_is_served_from_the_cache(
    embedded_store: EmbeddedStore, tmp_path: Path, fake_llm: FakeLLM
) -> None:
    """POST …/reanalyse queues the incident; the same signature and evidence reuse the model's
    answer without a call; unknown incidents are 404."""
    fake_llm.script(ollama_chat(answer_json()))
    cfg = settings(embedded_store, tmp_path, llm_url=fake_llm.url, llm_provider="ollama")
    async with serve(cfg) as svc:
        await post(svc, [cpu_alert(NODE)], group="again")
        incident = await incident_of(svc, "again")
        first = await analysis(svc, incident["id"])

        resp = await svc.client.post(f"{svc.url}/api/v1/incidents/{incident['id']}/reanalyse")
        assert resp.status_code == 202
        assert resp.json() == {"status": "queued", "incident_id": incident["id"]}
        cached = 'rca_generated_total{outcome="cached",provider="ollama"}'
        for _ in range(200):
            if await metric(svc, cached) == 1.0:
                break
            await asyncio.sleep(0.05)
        assert await metric(svc, cached) == 1.0
        assert len(fake_llm.requests) == 1
        assert (await analysis(svc, incident["id"]))["id"] == first["id"]
        assert (await svc.get(f"/api/v1/incidents/{incident['id']}"))["needs_analysis"] is False

        for path in ("reanalyse", "analyze"):
            missing = await svc.client.post(f"{svc.url}/api/v1/incidents/{'0' * 24}/{path}")
            assert missing.status_code == 404
        unknown = await svc.client.get(f"{svc.url}/api/v1/incidents/nope/analysis")
        assert (unknown.status_code, unknown.json()["error"]) == (404, "not_found")


async def test_rca_list_filters_and_feedback(embedded_store: EmbeddedStore, tmp_path: Path) -> None:
    """GET /rca answers the seed's shape newest first with severity/since/limit filters;
    feedback on an analysis is validated and stored."""
    async with serve(settings(embedded_store, tmp_path)) as svc:
        await post(svc, [cpu_alert(NODE, severity="critical")], group="crit")
        await post(svc, [cpu_alert(NODE, severity="low")], group="low")
        crit = await incident_of(svc, "crit")
        low = await incident_of(svc, "low")
        await analysis(svc, crit["id"])
        await analysis(svc, low["id"])

        everything = await svc.get("/rca")
        assert (everything["count"], everything["total"]) == (2, 2)
        assert {r["incident_id"] for r in everything["rca"]} == {low["id"], crit["id"]}
        created = [r["created_at"] for r in everything["rca"]]
        assert created == sorted(created, reverse=True)
        assert set(everything["rca"][0]) >= {"summary", "cause", "fix", "simplified", "timestamp"}
        critical = await svc.get("/rca", severity="critical")
        assert [r["incident_id"] for r in critical["rca"]] == [crit["id"]]
        page = await svc.get("/rca", limit=1)
        assert (page["count"], page["total"]) == (1, 2)
        assert (await svc.get("/rca", since="2h"))["total"] == 2
        assert (await svc.get("/rca", since="2000-01-01T00:00:00Z"))["total"] == 2
        assert (await svc.get("/rca", since=iso(ALERT_AT + 10**9)))["total"] == 0
        bad = await svc.client.get(f"{svc.url}/rca", params={"severity": "huge"})
        assert bad.status_code == 400

        url = f"{svc.url}/api/v1/incidents/{crit['id']}/feedback"
        stored = await svc.client.post(url, json={"helpful": False, "actual_cause": "a cron job"})
        assert stored.status_code == 201
        current = await svc.get(f"/api/v1/incidents/{crit['id']}")
        assert stored.json()["rca_id"] == current["analysis_id"]
        for body in ({}, {"helpful": "yes"}, [1], {"comment": 3}):
            assert (await svc.client.post(url, json=body)).status_code == 422
        missing = f"{svc.url}/api/v1/incidents/{'0' * 24}/feedback"
        assert (await svc.client.post(missing, json={"helpful": True})).status_code == 404


async def test_token_budgets_send_analyses_to_the_offline_analyst(
    embedded_store: EmbeddedStore, tmp_path: Path, fake_llm: FakeLLM
) -> None:
    """Over the hourly cap (tokens every replica stored in the last hour) no call is made:
    the offline analyst answers, says why, and the budget counter moves."""
    fake_llm.script(ollama_chat(answer_json(), prompt_tokens=5_000, eval_tokens=100))
    cfg = settings(
        embedded_store,
        tmp_path,
        llm_url=fake_llm.url,
        llm_provider="ollama",
        llm_max_tokens_per_hour=4_000,
    )
    async with serve(cfg) as svc:
        await post(svc, [cpu_alert(NODE)], group="budget-1")
        first = await analysis(svc, (await incident_of(svc, "budget-1"))["id"])
        assert first["offline"] is False
        await post(svc, [cpu_alert("node-9:9100")], group="budget-2")
        second = await analysis(svc, (await incident_of(svc, "budget-2"))["id"])
        assert second["offline"] is True
        assert "hourly LLM budget of 4000 tokens is spent (5100 used" in second["cause"]
        assert len(fake_llm.requests) == 1
        assert await metric(svc, 'llm_budget_exceeded_total{limit="hour"}') == 1.0
        budget = 'rca_generated_total{outcome="budget",provider="offline"}'
        assert await metric(svc, budget) == 1.0

    tiny = settings(embedded_store, tmp_path, llm_url=fake_llm.url, llm_max_tokens_per_incident=500)
    async with serve(tiny) as svc:
        await post(svc, [cpu_alert(NODE)], group="budget-3")
        third = await analysis(svc, (await incident_of(svc, "budget-3"))["id"])
        assert "over the per-incident cap of 500 tokens" in third["cause"]
        assert len(fake_llm.requests) == 1


async def test_an_analysis_past_its_timeout_is_answered_offline(
    embedded_store: EmbeddedStore, tmp_path: Path, fake_llm: FakeLLM
) -> None:
    """ENRICH_TIMEOUT_SECONDS bounds evidence + LLM; past it the offline analyst answers."""
    fake_llm.script(dataclasses.replace(ollama_chat(answer_json()), delay=5.0))
    cfg = settings(
        embedded_store,
        tmp_path,
        llm_url=fake_llm.url,
        llm_provider="ollama",
        enrich_timeout_seconds=1.0,
    )
    async with serve(cfg) as svc:
        await post(svc, [cpu_alert(NODE)], group="slow")
        found = await analysis(svc, (await incident_of(svc, "slow"))["id"], within=10.0)
        assert found["offline"] is True
        assert "the analysis took longer than 1s" in found["cause"]
        timeout = 'rca_generated_total{outcome="timeout",provider="offline"}'
        assert await metric(svc, timeout) == 1.0


async def test_a_resolved_incident_becomes_history_for_the_next_one(
    embedded_store: EmbeddedStore, tmp_path: Path
) -> None:
    """The next incident of the same alert and job cites the earlier one: its analysis and
    how long it lasted."""
    async with serve(settings(embedded_store, tmp_path)) as svc:
        earlier = cpu_alert(NODE, starts=ALERT_AT)
        await post(svc, [earlier], group="history")
        first = await incident_of(svc, "history")
        first_analysis = await analysis(svc, first["id"])
        await post(svc, [resolved(earlier, ends=iso(ALERT_AT + 720))], group="history")
        await svc.wait_for(f"/api/v1/incidents/{first['id']}", lambda b: b["status"] == "resolved")

        await post(svc, [cpu_alert(NODE, starts=ALERT_AT + 3_600)], group="history")
        second = await svc.wait_for(
            "/api/v1/incidents",
            lambda b: b["total"] == 1 and b["incidents"][0]["id"] != first["id"],
            status="firing",
        )
        found = await analysis(svc, second["incidents"][0]["id"])
    (history,) = [e for e in found["evidence"] if e["kind"] == "history"]
    assert history["title"] == "past incident: HighCPUUsage on node-7:9100"
    assert "lasted 12 min" in history["text"]
    assert first_analysis["summary"][:60] in history["text"]
    cited = [h for h in found["hypotheses"] if history["id"] in h["evidence_ids"]]
    assert cited  # the offline analyst points at the past incident
