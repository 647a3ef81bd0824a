"""The enrichment worker in the running service: webhook → incident → one stored analysis.

Everything is real except the LLM and Langfuse (loopback servers speaking their protocols):
uvicorn, the embedded store, Prometheus with backfilled recording-rule series.
"""

from __future__ import annotations

import asyncio
import dataclasses
import uuid
from pathlib import Path

from receiver.enrich.offline import OFFLINE_LABEL
from receiver.store.embedded import EmbeddedStore
from tests.enrich.conftest import ALERT_AT, NODE, OTHER_NODE
from tests.enrich.factories import answer_json
from tests.enrich.helpers import (
    analysis,
    cpu_alert,
    incident_of,
    iso,
    metric,
    post,
    settings,
    user_prompt,
)
from tests.support.fake_langfuse import FakeLangfuse
from tests.support.fake_llm import FakeLLM, ollama_chat
from tests.support.payloads import resolved, webhook
from tests.support.procs import free_port
from tests.support.service import serve


async def test_alert_is_analysed_once_with_evidence_from_real_prometheus(
    embedded_store: EmbeddedStore, tmp_path: Path, fake_llm: FakeLLM, prom_history: str
) -> None:
    """The model sees the alert's expression as a range (threshold crossing first) and the
    instance's sibling series; the answer is stored, cited evidence attached, episodes marked."""
    fake_llm.script(ollama_chat(answer_json(), prompt_tokens=900, eval_tokens=150))
    cfg = settings(
        embedded_store,
        tmp_path,
        llm_url=fake_llm.url,
        llm_provider="ollama",
        llm_num_ctx=4096,
        prom_url=prom_history,
    )
    async with serve(cfg) as svc:
        await post(svc, [cpu_alert(NODE)], group="cpu")
        incident = await incident_of(svc, "cpu")
        found = await analysis(svc, incident["id"])

        assert len(fake_llm.requests) == 1
        assert fake_llm.requests[0].json()["options"]["num_ctx"] == 4096  # LLM_NUM_CTX
        prompt = user_prompt(fake_llm.requests[0].body)
        assert "expression around the alert start: instance:cpu_usage:percent" in prompt
        assert "at alert start 95 (alert threshold > 80)" in prompt
        assert "first past the threshold at" in prompt
        assert "memory usage % of instance node-7:9100" in prompt
        assert "p95 HTTP latency (s) of job node" in prompt
        assert OTHER_NODE not in prompt  # the range query was scoped to the alert's instance

        assert found["provider"] == "ollama"
        assert found["offline"] is False
        assert (found["tokens_in"], found["tokens_out"]) == (900, 150)
        assert found["current"] is True
        assert found["needs_analysis"] is False
        kinds = [e["kind"] for e in found["evidence"]]
        assert kinds[:4] == ["alert", "alert", "expression", "expression"]
        assert kinds.count("sibling") == 3  # memory, disk, latency (CPU is the expression)
        assert found["hypotheses"][0]["evidence"][0]["id"] == "E1"
        assert "HighCPUUsage" in found["hypotheses"][0]["evidence"][0]["text"]

        detail = await svc.get(f"/api/v1/incidents/{incident['id']}")
        assert detail["analysis_id"] == found["id"]
        assert [e["analyzed"] for e in detail["episodes"]] == [True]
        listed = await svc.get("/rca")
        assert (listed["count"], listed["total"]) == (1, 1)
        assert listed["rca"][0]["summary"] == found["summary"]
        generated = 'rca_generated_total{outcome="model",provider="ollama"}'
        assert await metric(svc, generated) == 1.0
        assert await metric(svc, 'llm_tokens_total{direction="in"}') == 900.0


async def test_without_an_llm_the_offline_analysis_is_stored_and_prometheus_down_is_noted(
    embedded_store: EmbeddedStore, tmp_path: Path
) -> None:
    """No LLM_URL: an offline analysis, labelled as such; unreachable Prometheus is evidence."""
    async with serve(settings(embedded_store, tmp_path)) as svc:
        await post(svc, [cpu_alert(NODE)], group="offline")
        incident = await incident_of(svc, "offline")
        found = await analysis(svc, incident["id"])
        assert found["offline"] is True
        assert found["provider"] == "offline"
        assert found["summary"].startswith(OFFLINE_LABEL)
        assert "no LLM configured" in found["cause"]
        notes = [e for e in found["evidence"] if e["kind"] == "note"]
        assert [n["title"] for n in notes] == ["Prometheus could not be reached"]
        assert "http://127.0.0.1:9" in notes[0]["text"]
        assert "Prometheus could not be reached." in found["unknowns"]
        generated = 'rca_generated_total{outcome="offline",provider="offline"}'
        assert await metric(svc, generated) == 1.0


