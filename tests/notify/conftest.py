"""Incidents and analyses the notification tests render and send."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, datetime

import pytest

from receiver.domain import Analysis, IncidentView, Severity, Signal, Source, Status
from receiver.notify.send import AppriseNotifier

STARTED = datetime(2026, 11, 28, 18, 46, 37, tzinfo=UTC)
HOSTILE = '<script>alert("x")</script> & <!channel> @here <b>bold</b>'


def make_signal(
    severity: Severity = Severity.HIGH,
    *,
    metric: str = "cpu_usage",
    instance: str = "node-1:9100",
    value: float | None = 97.5,
    reason: str = "cpu_usage above 90% for 5m",
    status: Status = Status.FIRING,
    fingerprint: str = "f531535f07fccfd9",
    labels: dict[str, str] | None = None,
) -> Signal:
    return Signal(
        source=Source.ALERTMANAGER,
        fingerprint=fingerprint,
        status=status,
        starts_at=STARTED,
        labels=labels or {"alertname": "HighCPU", "instance": instance},
        annotations={"runbook_url": "https://runbooks.example/HighCPU"},
        generator_url="http://prometheus.local:9090/graph?g0.expr=cpu_usage+%3E+90",
        alertname="HighCPU",
        instance=instance,
        severity=severity,
        metric=metric,
        value=value,
        reason=reason,
    )


def make_incident(
    severity: Severity = Severity.HIGH,
    signals: list[Signal] | None = None,
    *,
    status: Status = Status.FIRING,
) -> IncidentView:
    return IncidentView(
        id="inc-0001",
        key='{}:{alertname="HighCPU"}',
        source=Source.ALERTMANAGER,
        status=status,
        severity=severity,
        title="HighCPU",
        alertnames=["HighCPU"],
        instances=["node-1:9100"],
        group_labels={"alertname": "HighCPU"},
        common_labels={"alertname": "HighCPU"},
        external_url="http://alertmanager.local:9093",
        started_at=STARTED,
        signals=signals if signals is not None else [make_signal(severity)],
    )


def make_analysis(**overrides: object) -> Analysis:
    fields: dict[str, object] = {
        "summary": "CPU saturated on node-1 after the 18:40 deploy.",
        "cause": "A runaway worker loop in the new release pins two cores.",
        "fix": ["Roll back the 18:40 deploy", "Restart the worker pool"],
        "simplified": "One server is overworked because of a faulty update.",
        "confidence": 0.8,
        "provider": "ollama",
        "model": "llama3.1:8b",
    }
    fields.update(overrides)
    return Analysis.model_validate(fields)


@pytest.fixture
async def notifier() -> AsyncIterator[AppriseNotifier]:
    async with AppriseNotifier(timeout=20.0) as live:
        yield live
