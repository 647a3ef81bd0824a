"""Builders for incidents, signals and model answers used across the enrichment tests."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

from receiver.domain import DetectorInfo, IncidentView, Severity, Signal, Source, Status

STARTED = datetime(2026, 11, 28, 18, 46, 37, tzinfo=UTC)
GENERATOR_URL = (
    "http://prometheus.local:9090/graph?g0.expr="
    "histogram_quantile%280.99%2C+sum+by+%28le%2C+instance%29"
    "%28rate%28http_request_duration_seconds_bucket%5B5m%5D%29%29%29+%3E+2&g0.tab=1"
)


def make_signal(
    *,
    alertname: str = "HighLatency",
    instance: str = "checkout-1:8080",
    value: float | None = 3.1,
    severity: Severity = Severity.CRITICAL,
    status: Status = Status.FIRING,
    annotations: dict[str, str] | None = None,
    labels: dict[str, str] | None = None,
    generator_url: str = GENERATOR_URL,
    detector: DetectorInfo | None = None,
    fingerprint: str | None = None,
) -> Signal:
    return Signal(
        source=Source.DETECTOR if detector else Source.ALERTMANAGER,
        fingerprint=fingerprint or f"fp-{alertname}-{instance}",
        status=status,
        starts_at=STARTED,
        labels={
            "alertname": alertname,
            "instance": instance,
            "job": "checkout",
            "severity": severity.value,
            **(labels or {}),
        },
        annotations=(
            annotations
            if annotations is not None
            else {
                "summary": "p99 latency above 2s",
                "description": f"{instance} p99 latency is {value}s",
                "runbook_url": "https://runbooks.example/HighLatency",
            }
        ),
        generator_url=generator_url,
        alertname=alertname,
        instance=instance,
        severity=severity,
        metric="http_request_duration_seconds",
        value=value,
        detector=detector,
    )


def make_incident(*signals: Signal, title: str = "HighLatency on checkout") -> IncidentView:
    signals = signals or (make_signal(),)
    return IncidentView(
        id="inc-0001",
        key='{}:{alertname="HighLatency", service="checkout"}',
        source=signals[0].source,
        status=Status.FIRING,
        severity=max((s.severity for s in signals), key=lambda s: s.rank),
        title=title,
        alertnames=sorted({s.alertname for s in signals}),
        instances=sorted({s.instance for s in signals}),
        group_labels={"alertname": "HighLatency", "service": "checkout"},
        common_labels={"job": "checkout"},
        started_at=STARTED,
        signals=list(signals),
    )


def answer(**overrides: Any) -> dict[str, Any]:
    """A complete, grounded model answer citing E1 and E2."""
    base: dict[str, Any] = {
        "summary": "checkout p99 latency is 3.1s on checkout-1, above the 2s threshold.",
        "cause": "A slow downstream dependency (E1, E2).",
        "fix": ["Check the payment dependency latency.", "Scale checkout if CPU-bound."],
        "simplified": "Checkout is slow for customers right now.",
        "confidence": 0.7,
        "hypotheses": [
            {"claim": "Latency rose on checkout-1.", "evidence_ids": ["E1"], "confidence": 0.8},
            {"claim": "The runbook case applies.", "evidence_ids": ["E2"], "confidence": 0.5},
        ],
        "unknowns": ["Whether the payment service deployed recently."],
    }
    base.update(overrides)
    return base


def answer_json(**overrides: Any) -> str:
    return json.dumps(answer(**overrides))
