"""LLM providers behind one Protocol: Ollama's native chat API and OpenAI-compatible servers.

A provider sends one chat request that asks for JSON matching a schema and returns the raw
content string with token counts; parsing the content is the analyst's job. Errors:

    LLMError                      retryable = False
    ├── LLMTransportError         retryable = True   connection refused/reset, connect timeout
    ├── LLMTimeoutError           retryable = False  one attempt exceeded llm_timeout_seconds
    ├── LLMStatusError            retryable = status >= 500 or status == 429
    └── LLMResponseError          retryable = False  2xx, but not the protocol's envelope

A timed-out attempt is not retried: a model that needed the whole budget once will need it again,
and retrying would multiply the worst-case latency of the enrichment worker.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal, Protocol, TypedDict
from urllib.parse import urlsplit

import httpx
from pydantic import SecretStr

from receiver.settings import Settings

log = logging.getLogger(__name__)


class ChatMessage(TypedDict):
    role: Literal["system", "user", "assistant"]
    content: str


class LLMError(Exception):
    """A provider call failed; `retryable` says whether trying again could help."""

    retryable: bool = False


class LLMTransportError(LLMError):
    retryable = True


class LLMTimeoutError(LLMError):
    retryable = False


class LLMStatusError(LLMError):
    def __init__(self, status_code: int, body: str, retry_after: float | None = None) -> None:
        super().__init__(f"HTTP {status_code}: {body[:200]}")
        self.status_code = status_code
        self.retry_after = retry_after
        self.retryable = status_code >= 500 or status_code == 429


class LLMResponseError(LLMError):
    retryable = False


@dataclass(frozen=True)
class LLMResult:
    """One successful call: the assistant's content and what it cost."""

    content: str
    model: str
    tokens_in: int
    tokens_out: int
    latency_ms: float
    attempts: int
    finish_reason: str = ""


@dataclass(frozen=True)
class RetryPolicy:
    """Bounded exponential backoff; a 429's Retry-After is honoured up to `max_delay`."""

    max_attempts: int = 3
    base_delay: float = 0.5
    max_delay: float = 8.0

    def delay(self, attempt: int, retry_after: float | None = None) -> float:
        backoff = min(self.max_delay, self.base_delay * 2.0 ** (attempt - 1))
        if retry_after is not None:
            return min(self.max_delay, max(backoff, retry_after))
        return backoff


@dataclass(frozen=True)
class Price:
    """Price per 1,000 tokens (input, output) in the currency the operator reports in."""

    input_per_1k: float
    output_per_1k: float


# Published list prices (USD per 1k tokens) for a few common models; override per deployment.
DEFAULT_OPENAI_PRICES: Mapping[str, Price] = {
    "gpt-4o-mini": Price(0.00015, 0.0006),
    "gpt-4o": Price(0.0025, 0.01),
    "gpt-4.1-mini": Price(0.0004, 0.0016),
    "gpt-4.1": Price(0.002, 0.008),
}


def price_for(model: str, prices: Mapping[str, Price]) -> Price | None:
    """The entry whose name is the longest prefix of `model` (dated snapshots match)."""
    matches = [name for name in prices if model.startswith(name)]
    return prices[max(matches, key=len)] if matches else None


class LLMProvider(Protocol):
    """One LLM endpoint that answers a chat with JSON constrained by a schema."""

    @property
    def name(self) -> str: ...

    @property
    def model(self) -> str: ...

    def cost(self, tokens_in: int, tokens_out: int) -> float: ...

    async def complete(
        self, messages: Sequence[ChatMessage], schema: Mapping[str, Any]
    ) -> LLMResult: ...


def _retry_after(response: httpx.Response) -> float | None:
    raw = response.headers.get("retry-after")
    if raw is None:
        return None
    try:
        return max(float(raw), 0.0)
    except ValueError:
        return None


