"""HTTP self-monitoring: request counts and latency by route template, on the app's registry.

The label is the route's template (`/api/v1/incidents/{incident_id}`), never the raw path, so
the series count stays bounded whatever clients send; unmatched paths share one label.
`http_requests_total` carries it twice, as `route` (the dashboard's) and as `path` (the seed's
label name), so seed queries by `path` work; the two are always equal.
"""

from __future__ import annotations

import time
from typing import Any

from starlette.routing import BaseRoute, Match, Mount
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from receiver.telemetry import HttpMetrics

UNMATCHED = "<unmatched>"
_METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})


def route_template(routes: list[BaseRoute], scope: Scope) -> str:
    """The template of the route that serves `scope` (full or method-mismatch match)."""
    partial: str | None = None
    for route in routes:
        match, _ = route.matches(scope)
        if match is Match.NONE:
            continue
        path = getattr(route, "path", None)
        if not isinstance(path, str):
            return UNMATCHED
        template = path + "/{path}" if isinstance(route, Mount) else path
        if match is Match.FULL:
            return template
        partial = partial or template
    return partial or UNMATCHED


def _metrics(scope: Scope) -> HttpMetrics | None:
    state: dict[str, Any] = scope.get("state") or {}
    services = state.get("services")
    found = getattr(services, "http_metrics", None)
    return found if isinstance(found, HttpMetrics) else None


class RequestMetrics:
    """Times every HTTP request and counts it by (method, route template, status)."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        metrics = _metrics(scope) if scope["type"] == "http" else None
        if metrics is None:
            await self.app(scope, receive, send)
            return
        # matched before the call: a mount's router later replaces scope["route"] and root_path
        routes: list[BaseRoute] = list(getattr(scope.get("app"), "routes", []))
        template = route_template(routes, scope)
        method = scope["method"] if scope["method"] in _METHODS else "OTHER"
        status = 500
        started = time.perf_counter()

        async def record_status(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        metrics.in_progress.inc()
        try:
            await self.app(scope, receive, record_status)
        finally:
            metrics.in_progress.dec()
            metrics.latency.labels(method, template).observe(time.perf_counter() - started)
            metrics.requests.labels(method, template, template, str(status)).inc()
