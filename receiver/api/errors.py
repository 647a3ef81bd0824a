"""JSON error responses: one shape everywhere, `{"error": code, "detail": message, ...}`."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response


def error(
    status: int,
    code: str,
    detail: str,
    headers: Mapping[str, str] | None = None,
    **extra: Any,
) -> JSONResponse:
    return JSONResponse(
        {"error": code, "detail": detail, **extra}, status_code=status, headers=headers
    )


# Every StoreError that reaches the web layer means "try again later": bad input is refused
# with a 4xx before the store is asked, and a row the store cannot read is quarantined.
STORE_RETRY_AFTER = "5"


def store_unavailable(detail: str) -> JSONResponse:
    """503 + Retry-After for a store that cannot answer right now."""
    return error(503, "store_unavailable", detail, headers={"Retry-After": STORE_RETRY_AFTER})


async def store_error_handler(request: Request, exc: Exception) -> Response:
    """The web layer's one answer to a StoreError a handler let through."""
    return store_unavailable(str(exc))