async def test_storm_repeat_and_growth_cost_exactly_one_call_each(
    embedded_store: EmbeddedStore, tmp_path: Path, fake_llm: FakeLLM
) -> None:
    """50 alerts in one group are one call; a duplicate or a partial resolve costs nothing;
    a new alertname in the group costs exactly one more call with a new signature."""
    fake_llm.script(ollama_chat(answer_json()), ollama_chat(answer_json()))
    cfg = settings(embedded_store, tmp_path, llm_url=fake_llm.url, llm_provider="ollama")
    storm = [cpu_alert(f"node-{i}:9100") for i in range(50)]
    async with serve(cfg) as svc:
        await post(svc, storm, group="storm")
        incident = await incident_of(svc, "storm")
        first = await analysis(svc, incident["id"])
        assert len(fake_llm.requests) == 1
        assert '"alert_count": 50' in user_prompt(fake_llm.requests[0].body)

        again = await svc.post_alerts(webhook(storm, group="storm"))
        assert again.json()["status"] == "duplicate"
        partial = [*storm[:49], resolved(storm[49], ends=iso(ALERT_AT + 60))]
        await post(svc, partial, group="storm")
        await svc.settled()
        await asyncio.sleep(1.5)  # > poll (0.3 s) + settle (0.1 s) + gauge refresh (1 s)
        assert len(fake_llm.requests) == 1
        assert await metric(svc, "rca_pending") == 0.0

        grown = [*storm[:49], cpu_alert("node-0:9100", name="HighMemoryUsage")]
        await post(svc, grown, group="storm")
        second = await svc.wait_for(f"/rca?incident_id={incident['id']}", lambda b: b["total"] == 2)
        assert len(fake_llm.requests) == 2
        assert second["rca"][0]["id"] != first["id"]
        current = await analysis(svc, incident["id"])
        assert current["id"] == second["rca"][0]["id"]
        detail = await svc.get(f"/api/v1/incidents/{incident['id']}")
        assert detail["needs_analysis"] is False
        assert sorted(detail["alertnames"]) == ["HighCPUUsage", "HighMemoryUsage"]
        assert all(e["analyzed"] for e in detail["episodes"])


async def test_llm_down_falls_back_to_the_offline_analyst(
    embedded_store: EmbeddedStore, tmp_path: Path
) -> None:
    """Connection refused (after the provider's retries) still stores an offline analysis."""
    cfg = settings(
        embedded_store, tmp_path, llm_url=f"http://127.0.0.1:{free_port()}", llm_provider="ollama"
    )
    async with serve(cfg) as svc:
        await post(svc, [cpu_alert(NODE)], group="down")
        incident = await incident_of(svc, "down")
        found = await analysis(svc, incident["id"])
        assert found["offline"] is True
        assert "the LLM call failed (LLMTransportError)" in found["cause"]
        generated = 'rca_generated_total{outcome="fallback",provider="offline"}'
        assert await metric(svc, generated) == 1.0


async def test_a_pending_analysis_survives_a_restart(
    embedded_store: EmbeddedStore, tmp_path: Path, fake_llm: FakeLLM
) -> None:
    """An instance stopped while the LLM hangs gives its lease back; the next one analyses."""
    hanging = dataclasses.replace(ollama_chat(answer_json()), delay=20.0)
    fake_llm.script(hanging, ollama_chat(answer_json(summary="after the restart")))
    cfg = settings(embedded_store, tmp_path, llm_url=fake_llm.url, llm_provider="ollama")
    cfg = cfg.model_copy(update={"llm_timeout_seconds": 60.0})
    async with serve(cfg) as first:
        await post(first, [cpu_alert(NODE)], group="restart")
        incident = await incident_of(first, "restart")
        for _ in range(200):
            if fake_llm.requests:
                break
            await asyncio.sleep(0.05)
        assert len(fake_llm.requests) == 1  # the analysis is in flight, the model hangs
    async with serve(cfg) as second:
        pending = await second.get(f"/api/v1/incidents/{incident['id']}")
        assert pending["needs_analysis"] is True
        assert pending["analysis_id"] is None
        found = await analysis(second, incident["id"], within=10.0)
        assert found["summary"] == "after the restart"
        assert len(fake_llm.requests) == 2


