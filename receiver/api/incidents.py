"""The on-call routes: acknowledge, assign, note, close and silence an incident, the audit
log, and the label-matcher / sort scan behind `GET /api/v1/incidents`.

Every action lands in the incident's history (`incident_events`) and, through
`receiver.api.audit.AuditLog`, in the audit log. Bodies are JSON (415 otherwise: a
cross-site form cannot send it, which with the console's SameSite=Strict cookie is the
console's CSRF protection), capped, and checked field by field (422 naming the field).
"""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from receiver.api.audit import actor_of, note
from receiver.api.body import BodyTooLarge, media_type, read_limited, too_large
from receiver.api.errors import error
from receiver.api.params import BadParam, choice, page, since, text
from receiver.api.views import event_view, incident_view
from receiver.domain import Severity
from receiver.durations import parse_duration
from receiver.oncall import actions
from receiver.oncall.actions import InputError, State, state_of
from receiver.oncall.matchers import Matcher, MatcherError, matches_all, parse_matchers
from receiver.oncall.silences import SilenceError, Silences
from receiver.records import AuditRecord, IncidentEventRecord, IncidentRecord
from receiver.services import services
from receiver.store.filters import AuditFilter, IncidentFilter
from receiver.store.oncall import OncallStore, as_time
from receiver.timeutil import utcnow

MAX_BODY = 16 * 1024
SORTS = ("started", "severity", "updated")


def _not_found(incident_id: str) -> Response:
    return error(404, "not_found", f"no incident {incident_id[:40]!r}")


async def _body(request: Request) -> dict[str, Any]:
    """The JSON object sent (an empty body is `{}`); `InputError`/`BodyTooLarge` otherwise."""
    media = media_type(request)
    raw = await read_limited(request, MAX_BODY)
    if not raw.strip():
        return {}
    if media != "application/json":
        raise _MediaType(media)
    try:
        body = json.loads(raw)
    except ValueError as err:
        raise InputError("body: not JSON") from err
    if not isinstance(body, dict):
        raise InputError("body: must be a JSON object")
    return body


class _MediaType(Exception):
    def __init__(self, media: str) -> None:
        super().__init__(media)
        self.media = media


async def _read(request: Request) -> dict[str, Any] | Response:
    try:
        return await _body(request)
    except BodyTooLarge as err:
        return too_large(err)
    except _MediaType as err:
        return error(
            415,
            "unsupported_media_type",
            f"Content-Type must be application/json, got {err.media[:100]!r}",
        )
    except InputError as err:
        return error(400, "bad_json", str(err))


class _Action:
    """One request's actor, author and store, and the history/audit writing they share."""

    def __init__(self, request: Request, body: dict[str, Any]) -> None:
        self.request = request
        self.svc = services(request)
        self.store = OncallStore(self.svc.store)
        self.actor = actor_of(request.state)
        self.author = actions.name_field(body, "author")
        self.incident_id = str(request.path_params["incident_id"])

    @property
    def who(self) -> str:
        """The name shown for the action: the author given, else the token's identity."""
        return self.author or self.actor

    async def done(
        self, incident: IncidentRecord, kind: str, text_: str = "", status: int = 200, **detail: Any
    ) -> Response:
        event = IncidentEventRecord(
            incident_id=str(incident.id),
            kind=kind,
            actor=self.actor,
            author=self.author,
            text=text_,
            detail=detail,
        )
        await self.store.add_event(event)
        note(
            self.request,
            f"incident.{kind}",
            str(incident.id),
            author=self.author,
            text=text_[:200],
            **detail,
        )
        return JSONResponse(
            {"status": "ok", "event": event_view(event), **incident_view(incident)},
            status_code=status,
        )


async def _start(request: Request) -> tuple[_Action, dict[str, Any], IncidentRecord] | Response:
    body = await _read(request)
    if isinstance(body, Response):
        return body
    try:
        action = _Action(request, body)
    except InputError as err:
        return error(422, "invalid_field", str(err))
    incident = await action.svc.store.get_incident(action.incident_id)
    if incident is None:
        return _not_found(action.incident_id)
    return action, body, incident


def _conflict(incident: IncidentRecord, doing: str) -> Response:
    state = state_of(incident)
    return error(409, "conflict", f"cannot {doing}: the incident is {state.value}", state=state)


async def ack(request: Request) -> Response:
    """POST /api/v1/incidents/{id}/ack: "I have it" (a firing incident only)."""
    started = await _start(request)
    if isinstance(started, Response):
        return started
    action, _, incident = started
    if state_of(incident) not in (State.OPEN, State.ACKNOWLEDGED):
        return _conflict(incident, "acknowledge")
    updated = await action.store.set_fields(
        action.incident_id,
        {"acked_by": action.who, "acked_at_ts": utcnow().timestamp()},
        {"status": "firing"},
    )
    if updated is None:
        return _conflict(incident, "acknowledge")
    return await action.done(updated, "ack")


