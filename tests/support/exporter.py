"""A synthetic Prometheus exporter whose samples the test sets (node-exporter-shaped or any)."""

from __future__ import annotations

import threading
from http.server import BaseHTTPRequestHandler

from receiver.ports import LoopbackHTTP, ServedOverHTTP, respond
from tests.support.procs import free_port


def _fmt_labels(labels: dict[str, str]) -> str:
    if not labels:
        return ""
    inner = ",".join(
        f'{k}="{v.replace(chr(92), chr(92) * 2).replace(chr(34), chr(92) + chr(34))}"'
        for k, v in sorted(labels.items())
    )
    return "{" + inner + "}"


class SyntheticExporter(ServedOverHTTP):
    """Serves `/metrics` in the text format from a dict the test mutates between scrapes.

    Use as a context manager; `set(name, labels, value)` changes what the next scrape sees.
    Counters are just values the test advances (e.g. node_cpu_seconds_total).
    """

    def __init__(self) -> None:
        self.port = free_port()
        self._lock = threading.Lock()
        self._samples: dict[tuple[str, tuple[tuple[str, str], ...]], float] = {}
        exporter = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                if self.path.split("?")[0] != "/metrics":
                    self.send_error(404)
                    return
                body = exporter.render().encode()
                respond(self, 200, body, "text/plain; version=0.0.4")

            def log_message(self, format: str, *args: object) -> None:
                return

        self._http = LoopbackHTTP(Handler, self.port)

    @property
    def target(self) -> str:
        return f"127.0.0.1:{self.port}"

    def set(self, name: str, labels: dict[str, str], value: float) -> None:
        with self._lock:
            self._samples[(name, tuple(sorted(labels.items())))] = value

    def add(self, name: str, labels: dict[str, str], delta: float) -> None:
        with self._lock:
            key = (name, tuple(sorted(labels.items())))
            self._samples[key] = self._samples.get(key, 0.0) + delta

    def render(self) -> str:
        with self._lock:
            lines = [f"{n}{_fmt_labels(dict(lbl))} {v!r}" for (n, lbl), v in self._samples.items()]
        return "\n".join(sorted(lines)) + "\n"
