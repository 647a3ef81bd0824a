"""The HTTP layer's own metrics, held by `Services` so the request middleware finds them.

Here rather than in `receiver.api` so the service container (which the routes import) does not
import the web layer back.
"""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram


class HttpMetrics:
    def __init__(self, registry: CollectorRegistry) -> None:
        self.requests = Counter(
            "http_requests_total",
            "HTTP requests by method, route template (as `route` and `path`) and status code",
            ["method", "route", "path", "status"],
            registry=registry,
        )
        self.latency = Histogram(
            "http_request_duration_seconds",
            "HTTP request latency by method and route template",
            ["method", "route"],
            registry=registry,
            buckets=(0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30),
        )
        self.in_progress = Gauge(
            "http_requests_in_progress", "HTTP requests being served", registry=registry
        )


class AuditMetrics:
    def __init__(self, registry: CollectorRegistry) -> None:
        self.written = Counter(
            "audit_entries_total",
            "Audit entries by outcome (written, failed)",
            ["outcome"],
            registry=registry,
        )
