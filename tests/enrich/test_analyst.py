"""analyse(): one model call, one repair, offline fallback, grounding, quality, sanitising."""

from __future__ import annotations

import json

import httpx
import pytest
from pydantic import SecretStr

from receiver.domain import Analysis, Hypothesis
from receiver.enrich.analyst import analyse, quality_score, sanitise_output
from receiver.enrich.evidence import evidence_from_incident
from receiver.enrich.llm import OllamaProvider, OpenAIProvider, Price, RetryPolicy
from receiver.enrich.offline import OFFLINE_LABEL
from receiver.enrich.prompt import PROMPT_VERSION
from receiver.enrich.tracing import Tracer
from tests.enrich.factories import answer, answer_json, make_incident, make_signal
from tests.support.fake_llm import FakeLLM, error, ollama_chat, openai_chat
from tests.support.procs import free_port

FAST = RetryPolicy(max_attempts=3, base_delay=0.01, max_delay=0.05)


def _ollama(http: httpx.AsyncClient, url: str) -> OllamaProvider:
    return OllamaProvider(client=http, url=url, model_name="llama3.1:8b", timeout=5, retry=FAST)


async def _run(fake_llm: FakeLLM, http: httpx.AsyncClient, tracer: Tracer) -> Analysis:
    incident = make_incident()
    return await analyse(
        incident, evidence_from_incident(incident), _ollama(http, fake_llm.url), tracer
    )


async def test_ollama_answer_becomes_a_grounded_scored_analysis(
    fake_llm: FakeLLM, http: httpx.AsyncClient, noop_tracer: Tracer
) -> None:
    """A valid answer is returned with provider, model, prompt version, tokens and a quality
    that is complete and grounded but, citing only the alert, scores as a restatement (0.3)."""
    fake_llm.script(ollama_chat(answer_json(), prompt_tokens=400, eval_tokens=90))
    analysis = await _run(fake_llm, http, noop_tracer)
    assert analysis.offline is False
    assert (analysis.provider, analysis.model) == ("ollama", "llama3.1:8b")
    assert analysis.prompt_version == PROMPT_VERSION
    assert (analysis.tokens_in, analysis.tokens_out) == (400, 90)
    assert analysis.cost_estimate == 0.0
    assert analysis.latency_ms > 0
    assert analysis.summary.startswith("checkout p99 latency")
    assert analysis.fix == answer()["fix"]
    assert [h.evidence_ids for h in analysis.hypotheses] == [["E1"], ["E2"]]
    assert analysis.dropped_hypotheses == 0
    assert analysis.quality == 0.3


async def test_openai_answer_records_cost_from_the_price_table(
    fake_llm: FakeLLM, http: httpx.AsyncClient, noop_tracer: Tracer
) -> None:
    """OpenAI-compatible answers carry a cost estimate from tokens * per-1k prices."""
    fake_llm.script(openai_chat(answer_json(), prompt_tokens=2_000, completion_tokens=500))
    provider = OpenAIProvider(
        client=http,
        url=fake_llm.url,
        model_name="gpt-4o-mini",
        retry=FAST,
        api_key=SecretStr("sk-test"),
        prices={"gpt-4o-mini": Price(0.001, 0.004)},
    )
    incident = make_incident()
    analysis = await analyse(incident, evidence_from_incident(incident), provider, noop_tracer)
    assert analysis.provider == "openai"
    assert analysis.model == "gpt-4o-mini-2024-07-18"
    assert analysis.cost_estimate == pytest.approx(0.002 + 0.002)


async def test_server_error_then_success_is_retried_inside_one_analysis(
    fake_llm: FakeLLM, http: httpx.AsyncClient, noop_tracer: Tracer
) -> None:
    """A 500 is retried by the provider and the analysis still comes from the model."""
    fake_llm.script(error(500), ollama_chat(answer_json()))
    analysis = await _run(fake_llm, http, noop_tracer)
    assert analysis.offline is False
    assert len(fake_llm.requests) == 2


