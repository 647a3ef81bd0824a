"""Langfuse traces of chat turns: one span per turn, the session id on the trace, one generation
per model call. Built on the enrichment tracer, so both share one SDK client per process."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import Any, Protocol

from langfuse import LangfuseGeneration, LangfuseSpan

from receiver.enrich.tracing import LangfuseTracer, Tracer


class ChatGeneration(Protocol):
    def succeeded(self, *, output: str, model: str, tokens_in: int, tokens_out: int) -> None: ...

    def failed(self, error: str) -> None: ...


class ChatTrace(Protocol):
    def generation(
        self, *, model: str, messages: list[dict[str, str]]
    ) -> contextlib.AbstractContextManager[ChatGeneration]: ...

    def finish(self, *, answer: str, offline: bool, incident_ids: list[str]) -> None: ...


class _NoopGeneration:
    def succeeded(self, *, output: str, model: str, tokens_in: int, tokens_out: int) -> None:
        return None

    def failed(self, error: str) -> None:
        return None


class _NoopTrace:
    @contextlib.contextmanager
    def generation(self, *, model: str, messages: list[dict[str, str]]) -> Iterator[ChatGeneration]:
        yield _NoopGeneration()

    def finish(self, *, answer: str, offline: bool, incident_ids: list[str]) -> None:
        return None


class _Generation:
    def __init__(self, generation: LangfuseGeneration) -> None:
        self._generation = generation

    def succeeded(self, *, output: str, model: str, tokens_in: int, tokens_out: int) -> None:
        self._generation.update(
            output=output, model=model, usage_details={"input": tokens_in, "output": tokens_out}
        )

    def failed(self, error: str) -> None:
        self._generation.update(level="ERROR", status_message=error[:500])


class _Trace:
    def __init__(self, span: LangfuseSpan) -> None:
        self._span = span

    @contextlib.contextmanager
    def generation(self, *, model: str, messages: list[dict[str, str]]) -> Iterator[ChatGeneration]:
        generation = self._span.start_observation(
            name="chat-answer",
            as_type="generation",
            model=model,
            input=messages,
            model_parameters={"temperature": 0},
        )
        try:
            yield _Generation(generation)
        finally:
            generation.end()

    def finish(self, *, answer: str, offline: bool, incident_ids: list[str]) -> None:
        self._span.update(
            output={"answer": answer},
            metadata={"offline": offline, "incident_ids": incident_ids},
        )


@contextlib.contextmanager
def chat_trace(tracer: Tracer, *, session_id: str, question: str, turn: int) -> Iterator[ChatTrace]:
    """A span for one chat turn; a no-op unless `tracer` sends to Langfuse."""
    if not isinstance(tracer, LangfuseTracer):
        yield _NoopTrace()
        return
    span = tracer.client.start_observation(
        name="chat-turn", as_type="span", input={"question": question, "turn": turn}
    )
    metadata: dict[str, Any] = {"session_id": session_id, "turn": turn}
    span.update_trace(
        name="chat", session_id=session_id, user_id="api", tags=["chat"], metadata=metadata
    )
    try:
        yield _Trace(span)
    except BaseException as err:
        span.update(level="ERROR", status_message=repr(err)[:500])
        raise
    finally:
        span.end()
