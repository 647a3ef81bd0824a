"""Host-header allow-list: without API tokens only local names (and configured ones) are answered.

A service with no tokens trusts whoever reaches it; a web page elsewhere can reach a service on
localhost by pointing its own name at 127.0.0.1 (DNS rebinding), and the browser then sends
that name as `Host`. Refusing unknown names closes that path. Ports are ignored.
"""

from __future__ import annotations

import json
from urllib.parse import urlsplit

from starlette.types import ASGIApp, Receive, Scope, Send

from receiver.api.access import split_tokens
from receiver.settings import Settings

LOCAL_NAMES = frozenset({"localhost", "127.0.0.1", "::1"})
WILDCARD_BINDS = frozenset({"", "0.0.0.0", "::"})


def host_name(header: str) -> str:
    """The name in a Host header without port or brackets, lower case: `[::1]:80` → `::1`."""
    value = header.strip().lower()
    if value.startswith("["):
        return value[1 : value.find("]")] if "]" in value else ""
    if value.count(":") == 1:
        value = value.split(":", 1)[0]
    return value.rstrip(".")


def allowed_hosts(settings: Settings) -> frozenset[str] | None:
    """The names to answer, or None for any (tokens set and no explicit list, or `*`)."""
    configured = {host_name(h) for h in split_tokens(settings.receiver_allowed_hosts)}
    if "*" in configured:
        return None
    if configured:
        return frozenset(configured)
    if settings.api_auth_configured:
        return None
    names = set(LOCAL_NAMES)
    bind = settings.receiver_host.strip().strip("[]").lower()
    if bind not in WILDCARD_BINDS:
        names.add(bind)
    if settings.public_url:
        public = urlsplit(settings.public_url).hostname
        if public:
            names.add(public.lower())
    return frozenset(names)


class HostGuard:
    """Answers 421 to requests whose Host is not allowed, before anything else runs."""

    def __init__(self, app: ASGIApp, allowed: frozenset[str] | None) -> None:
        self.app = app
        self.allowed = allowed

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or self.allowed is None:
            await self.app(scope, receive, send)
            return
        header = next(
            (v.decode("latin-1") for k, v in scope["headers"] if k.lower() == b"host"), ""
        )
        if host_name(header) in self.allowed:
            await self.app(scope, receive, send)
            return
        body = json.dumps(
            {
                "error": "host_not_allowed",
                "detail": f"this service does not answer for Host {header[:100]!r}; add the "
                "name to RECEIVER_ALLOWED_HOSTS (without API tokens only local names are "
                "answered)",
            }
        ).encode()
        await send(
            {
                "type": "http.response.start",
                "status": 421,
                "headers": [
                    (b"content-type", b"application/json"),
                    (b"content-length", str(len(body)).encode()),
                    (b"x-content-type-options", b"nosniff"),
                    (b"cache-control", b"no-store"),
                ],
            }
        )
        await send({"type": "http.response.body", "body": body})
