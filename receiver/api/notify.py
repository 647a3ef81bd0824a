"""Notification config API (the seed's paths) and the outbox view.

GET/PUT /agent/email-config, GET /agent/slack-status, GET/PUT /agent/slack-config,
POST /agent/test-email,
POST /agent/test-slack, GET/PUT /api/v1/routing, GET /api/v1/notifications.
Channel URLs appear only masked; SMTP passwords never (only whether one is set).
"""

from __future__ import annotations

import json
import uuid
from datetime import UTC, datetime
from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from receiver.api.body import BodyTooLarge, read_limited, too_large
from receiver.api.errors import error
from receiver.api.params import BadParam, choice, page, text
from receiver.domain import IncidentView, Severity, Signal, Source, Status
from receiver.notify.channels import (
    Channel,
    ChannelError,
    ChannelKind,
    SmtpMode,
    resolve_smtp_mode,
)
from receiver.notify.config import (
    channel_json,
    parse_recipients,
    parse_routing_body,
    parse_slack_body,
    routing_json,
)
from receiver.notify.render import Event, render
from receiver.records import NotificationRecord
from receiver.services import services
from receiver.timeutil import iso_or_none

MAX_BODY = 64 * 1024
STATUSES = {"pending", "sending", "sent", "failed", "suppressed", "waiting"}


async def _json_body(request: Request) -> Any:
    raw = await read_limited(request, MAX_BODY)
    try:
        return json.loads(raw or b"{}")
    except ValueError as err:
        raise ChannelError("body: not JSON") from err


# --- email ------------------------------------------------------------------------------------


async def _email_view(request: Request) -> dict[str, Any]:
    svc = services(request)
    settings = svc.settings
    email = await svc.notify.config.email()
    mode = resolve_smtp_mode(settings.smtp_port, SmtpMode(settings.smtp_mode))
    return {
        "enabled": email.enabled,
        "recipients": list(email.recipients),
        "source": "api" if email.stored else "settings",
        "active": bool(settings.smtp_host and email.enabled and email.recipients),
        "smtp": {
            "host": settings.smtp_host or None,
            "port": settings.smtp_port,
            "mode": mode.value,
            "verify": settings.smtp_verify,
            "user": settings.smtp_user or None,
            "password_set": settings.smtp_password is not None,
            "from": settings.smtp_from or None,
        },
    }


async def get_email_config(request: Request) -> Response:
    return JSONResponse(await _email_view(request))


async def put_email_config(request: Request) -> Response:
    """`{"enabled": bool, "recipients": [...]}`; a field left out keeps its current value."""
    config = services(request).notify.config
    try:
        body = await _json_body(request)
        if not isinstance(body, dict):
            raise ChannelError("body: expected a JSON object")
        current = await config.email()
        enabled = body.get("enabled", current.enabled)
        if not isinstance(enabled, bool):
            raise ChannelError("enabled: expected true or false")
        recipients = (
            parse_recipients(body["recipients"]) if "recipients" in body else current.recipients
        )
        await config.set_email(enabled, recipients)
        services(request).notify.worker.reload()
        return JSONResponse(await _email_view(request))
    except BodyTooLarge as err:
        return too_large(err)
    except ChannelError as err:
        return error(422, "invalid_config", str(err))


# --- slack ------------------------------------------------------------------------------------


async def _slack_view(request: Request) -> dict[str, Any]:
    svc = services(request)
    channels, routing = await svc.notify.config.current()
    config = await svc.notify.config.slack()
    slack = next((c for c in channels if c.name == "slack"), None)
    last_sent = await svc.notify.store.last_row("slack", ["sent"])
    last_problem = await svc.notify.store.last_row("slack", ["failed", "pending"])
    problem = last_problem.last_error if last_problem is not None else ""
    problem_at = last_problem.updated_at if last_problem is not None and problem else None
    return {
        "enabled": config.enabled,
        "configured": slack is not None,
        "source": "api" if config.stored else "settings",
        "webhook_url": slack.masked_url if slack is not None else None,
        "channel": (slack.slack_channel or None) if slack is not None else None,
        "severities": channel_json(slack, routing)["severities"] if slack else [],
        "last_sent_at": iso_or_none(last_sent.sent_at) if last_sent is not None else None,
        "last_error": problem or None,
        "last_error_at": iso_or_none(problem_at),
    }


async def slack_status(request: Request) -> Response:
    return JSONResponse(await _slack_view(request))


async def put_slack_config(request: Request) -> Response:
    """The seed's `{"enabled": bool, "webhook_url": str}`; a field left out keeps its value.
    Stored for every replica; the URL is answered masked, never in full."""
    config = services(request).notify.config
    try:
        body = await _json_body(request)
        await config.set_slack(parse_slack_body(body, await config.slack()))
        services(request).notify.worker.reload()
        return JSONResponse(await _slack_view(request))
    except BodyTooLarge as err:
        return too_large(err)
    except ChannelError as err:
        return error(422, "invalid_config", str(err))


# --- test messages ------------------------------------------------------------------------------