async def test_client_error_falls_back_to_the_offline_analyst(
    fake_llm: FakeLLM, http: httpx.AsyncClient, noop_tracer: Tracer
) -> None:
    """A 400 is not retried; the offline analyst answers and says why."""
    fake_llm.script(error(400, "model not found"))
    analysis = await _run(fake_llm, http, noop_tracer)
    assert len(fake_llm.requests) == 1
    assert analysis.offline is True
    assert analysis.provider == "offline"
    assert analysis.summary.startswith(OFFLINE_LABEL)
    assert any("HTTP 400" in u for u in analysis.unknowns)


async def test_unreachable_llm_falls_back_to_the_offline_analyst(
    http: httpx.AsyncClient, noop_tracer: Tracer
) -> None:
    """Connection refused on every attempt still yields an offline analysis."""
    incident = make_incident()
    provider = _ollama(http, f"http://127.0.0.1:{free_port()}")
    analysis = await analyse(incident, evidence_from_incident(incident), provider, noop_tracer)
    assert analysis.offline is True
    assert analysis.quality > 0


async def test_malformed_json_gets_one_repair_attempt(
    fake_llm: FakeLLM, http: httpx.AsyncClient, noop_tracer: Tracer
) -> None:
    """Invalid JSON is sent back with the parse error; the repaired answer is used."""
    fake_llm.script(
        ollama_chat('{"summary": "trunc', prompt_tokens=400, eval_tokens=10),
        ollama_chat(answer_json(), prompt_tokens=450, eval_tokens=90),
    )
    analysis = await _run(fake_llm, http, noop_tracer)
    assert analysis.offline is False
    assert (analysis.tokens_in, analysis.tokens_out) == (850, 100)
    repair = fake_llm.requests[1].json()["messages"]
    assert repair[-2] == {"role": "assistant", "content": '{"summary": "trunc'}
    assert repair[-1]["role"] == "user"
    assert "invalid JSON" in repair[-1]["content"]
    assert fake_llm.requests[1].json()["format"] == fake_llm.requests[0].json()["format"]


async def test_schema_mismatch_names_the_missing_fields_in_the_repair(
    fake_llm: FakeLLM, http: httpx.AsyncClient, noop_tracer: Tracer
) -> None:
    """JSON missing required fields is repaired with an error naming them."""
    incomplete = {k: v for k, v in answer().items() if k not in ("cause", "fix")}
    fake_llm.script(ollama_chat(json.dumps(incomplete)), ollama_chat(answer_json()))
    analysis = await _run(fake_llm, http, noop_tracer)
    assert analysis.offline is False
    content = fake_llm.requests[1].json()["messages"][-1]["content"]
    assert "cause: Field required" in content
    assert "fix: Field required" in content


async def test_malformed_twice_falls_back_to_the_offline_analyst(
    fake_llm: FakeLLM, http: httpx.AsyncClient, noop_tracer: Tracer
) -> None:
    """Exactly one repair: a second bad answer gives the offline analysis, tokens still counted."""
    fake_llm.script(ollama_chat("not json", eval_tokens=3), ollama_chat("[]", eval_tokens=2))
    analysis = await _run(fake_llm, http, noop_tracer)
    assert len(fake_llm.requests) == 2
    assert analysis.offline is True
    assert analysis.summary.startswith(OFFLINE_LABEL)
    assert analysis.tokens_out == 5
    assert any("did not match the schema twice" in u for u in analysis.unknowns)


async def test_hallucinated_evidence_ids_are_dropped_and_counted(
    fake_llm: FakeLLM, http: httpx.AsyncClient, noop_tracer: Tracer
) -> None:
    """Claims citing ids not in the bundle are removed; ids are normalised; grounding drops."""
    hypotheses = [
        {"claim": "Real.", "evidence_ids": ["e1", "[E2]"], "confidence": 0.9},
        {"claim": "Invented.", "evidence_ids": ["E99"], "confidence": 0.9},
        {"claim": "Half invented.", "evidence_ids": ["E1", "E42"], "confidence": 0.5},
        {"claim": "Uncited.", "evidence_ids": [], "confidence": 1.7},
    ]
    fake_llm.script(ollama_chat(answer_json(hypotheses=hypotheses)))
    analysis = await _run(fake_llm, http, noop_tracer)
    assert [h.claim for h in analysis.hypotheses] == ["Real.", "Uncited."]
    assert analysis.hypotheses[0].evidence_ids == ["E1", "E2"]
    assert analysis.hypotheses[1].confidence == 1.0
    assert analysis.dropped_hypotheses == 2
    # completeness 1; grounding = 1 cited-and-real claim of 4 made; no cause candidate cited
    assert analysis.quality == pytest.approx((0.5 + 0.5 * 0.25) * 0.3, abs=1e-3)