async def test_two_replicas_on_one_database_analyse_each_incident_once(
    embedded_store: EmbeddedStore, tmp_path: Path, fake_llm: FakeLLM
) -> None:
    """Leases make replicas share the work: six incidents, six LLM calls, one analysis each."""
    groups = [f"replica-{i}" for i in range(6)]
    fake_llm.script(*[dataclasses.replace(ollama_chat(answer_json()), delay=0.3) for _ in groups])
    cfg = settings(embedded_store, tmp_path, llm_url=fake_llm.url, llm_provider="ollama")
    async with serve(cfg) as one, serve(cfg) as two:
        for i, group in enumerate(groups):
            await post(one if i % 2 else two, [cpu_alert(f"node-{i}:9100")], group=group)
        incidents = [await incident_of(one, group) for group in groups]
        for incident in incidents:
            await analysis(one, incident["id"])
        listed = await one.get("/rca", limit=50)
        assert sorted(r["incident_id"] for r in listed["rca"]) == sorted(i["id"] for i in incidents)
        assert len(fake_llm.requests) == len(groups)
        await asyncio.sleep(0.5)  # neither replica starts a second round
        assert len(fake_llm.requests) == len(groups)


async def test_langfuse_receives_the_trace_of_an_analysis(
    embedded_store: EmbeddedStore, tmp_path: Path, fake_llm: FakeLLM, fake_langfuse: FakeLangfuse
) -> None:
    """With keys set, the analysis is a trace (session = incident id) with the LLM generation
    (model, usage) and the quality score; the stored analysis names the trace."""
    suffix = uuid.uuid4().hex[:8]
    fake_llm.script(ollama_chat(answer_json(), prompt_tokens=700, eval_tokens=80))
    cfg = settings(
        embedded_store,
        tmp_path,
        llm_url=fake_llm.url,
        llm_provider="ollama",
        langfuse_public_key=f"pk-lf-{suffix}",
        langfuse_secret_key=f"sk-lf-{suffix}",
        langfuse_host=fake_langfuse.url,
    )
    async with serve(cfg) as svc:
        await post(svc, [cpu_alert(NODE)], group="traced")
        incident = await incident_of(svc, "traced")
        found = await analysis(svc, incident["id"])
    # stopping the service flushed the exporter
    fake_langfuse.wait_for(lambda f: len(f.scores) >= 1 and len(f.spans) >= 2)
    generation = next(s for s in fake_langfuse.spans if s.observation_type == "generation")
    span = next(s for s in fake_langfuse.spans if s.observation_type == "span")
    assert span.attributes["session.id"] == incident["id"]
    assert generation.attributes["langfuse.observation.model.name"] == "llama3.1:8b"
    assert generation.json_attribute("langfuse.observation.usage_details") == {
        "input": 700,
        "output": 80,
    }
    assert found["trace_id"] == span.trace_id == generation.trace_id
    (score,) = fake_langfuse.scores
    assert (score["name"], score["traceId"]) == ("quality", span.trace_id)
    assert score["value"] == found["quality"]


async def test_a_burst_of_deliveries_for_one_group_is_analysed_once(
    embedded_store: EmbeddedStore, tmp_path: Path, fake_llm: FakeLLM
) -> None:
    """Five deliveries growing one group within moments: the worker settles, then one call."""
    fake_llm.script(ollama_chat(answer_json()))
    cfg = settings(
        embedded_store,
        tmp_path,
        llm_url=fake_llm.url,
        llm_provider="ollama",
        enrich_settle_seconds=1.5,
        enrich_poll_seconds=30.0,
    )
    alerts = [cpu_alert(f"node-{i}:9100") for i in range(25)]
    async with serve(cfg) as svc:
        for n in range(5, 26, 5):
            await post(svc, alerts[:n], group="burst")
        incident = await incident_of(svc, "burst")
        found = await analysis(svc, incident["id"])
        assert len(fake_llm.requests) == 1
        assert '"alert_count": 25' in user_prompt(fake_llm.requests[0].body)
        assert found["needs_analysis"] is False
