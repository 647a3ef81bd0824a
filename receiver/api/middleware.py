"""The middleware every request passes, outermost first: CORS (only when CORS_ORIGINS is set),
security headers, request metrics, access control (with the failed-login throttle)."""

from __future__ import annotations

from starlette.middleware import Middleware
from starlette.middleware.cors import CORSMiddleware

from receiver.api.access import AccessControl, ApiTokens, SecurityHeaders, split_tokens
from receiver.api.telemetry import RequestMetrics
from receiver.ratelimit import SlidingLimit
from receiver.settings import Settings


def api_middleware(settings: Settings, throttle: SlidingLimit) -> list[Middleware]:
    stack: list[Middleware] = []
    origins = split_tokens(settings.cors_origins)
    if origins:
        stack.append(
            Middleware(
                CORSMiddleware,
                allow_origins=origins,
                allow_methods=["GET", "POST", "PUT", "PATCH", "DELETE"],
                allow_headers=["Authorization", "Content-Type"],
                max_age=600,
            )
        )
    stack.append(Middleware(SecurityHeaders))
    stack.append(Middleware(RequestMetrics))
    stack.append(
        Middleware(AccessControl, tokens=ApiTokens.from_settings(settings), throttle=throttle)
    )
    return stack
