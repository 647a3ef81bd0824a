"""GET / (status like the seed), /healthz, /readyz, /metrics."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from receiver import __version__
from receiver.api.errors import error
from receiver.api.stats import langfuse_enabled
from receiver.safety import mask_url
from receiver.services import Services, services
from receiver.store.collections import Collections
from receiver.store.repo import StoreError


async def _sessions(svc: Services) -> dict[str, int] | None:
    """Chat session totals; null when the store cannot say (the status page still answers)."""
    active_after = datetime.now(UTC) - timedelta(minutes=svc.settings.chat_session_active_minutes)
    collections = Collections(svc.store)
    try:
        return {
            "total": await collections.count("chat_sessions"),
            "active": await collections.active_sessions(active_after),
        }
    except StoreError:
        return None


async def status(request: Request) -> Response:
    svc = services(request)
    s = svc.settings
    provider = s.llm_provider if s.llm_url else "offline"
    return JSONResponse(
        {
            "status": "running",
            "service": "ai-devops-monitor",
            "version": __version__,
            "prometheus": mask_url(s.prom_url) if s.prom_url else "",
            "llm_model": s.llm_model,
            "llm_provider": provider,
            "store": svc.store.kind,
            "monitor_interval": s.monitor_interval,
            "webhook_auth": svc.settings.webhook_auth_configured,
            # the seed's blocks
            "llm": {
                "provider": provider,
                "model": s.llm_model,
                "url": mask_url(s.llm_url) if s.llm_url else None,
                "configured": bool(s.llm_url),
            },
            "langfuse": {
                "enabled": langfuse_enabled(s),
                "host": s.langfuse_host.strip() or None,
            },
            "sessions": await _sessions(svc),
        }
    )


async def healthz(request: Request) -> Response:
    return JSONResponse({"status": "ok"})


async def readyz(request: Request) -> Response:
    svc = services(request)
    if svc.commits.saturated:
        return error(503, "not_ready", "backpressure: deliveries are waiting for the store")
    try:
        await svc.store.ping()
    except StoreError as err:
        return error(503, "not_ready", str(err))
    return JSONResponse({"status": "ready", "store": services(request).store.kind})


async def metrics(request: Request) -> Response:
    return Response(generate_latest(services(request).registry), media_type=CONTENT_TYPE_LATEST)