@dataclass
class _HTTPProvider:
    """Shared POST-with-retries; subclasses build the body and read the envelope."""

    client: httpx.AsyncClient
    url: str
    model_name: str
    timeout: float = 60.0
    retry: RetryPolicy = field(default_factory=RetryPolicy)

    @property
    def model(self) -> str:
        return self.model_name

    def _headers(self) -> dict[str, str]:
        return {"Content-Type": "application/json"}

    async def _post(self, endpoint: str, body: Mapping[str, Any]) -> tuple[dict[str, Any], int]:
        attempt = 0
        while True:
            attempt += 1
            try:
                return await self._post_once(endpoint, body), attempt
            except LLMError as err:
                if not err.retryable or attempt >= self.retry.max_attempts:
                    raise
                retry_after = err.retry_after if isinstance(err, LLMStatusError) else None
                delay = self.retry.delay(attempt, retry_after)
                log.warning(
                    "llm call failed, retrying",
                    extra={"endpoint": endpoint, "attempt": attempt, "error": str(err)},
                )
                await asyncio.sleep(delay)

    async def _post_once(self, endpoint: str, body: Mapping[str, Any]) -> dict[str, Any]:
        try:
            async with asyncio.timeout(self.timeout):
                response = await self.client.post(
                    endpoint, json=body, headers=self._headers(), timeout=self.timeout
                )
        except TimeoutError as err:
            raise LLMTimeoutError(f"no answer within {self.timeout:g}s") from err
        except httpx.ConnectTimeout as err:
            raise LLMTransportError(f"connect timeout: {err!r}") from err
        except httpx.TimeoutException as err:
            raise LLMTimeoutError(f"no answer within {self.timeout:g}s: {err!r}") from err
        except httpx.TransportError as err:
            raise LLMTransportError(f"transport error: {err!r}") from err
        if response.status_code >= 300:
            raise LLMStatusError(response.status_code, response.text, _retry_after(response))
        try:
            envelope = response.json()
        except ValueError as err:
            raise LLMResponseError(f"response is not JSON: {response.text[:200]!r}") from err
        if not isinstance(envelope, dict):
            raise LLMResponseError("response JSON is not an object")
        return envelope


def _int(value: Any) -> int:
    return value if isinstance(value, int) and value >= 0 else 0


@dataclass
class OllamaProvider(_HTTPProvider):
    """Ollama's native `POST /api/chat` with `format` = the JSON schema (Ollama >= 0.5).

    `num_ctx` is sent because Ollama's default context (2-4k tokens) is smaller than a full
    evidence bundle, and Ollama truncates an overlong prompt from the start, system prompt first.
    """

    num_ctx: int | None = 8192

    @property
    def name(self) -> str:
        return "ollama"

    def cost(self, tokens_in: int, tokens_out: int) -> float:
        return 0.0  # local model: no per-token price

    async def complete(
        self, messages: Sequence[ChatMessage], schema: Mapping[str, Any]
    ) -> LLMResult:
        options: dict[str, Any] = {"temperature": 0}
        if self.num_ctx:
            options["num_ctx"] = self.num_ctx
        body = {
            "model": self.model_name,
            "messages": list(messages),
            "stream": False,
            "format": dict(schema),
            "options": options,
        }
        started = time.perf_counter()
        envelope, attempts = await self._post(self.url.rstrip("/") + "/api/chat", body)
        message = envelope.get("message")
        content = message.get("content") if isinstance(message, dict) else None
        if not isinstance(content, str):
            raise LLMResponseError("ollama response has no message.content")
        return LLMResult(
            content=content,
            model=str(envelope.get("model") or self.model_name),
            tokens_in=_int(envelope.get("prompt_eval_count")),
            tokens_out=_int(envelope.get("eval_count")),
            latency_ms=(time.perf_counter() - started) * 1000,
            attempts=attempts,
            finish_reason=str(envelope.get("done_reason") or ""),
        )


