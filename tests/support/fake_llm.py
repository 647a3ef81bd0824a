"""A loopback LLM server speaking Ollama's `/api/chat` and OpenAI's `/v1/chat/completions`.

Tests script the replies in order and read back every request it received. An unscripted
request gets 418, which no provider retries, so a missing reply fails fast and visibly.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler
from typing import Any

from receiver.ports import LoopbackHTTP, ServedOverHTTP, respond
from tests.support.procs import free_port

CHAT_PATHS = ("/api/chat", "/v1/chat/completions")


@dataclass(frozen=True)
class Reply:
    """One scripted answer: a JSON object (dict) or raw text (str), with status and headers."""

    body: dict[str, Any] | str
    status: int = 200
    headers: dict[str, str] = field(default_factory=dict)
    delay: float = 0.0


@dataclass(frozen=True)
class Recorded:
    method: str
    path: str
    headers: dict[str, str]  # lower-case names
    body: bytes

    def json(self) -> Any:
        return json.loads(self.body)


def ollama_chat(
    content: str, *, model: str = "llama3.1:8b", prompt_tokens: int = 120, eval_tokens: int = 45
) -> Reply:
    """A non-streaming Ollama /api/chat answer carrying `content`."""
    return Reply(
        {
            "model": model,
            "created_at": "2026-11-28T18:50:00Z",
            "message": {"role": "assistant", "content": content},
            "done": True,
            "done_reason": "stop",
            "total_duration": 1_200_000_000,
            "load_duration": 1_000_000,
            "prompt_eval_count": prompt_tokens,
            "prompt_eval_duration": 300_000_000,
            "eval_count": eval_tokens,
            "eval_duration": 800_000_000,
        }
    )


def openai_chat(
    content: str,
    *,
    model: str = "gpt-4o-mini-2024-07-18",
    prompt_tokens: int = 1_000,
    completion_tokens: int = 200,
) -> Reply:
    """A /v1/chat/completions answer carrying `content`."""
    return Reply(
        {
            "id": "chatcmpl-test",
            "object": "chat.completion",
            "created": 1_795_000_000,
            "model": model,
            "choices": [
                {
                    "index": 0,
                    "message": {"role": "assistant", "content": content},
                    "finish_reason": "stop",
                }
            ],
            "usage": {
                "prompt_tokens": prompt_tokens,
                "completion_tokens": completion_tokens,
                "total_tokens": prompt_tokens + completion_tokens,
            },
        }
    )


def analysis_answer(summary: str = "Model analysis") -> str:
    """A valid answer to the analysis prompt (the content of a chat reply), citing E1."""
    return json.dumps(
        {
            "summary": summary,
            "cause": "A cause",
            "fix": ["A fix"],
            "simplified": "Plain words.",
            "confidence": 0.7,
            "hypotheses": [{"claim": "grounded", "evidence_ids": ["E1"], "confidence": 0.7}],
            "unknowns": [],
        }
    )


def error(status: int, message: str = "error", headers: dict[str, str] | None = None) -> Reply:
    return Reply({"error": message}, status=status, headers=headers or {})


class FakeLLM(ServedOverHTTP):
    """Use as a context manager; `script(...)` queues replies, `requests` records calls.

    `port` reuses a known port (a model server that comes back where the service expects it).
    `responder` answers every chat request the script does not cover (a model that reads the
    prompt, e.g. one that trusts the evidence ranking).
    """

    def __init__(
        self, port: int | None = None, responder: Callable[[Recorded], Reply] | None = None
    ) -> None:
        self.port = port or free_port()
        self.responder = responder
        self.requests: list[Recorded] = []
        self._replies: list[Reply] = []
        self._lock = threading.Lock()
        fake = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length)
                path = self.path.split("?")[0]
                headers = {k.lower(): v for k, v in self.headers.items()}
                recorded = Recorded("POST", path, headers, body)
                if path in CHAT_PATHS:
                    reply = fake._take(recorded)
                else:
                    fake.requests.append(recorded)
                    reply = error(404, f"no route {path}")
                if reply.delay:
                    time.sleep(reply.delay)
                if isinstance(reply.body, str):
                    data, ctype = reply.body.encode(), "text/plain"
                else:
                    data, ctype = json.dumps(reply.body).encode(), "application/json"
                try:
                    respond(self, reply.status, data, ctype, reply.headers)
                except (BrokenPipeError, ConnectionResetError):
                    return  # the client gave up (timeout tests)

            def log_message(self, format: str, *args: object) -> None:
                return

        self._http = LoopbackHTTP(Handler, self.port)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def script(self, *replies: Reply) -> None:
        with self._lock:
            self._replies.extend(replies)

    def _take(self, request: Recorded) -> Reply:
        with self._lock:
            self.requests.append(request)
            if self._replies:
                return self._replies.pop(0)
        if self.responder is not None:
            return self.responder(request)
        return error(418, "unscripted request")