async def unack(request: Request) -> Response:
    """POST /api/v1/incidents/{id}/unack: give it back (nobody holds it)."""
    started = await _start(request)
    if isinstance(started, Response):
        return started
    action, _, incident = started
    if not incident.acked_by:
        return error(409, "conflict", "the incident is not acknowledged", state=state_of(incident))
    updated = await action.store.set_fields(
        action.incident_id, {"acked_by": "", "acked_at_ts": 0.0}
    )
    if updated is None:
        return _not_found(action.incident_id)
    return await action.done(updated, "unack", previous=incident.acked_by)


async def assign(request: Request) -> Response:
    """POST /api/v1/incidents/{id}/assign {"assignee"}: "" takes the assignment away."""
    started = await _start(request)
    if isinstance(started, Response):
        return started
    action, body, _ = started
    if "assignee" not in body:
        return error(422, "invalid_field", 'assignee: required ("" to unassign)')
    try:
        assignee = actions.name_field(body, "assignee", required=True)
    except InputError as err:
        return error(422, "invalid_field", str(err))
    updated = await action.store.set_fields(action.incident_id, {"assignee": assignee})
    if updated is None:
        return _not_found(action.incident_id)
    return await action.done(updated, "assign", assignee)


async def add_note(request: Request) -> Response:
    """POST /api/v1/incidents/{id}/notes {"text"}: one entry on the incident's timeline."""
    started = await _start(request)
    if isinstance(started, Response):
        return started
    action, body, incident = started
    try:
        content = actions.text_field(body, "text", actions.MAX_NOTE, required=True)
    except InputError as err:
        return error(422, "invalid_field", str(err))
    updated = await action.store.set_fields(action.incident_id, {}) or incident
    return await action.done(updated, "note", content, status=201)


async def close(request: Request) -> Response:
    """POST /api/v1/incidents/{id}/close: resolved by hand (see receiver.oncall.actions)."""
    started = await _start(request)
    if isinstance(started, Response):
        return started
    action, body, incident = started
    try:
        reason = actions.text_field(body, "comment", actions.MAX_COMMENT, required=False)
    except InputError as err:
        return error(422, "invalid_field", str(err))
    if incident.status != "firing":
        return _conflict(incident, "close")
    if not await action.store.close(incident, action.who, utcnow()):
        return _conflict(incident, "close")
    updated = await action.svc.store.get_incident(action.incident_id) or incident
    return await action.done(updated, "close", reason)


# --- silences ---------------------------------------------------------------------------------


def _silences(request: Request) -> Silences:
    svc = services(request)
    urls = [u.strip() for u in svc.settings.alertmanager_urls.split(",") if u.strip()]
    return Silences(svc.http, urls)


async def silence(request: Request) -> Response:
    """POST /api/v1/incidents/{id}/silence {"duration", "comment"}: a silence in Alertmanager
    on the incident's group labels; DELETE expires it."""
    if request.method == "DELETE":
        return await _unsilence(request)
    started = await _start(request)
    if isinstance(started, Response):
        return started
    action, body, incident = started
    raw = body.get("duration", "2h")
    if not isinstance(raw, str):
        return error(422, "invalid_field", "duration: a string like 30m, 2h or 1d")
    try:
        length_ms = parse_duration(raw.strip())
    except ValueError as err:
        return error(422, "invalid_field", f"duration: {err}")
    if not actions.MIN_SILENCE_MS <= length_ms <= actions.MAX_SILENCE_MS:
        return error(422, "invalid_field", "duration: between 1m and 30d")
    try:
        comment = actions.text_field(body, "comment", actions.MAX_COMMENT, required=False)
    except InputError as err:
        return error(422, "invalid_field", str(err))
    silencer = _silences(request)
    if not silencer.urls:
        return error(409, "no_alertmanager", "ALERTMANAGER_URLS is not set: nowhere to silence")
    if incident.source != "alertmanager" or not incident.group_labels:
        return error(
            409,
            "not_silenceable",
            "only an Alertmanager incident with group labels can be silenced here "
            "(a silence without matchers would silence everything)",
        )
    starts = datetime.now(UTC)
    ends = starts + timedelta(milliseconds=length_ms)
    comment = comment or f"silenced from incident {incident.id} ({incident.title[:100]})"
    try:
        made = await silencer.create(incident.group_labels, starts, ends, action.who, comment)
    except SilenceError as err:
        return error(502, "alertmanager_error", f"Alertmanager refused the silence: {err}")
    updated = await action.store.set_fields(
        action.incident_id, {"silence_id": made.id, "silence_until_ts": ends.timestamp()}
    )
    return await action.done(
        updated or incident,
        "silence",
        comment,
        status=201,
        silence_id=made.id,
        ends_at=ends.isoformat(),
        matchers=dict(incident.group_labels),
    )


