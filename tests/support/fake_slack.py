"""A loopback server speaking the Slack incoming-webhook protocol, for notification tests.

POST a JSON body → `200 ok`; a body Slack would reject → `400 invalid_payload` /
`invalid_blocks` / `no_text`; `script()` queues scripted answers (500, 429 + Retry-After, ...).
It enforces the Block Kit limits the renderer relies on, so a split that is too big fails.
"""

from __future__ import annotations

import contextlib
import json
import threading
from collections import deque
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler
from typing import Any

from receiver.ports import LoopbackHTTP, respond
from tests.support.procs import free_port

MAX_BLOCKS = 50
MAX_SECTION_TEXT = 3000
MAX_FIELDS = 10
MAX_FIELD_TEXT = 2000
MAX_HEADER_TEXT = 150
MAX_MESSAGE_CHARS = 40_000


@dataclass(frozen=True)
class SlackRequest:
    path: str
    headers: dict[str, str]
    body: bytes

    @property
    def json(self) -> dict[str, Any]:
        data = json.loads(self.body)
        assert isinstance(data, dict)
        return data


@dataclass
class FakeSlack:
    port: int
    requests: list[SlackRequest] = field(default_factory=list)
    accepted: list[dict[str, Any]] = field(default_factory=list)
    _script: deque[tuple[int, str, dict[str, str]]] = field(default_factory=deque)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def hook_url(self, path: str = "/services/T0FAKE01/B0FAKE02/xoxFakeWebhookSecret9") -> str:
        return f"http://127.0.0.1:{self.port}{path}"

    def script(self, status: int, body: str = "", headers: dict[str, str] | None = None) -> None:
        """Answer the next POST with `status` instead of checking it."""
        with self._lock:
            self._script.append((status, body, headers or {}))

    def _next_scripted(self) -> tuple[int, str, dict[str, str]] | None:
        with self._lock:
            return self._script.popleft() if self._script else None


def _problem(payload: Any) -> str | None:
    """Why Slack would reject `payload`, or None."""
    if not isinstance(payload, dict):
        return "invalid_payload"
    attachments = payload.get("attachments", [])
    blocks = list(payload.get("blocks", []))
    for attachment in attachments:
        blocks += attachment.get("blocks", [])
    if not payload.get("text") and not blocks and not attachments:
        return "no_text"
    if len(payload.get("blocks", [])) > MAX_BLOCKS or any(
        len(a.get("blocks", [])) > MAX_BLOCKS for a in attachments
    ):
        return "invalid_blocks"
    total = len(payload.get("text", ""))
    for block in blocks:
        kind = block.get("type")
        if kind == "header" and len(block["text"]["text"]) > MAX_HEADER_TEXT:
            return "invalid_blocks"
        if kind == "section":
            text = block.get("text", {}).get("text", "")
            fields = block.get("fields", [])
            if len(text) > MAX_SECTION_TEXT or len(fields) > MAX_FIELDS:
                return "invalid_blocks"
            if any(len(f["text"]) > MAX_FIELD_TEXT for f in fields):
                return "invalid_blocks"
            total += len(text) + sum(len(f["text"]) for f in fields)
    if total > MAX_MESSAGE_CHARS:
        return "msg_too_long"
    return None


def _handler(state: FakeSlack) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        # HTTP/1.0: one request per connection, so shutdown never waits on an idle keep-alive.
        protocol_version = "HTTP/1.0"

        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
            state.requests.append(SlackRequest(self.path, dict(self.headers.items()), body))
            scripted = state._next_scripted()
            if scripted is not None:
                self._answer(*scripted)
                return
            try:
                payload = json.loads(body)
            except ValueError:
                self._answer(400, "invalid_payload", {})
                return
            problem = _problem(payload)
            if problem is not None:
                self._answer(400, problem, {})
                return
            state.accepted.append(payload)
            self._answer(200, "ok", {})

        def _answer(self, status: int, text: str, headers: dict[str, str]) -> None:
            respond(self, status, text.encode(), "text/plain", headers)

        def log_message(self, format: str, *args: Any) -> None:
            pass  # keep test output clean

    return Handler


@contextlib.contextmanager
def fake_slack() -> Iterator[FakeSlack]:
    """Run the fake on a free loopback port; always stopped on exit."""
    state = FakeSlack(port=free_port())
    with LoopbackHTTP(_handler(state), state.port):
        yield state
