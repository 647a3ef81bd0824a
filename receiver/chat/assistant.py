"""The chat assistant: answers questions about incidents from what the store holds.

Each turn finds the incidents the question is about (names and a time window in its words,
the `context`, or the incidents of the previous turn), puts them with their newest analyses
into ONE JSON document between markers (cleaned like enrichment evidence: the text came from
whoever can push alerts), and asks the configured model for `{"answer": ...}`. Without a model,
or when it fails, an offline answer lists what the store holds and says that it is offline.
"""

from __future__ import annotations

import logging
import re
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from receiver.chat.grounding import Window, match_names, time_window, tokens
from receiver.chat.prompt import (
    ANSWER_LIMIT,
    ANSWER_SCHEMA,
    Grounding,
    answer_text,
    build_messages,
    data_document,
    offline_answer,
)
from receiver.chat.tracing import ChatTrace, chat_trace
from receiver.enrich.analyst import sanitise_output
from receiver.enrich.budget import Budget
from receiver.enrich.evidence import (
    VALUE_LIMIT,
    clean_text,
)
from receiver.enrich.llm import LLMError, LLMProvider
from receiver.enrich.tracing import Tracer
from receiver.records import ChatSessionRecord, IncidentRecord
from receiver.store.chat import ChatStore
from receiver.store.filters import IncidentFilter
from receiver.timeutil import aware, utcnow

log = logging.getLogger(__name__)

QUESTION_LIMIT = 4_000
MAX_CONTEXT_ITEMS = 20
CONTEXT_KEY = re.compile(r"[A-Za-z0-9_\-]{1,64}")
OUTPUT_TOKENS = 1_000  # what an answer may cost on top of the prompt, for the budget


class ChatError(Exception):
    """The request cannot be answered as asked (bad session id, empty message)."""


class SessionNotFound(ChatError):
    """The session belongs to another token (answered as if it did not exist)."""


@dataclass(frozen=True)
class Reply:
    session_id: str
    answer: str
    offline: bool
    provider: str
    model: str
    tokens_in: int
    tokens_out: int
    incident_ids: list[str]
    scope: str
    new_session: bool
    session: ChatSessionRecord
    notes: list[str] = field(default_factory=list)


def clean_context(context: Mapping[str, Any] | None) -> dict[str, str]:
    """Context as short one-line strings under plain keys: safe to store and to search."""
    out: dict[str, str] = {}
    for key, value in (context or {}).items():
        if len(out) >= MAX_CONTEXT_ITEMS or value is None:
            continue
        if CONTEXT_KEY.fullmatch(key):
            text = clean_text(str(value), VALUE_LIMIT, multiline=False)
            if text:
                out[key] = text
    return out


SESSION_ID_CHARS = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_.:-")


def valid_session_id(raw: str) -> bool:
    return 0 < len(raw) <= 64 and set(raw) <= SESSION_ID_CHARS


