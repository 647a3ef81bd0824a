"""The client address a rate limit is keyed by (see `receiver.ratelimit.SlidingLimit`)."""

from __future__ import annotations

from starlette.types import Scope


def client_address(scope: Scope) -> str:
    client = scope.get("client")
    if isinstance(client, list | tuple) and client:
        return str(client[0])
    return ""
