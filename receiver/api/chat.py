"""POST /api/chat, GET /api/sessions, GET/DELETE /api/sessions/{session_id}."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from typing import Any

from pydantic import ValidationError
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from receiver.api import chat_schemas
from receiver.api.body import BodyTooLarge, read_limited, too_large
from receiver.api.errors import error
from receiver.api.openapi import RouteDoc, documented
from receiver.api.params import BadParam, page, since
from receiver.api.throttle import client_address
from receiver.chat.assistant import ChatError, SessionNotFound, valid_session_id
from receiver.records import ChatSessionRecord
from receiver.services import services
from receiver.store.filters import SessionFilter
from receiver.timeutil import aware, iso_or_none

MAX_BODY = 64 * 1024
MAX_CONTEXT = 4_000  # characters of the context as JSON


def session_summary(session: ChatSessionRecord, active_after: datetime) -> dict[str, Any]:
    last = session.last_activity
    last = aware(last)
    return {
        "session_id": session.session_id,
        "title": session.title,
        "created_at": iso_or_none(session.created_at),
        "last_activity": iso_or_none(session.last_activity),
        "message_count": session.message_count,
        "tokens_in": session.tokens_in,
        "tokens_out": session.tokens_out,
        "total_tokens": session.tokens_in + session.tokens_out,
        "active": last >= active_after,
    }


def _message_view(message: dict[str, Any]) -> dict[str, Any]:
    view = {k: v for k, v in message.items() if k != "at"}
    at = message.get("at")
    view["at"] = iso_or_none(at) if isinstance(at, datetime) else None
    return view


def _active_after(request: Request) -> datetime:
    minutes = services(request).settings.chat_session_active_minutes
    return datetime.now(UTC) - timedelta(minutes=minutes)


def _owner(request: Request) -> str | None:
    """Whose sessions this request may see: the token's principal; None (all) with auth off."""
    if not services(request).settings.api_auth_configured:
        return None
    return str(getattr(request.state, "api_principal", "")) or None


def _visible(session: ChatSessionRecord | None, owner: str | None) -> ChatSessionRecord | None:
    if session is None or (owner is not None and session.owner != owner):
        return None
    return session


def _validation_error(err: ValidationError) -> Response:
    problems = [
        {"field": ".".join(str(p) for p in e["loc"]) or "body", "message": e["msg"]}
        for e in err.errors(include_url=False, include_input=False)[:20]
    ]
    first = problems[0]
    return error(422, "invalid_body", f"{first['field']}: {first['message']}", problems=problems)


@documented(
    RouteDoc(
        "Ask the assistant about incidents; continues a session",
        chat_schemas.ChatResponse,
        body=chat_schemas.ChatRequest,
        errors=(400, 404, 413, 422, 429, 503),
        tags=("chat",),
        description=(
            "Grounded in the store: instances, alertnames and times named in the message "
            "(e.g. 'why did web-01 page last night?') select the incidents and analyses the "
            "model sees. Without a model (or when it fails) the answer is built offline from "
            "the same incidents and says so (`offline: true`)."
        ),
    )
)
async def chat(request: Request) -> Response:
    svc = services(request)
    owner = _owner(request)
    # per token; with auth off every caller of an address shares its allowance
    key = owner or f"address:{client_address(request.scope)}"
    if wait := svc.chat_limit.retry_after(key):
        return error(
            429,
            "rate_limited",
            f"at most {svc.settings.chat_rate_per_minute} chat requests a minute "
            f"(CHAT_RATE_PER_MINUTE); try again in {wait} s",
            headers={"Retry-After": str(wait)},
        )
    svc.chat_limit.record(key)
    try:
        raw = await read_limited(request, MAX_BODY)
    except BodyTooLarge as err:
        return too_large(err)
    try:
        data = json.loads(raw)
    except (ValueError, UnicodeDecodeError):
        return error(400, "malformed_json", "body is not JSON")
    try:
        body = chat_schemas.ChatRequest.model_validate(data)
    except ValidationError as err:
        return _validation_error(err)
    if body.context is not None and len(json.dumps(body.context, default=str)) > MAX_CONTEXT:
        return error(422, "invalid_body", f"context: larger than {MAX_CONTEXT} characters")
    try:
        reply = await svc.chat.ask(
            body.message, context=body.context, session_id=body.session_id, owner=owner
        )
    except SessionNotFound as err:
        return error(404, "not_found", str(err))
    except ChatError as err:
        return error(422, "invalid_body", str(err))
    return JSONResponse(
        {
            "session_id": reply.session_id,
            "response": reply.answer,
            "offline": reply.offline,
            "provider": reply.provider,
            "model": reply.model,
            "tokens": {"input": reply.tokens_in, "output": reply.tokens_out},
            "incidents": reply.incident_ids,
            "grounding": reply.scope,
            "new_session": reply.new_session,
            "session": session_summary(reply.session, _active_after(request)),
        }
    )


@documented(
    RouteDoc(
        "Chat sessions, most recently active first",
        chat_schemas.SessionList,
        query=chat_schemas.SessionQuery,
        errors=(400, 503),
        tags=("chat",),
    )
)
async def list_sessions(request: Request) -> Response:
    try:
        p = page(request)
        after = since(request)
    except BadParam as err:
        return error(400, "bad_parameter", str(err))
    filters = SessionFilter(owner=_owner(request), since=after)
    items, total = await services(request).chat.chats.list_sessions(filters, p.offset, p.limit)
    active_after = _active_after(request)
    nxt = p.offset + len(items)
    return JSONResponse(
        {
            "sessions": [session_summary(s, active_after) for s in items],
            "total": total,
            "limit": p.limit,
            "offset": p.offset,
            "next_offset": nxt if nxt < total else None,
        }
    )


def _session_id(request: Request) -> str | None:
    raw: str = request.path_params["session_id"]
    return raw if valid_session_id(raw) else None


@documented(
    RouteDoc(
        "One chat session with its messages",
        chat_schemas.SessionDetail,
        errors=(404, 503),
        tags=("chat",),
    ),
    method="GET",
)
@documented(
    RouteDoc(
        "Delete a chat session (admin)",
        chat_schemas.SessionDeleted,
        errors=(404, 503),
        tags=("chat",),
    ),
    method="DELETE",
)
async def session(request: Request) -> Response:
    session_id = _session_id(request)
    if session_id is None:
        return error(404, "not_found", "no such session")
    chats = services(request).chat.chats
    found = _visible(await chats.get_session(session_id), _owner(request))
    if found is not None and request.method == "DELETE":
        if not await chats.delete_session(session_id):
            return error(404, "not_found", f"no session {session_id!r}")
        return JSONResponse({"deleted": True, "session_id": session_id})
    if found is None:
        return error(404, "not_found", f"no session {session_id!r}")
    return JSONResponse(
        {
            **session_summary(found, _active_after(request)),
            "messages": [_message_view(m) for m in found.messages],
        }
    )


ROUTES: list[Route] = [
    Route("/api/chat", chat, methods=["POST"]),
    Route("/api/sessions", list_sessions, methods=["GET"]),
    Route("/api/sessions/{session_id}", session, methods=["GET", "DELETE"]),
]
