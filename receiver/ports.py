"""Free loopback ports for the processes we start (embedded store, demo, tests, benches), and
the loopback HTTP server the demo and the tests' fakes share."""

from __future__ import annotations

import socket
import threading
from collections.abc import Mapping
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Self

import httpx


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


class LoopbackHTTP:
    """A `ThreadingHTTPServer` on a loopback address, served from a daemon thread; `stop()`
    always shuts it down and joins the thread. Used by the demo's exporter and the loopback
    fakes of the tests (a model, Slack, Langfuse, an exporter)."""

    def __init__(
        self, handler: type[BaseHTTPRequestHandler], port: int = 0, host: str = "127.0.0.1"
    ) -> None:
        self.server = ThreadingHTTPServer((host, port), handler)
        self.server.daemon_threads = True
        self.port: int = self.server.server_address[1]
        self._thread = threading.Thread(
            target=self.server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        )

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> LoopbackHTTP:
        self._thread.start()
        return self

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()
        self._thread.join(timeout=5)

    def __enter__(self) -> LoopbackHTTP:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


class ServedOverHTTP:
    """A context manager base for an object served by `self._http` (set in `__init__`)."""

    _http: LoopbackHTTP

    def __enter__(self) -> Self:
        self._http.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._http.stop()


def respond(
    handler: BaseHTTPRequestHandler,
    status: int,
    body: bytes,
    content_type: str = "application/json",
    headers: Mapping[str, str] | None = None,
) -> None:
    """Write one whole response (status, type, length, extra headers, body)."""
    handler.send_response(status)
    handler.send_header("Content-Type", content_type)
    handler.send_header("Content-Length", str(len(body)))
    for name, value in (headers or {}).items():
        handler.send_header(name, value)
    handler.end_headers()
    handler.wfile.write(body)


class UsesHttpClient:
    """Talks HTTP through the `httpx.AsyncClient` it was given (the app's shared pool) or one
    it made for itself; `aclose()` (and leaving `async with`) closes only its own."""

    _http: httpx.AsyncClient
    _own_http: bool

    def _use_client(self, http: httpx.AsyncClient | None, **made: Any) -> None:
        self._own_http = http is None
        self._http = http if http is not None else httpx.AsyncClient(**made)

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        if self._own_http:
            await self._http.aclose()
