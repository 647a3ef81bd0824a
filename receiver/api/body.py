"""Request bodies read with a size cap before anything parses them (one helper for every route).

A declared Content-Length over the cap is refused before reading; a chunked or lying body is
cut off as soon as it passes the cap, so no handler holds more than `limit` bytes of it.
"""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import JSONResponse

from receiver.api.errors import error


class BodyTooLarge(Exception):
    """The body passed `limit` bytes; `setting` names the variable that sets it, if any."""

    def __init__(self, limit: int, setting: str = "") -> None:
        self.limit = limit
        self.setting = setting
        where = f"{setting}={limit}" if setting else f"the limit of {limit} bytes"
        super().__init__(f"body exceeds {where}")


def media_type(request: Request) -> str:
    """The request's Content-Type without parameters, lower case ("" when absent)."""
    return request.headers.get("content-type", "").split(";", 1)[0].strip().lower()


async def read_limited(request: Request, limit: int, setting: str = "") -> bytes:
    """The whole body, or `BodyTooLarge` as soon as it is known to pass `limit` bytes."""
    declared = request.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > limit:
        raise BodyTooLarge(limit, setting)
    body = bytearray()
    async for chunk in request.stream():
        body += chunk
        if len(body) > limit:
            raise BodyTooLarge(limit, setting)
    return bytes(body)


def too_large(err: BodyTooLarge) -> JSONResponse:
    """The 413 every JSON route answers for an oversized body."""
    return error(413, "payload_too_large", str(err))