def test_quality_score_is_completeness_plus_grounding() -> None:
    """Half the score is filled fields, half the share of claims citing real evidence."""
    full = Analysis(
        summary="s",
        cause="c",
        fix=["f"],
        simplified="x",
        confidence=0.5,
        hypotheses=[Hypothesis(claim="a", evidence_ids=["E1"])],
    )
    assert quality_score(full) == 1.0
    assert quality_score(full.model_copy(update={"dropped_hypotheses": 1})) == 0.75
    empty = Analysis(summary="s", cause="")
    assert quality_score(empty) == pytest.approx(0.5 * 1 / 6, abs=1e-3)


async def test_model_output_is_sanitised_for_slack_and_email(
    fake_llm: FakeLLM, http: httpx.AsyncClient, noop_tracer: Tracer
) -> None:
    """Mentions, tags, scripts, control characters and bad links never leave the analyst."""
    fake_llm.script(
        ollama_chat(
            answer_json(
                summary="<!channel> latency\x1b[2J high <script>alert(1)</script>done @here",
                cause="See [runbook](javascript:alert(1)) and <http://x.example|click> " * 200,
                fix=["<b>restart</b> pod", "```rm -rf```", "<@U123> ping <#C1|ops>"],
                simplified="Checkout <img src=x onerror=alert(1)> is slow & <<!here>!here>",
            )
        )
    )
    analysis = await _run(fake_llm, http, noop_tracer)
    text = " ".join([analysis.summary, analysis.cause, analysis.simplified, *analysis.fix])
    for forbidden in ("<!", "<script", "alert(1)</", "<@", "<#", "@here", "\x1b", "<img", "```"):
        assert forbidden not in text
    assert "javascript:" not in text
    assert analysis.summary == "latency[2J high done here"
    assert analysis.fix[0] == "restart pod"
    assert "click (http://x.example)" in analysis.cause
    assert len(analysis.cause) <= 2_000


def test_sanitise_keeps_ordinary_comparisons_and_urls() -> None:
    """Plain 'a < b' and https links survive sanitising."""
    assert sanitise_output("p99 < 2s and > 1s, see https://r.example/x", 200) == (
        "p99 < 2s and > 1s, see https://r.example/x"
    )
    assert sanitise_output("[docs](https://d.example)", 200) == "docs (https://d.example)"


async def test_no_provider_gives_the_offline_analysis(noop_tracer: Tracer) -> None:
    """Without an LLM the offline analyst answers, labelled, scored, with the prompt version."""
    incident = make_incident(make_signal(), make_signal(instance="checkout-2:8080", value=2.7))
    analysis = await analyse(incident, evidence_from_incident(incident), None, noop_tracer)
    assert analysis.offline is True
    assert analysis.provider == "offline"
    assert analysis.prompt_version == PROMPT_VERSION
    assert analysis.tokens_in == 0
    assert analysis.dropped_hypotheses == 0
    # without metric history no cause can be named: complete and grounded, but a restatement
    assert analysis.quality == 0.3


async def test_label_injection_cannot_ping_through_the_offline_analysis(
    noop_tracer: Tracer,
) -> None:
    """Label-derived text in the offline analysis is sanitised like model output."""
    signal = make_signal(
        instance="<!channel> node-1", annotations={"summary": "<script>x</script>"}
    )
    incident = make_incident(signal, title="<!here> down")
    analysis = await analyse(incident, evidence_from_incident(incident), None, noop_tracer)
    text = " ".join([analysis.summary, analysis.cause, analysis.simplified, *analysis.fix])
    assert "<!" not in text
    assert "<script" not in text
