"""Ingest metrics, registered on the app's own registry."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram


class IngestMetrics:
    def __init__(self, registry: CollectorRegistry) -> None:
        self.requests = Counter(
            "webhook_requests_total",
            "Webhook requests by outcome",
            ["outcome"],
            registry=registry,
        )
        self.alerts = Counter(
            "webhook_alerts_received_total",
            "Alerts in accepted (non-duplicate) deliveries",
            ["status"],
            registry=registry,
        )
        self.latency = Histogram(
            "webhook_request_seconds",
            "Time to validate and durably store a delivery",
            registry=registry,
            buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5),
        )
        self.processed = Counter(
            "deliveries_processed_total", "Deliveries turned into episodes", registry=registry
        )
        self.failed = Counter(
            "deliveries_failed_total", "Delivery processing failures", registry=registry
        )
        self.queue_depth = Gauge(
            "deliveries_pending", "Stored deliveries not yet processed", registry=registry
        )


class AnomalyMetrics:
    """The seed's `anomalies_detected_total`: every new episode, from any source."""

    def __init__(self, registry: CollectorRegistry) -> None:
        self.detected = Counter(
            "anomalies_detected_total",
            "New alert episodes stored, by source (alertmanager, detector, receiver) and severity",
            ["source", "severity"],
            registry=registry,
        )

    def episode(self, source: str, severity: str) -> None:
        self.detected.labels(source, severity).inc()
