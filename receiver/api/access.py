"""API access control and security headers, as ASGI middleware in front of every route.

The policy is a table over (method, path), so routes other stages add are covered without
registering anything: health, metrics and the docs are open; the webhook paths keep their own
credentials (WEBHOOK_TOKEN / basic auth); every other GET needs a read or admin token; every
other method needs an admin token, except the few writes a reader may make (chat, feedback) and
the on-call actions on incidents, which an operator token may make too (OPERATOR_TOKEN); the
audit log is read with an admin token.
Tokens are compared in constant time; the 401/403 bodies never echo what was sent.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import re
from collections.abc import Iterable
from dataclasses import dataclass
from enum import StrEnum

from pydantic import SecretStr
from starlette.datastructures import MutableHeaders
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from receiver.api.throttle import client_address
from receiver.ratelimit import SlidingLimit
from receiver.settings import Settings


class Access(StrEnum):
    OPEN = "open"  # no token ever
    WEBHOOK = "webhook"  # the webhook's own credentials, checked by the route
    READ = "read"
    OPERATE = "operator"  # read + the on-call actions on incidents
    ADMIN = "admin"


OPEN_PATHS = frozenset({"/metrics", "/healthz", "/readyz", "/openapi.json"})
DOCS_PREFIXES = ("/docs", "/redoc")
WEBHOOK_PATHS = frozenset({"/api/v1/alerts", "/webhook/alertmanager"})
READ_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})
# Writes that are not configuration: asking the assistant, rating an analysis.
READER_WRITES: tuple[tuple[str, re.Pattern[str]], ...] = (
    ("POST", re.compile(r"/api/chat")),
    ("POST", re.compile(r"/api/v1/incidents/[^/]+/feedback")),
)
# The on-call actions (receiver/api/incidents.py): an operator or admin token.
OPERATOR_ACTIONS = re.compile(r"/api/v1/incidents/[^/]+/(ack|unack|assign|notes|close|silence)")
ADMIN_READS = frozenset({"/api/v1/audit"})


def _under(path: str, prefixes: Iterable[str]) -> bool:
    return any(path == p or path.startswith(p + "/") for p in prefixes)


def required_access(method: str, path: str) -> Access:
    """The scope a request needs, from its method and path alone."""
    method = method.upper()
    if path in OPEN_PATHS or _under(path, DOCS_PREFIXES):
        return Access.OPEN
    if path in WEBHOOK_PATHS:
        return Access.WEBHOOK
    if method in READ_METHODS:
        return Access.ADMIN if path in ADMIN_READS else Access.READ
    if any(method == m and pattern.fullmatch(path) for m, pattern in READER_WRITES):
        return Access.READ
    if OPERATOR_ACTIONS.fullmatch(path):
        return Access.OPERATE
    return Access.ADMIN


def split_tokens(raw: str) -> list[str]:
    return [t.strip() for t in raw.split(",") if t.strip()]


def _digest(token: str) -> bytes:
    return hashlib.sha256(token.encode()).digest()


def principal(token: str) -> str:
    """Who a token is, safe to store: a salted digest prefix, never the token itself."""
    return hashlib.sha256(b"receiver-principal:" + token.encode()).hexdigest()[:32]


@dataclass(frozen=True)
class ApiTokens:
    """Configured tokens, kept as SHA-256 digests so comparisons take the same time."""

    read: tuple[bytes, ...]
    admin: tuple[bytes, ...]
    operator: tuple[bytes, ...] = ()

    @classmethod
    def from_settings(cls, settings: Settings) -> ApiTokens:
        def digests(secret: SecretStr | None) -> tuple[bytes, ...]:
            raw = split_tokens(secret.get_secret_value()) if secret else []
            return tuple(_digest(t) for t in raw)

        return cls(
            digests(settings.api_token),
            digests(settings.admin_token),
            digests(settings.operator_token),
        )

    @property
    def configured(self) -> bool:
        return bool(self.read or self.admin or self.operator)

    def scope_of(self, presented: str) -> Access | None:
        """ADMIN, OPERATE, READ or None; every configured token is compared (no early exit)."""
        given = _digest(presented)
        is_admin = False
        is_operator = False
        is_read = False
        for token in self.admin:
            is_admin |= hmac.compare_digest(given, token)
        for token in self.operator:
            is_operator |= hmac.compare_digest(given, token)
        for token in self.read:
            is_read |= hmac.compare_digest(given, token)
        if is_admin:
            return Access.ADMIN
        if is_operator:
            return Access.OPERATE
        return Access.READ if is_read else None


def bearer(headers: list[tuple[bytes, bytes]]) -> str | None:
    for name, value in headers:
        if name.lower() == b"authorization":
            scheme, _, token = value.decode("latin-1").partition(" ")
            if scheme.lower() == "bearer" and token.strip():
                return token.strip()
            return None
    return None


async def _deny(send: Send, status: int, code: str, detail: str, retry_after: int = 0) -> None:
    body = json.dumps({"error": code, "detail": detail}).encode()
    headers = [
        (b"content-type", b"application/json"),
        (b"content-length", str(len(body)).encode()),
    ]
    if status == 401:
        headers.append((b"www-authenticate", b'Bearer realm="api"'))
    if retry_after:
        headers.append((b"retry-after", str(retry_after).encode()))
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})


class AccessControl:
    """Refuses requests without the token scope `required_access` asks for (401 / 403)."""

    def __init__(
        self, app: ASGIApp, tokens: ApiTokens, throttle: SlidingLimit | None = None
    ) -> None:
        self.app = app
        self.tokens = tokens
        self.throttle = throttle or SlidingLimit(0)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or not self.tokens.configured:
            await self.app(scope, receive, send)
            return
        needed = required_access(scope["method"], scope["path"])
        if needed in (Access.OPEN, Access.WEBHOOK):
            await self.app(scope, receive, send)
            return
        presented = bearer(scope["headers"])
        address = client_address(scope)
        if presented and (wait := self.throttle.retry_after(address)):
            await _deny(
                send,
                429,
                "too_many_failures",
                f"too many wrong tokens from this address; try again in {wait} s",
                retry_after=wait,
            )
            return
        granted = self.tokens.scope_of(presented) if presented else None
        if granted is None:
            if presented:
                self.throttle.record(address)
            await _deny(
                send, 401, "unauthorised", "an API token is required (Authorization: Bearer)"
            )
            return
        if needed is Access.ADMIN and granted is not Access.ADMIN:
            await _deny(send, 403, "forbidden", "this operation needs an admin token")
            return
        if needed is Access.OPERATE and granted not in (Access.OPERATE, Access.ADMIN):
            await _deny(send, 403, "forbidden", "this operation needs an operator or admin token")
            return
        state = scope.setdefault("state", {})
        state["api_access"] = granted.value
        state["api_principal"] = principal(presented) if presented else ""
        await self.app(scope, receive, send)


# Swagger UI and ReDoc inject styles at run time and ReDoc starts a worker from a blob URL;
# scripts come only from this origin (the init scripts are files, not inline).
DOCS_CSP = (
    "default-src 'self'; script-src 'self'; style-src 'self' 'unsafe-inline'; "
    "img-src 'self' data:; font-src 'self' data:; worker-src 'self' blob:; "
    "connect-src 'self'; frame-ancestors 'none'; base-uri 'none'; form-action 'none'"
)
API_CSP = "default-src 'none'; frame-ancestors 'none'"


class SecurityHeaders:
    """Adds nosniff, frame denial, referrer policy and a CSP to every response."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        docs = _under(scope["path"], DOCS_PREFIXES)

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = MutableHeaders(scope=message)
                headers.setdefault("X-Content-Type-Options", "nosniff")
                headers.setdefault("X-Frame-Options", "DENY")
                headers.setdefault("Referrer-Policy", "no-referrer")
                headers.setdefault("Content-Security-Policy", DOCS_CSP if docs else API_CSP)
                headers.setdefault("Cross-Origin-Opener-Policy", "same-origin")
                if not docs:
                    headers.setdefault("Cache-Control", "no-store")
            await send(message)

        await self.app(scope, receive, send_with_headers)
