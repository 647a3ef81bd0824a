"""The chat API's requests and responses (`receiver.api.chat`), for /openapi.json: a turn,
its answer, and the sessions that keep the conversation. See `receiver.api.schemas`."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BaseModel, Field, StringConstraints

from receiver.api.schemas import SINCE, PageQuery

ContextKey = Annotated[str, StringConstraints(pattern=r"^[A-Za-z0-9_\-]{1,64}$")]


class ChatRequest(BaseModel):
    message: str = Field(min_length=1, max_length=4_000)
    context: dict[ContextKey, str | int | float | bool | None] | None = Field(
        default=None,
        max_length=20,
        description="optional: `incident_id` pins an incident; other values add search words",
    )
    session_id: str | None = Field(
        default=None,
        pattern=r"^[A-Za-z0-9_.:\-]{1,64}$",
        description="continue this session (created when unknown); omitted = a new session",
    )


class TokenCounts(BaseModel):
    input: int
    output: int


class SessionSummary(BaseModel):
    session_id: str
    title: str
    created_at: str | None
    last_activity: str | None
    message_count: int
    tokens_in: int
    tokens_out: int
    total_tokens: int = Field(description="tokens_in + tokens_out (the seed's field)")
    active: bool


class ChatMessage(BaseModel):
    role: Literal["user", "assistant"]
    content: str
    at: str | None
    offline: bool | None = None
    provider: str | None = None
    model: str | None = None
    tokens_in: int | None = None
    tokens_out: int | None = None
    incident_ids: list[str] | None = None
    context: dict[str, Any] | None = None


class ChatResponse(BaseModel):
    session_id: str
    response: str = Field(description="the assistant's answer")
    offline: bool = Field(description="answered without a model (none configured, or it failed)")
    provider: str
    model: str
    tokens: TokenCounts
    incidents: list[str] = Field(description="ids of the incidents the answer was grounded in")
    grounding: Literal["matched", "context", "previous", "window", "recent"]
    new_session: bool
    session: SessionSummary


class SessionQuery(PageQuery):
    since: str | None = Field(default=None, description="last activity at or after; " + SINCE)


class SessionList(BaseModel):
    sessions: list[SessionSummary]
    total: int
    limit: int
    offset: int
    next_offset: int | None


class SessionDetail(SessionSummary):
    messages: list[ChatMessage]


class SessionDeleted(BaseModel):
    deleted: Literal[True]
    session_id: str