def _test_incident() -> IncidentView:
    now = datetime.now(UTC)
    signal = Signal(
        source=Source.RECEIVER,
        fingerprint="test",
        status=Status.FIRING,
        starts_at=now,
        alertname="TestNotification",
        instance="ai-devops-monitor",
        severity=Severity.LOW,
        metric="test_notification",
        reason="A test sent from the configuration API; no action needed.",
    )
    return IncidentView(
        id=f"test-{uuid.uuid4().hex[:12]}",
        key="test",
        source=Source.RECEIVER,
        status=Status.FIRING,
        severity=Severity.LOW,
        title="Test notification",
        started_at=now,
        signals=[signal],
    )


async def _send_test(request: Request, kind: ChannelKind) -> Response:
    notify = services(request).notify
    channels, _ = await notify.config.current()
    channel: Channel | None = next((c for c in channels if c.kind is kind), None)
    if channel is None:
        what = "email (SMTP_HOST and recipients)" if kind is ChannelKind.EMAIL else "Slack"
        return error(409, "not_configured", f"{what} is not configured or not enabled")
    message = render(_test_incident(), Event.FIRING, None, notify.render_options)
    result = await notify.notifier.send(channel, message)
    if not result.ok:
        return error(
            502, "send_failed", result.error, channel=channel.name, retryable=result.retryable
        )
    return JSONResponse(
        {
            "status": "sent",
            "channel": channel.name,
            "url": channel.masked_url,
            "title": message.title,
        }
    )


async def send_test_email(request: Request) -> Response:
    return await _send_test(request, ChannelKind.EMAIL)


async def send_test_slack(request: Request) -> Response:
    return await _send_test(request, ChannelKind.SLACK)


# --- routing ------------------------------------------------------------------------------------


async def _routing_view(request: Request) -> dict[str, Any]:
    svc = services(request)
    channels, routing = await svc.notify.config.current()
    _, stored = await svc.notify.config.routing()
    return {
        **routing_json(routing),
        "source": "api" if stored else "settings",
        "channels": [channel_json(c, routing) for c in channels],
        "rate_limit": {
            "messages": svc.settings.notify_rate_limit,
            "window_seconds": svc.settings.notify_rate_window_seconds,
        },
        "rca_wait_seconds": svc.settings.notify_rca_wait_seconds,
    }


async def get_routing(request: Request) -> Response:
    return JSONResponse(await _routing_view(request))


async def put_routing(request: Request) -> Response:
    """`{"routes": {"low": ["slack"]}, "resolved": true}`; severities left out keep theirs."""
    config = services(request).notify.config
    try:
        body = await _json_body(request)
        current, _ = await config.routing()
        await config.set_routing(parse_routing_body(body, current))
        services(request).notify.worker.reload()
        return JSONResponse(await _routing_view(request))
    except BodyTooLarge as err:
        return too_large(err)
    except ChannelError as err:
        return error(422, "invalid_config", str(err))


# --- outbox -------------------------------------------------------------------------------------


def notification_view(row: NotificationRecord, full: bool) -> dict[str, Any]:
    view: dict[str, Any] = {
        "id": str(row.id),
        "key": row.key,
        "incident_id": row.incident_id or None,
        "channel": row.channel,
        "event": row.event,
        "severity": row.severity,
        "status": row.status,
        "reason": row.reason or None,
        "attempts": row.attempts,
        "last_error": row.last_error or None,
        "parts_sent": row.parts_sent,
        "with_analysis": row.with_analysis,
        "created_at": iso_or_none(row.created_at),
        "next_attempt_at": iso_or_none(row.next_attempt_at),
        "sent_at": iso_or_none(row.sent_at),
        "window_start": iso_or_none(row.window_start),
        "digest_key": row.digest_key or None,
        "digest_count": row.digest_count,
        "title": (row.message or {}).get("title"),
    }
    if full:
        view["message"] = row.message
    return view


async def list_notifications(request: Request) -> Response:
    """Outbox rows, newest first; filters incident_id, channel, event, status, digest_key."""
    try:
        p = page(request)
        filters: dict[str, Any] = {}
        for name in ("incident_id", "channel", "digest_key"):
            if (value := text(request, name, 200)) is not None:
                filters[name] = value
        if (event := choice(request, "event", {e.value for e in Event})) is not None:
            filters["event"] = event
        if (status := choice(request, "status", STATUSES)) is not None:
            filters["status"] = status
    except BadParam as err:
        return error(400, "bad_parameter", str(err))
    full = request.query_params.get("full", "") in {"1", "true", "yes"}
    items, total = await services(request).notify.store.list_rows(filters, p.offset, p.limit)
    nxt = p.offset + len(items)
    return JSONResponse(
        {
            "notifications": [notification_view(r, full) for r in items],
            "total": total,
            "limit": p.limit,
            "offset": p.offset,
            "next_offset": nxt if nxt < total else None,
        }
    )


ROUTES: list[Route] = [
    Route("/agent/email-config", get_email_config, methods=["GET"]),
    Route("/agent/email-config", put_email_config, methods=["PUT"]),
    Route("/agent/slack-status", slack_status, methods=["GET"]),
    Route("/agent/slack-config", slack_status, methods=["GET"]),
    Route("/agent/slack-config", put_slack_config, methods=["PUT"]),
    Route("/agent/test-email", send_test_email, methods=["POST"]),
    Route("/agent/test-slack", send_test_slack, methods=["POST"]),
    Route("/api/v1/routing", get_routing, methods=["GET"]),
    Route("/api/v1/routing", put_routing, methods=["PUT"]),
    Route("/api/v1/notifications", list_notifications, methods=["GET"]),
]
