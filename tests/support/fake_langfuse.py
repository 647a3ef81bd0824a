"""A loopback Langfuse server: the OTLP/HTTP traces endpoint and the score ingestion endpoint.

`POST /api/public/otel/v1/traces` bodies are decoded with opentelemetry-proto into `Span`s with
plain attribute dicts; `POST /api/public/ingestion` batches are kept as JSON events. Every
request is recorded, so "no requests at all" is checkable too.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler
from typing import Any

from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
    ExportTraceServiceRequest,
    ExportTraceServiceResponse,
)
from opentelemetry.proto.common.v1.common_pb2 import AnyValue

from receiver.ports import LoopbackHTTP, ServedOverHTTP, respond
from tests.support.procs import free_port

TRACES_PATH = "/api/public/otel/v1/traces"
INGESTION_PATH = "/api/public/ingestion"


@dataclass(frozen=True)
class Span:
    name: str
    trace_id: str
    span_id: str
    parent_span_id: str
    attributes: dict[str, Any]
    resource: dict[str, Any]
    scope: str

    @property
    def observation_type(self) -> str:
        return str(self.attributes.get("langfuse.observation.type", ""))

    def json_attribute(self, key: str) -> Any:
        """Langfuse sends input/output/usage as JSON strings; decode one."""
        return json.loads(self.attributes[key])


@dataclass(frozen=True)
class Request:
    path: str
    headers: dict[str, str]  # lower-case names


def _value(value: AnyValue) -> Any:
    kind = value.WhichOneof("value")
    if kind == "string_value":
        return value.string_value
    if kind == "int_value":
        return value.int_value
    if kind == "double_value":
        return value.double_value
    if kind == "bool_value":
        return value.bool_value
    if kind == "array_value":
        return [_value(v) for v in value.array_value.values]
    if kind == "kvlist_value":
        return {kv.key: _value(kv.value) for kv in value.kvlist_value.values}
    if kind == "bytes_value":
        return value.bytes_value
    return None


def decode_spans(body: bytes) -> list[Span]:
    """Flatten an ExportTraceServiceRequest into spans."""
    request = ExportTraceServiceRequest()
    request.ParseFromString(body)
    spans: list[Span] = []
    for resource_spans in request.resource_spans:
        resource = {a.key: _value(a.value) for a in resource_spans.resource.attributes}
        for scope_spans in resource_spans.scope_spans:
            for span in scope_spans.spans:
                spans.append(
                    Span(
                        name=span.name,
                        trace_id=span.trace_id.hex(),
                        span_id=span.span_id.hex(),
                        parent_span_id=span.parent_span_id.hex(),
                        attributes={a.key: _value(a.value) for a in span.attributes},
                        resource=resource,
                        scope=scope_spans.scope.name,
                    )
                )
    return spans


class FakeLangfuse(ServedOverHTTP):
    """Use as a context manager; `spans`, `events` and `requests` fill as the SDK exports."""

    def __init__(self) -> None:
        self.port = free_port()
        self.spans: list[Span] = []
        self.events: list[dict[str, Any]] = []  # ingestion batch entries
        self.requests: list[Request] = []
        self._lock = threading.Lock()
        fake = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length)
                path = self.path.split("?")[0]
                with fake._lock:
                    fake.requests.append(
                        Request(path, {k.lower(): v for k, v in self.headers.items()})
                    )
                if path == TRACES_PATH:
                    spans = decode_spans(body)
                    with fake._lock:
                        fake.spans.extend(spans)
                    self._send(
                        200,
                        ExportTraceServiceResponse().SerializeToString(),
                        "application/x-protobuf",
                    )
                elif path == INGESTION_PATH:
                    batch = json.loads(body).get("batch", [])
                    with fake._lock:
                        fake.events.extend(batch)
                    answer = {
                        "successes": [{"id": e.get("id"), "status": 201} for e in batch],
                        "errors": [],
                    }
                    self._send(207, json.dumps(answer).encode(), "application/json")
                else:
                    self._send(404, b'{"message":"not found"}', "application/json")

            def do_GET(self) -> None:
                with fake._lock:
                    fake.requests.append(
                        Request(self.path, {k.lower(): v for k, v in self.headers.items()})
                    )
                self._send(404, b'{"message":"not found"}', "application/json")

            def _send(self, status: int, data: bytes, ctype: str) -> None:
                respond(self, status, data, ctype)

            def log_message(self, format: str, *args: object) -> None:
                return

        self._http = LoopbackHTTP(Handler, self.port)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def scores(self) -> list[dict[str, Any]]:
        """Bodies of the `score-create` events received."""
        with self._lock:
            return [e["body"] for e in self.events if e.get("type") == "score-create"]

    def wait_for(self, predicate: Callable[[FakeLangfuse], bool], timeout: float = 10.0) -> None:
        """Poll until `predicate(self)` holds (exports run on the SDK's threads)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if predicate(self):
                return
            time.sleep(0.05)
        raise TimeoutError(
            f"condition not met within {timeout}s; spans={[s.name for s in self.spans]} "
            f"events={[e.get('type') for e in self.events]}"
        )