class ChatAssistant:
    def __init__(
        self,
        chats: ChatStore,
        provider: LLMProvider | None,
        tracer: Tracer,
        *,
        history_messages: int = 20,
        max_incidents: int = 8,
        budget: Budget | None = None,
    ) -> None:
        self.chats = chats
        self.provider = provider
        self.tracer = tracer
        self.budget = budget or Budget()
        self.history_messages = history_messages
        self.max_incidents = max_incidents

    async def ground(
        self,
        question: str,
        context: Mapping[str, Any] | None,
        previous: Sequence[str],
        now: datetime,
    ) -> Grounding:
        text = question
        pinned: list[IncidentRecord] = []
        if context:
            wanted = context.get("incident_id")
            if isinstance(wanted, str) and wanted:
                found = await self.chats.get_incident(wanted)
                if found is not None:
                    pinned.append(found)
            extra = [str(v) for k, v in context.items() if k != "incident_id" and v]
            text = " ".join([question, *extra])
        window = time_window(text, now)
        words = tokens(text)
        known_instances, known_alertnames = await self.chats.known_names()
        instances = match_names(words, known_instances)
        alertnames = match_names(words, known_alertnames)
        query = IncidentFilter(
            any_instances=instances,
            any_alertnames=alertnames,
            started_by=window.end if window is not None else None,
        )
        scope = "recent"
        incidents: list[IncidentRecord] = []
        if instances or alertnames:
            scope = "matched"
            incidents = await self._find(query, window)
        elif pinned:
            scope = "context"
        elif previous and window is None:
            scope = "previous"
            for incident_id in previous[: self.max_incidents]:
                found = await self.chats.get_incident(incident_id)
                if found is not None:
                    incidents.append(found)
        elif window is not None:
            scope = "window"
            incidents = await self._find(query, window)
        else:
            recent = IncidentFilter()
            incidents = await self.chats.find_incidents(recent, min(self.max_incidents, 5))
        seen = {str(i.id) for i in pinned}
        merged = pinned + [i for i in incidents if str(i.id) not in seen]
        merged = merged[: self.max_incidents]
        analyses = await self.chats.latest_analyses([str(i.id) for i in merged])
        return Grounding(merged, analyses, window, instances, alertnames, scope)

    async def _find(self, query: IncidentFilter, window: Window | None) -> list[IncidentRecord]:
        """Matching incidents that overlap the window (still open, or resolved after its start).

        The overlap test runs here: on the embedded server an `$or` with a null-equality branch
        matches nothing once another condition sits beside it.
        """
        found = await self.chats.find_incidents(query, self.max_incidents * 4)
        if window is not None:
            found = [
                i for i in found if i.resolved_at is None or aware(i.resolved_at) >= window.start
            ]
        return found[: self.max_incidents]

    async def _session(
        self, session_id: str | None, question: str, owner: str | None
    ) -> tuple[ChatSessionRecord, bool]:
        """The session to continue, or a new one; `owner` None = sessions are shared."""
        if session_id is not None:
            if not valid_session_id(session_id):
                raise ChatError("session_id: 1-64 characters of letters, digits, _ . : -")
            existing = await self.chats.get_session(session_id)
            if existing is not None:
                return self._owned(existing, owner), False
        session = ChatSessionRecord(
            session_id=session_id or uuid.uuid4().hex,
            owner=owner or "",
            title=clean_text(question, 80, multiline=False),
        )
        if not await self.chats.create_session(session):
            raced = await self.chats.get_session(session.session_id)
            if raced is not None:
                return self._owned(raced, owner), False
        return session, True

    @staticmethod
    def _owned(session: ChatSessionRecord, owner: str | None) -> ChatSessionRecord:
        if owner is not None and session.owner != owner:
            raise SessionNotFound(f"no session {session.session_id!r}")
        return session

    async def ask(
        self,
        message: str,
        *,
        context: Mapping[str, Any] | None = None,
        session_id: str | None = None,
        owner: str | None = None,
    ) -> Reply:
        """One turn; with `owner` set only that owner's session can be continued."""
        question = clean_text(message, QUESTION_LIMIT)
        if not question:
            raise ChatError("message: must not be empty")
        context = clean_context(context)
        session, new = await self._session(session_id, question, owner)
        now = utcnow()
        previous: list[str] = []
        for m in reversed(session.messages):
            if m.get("role") == "assistant" and isinstance(m.get("incident_ids"), list):
                previous = [str(i) for i in m["incident_ids"]]
                break
        grounding = await self.ground(question, context, previous, now)
        turn = session.message_count // 2 + 1
        with chat_trace(
            self.tracer, session_id=session.session_id, question=question, turn=turn
        ) as trace:
            answer, offline, model, tokens_in, tokens_out = await self._answer(
                trace, session, question, grounding, now
            )
            trace.finish(answer=answer, offline=offline, incident_ids=grounding.incident_ids)
        provider = "offline" if offline or self.provider is None else self.provider.name
        at = utcnow()
        turn_messages = [
            {"role": "user", "content": question, "at": at, "context": dict(context or {})},
            {
                "role": "assistant",
                "content": answer,
                "at": at,
                "offline": offline,
                "provider": provider,
                "model": model,
                "tokens_in": tokens_in,
                "tokens_out": tokens_out,
                "incident_ids": grounding.incident_ids,
            },
        ]
        if not await self.chats.append_turn(
            session.session_id, turn_messages, tokens_in, tokens_out, at
        ):
            # deleted while we answered: keep the conversation rather than lose the answer
            session = ChatSessionRecord(
                session_id=session.session_id, owner=session.owner, title=session.title
            )
            await self.chats.create_session(session)
            await self.chats.append_turn(
                session.session_id, turn_messages, tokens_in, tokens_out, at
            )
        stored = await self.chats.get_session(session.session_id) or session
        log.info(
            "chat turn answered",
            extra={
                "session_id": session.session_id,
                "offline": offline,
                "incidents": len(grounding.incidents),
            },
        )
        return Reply(
            session_id=session.session_id,
            answer=answer,
            offline=offline,
            provider=provider,
            model=model,
            tokens_in=tokens_in,
            tokens_out=tokens_out,
            incident_ids=grounding.incident_ids,
            scope=grounding.scope,
            new_session=new,
            session=stored,
        )

    async def _answer(
        self,
        trace: ChatTrace,
        session: ChatSessionRecord,
        question: str,
        grounding: Grounding,
        now: datetime,
    ) -> tuple[str, bool, str, int, int]:
        """(answer, offline, model, tokens_in, tokens_out)."""
        if self.provider is None:
            return offline_answer(grounding, "No language model is configured"), True, "", 0, 0
        messages = build_messages(
            session.messages, question, data_document(grounding, now), self.history_messages
        )
        estimate = sum(len(m["content"]) for m in messages) // 4 + OUTPUT_TOKENS
        over = await self.budget.over_hour(estimate)
        if over:
            log.warning("chat: %s, answering offline", over)
            return offline_answer(grounding, f"Not asking the model: {over}"), True, "", 0, 0
        with trace.generation(
            model=self.provider.model,
            messages=[{"role": m["role"], "content": m["content"]} for m in messages],
        ) as generation:
            try:
                result = await self.provider.complete(messages, ANSWER_SCHEMA)
            except LLMError as err:
                generation.failed(str(err))
                log.warning(
                    "chat: the model failed, answering offline",
                    extra={"session_id": session.session_id, "error": str(err)[:300]},
                )
                reason = f"The language model did not answer ({type(err).__name__})"
                return offline_answer(grounding, reason), True, "", 0, 0
            answer = sanitise_output(answer_text(result.content), ANSWER_LIMIT)
            generation.succeeded(
                output=answer,
                model=result.model,
                tokens_in=result.tokens_in,
                tokens_out=result.tokens_out,
            )
        if not answer:
            answer = offline_answer(grounding, "The language model gave an empty answer")
            return answer, True, result.model, result.tokens_in, result.tokens_out
        return answer, False, result.model, result.tokens_in, result.tokens_out
