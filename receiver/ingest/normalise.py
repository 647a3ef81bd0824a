"""Webhook payload → domain signals, plus the identities that make ingest idempotent."""

from __future__ import annotations

import hashlib
import json
import math
import re
from datetime import UTC, datetime
from typing import Any

from receiver.domain import Severity, Signal, Source, Status
from receiver.ingest.models import WebhookAlert, WebhookPayload

# Senders that post webhooks: their groups are (source, receiver, groupKey).
WEBHOOK_SOURCES = frozenset({Source.ALERTMANAGER, Source.GRAFANA, Source.ONCALL})

# Grafana's valueString: "[ var='B' labels={...} value=44.2 ], [ var='C' ... value=1 ]" (9+)
# or "[ metric='foo' labels={...} value=10 ]" (8); one bracket per query.
_VALUE_ITEM = re.compile(
    r"\[\s*(?:var='(?P<var>[^']{0,64})'\s*)?(?:metric='(?P<metric>[^']{0,200})'\s*)?"
    r"labels=\{[^}]*\}\s*value=(?P<value>[-+0-9.eE]+|NaN|[-+]?Inf)\s*\]"
)


def fingerprint(labels: dict[str, str]) -> str:
    """Alertmanager's alert fingerprint: FNV-1a 64 over the sorted label set."""
    h = 0xCBF29CE484222325
    for key in sorted(labels):
        for byte in key.encode() + b"\xff" + labels[key].encode() + b"\xff":
            h ^= byte
            h = (h * 0x100000001B3) & 0xFFFFFFFFFFFFFFFF
    return f"{h:016x}"


def _iso(value: datetime | None) -> str:
    return "" if value is None else value.isoformat()


def _content(alert: WebhookAlert) -> str:
    """Everything an alert says, canonical: a repeat that changed any of it is a new delivery."""
    body: dict[str, Any] = alert.model_dump(mode="json")
    body.update(
        fingerprint=alert_fingerprint(alert),
        startsAt=_iso(alert.startsAt),
        endsAt=_iso(alert.endsAt),  # Go's zero time is None already (models)
        values=alert.values or {},
    )
    return json.dumps(body, sort_keys=True, separators=(",", ":"), ensure_ascii=False)


def delivery_key(payload: WebhookPayload) -> str:
    """sha256 over source, receiver, groupKey, status and the sorted content of every alert.

    The content is the whole alert (labels, annotations, status, times, links, values), so a
    re-sent notification whose `$value` or description changed is processed, while a retry or an
    HA twin (same alerts) is a duplicate. externalURL is left out on purpose: each member of an
    HA pair sends its own.
    """
    alerts = sorted(_content(a) for a in payload.alerts)
    parts: list[Any] = [payload.receiver, payload.groupKey, payload.status, alerts]
    if payload.source is not Source.ALERTMANAGER:
        parts.insert(0, payload.source.value)  # Alertmanager's keys stay what they were
    material = json.dumps(parts, separators=(",", ":"), ensure_ascii=False)
    return hashlib.sha256(material.encode()).hexdigest()


def alert_fingerprint(alert: WebhookAlert) -> str:
    return alert.fingerprint or fingerprint(alert.labels)


def group_id(source: Source, receiver: str, group_key: str) -> str:
    """The group an episode and its incident belong to: (source, receiver, groupKey).

    Alertmanager keys its notifications by receiver + groupKey: one alert routed to two receivers
    (`continue: true`), or under two `group_by`s, is two groups with their own lifecycles, and two
    receivers whose routes produce the same groupKey are still two groups. The source keeps an
    Alertmanager and a Grafana whose root routes both say `{}:{}` apart. Hashed, because a
    groupKey holds label values of any length; prefixed with the source, so no groupKey can pose
    as one of the service's own synthetic keys, which already name their group.
    """
    if source not in WEBHOOK_SOURCES:
        return group_key
    material = json.dumps([receiver, group_key], separators=(",", ":"))
    return f"{source.value}:{hashlib.sha256(material.encode()).hexdigest()[:32]}"


