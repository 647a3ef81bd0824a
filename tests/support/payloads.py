"""The captured Alertmanager 0.25 payloads in tests/data, and builders for synthetic ones."""

from __future__ import annotations

import copy
import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

DATA = Path(__file__).resolve().parent.parent / "data"
CAPTURED = [
    "am_payload_firing.json",
    "am_payload_partially_resolved.json",
    "am_payload_resolved.json",
    "am_payload_from_prometheus_firing.json",
    "am_payload_from_prometheus_resolved.json",
]


def load(name: str) -> dict[str, Any]:
    data: dict[str, Any] = json.loads((DATA / name).read_text())
    return data


def alert(
    name: str,
    instance: str,
    status: str = "firing",
    starts: str = "2026-11-28T10:00:00Z",
    ends: str = "0001-01-01T00:00:00Z",
    severity: str = "high",
    **labels: str,
) -> dict[str, Any]:
    from receiver.ingest.normalise import fingerprint

    lbl = {"alertname": name, "instance": instance, "severity": severity, **labels}
    return {
        "status": status,
        "labels": lbl,
        "annotations": {"summary": f"{name} on {instance}"},
        "startsAt": starts,
        "endsAt": ends,
        "generatorURL": "http://127.0.0.1:9/graph?g0.expr=up",
        "fingerprint": fingerprint(lbl),
    }


def webhook(alerts: list[dict[str, Any]], group: str = "g1", **extra: Any) -> dict[str, Any]:
    firing = any(a["status"] == "firing" for a in alerts)
    payload = {
        "receiver": "monitor",
        "status": "firing" if firing else "resolved",
        "alerts": copy.deepcopy(alerts),
        "groupLabels": {"group": group},
        "commonLabels": {},
        "commonAnnotations": {},
        "externalURL": "http://127.0.0.1:9093",
        "version": "4",
        "groupKey": f'{{}}:{{group="{group}"}}',
        "truncatedAlerts": 0,
    }
    payload.update(extra)
    return payload


def resolved(a: dict[str, Any], ends: str = "2026-11-28T10:05:00Z") -> dict[str, Any]:
    out = copy.deepcopy(a)
    out["status"] = "resolved"
    out["endsAt"] = ends
    return out


def rfc3339(moment: datetime) -> str:
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def postable_alerts(
    name: str,
    size: int,
    starts: datetime,
    ends: datetime | None = None,
    severity: str = "high",
) -> list[dict[str, Any]]:
    """`size` alerts of one group (`alertname=name`) as Alertmanager's POST /api/v2/alerts takes
    them; with `ends` in the past, the same alerts resolved (startsAt must stay the same)."""
    alerts: list[dict[str, Any]] = []
    for i in range(size):
        item: dict[str, Any] = {
            "labels": {
                "alertname": name,
                "instance": f"{name.lower()}-{i}:9100",
                "severity": severity,
            },
            "annotations": {"summary": f"{name} on instance {i}"},
            "startsAt": rfc3339(starts),
        }
        if ends is not None:
            item["endsAt"] = rfc3339(ends)
        alerts.append(item)
    return alerts
