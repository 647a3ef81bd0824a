"""Langfuse tracing of analyses (v3 SDK): one span per incident, one generation per LLM call.

`build_tracer(settings)` returns a `LangfuseTracer` only when both keys are set, else a
`NoopTracer` with the same interface, so callers never branch on whether tracing is on.
Exports happen on the SDK's background threads; `flush()`/`shutdown()` block, so call them from
a thread (`asyncio.to_thread`) in async code.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Iterator, Mapping
from typing import Any, Protocol

import httpx
from langfuse import Langfuse, LangfuseGeneration, LangfuseSpan
from langfuse._client.resource_manager import LangfuseResourceManager
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider

from receiver.domain import Analysis, IncidentView
from receiver.settings import Settings

log = logging.getLogger(__name__)

SERVICE_NAME = "ai-devops-monitor"


class Generation(Protocol):
    """One LLM call as the tracer records it."""

    def succeeded(
        self, *, output: str, model: str, tokens_in: int, tokens_out: int, cost: float
    ) -> None: ...

    def failed(self, error: str) -> None: ...


class AnalysisTrace(Protocol):
    """The span of one incident analysis."""

    @property
    def trace_id(self) -> str:
        """The Langfuse trace id ("" when tracing is off)."""
        ...

    def generation(
        self, *, name: str, model: str, input: Any, parameters: Mapping[str, Any]
    ) -> contextlib.AbstractContextManager[Generation]: ...

    def finish(self, analysis: Analysis) -> None: ...


class Tracer(Protocol):
    def analysis(
        self, incident: IncidentView, *, prompt_version: str, evidence_ids: list[str]
    ) -> contextlib.AbstractContextManager[AnalysisTrace]: ...

    def flush(self) -> None: ...

    def shutdown(self) -> None: ...


class _NoopGeneration:
    def succeeded(
        self, *, output: str, model: str, tokens_in: int, tokens_out: int, cost: float
    ) -> None:
        return None

    def failed(self, error: str) -> None:
        return None


class _NoopTrace:
    @property
    def trace_id(self) -> str:
        return ""

    @contextlib.contextmanager
    def generation(
        self, *, name: str, model: str, input: Any, parameters: Mapping[str, Any]
    ) -> Iterator[Generation]:
        yield _NoopGeneration()

    def finish(self, analysis: Analysis) -> None:
        return None


class NoopTracer:
    """Tracing off: same interface, no threads, no requests."""

    @contextlib.contextmanager
    def analysis(
        self, incident: IncidentView, *, prompt_version: str, evidence_ids: list[str]
    ) -> Iterator[AnalysisTrace]:
        yield _NoopTrace()

    def flush(self) -> None:
        return None

    def shutdown(self) -> None:
        return None


class _LangfuseGeneration:
    def __init__(self, generation: LangfuseGeneration) -> None:
        self._generation = generation

    def succeeded(
        self, *, output: str, model: str, tokens_in: int, tokens_out: int, cost: float
    ) -> None:
        self._generation.update(
            output=output,
            model=model,
            usage_details={"input": tokens_in, "output": tokens_out},
            cost_details={"total": cost},
        )

    def failed(self, error: str) -> None:
        self._generation.update(level="ERROR", status_message=error[:500])


class _LangfuseTrace:
    def __init__(self, span: LangfuseSpan) -> None:
        self._span = span

    @property
    def trace_id(self) -> str:
        return str(self._span.trace_id or "")

    @contextlib.contextmanager
    def generation(
        self, *, name: str, model: str, input: Any, parameters: Mapping[str, Any]
    ) -> Iterator[Generation]:
        generation = self._span.start_observation(
            name=name,
            as_type="generation",
            model=model,
            input=input,
            model_parameters=dict(parameters),
        )
        try:
            yield _LangfuseGeneration(generation)
        except BaseException as err:
            generation.update(level="ERROR", status_message=repr(err)[:500])
            raise
        finally:
            generation.end()

    def finish(self, analysis: Analysis) -> None:
        self._span.update(
            output=analysis.model_dump(mode="json", include={"summary", "cause", "fix"}),
            metadata={
                "provider": analysis.provider,
                "model": analysis.model,
                "offline": analysis.offline,
                "dropped_hypotheses": analysis.dropped_hypotheses,
                "tokens_in": analysis.tokens_in,
                "tokens_out": analysis.tokens_out,
            },
        )
        self._span.score_trace(
            name="quality",
            value=analysis.quality,
            data_type="NUMERIC",
            comment=f"provider={analysis.provider} dropped={analysis.dropped_hypotheses}",
        )


class LangfuseTracer:
    """Sends traces and scores to a Langfuse server at `host` (empty = the SDK's default).

    Uses its own OpenTelemetry TracerProvider and httpx client, so it neither installs a global
    tracer provider nor leaves threads or sockets behind after `shutdown()`.
    """

    def __init__(
        self,
        *,
        public_key: str,
        secret_key: str,
        host: str = "",
        environment: str | None = None,
        release: str | None = None,
        flush_at: int | None = None,
        flush_interval: float | None = None,
        timeout_seconds: int = 5,
    ) -> None:
        self._public_key = public_key
        attributes = {"service.name": SERVICE_NAME}
        if environment:
            attributes["langfuse.environment"] = environment
        if release:
            attributes["langfuse.release"] = release
        self._provider = TracerProvider(resource=Resource.create(attributes))
        self._http = httpx.Client(timeout=timeout_seconds)
        self._client = Langfuse(
            public_key=public_key,
            secret_key=secret_key,
            host=host or None,
            environment=environment,
            release=release,
            flush_at=flush_at,
            flush_interval=flush_interval,
            timeout=timeout_seconds,
            httpx_client=self._http,
            tracer_provider=self._provider,
        )

    def __repr__(self) -> str:
        return "LangfuseTracer()"  # never show keys

    @property
    def client(self) -> Langfuse:
        """The SDK client, for traces other than analyses (the chat's, in `receiver.chat`)."""
        return self._client

    @contextlib.contextmanager
    def analysis(
        self, incident: IncidentView, *, prompt_version: str, evidence_ids: list[str]
    ) -> Iterator[AnalysisTrace]:
        span = self._client.start_observation(
            name="incident-analysis",
            as_type="span",
            input={
                "incident_id": incident.id,
                "title": incident.title,
                "alertnames": incident.alertnames,
                "instances": incident.instances,
                "evidence_ids": evidence_ids,
            },
            version=prompt_version,
        )
        span.update_trace(
            name=f"enrich {incident.title}"[:200],
            session_id=incident.id,
            user_id=incident.source.value,
            tags=["enrichment", incident.source.value, incident.severity.value],
            metadata={"incident_id": incident.id, "prompt_version": prompt_version},
        )
        try:
            yield _LangfuseTrace(span)
        except BaseException as err:
            span.update(level="ERROR", status_message=repr(err)[:500])
            raise
        finally:
            span.end()

    def flush(self) -> None:
        self._client.flush()

    def shutdown(self) -> None:
        """Flush, stop the SDK's threads, and forget the SDK's per-key singleton.

        langfuse 3.x keeps one resource manager per public key for the whole process; without
        forgetting it, a tracer built later with the same key (a restarted app, the next test)
        would get this one's stopped exporter and silently drop everything. 3.x has no public
        way to forget it (upstream issue langfuse-python#1799), hence the one private import
        above; drop it once a release evicts shut-down managers itself.
        """
        try:
            self._client.shutdown()
            self._provider.shutdown()
        finally:
            self._http.close()
            with LangfuseResourceManager._lock:
                LangfuseResourceManager._instances.pop(self._public_key, None)


def build_tracer(settings: Settings, *, release: str | None = None) -> Tracer:
    """A Langfuse tracer when both keys are set, else the no-op tracer."""
    if settings.langfuse_public_key is None or settings.langfuse_secret_key is None:
        return NoopTracer()
    return LangfuseTracer(
        public_key=settings.langfuse_public_key.get_secret_value(),
        secret_key=settings.langfuse_secret_key.get_secret_value(),
        host=settings.langfuse_host.strip(),
        release=release,
    )
