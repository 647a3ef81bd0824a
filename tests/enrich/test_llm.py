"""Ollama and OpenAI-compatible providers against a loopback server: shapes, retries, errors."""

from __future__ import annotations

import time

import httpx
import pytest
from pydantic import SecretStr

from receiver.enrich.llm import (
    ChatMessage,
    LLMResponseError,
    LLMStatusError,
    LLMTimeoutError,
    LLMTransportError,
    OllamaProvider,
    OpenAIProvider,
    Price,
    RetryPolicy,
    build_provider,
    resolve_provider_kind,
)
from receiver.enrich.prompt import answer_schema
from receiver.settings import Settings
from tests.support.fake_llm import FakeLLM, Reply, error, ollama_chat, openai_chat
from tests.support.procs import free_port

FAST = RetryPolicy(max_attempts=3, base_delay=0.01, max_delay=0.05)
MESSAGES: list[ChatMessage] = [
    {"role": "system", "content": "be brief"},
    {"role": "user", "content": "analyse"},
]


def _settings(**values: object) -> Settings:
    return Settings(_env_file=None, **values)  # type: ignore[arg-type]


def _ollama(http: httpx.AsyncClient, url: str, timeout: float = 5.0) -> OllamaProvider:
    return OllamaProvider(
        client=http, url=url, model_name="llama3.1:8b", timeout=timeout, retry=FAST
    )


def _openai(http: httpx.AsyncClient, url: str) -> OpenAIProvider:
    return OpenAIProvider(
        client=http,
        url=url,
        model_name="gpt-4o-mini",
        timeout=5.0,
        retry=FAST,
        api_key=SecretStr("sk-test-123"),
    )


@pytest.mark.parametrize(
    ("values", "expected"),
    [
        ({"llm_url": ""}, None),
        ({"llm_url": "http://127.0.0.1:11434", "llm_provider": "offline"}, None),
        ({"llm_url": "http://127.0.0.1:11434"}, "ollama"),
        ({"llm_url": "http://127.0.0.1:11434/v1"}, "openai"),
        ({"llm_url": "http://127.0.0.1:8000", "llm_api_key": "sk-x"}, "openai"),
        ({"llm_url": "http://127.0.0.1:8000/v1", "llm_provider": "ollama"}, "ollama"),
        ({"llm_url": "http://127.0.0.1:11434", "llm_provider": "openai"}, "openai"),
    ],
)
def test_provider_kind_follows_the_settings(values: dict[str, str], expected: str | None) -> None:
    """auto = openai when the URL path has /v1 or a key is set, else ollama; no URL = none."""
    assert resolve_provider_kind(_settings(**values)) == expected


async def test_build_provider_returns_the_selected_implementation(
    http: httpx.AsyncClient,
) -> None:
    """build_provider wires URL, model, timeout and key from settings."""
    settings = _settings(llm_url="http://127.0.0.1:1/v1", llm_model="m", llm_timeout_seconds=7)
    provider = build_provider(settings, http)
    assert isinstance(provider, OpenAIProvider)
    assert (provider.name, provider.model, provider.timeout) == ("openai", "m", 7)
    assert build_provider(_settings(llm_url=""), http) is None
    assert isinstance(build_provider(_settings(llm_url="http://127.0.0.1:1"), http), OllamaProvider)


async def test_ollama_request_shape_and_token_counts(
    fake_llm: FakeLLM, http: httpx.AsyncClient
) -> None:
    """POST /api/chat with stream false, format = schema, temperature 0; tokens from *_count."""
    fake_llm.script(ollama_chat('{"ok": true}', prompt_tokens=321, eval_tokens=54))
    result = await _ollama(http, fake_llm.url + "/").complete(MESSAGES, answer_schema())
    (request,) = fake_llm.requests
    body = request.json()
    assert request.path == "/api/chat"
    assert body["stream"] is False
    assert body["format"] == answer_schema()
    assert body["options"] == {"temperature": 0, "num_ctx": 8192}
    assert body["messages"] == MESSAGES
    assert body["model"] == "llama3.1:8b"
    assert "authorization" not in request.headers
    assert (result.content, result.tokens_in, result.tokens_out) == ('{"ok": true}', 321, 54)
    assert result.attempts == 1
    assert result.finish_reason == "stop"


async def test_openai_request_shape_auth_and_usage(
    fake_llm: FakeLLM, http: httpx.AsyncClient
) -> None:
    """POST /v1/chat/completions with strict json_schema response_format and a Bearer key."""
    fake_llm.script(openai_chat("{}", prompt_tokens=900, completion_tokens=80))
    result = await _openai(http, fake_llm.url).complete(MESSAGES, answer_schema())
    (request,) = fake_llm.requests
    body = request.json()
    assert request.path == "/v1/chat/completions"
    assert request.headers["authorization"] == "Bearer sk-test-123"
    assert body["stream"] is False
    assert body["temperature"] == 0
    assert body["response_format"] == {
        "type": "json_schema",
        "json_schema": {"name": "incident_analysis", "schema": answer_schema(), "strict": True},
    }
    assert (result.tokens_in, result.tokens_out) == (900, 80)
    assert result.model == "gpt-4o-mini-2024-07-18"


