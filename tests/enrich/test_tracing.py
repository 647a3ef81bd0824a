"""Langfuse tracing against a loopback OTLP + ingestion server; no keys means no requests."""

from __future__ import annotations

import asyncio
import base64
import logging
import uuid
from collections.abc import Callable

import httpx
import pytest

from receiver.enrich.analyst import analyse
from receiver.enrich.evidence import evidence_from_incident
from receiver.enrich.llm import OllamaProvider, RetryPolicy
from receiver.enrich.tracing import LangfuseTracer, NoopTracer, build_tracer
from receiver.settings import Settings
from tests.enrich.factories import answer_json, make_incident
from tests.support.fake_langfuse import FakeLangfuse
from tests.support.fake_llm import FakeLLM, ollama_chat

FAST = RetryPolicy(max_attempts=2, base_delay=0.01, max_delay=0.02)


def _keys() -> tuple[str, str]:
    # langfuse 3.x keeps one client per public key per process: a fresh key per test isolates
    suffix = uuid.uuid4().hex[:8]
    return f"pk-lf-test-{suffix}", f"sk-lf-test-{suffix}"


def _tracer(fake: FakeLangfuse, public_key: str, secret_key: str) -> LangfuseTracer:
    return LangfuseTracer(
        public_key=public_key,
        secret_key=secret_key,
        host=fake.url,
        environment="test",
        flush_at=1,
        flush_interval=0.1,
    )


def _scores_at_least(count: int) -> Callable[[FakeLangfuse], bool]:
    return lambda fake: len(fake.scores) >= count


def _provider(http: httpx.AsyncClient, fake_llm: FakeLLM) -> OllamaProvider:
    return OllamaProvider(client=http, url=fake_llm.url, model_name="llama3.1:8b", retry=FAST)


async def test_analysis_sends_a_span_a_generation_and_the_quality_score(
    fake_langfuse: FakeLangfuse, fake_llm: FakeLLM, http: httpx.AsyncClient
) -> None:
    """One span per incident, one generation with model/input/output/usage, one quality score."""
    public_key, secret_key = _keys()
    tracer = _tracer(fake_langfuse, public_key, secret_key)
    fake_llm.script(ollama_chat(answer_json(), prompt_tokens=400, eval_tokens=90))
    incident = make_incident()
    try:
        analysis = await analyse(
            incident, evidence_from_incident(incident), _provider(http, fake_llm), tracer
        )
        await asyncio.to_thread(tracer.flush)
        fake_langfuse.wait_for(lambda f: len(f.spans) >= 2 and len(f.scores) >= 1)
    finally:
        await asyncio.to_thread(tracer.shutdown)

    spans = {s.observation_type: s for s in fake_langfuse.spans}
    span, generation = spans["span"], spans["generation"]
    assert span.name == "incident-analysis"
    assert span.attributes["langfuse.trace.name"] == "enrich HighLatency on checkout"
    assert span.attributes["session.id"] == incident.id
    assert span.json_attribute("langfuse.observation.input")["evidence_ids"] == ["E1", "E2", "E3"]
    assert generation.name == "analysis"
    assert generation.parent_span_id == span.span_id
    assert generation.trace_id == span.trace_id
    assert generation.attributes["langfuse.observation.model.name"] == "llama3.1:8b"
    assert generation.json_attribute("langfuse.observation.usage_details") == {
        "input": 400,
        "output": 90,
    }
    messages = generation.json_attribute("langfuse.observation.input")
    assert [m["role"] for m in messages] == ["system", "user"]
    assert generation.attributes["langfuse.observation.output"] == answer_json()

    (score,) = fake_langfuse.scores
    assert score["name"] == "quality"
    assert score["value"] == analysis.quality
    assert score["dataType"] == "NUMERIC"
    assert score["traceId"] == span.trace_id

    expected = "Basic " + base64.b64encode(f"{public_key}:{secret_key}".encode()).decode()
    assert {r.headers["authorization"] for r in fake_langfuse.requests} == {expected}


async def test_repair_and_failure_show_as_error_generations(
    fake_langfuse: FakeLangfuse, fake_llm: FakeLLM, http: httpx.AsyncClient
) -> None:
    """An invalid answer and its repair are two generations; the invalid one is level ERROR."""
    tracer = _tracer(fake_langfuse, *_keys())
    fake_llm.script(ollama_chat("not json"), ollama_chat(answer_json()))
    incident = make_incident()
    try:
        await analyse(incident, evidence_from_incident(incident), _provider(http, fake_llm), tracer)
        await asyncio.to_thread(tracer.flush)
        fake_langfuse.wait_for(lambda f: len(f.spans) >= 3)
    finally:
        await asyncio.to_thread(tracer.shutdown)
    generations = {s.name: s for s in fake_langfuse.spans if s.observation_type == "generation"}
    assert set(generations) == {"analysis", "repair"}
    assert generations["analysis"].attributes["langfuse.observation.level"] == "ERROR"
    assert (
        "invalid JSON" in generations["analysis"].attributes["langfuse.observation.status_message"]
    )
    assert "langfuse.observation.level" not in generations["repair"].attributes


async def test_no_keys_means_the_noop_tracer_and_zero_requests(
    fake_langfuse: FakeLangfuse,
) -> None:
    """Without both keys nothing is constructed and the Langfuse host receives nothing."""
    for keys in ({}, {"langfuse_public_key": "pk-lf-only"}, {"langfuse_secret_key": "sk-only"}):
        settings = Settings(_env_file=None, langfuse_host=fake_langfuse.url, **keys)  # type: ignore[arg-type]
        tracer = build_tracer(settings)
        assert isinstance(tracer, NoopTracer)
        incident = make_incident()
        analysis = await analyse(incident, evidence_from_incident(incident), None, tracer)
        assert analysis.offline is True
        tracer.flush()
        tracer.shutdown()
    await asyncio.sleep(0.3)
    assert fake_langfuse.requests == []


async def test_build_tracer_with_both_keys_traces_and_never_logs_keys(
    fake_langfuse: FakeLangfuse, caplog: pytest.LogCaptureFixture
) -> None:
    """Both keys give a Langfuse tracer whose repr and logs never contain the secret."""
    public_key, secret_key = _keys()
    settings = Settings(
        _env_file=None,
        langfuse_public_key=public_key,
        langfuse_secret_key=secret_key,
        langfuse_host=fake_langfuse.url,
    )
    caplog.set_level(logging.DEBUG)
    tracer = build_tracer(settings)
    assert isinstance(tracer, LangfuseTracer)
    incident = make_incident()
    try:
        await analyse(incident, evidence_from_incident(incident), None, tracer)
        await asyncio.to_thread(tracer.flush)
        fake_langfuse.wait_for(lambda f: len(f.spans) >= 1 and len(f.scores) >= 1)
    finally:
        await asyncio.to_thread(tracer.shutdown)
    assert secret_key not in repr(tracer)
    assert secret_key not in caplog.text


async def test_a_new_tracer_with_the_same_key_works_after_shutdown(
    fake_langfuse: FakeLangfuse,
) -> None:
    """Shutting one tracer down does not poison the next one built with the same key."""
    keys = _keys()
    incident = make_incident()
    for round_ in (1, 2):
        tracer = _tracer(fake_langfuse, *keys)
        try:
            await analyse(incident, evidence_from_incident(incident), None, tracer)
            await asyncio.to_thread(tracer.flush)
            fake_langfuse.wait_for(_scores_at_least(round_), timeout=5)
        finally:
            await asyncio.to_thread(tracer.shutdown)
    assert len({s.trace_id for s in fake_langfuse.spans}) == 2