def episode_key(source: Source, fp: str, starts_at: datetime, group: str) -> str:
    """(group, fingerprint, startsAt) with startsAt at millisecond precision.

    Alertmanager's API hands times back with milliseconds while webhooks carry nanoseconds, and
    the store keeps milliseconds: comparing finer than that would split one episode in two.
    `group` is `group_id(...)`; the service's own signals leave it out of the key because their
    fingerprint (target and series) already fixes their group.
    """
    at = starts_at.astimezone(UTC).isoformat(timespec="milliseconds")
    if source in WEBHOOK_SOURCES:
        return f"{group}:{fp}:{at}"
    return f"{source.value}:{fp}:{at}"


# Prometheus' `humanize` prefixes, as the generated rules' `value` annotation writes them
_SI = {
    "y": 1e-24, "z": 1e-21, "a": 1e-18, "f": 1e-15, "p": 1e-12, "n": 1e-9, "u": 1e-6,
    "µ": 1e-6, "m": 1e-3, "k": 1e3, "M": 1e6, "G": 1e9, "T": 1e12, "P": 1e15, "E": 1e18,
    "Z": 1e21, "Y": 1e24,
}  # fmt: skip


def parse_value(raw: str) -> float | None:
    """A number as an alert annotation states it: `97.2`, `1.5k`, `12.3m` (humanized)."""
    text = raw.strip()
    scale = 1.0
    if text[-1:] in _SI and text[:-1]:
        text, scale = text[:-1], _SI[text[-1]]
    try:
        value = float(text) * scale
    except ValueError:
        return None
    return value if math.isfinite(value) else None


def _value_from(annotations: dict[str, str], values: dict[str, float]) -> float | None:
    for name in ("value", "current_value"):
        raw = annotations.get(name)
        if raw is None:
            continue
        value = parse_value(raw)
        if value is not None:
            return value
    if values:
        # Grafana's rules name queries A, B, ... and put the threshold condition (0/1) last
        return values[min(values)]
    return None


def grafana_values(alert: WebhookAlert) -> dict[str, float]:
    """Grafana's evaluated values: `values`, or parsed from Grafana 8's `valueString`."""
    if alert.values:
        return dict(alert.values)
    found: dict[str, float] = {}
    for item in _VALUE_ITEM.finditer(alert.valueString):
        ref = item["var"] or item["metric"] or f"value{len(found)}"
        value = float(item["value"])
        if math.isfinite(value):  # NaN/Inf have no JSON form in the API's answers
            found.setdefault(ref, value)
    return found


def links_of(alert: WebhookAlert) -> dict[str, str]:
    """The links a sender put on the alert besides generatorURL (kept as sent, shown only
    through `render.safe_url`)."""
    pairs = {
        "silence": alert.silenceURL,
        "dashboard": alert.dashboardURL,
        "panel": alert.panelURL,
        "image": alert.imageURL,
    }
    return {name: url for name, url in pairs.items() if url}


def to_signal(alert: WebhookAlert, source: Source = Source.ALERTMANAGER) -> Signal:
    labels = alert.labels
    annotations = alert.annotations
    alertname = labels.get("alertname", "")
    values = grafana_values(alert)
    return Signal(
        source=source,
        fingerprint=alert_fingerprint(alert),
        status=Status(alert.status),
        starts_at=alert.startsAt,
        ends_at=alert.endsAt,
        labels=dict(labels),
        annotations=dict(annotations),
        generator_url=alert.generatorURL,
        alertname=alertname,
        instance=labels.get("instance", ""),
        severity=Severity.parse(labels.get("severity")),
        metric=labels.get("metric") or labels.get("__name__") or alertname,
        value=_value_from(annotations, values),
        reason=annotations.get("summary") or annotations.get("description") or alertname,
        links=links_of(alert),
        values=values,
    )


def to_signals(payload: WebhookPayload) -> list[Signal]:
    return [to_signal(a, payload.source) for a in payload.alerts]