async def test_openai_base_url_ending_in_v1_is_not_doubled(
    fake_llm: FakeLLM, http: httpx.AsyncClient
) -> None:
    """A base URL like http://host/v1 gets /chat/completions appended, not /v1/… again."""
    fake_llm.script(openai_chat("{}"))
    await _openai(http, fake_llm.url + "/v1").complete(MESSAGES, answer_schema())
    assert fake_llm.requests[0].path == "/v1/chat/completions"


async def test_5xx_then_success_is_retried(fake_llm: FakeLLM, http: httpx.AsyncClient) -> None:
    """A 500 and a 503 are retried; the third attempt's answer is returned."""
    fake_llm.script(error(500), error(503), ollama_chat("{}"))
    result = await _ollama(http, fake_llm.url).complete(MESSAGES, answer_schema())
    assert result.attempts == 3
    assert len(fake_llm.requests) == 3


async def test_429_is_retried_honouring_retry_after(
    fake_llm: FakeLLM, http: httpx.AsyncClient
) -> None:
    """429 is retryable; Retry-After stretches the backoff (capped by the policy)."""
    provider = _openai(http, fake_llm.url)
    provider.retry = RetryPolicy(max_attempts=2, base_delay=0.01, max_delay=0.3)
    fake_llm.script(error(429, "slow down", {"Retry-After": "0.2"}), openai_chat("{}"))
    started = time.monotonic()
    result = await provider.complete(MESSAGES, answer_schema())
    assert result.attempts == 2
    assert time.monotonic() - started >= 0.2


async def test_400_is_not_retried(fake_llm: FakeLLM, http: httpx.AsyncClient) -> None:
    """A client error is final: one request, a non-retryable LLMStatusError."""
    fake_llm.script(error(400, "bad schema"), ollama_chat("{}"))
    with pytest.raises(LLMStatusError) as caught:
        await _ollama(http, fake_llm.url).complete(MESSAGES, answer_schema())
    assert caught.value.status_code == 400
    assert caught.value.retryable is False
    assert len(fake_llm.requests) == 1


async def test_retries_are_bounded(fake_llm: FakeLLM, http: httpx.AsyncClient) -> None:
    """Persistent 5xx stops after max_attempts with a retryable error."""
    fake_llm.script(*[error(502)] * 5)
    with pytest.raises(LLMStatusError) as caught:
        await _ollama(http, fake_llm.url).complete(MESSAGES, answer_schema())
    assert caught.value.retryable is True
    assert len(fake_llm.requests) == 3


async def test_connection_refused_is_a_retryable_transport_error(
    http: httpx.AsyncClient,
) -> None:
    """Nothing listening: LLMTransportError after the bounded retries."""
    provider = _ollama(http, f"http://127.0.0.1:{free_port()}")
    with pytest.raises(LLMTransportError) as caught:
        await provider.complete(MESSAGES, answer_schema())
    assert caught.value.retryable is True


async def test_slow_answer_times_out_without_retry(
    fake_llm: FakeLLM, http: httpx.AsyncClient
) -> None:
    """One attempt over the per-call timeout raises LLMTimeoutError and is not repeated."""
    fake_llm.script(Reply(ollama_chat("{}").body, delay=1.0), ollama_chat("{}"))
    with pytest.raises(LLMTimeoutError) as caught:
        await _ollama(http, fake_llm.url, timeout=0.2).complete(MESSAGES, answer_schema())
    assert caught.value.retryable is False
    assert len(fake_llm.requests) == 1


async def test_openai_refusal_is_a_response_error(
    fake_llm: FakeLLM, http: httpx.AsyncClient
) -> None:
    """A refusal (content null) is reported, not parsed as an empty answer."""
    reply = openai_chat("")
    assert isinstance(reply.body, dict)
    reply.body["choices"][0]["message"] = {"role": "assistant", "content": None, "refusal": "no"}
    fake_llm.script(reply)
    with pytest.raises(LLMResponseError, match="refused"):
        await _openai(http, fake_llm.url).complete(MESSAGES, answer_schema())


async def test_non_json_envelope_is_a_response_error(
    fake_llm: FakeLLM, http: httpx.AsyncClient
) -> None:
    """A 200 whose body is not the protocol's JSON envelope is not retried."""
    fake_llm.script(Reply("<html>proxy login</html>"))
    with pytest.raises(LLMResponseError):
        await _ollama(http, fake_llm.url).complete(MESSAGES, answer_schema())
    assert len(fake_llm.requests) == 1


async def test_cost_uses_the_price_table_by_model_prefix(http: httpx.AsyncClient) -> None:
    """OpenAI cost = tokens/1000 * price of the longest matching model prefix; Ollama is free."""
    provider = _openai(http, "http://127.0.0.1:1")
    provider.prices = {"gpt-4o": Price(0.01, 0.1), "gpt-4o-mini": Price(0.001, 0.002)}
    assert provider.cost(1_000, 500) == pytest.approx(0.001 + 0.001)
    provider.model_name = "my-local-model"
    assert provider.cost(1_000, 500) == 0.0
    assert _ollama(http, "http://127.0.0.1:1").cost(10_000, 10_000) == 0.0
