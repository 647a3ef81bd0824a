"""The audit log: every admin or operator change made through the API, as ASGI middleware.

Sits inside access control, so a request it sees was allowed; it records writes whose route
needs the admin or operator scope (config PUTs, target changes, deletes, re-analysis, delivery
retries, the incident actions) once they answer below 400: who (`actor_of`: the scope and a
prefix of the token's salted digest, never the token), what (method, path, an action name and
whatever detail the handler left in `request.state.audit`), when. Routes added later are
covered without registering anything. A failed audit write is logged and counted; it does not
undo or fail the change that was already made.
"""

from __future__ import annotations

import logging
from typing import Any

from starlette.requests import Request
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from receiver.api.access import Access, required_access
from receiver.records import AuditRecord
from receiver.store.oncall import OncallStore
from receiver.store.repo import StoreError
from receiver.telemetry import AuditMetrics

log = logging.getLogger(__name__)

WRITES = frozenset({"POST", "PUT", "PATCH", "DELETE"})
AUDITED = (Access.ADMIN, Access.OPERATE)
ANONYMOUS = "anonymous"  # API auth off: nobody can be named
PRINCIPAL_SHOWN = 12  # hex digits of the token digest in `actor`
MAX_PATH = 300


def actor_of(state: Any) -> str:
    """`admin:1a2b3c4d5e6f` (scope and digest prefix) or "anonymous" when API auth is off."""
    scope = str(getattr(state, "api_access", "") or "")
    principal = str(getattr(state, "api_principal", "") or "")
    if not principal:
        return ANONYMOUS
    return f"{scope}:{principal[:PRINCIPAL_SHOWN]}"


def note(request: Request, action: str, target: str = "", **detail: Any) -> None:
    """Name the change a handler made, for the audit entry the middleware writes."""
    request.state.audit = {"action": action, "target": target, "detail": detail}


class AuditLog:
    """Writes an `AuditEntry` for every successful admin/operator write."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["method"] not in WRITES:
            await self.app(scope, receive, send)
            return
        if required_access(scope["method"], scope["path"]) not in AUDITED:
            await self.app(scope, receive, send)
            return

        async def watch(message: Message) -> None:
            # written before the answer leaves, so a client that reads the log next sees it
            if message["type"] == "http.response.start" and int(message["status"]) < 400:
                await self._record(scope, int(message["status"]))
            await send(message)

        await self.app(scope, receive, watch)

    async def _record(self, scope: Scope, status: int) -> None:
        state = scope.get("state", {})
        services = state.get("services")
        if services is None:
            return
        request = Request(scope)
        given: dict[str, Any] = state.get("audit") or {}
        method: str = scope["method"]
        path = str(scope["path"])[:MAX_PATH]
        access = str(state.get("api_access", "") or "")
        entry = AuditRecord(
            actor=actor_of(request.state),
            scope=access,
            method=method,
            path=path,
            action=str(given.get("action") or f"{method} {path}"),
            status=status,
            target=str(given.get("target", "")),
            detail=dict(given.get("detail") or {}),
        )
        metrics: AuditMetrics | None = services.audit_metrics
        try:
            await OncallStore(services.store).add_audit(entry)
        except StoreError as err:
            log.warning("audit entry for %s %s not written: %s", method, path, err)
            if metrics is not None:
                metrics.written.labels("failed").inc()
            return
        if metrics is not None:
            metrics.written.labels("written").inc()