async def _unsilence(request: Request) -> Response:
    started = await _start(request)
    if isinstance(started, Response):
        return started
    action, _, incident = started
    if not incident.silence_id:
        return error(409, "conflict", "the incident has no silence")
    try:
        await _silences(request).expire(incident.silence_id)
    except SilenceError as err:
        return error(502, "alertmanager_error", f"Alertmanager did not expire the silence: {err}")
    updated = await action.store.set_fields(
        action.incident_id, {"silence_id": "", "silence_until_ts": 0.0}
    )
    return await action.done(updated or incident, "unsilence", silence_id=incident.silence_id)


# --- finding incidents ---------------------------------------------------------------------


def list_options(request: Request) -> tuple[list[Matcher], str, str | None]:
    """`filter` (matchers), `sort` and `state` from the query; `BadParam` names the bad one."""
    matchers: list[Matcher] = []
    raw = request.query_params.get("filter", "")
    if raw.strip():
        try:
            matchers = parse_matchers(raw)
        except MatcherError as err:
            raise BadParam("filter", str(err)) from err
    sort = choice(request, "sort", set(SORTS)) or "started"
    state = choice(request, "state", set(actions.STATE_FILTERS))
    return matchers, sort, state


def _labels(doc: dict[str, Any]) -> dict[str, str]:
    common = doc.get("common_labels") or {}
    group = doc.get("group_labels") or {}
    return {**common, **group}


def _order(sort: str, doc: dict[str, Any]) -> tuple[Any, ...]:
    started = as_time(doc.get("started_at")).timestamp()
    if sort == "severity":
        rank = Severity.parse(str(doc.get("severity", "medium"))).rank
        return (rank, started)
    if sort == "updated":
        return (as_time(doc.get("updated_at")).timestamp(), started)
    return (started,)


async def find_page(
    request: Request,
    query: IncidentFilter,
    matchers: list[Matcher],
    sort: str,
    offset: int,
    limit: int,
) -> tuple[list[IncidentRecord], int]:
    """Matchers over the group+common labels and the severity/updated orders, applied here
    (over the incidents the store filter leaves: at most MAX_DOCS), then one page by id."""
    store = OncallStore(services(request).store)
    docs = await store.scan(query)
    if matchers:
        docs = [d for d in docs if matches_all(matchers, _labels(d))]
    docs.sort(key=lambda d: (*_order(sort, d), str(d["_id"])), reverse=True)
    ids = [d["_id"] for d in docs[offset : offset + limit]]
    return await store.by_ids(ids), len(docs)


# --- the audit log ---------------------------------------------------------------------------


def _audit_view(entry: AuditRecord) -> dict[str, Any]:
    at = entry.at if entry.at.tzinfo else entry.at.replace(tzinfo=UTC)
    return {
        "id": str(entry.id),
        "at": at.isoformat(),
        "actor": entry.actor,
        "scope": entry.scope or None,
        "action": entry.action,
        "method": entry.method,
        "path": entry.path,
        "status": entry.status,
        "target": entry.target or None,
        "detail": entry.detail,
    }


async def list_audit(request: Request) -> Response:
    """GET /api/v1/audit (admin): newest first; `actor`, `action`, `target`, `since`."""
    try:
        p = page(request)
        query = AuditFilter(
            actor=text(request, "actor", 300),
            action=text(request, "action", 300),
            target=text(request, "target", 300),
            since=since(request),
        )
    except BadParam as err:
        return error(400, "bad_parameter", str(err))
    items, total = await OncallStore(services(request).store).list_audit(query, p.offset, p.limit)
    nxt = p.offset + len(items)
    return JSONResponse(
        {
            "entries": [_audit_view(e) for e in items],
            "total": total,
            "limit": p.limit,
            "offset": p.offset,
            "next_offset": nxt if nxt < total else None,
        }
    )


ROUTES: list[Route] = [
    Route("/api/v1/incidents/{incident_id}/ack", ack, methods=["POST"]),
    Route("/api/v1/incidents/{incident_id}/unack", unack, methods=["POST"]),
    Route("/api/v1/incidents/{incident_id}/assign", assign, methods=["POST"]),
    Route("/api/v1/incidents/{incident_id}/notes", add_note, methods=["POST"]),
    Route("/api/v1/incidents/{incident_id}/close", close, methods=["POST"]),
    Route("/api/v1/incidents/{incident_id}/silence", silence, methods=["POST", "DELETE"]),
    Route("/api/v1/audit", list_audit, methods=["GET"]),
]
