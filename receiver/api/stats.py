"""GET /stats (collection totals: the seed's `collections` block, then our own counts of
anomalies, incidents, deliveries and notifications) and GET /langfuse/status.

/stats reads collections by name, so a collection another stage has not created yet counts 0,
and the email settings come from the notification stage when it is wired, else from the
environment.
"""

from __future__ import annotations

import importlib.metadata
import importlib.util
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from receiver.api import schemas
from receiver.api.openapi import RouteDoc, documented
from receiver.services import Services, services
from receiver.settings import Settings
from receiver.store.collections import Collections

PROBE_TIMEOUT = 2.0


async def _email(svc: Services, collections: Collections) -> dict[str, Any]:
    notify = getattr(svc, "notify", None)
    config = getattr(notify, "config", None)
    if config is not None and hasattr(config, "email"):
        email = await config.email()
        return {"enabled": bool(email.enabled), "recipients": len(email.recipients)}
    stored = await collections.find_one("settings", {"name": "email"})
    value = stored.get("value") if stored else None
    if isinstance(value, dict):
        recipients = value.get("recipients")
        return {
            "enabled": bool(value.get("enabled")),
            "recipients": len(recipients) if isinstance(recipients, list) else 0,
        }
    configured = [r for r in svc.settings.smtp_to.split(",") if r.strip()]
    return {"enabled": bool(svc.settings.smtp_host), "recipients": len(configured)}


async def _slack(svc: Services) -> dict[str, bool]:
    config = getattr(getattr(svc, "notify", None), "config", None)
    if config is not None and hasattr(config, "slack"):
        slack = await config.slack()
        return {"enabled": bool(slack.enabled), "configured": slack.webhook_url is not None}
    return {
        "enabled": svc.settings.slack_enabled,
        "configured": svc.settings.slack_webhook_url is not None,
    }


@documented(RouteDoc("Collection totals", schemas.Stats, errors=(503,), tags=("status",)))
async def stats(request: Request) -> Response:
    svc = services(request)
    collections = Collections(svc.store)
    active_after = datetime.now(UTC) - timedelta(minutes=svc.settings.chat_session_active_minutes)
    count = collections.count
    totals = {name: await count(name) for name in ("metrics", "anomalies", "rca")}
    chats = await count("chat_sessions")
    quarantined = await collections.quarantined()
    body = {
        # the seed's shape: `stats['collections']['anomalies']['total']`
        "collections": {
            "metrics": {"total": totals["metrics"]},
            "anomalies": {"total": totals["anomalies"]},
            "rca_results": {"total": totals["rca"]},
            "chat_sessions": {"total": chats},
        },
        "metrics": totals["metrics"],
        "anomalies": {
            "total": totals["anomalies"],
            "open": await count("anomalies", status="firing"),
            "analyzed": await count("anomalies", analyzed=True),
        },
        "incidents": {
            "total": await count("incidents"),
            "open": await count("incidents", status="firing"),
        },
        "rca_results": totals["rca"],
        "chat_sessions": {
            "total": chats,
            "active": await collections.active_sessions(active_after),
        },
        "notifications": {
            "email": await _email(svc, collections),
            "slack": await _slack(svc),
            "outbox": {
                "pending": await count("notifications", status="pending"),
                "sent": await count("notifications", status="sent"),
                "failed": quarantined["notifications"],
                "suppressed": await count("notifications", status="suppressed"),
            },
        },
        "deliveries": {
            "total": await count("deliveries"),
            "pending": await count("deliveries", processed=False),
            "failed": quarantined["deliveries"],
        },
        "quarantined": quarantined,
        "store": svc.store.kind,
    }
    return JSONResponse(body)


def langfuse_enabled(s: Settings) -> bool:
    return s.langfuse_public_key is not None and s.langfuse_secret_key is not None


async def _probe(http: httpx.AsyncClient, host: str) -> bool:
    try:
        response = await http.get(host.rstrip("/") + "/api/public/health", timeout=PROBE_TIMEOUT)
    except httpx.HTTPError:
        return False
    return response.is_success


@documented(
    RouteDoc(
        "Langfuse tracing: installed, enabled, host, connected (keys never shown)",
        schemas.LangfuseStatus,
        tags=("status",),
    )
)
async def langfuse_status(request: Request) -> Response:
    svc = services(request)
    s = svc.settings
    installed = importlib.util.find_spec("langfuse") is not None
    version = importlib.metadata.version("langfuse") if installed else None
    enabled = langfuse_enabled(s)
    host = s.langfuse_host.strip() or None
    # Only a configured host is probed: the SDK's default is a remote service.
    connected = await _probe(svc.http, host) if enabled and host else None
    return JSONResponse(
        {
            "installed": installed,
            "version": version,
            "enabled": enabled,
            "host": host,
            "public_key": "configured" if s.langfuse_public_key else "missing",
            "secret_key": "configured" if s.langfuse_secret_key else "missing",
            "connected": connected,
            # every chat turn is traced under its chat session id when tracing is on
            "session_tracking": enabled,
        }
    )


ROUTES: list[Route] = [
    Route("/stats", stats, methods=["GET"]),
    Route("/langfuse/status", langfuse_status, methods=["GET"]),
]