@dataclass
class OpenAIProvider(_HTTPProvider):
    """`POST /v1/chat/completions` with `response_format` json_schema, strict."""

    api_key: SecretStr | None = None
    prices: Mapping[str, Price] = field(default_factory=lambda: dict(DEFAULT_OPENAI_PRICES))
    schema_name: str = "incident_analysis"

    @property
    def name(self) -> str:
        return "openai"

    def cost(self, tokens_in: int, tokens_out: int) -> float:
        price = price_for(self.model_name, self.prices)
        if price is None:
            return 0.0
        return tokens_in / 1000 * price.input_per_1k + tokens_out / 1000 * price.output_per_1k

    def _headers(self) -> dict[str, str]:
        headers = super()._headers()
        if self.api_key is not None:
            headers["Authorization"] = f"Bearer {self.api_key.get_secret_value()}"
        return headers

    def _endpoint(self) -> str:
        base = self.url.rstrip("/")
        if urlsplit(base).path.endswith("/v1"):
            return base + "/chat/completions"
        return base + "/v1/chat/completions"

    async def complete(
        self, messages: Sequence[ChatMessage], schema: Mapping[str, Any]
    ) -> LLMResult:
        body = {
            "model": self.model_name,
            "messages": list(messages),
            "temperature": 0,
            "stream": False,
            "response_format": {
                "type": "json_schema",
                "json_schema": {"name": self.schema_name, "schema": dict(schema), "strict": True},
            },
        }
        started = time.perf_counter()
        envelope, attempts = await self._post(self._endpoint(), body)
        choices = envelope.get("choices")
        if not isinstance(choices, list) or not choices or not isinstance(choices[0], dict):
            raise LLMResponseError("openai response has no choices")
        choice = choices[0]
        message = choice.get("message")
        if not isinstance(message, dict):
            raise LLMResponseError("openai response choice has no message")
        content = message.get("content")
        if not isinstance(content, str):
            refusal = message.get("refusal")
            if isinstance(refusal, str) and refusal:
                raise LLMResponseError(f"model refused: {refusal[:200]}")
            raise LLMResponseError("openai response message has no content")
        usage = envelope.get("usage")
        usage = usage if isinstance(usage, dict) else {}
        return LLMResult(
            content=content,
            model=str(envelope.get("model") or self.model_name),
            tokens_in=_int(usage.get("prompt_tokens")),
            tokens_out=_int(usage.get("completion_tokens")),
            latency_ms=(time.perf_counter() - started) * 1000,
            attempts=attempts,
            finish_reason=str(choice.get("finish_reason") or ""),
        )


ProviderKind = Literal["ollama", "openai"]


def resolve_provider_kind(settings: Settings) -> ProviderKind | None:
    """Which protocol LLM_PROVIDER/LLM_URL/LLM_API_KEY select; None = offline analyst only.

    `auto`: OpenAI-compatible when the URL path contains /v1 or an API key is set, else Ollama.
    """
    if settings.llm_provider == "offline" or not settings.llm_url.strip():
        return None
    if settings.llm_provider != "auto":
        return settings.llm_provider
    if "/v1" in urlsplit(settings.llm_url.strip()).path or settings.llm_api_key is not None:
        return "openai"
    return "ollama"


def build_provider(
    settings: Settings,
    client: httpx.AsyncClient,
    *,
    retry: RetryPolicy | None = None,
    prices: Mapping[str, Price] | None = None,
) -> LLMProvider | None:
    """The provider the settings select, sharing `client`; None when no LLM is configured."""
    kind = resolve_provider_kind(settings)
    url = settings.llm_url.strip()
    retry = retry or RetryPolicy()
    if kind == "ollama":
        return OllamaProvider(
            client=client,
            url=url,
            model_name=settings.llm_model,
            timeout=settings.llm_timeout_seconds,
            retry=retry,
            num_ctx=settings.llm_num_ctx or None,
        )
    if kind == "openai":
        table = dict(prices) if prices is not None else dict(DEFAULT_OPENAI_PRICES)
        table.update({name: Price(*pair) for name, pair in settings.llm_prices_per_1k.items()})
        return OpenAIProvider(
            client=client,
            url=url,
            model_name=settings.llm_model,
            timeout=settings.llm_timeout_seconds,
            retry=retry,
            api_key=settings.llm_api_key,
            prices=table,
        )
    return None
