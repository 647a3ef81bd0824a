"""Documents → JSON-ready dicts for the API (no secrets live in these documents)."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

from receiver.oncall.actions import state_of
from receiver.records import DeliveryRecord, EpisodeRecord, IncidentEventRecord, IncidentRecord
from receiver.timeutil import iso_or_none


def episode_view(a: EpisodeRecord) -> dict[str, Any]:
    """The seed's anomaly fields first (metric, value, instance, severity, reason)."""
    return {
        "id": str(a.id),
        "metric": a.metric,
        "value": a.value,
        "instance": a.instance,
        "severity": a.severity,
        "reason": a.reason,
        "timestamp": iso_or_none(a.starts_at),
        "status": a.status,
        "source": a.source,
        "alertname": a.alertname,
        "fingerprint": a.fingerprint,
        "starts_at": iso_or_none(a.starts_at),
        "ends_at": iso_or_none(a.ends_at),
        "labels": a.labels,
        "annotations": a.annotations,
        "generator_url": a.generator_url,
        "links": a.links,
        "values": a.values,
        "detector": a.detector,
        "incident_id": a.incident_id,
        "resolved_by": a.resolved_by or None,
        "analyzed": a.analyzed,
    }


def incident_view(i: IncidentRecord) -> dict[str, Any]:
    return {
        "id": str(i.id),
        "key": i.key,
        "source": i.source,
        "status": i.status,
        "severity": i.severity,
        "title": i.title,
        "receiver": i.receiver,
        "alertnames": i.alertnames,
        "instances": i.instances,
        "alertname_count": max(i.alertname_count, len(i.alertnames)),
        "instance_count": max(i.instance_count, len(i.instances)),
        "group_labels": i.group_labels,
        "common_labels": i.common_labels,
        "external_url": i.external_url,
        "started_at": iso_or_none(i.started_at),
        "updated_at": iso_or_none(i.updated_at),
        "resolved_at": iso_or_none(i.resolved_at),
        "resolved_by": i.resolved_by or None,
        "episode_count": i.episode_count,
        "firing_count": i.firing_count,
        "needs_analysis": i.needs_analysis,
        "needs_notification": i.needs_notification,
        "analysis_id": i.analysis_id or None,
        # the on-call workflow (receiver/oncall/actions.py)
        "state": state_of(i).value,
        "acked_by": i.acked_by or None,
        "acked_at": _epoch(i.acked_at_ts),
        "assignee": i.assignee or None,
        "closed_by": i.closed_by or None,
        "silence_id": i.silence_id or None,
        "silenced_until": _epoch(i.silence_until_ts) if i.silence_id else None,
        "storm_id": i.storm_id or None,
    }


def _epoch(seconds: float) -> str | None:
    return datetime.fromtimestamp(seconds, UTC).isoformat() if seconds else None


def event_view(e: IncidentEventRecord) -> dict[str, Any]:
    """One entry of an incident's history; `text` is stored cleaned and is escaped where shown."""
    return {
        "at": iso_or_none(e.at),
        "kind": e.kind,
        "actor": e.actor,
        "author": e.author or None,
        "text": e.text,
        "detail": e.detail,
    }


def delivery_state(d: DeliveryRecord) -> str:
    """pending (never tried) | retrying (failed, will try again) | processed | failed."""
    if d.failed:
        return "failed"
    if d.processed:
        return "processed"
    return "retrying" if d.attempts else "pending"


RAW_ITEM_BYTES = 256 * 1024  # of one delivery's body in `raw=1` answers; the rest is cut


def raw_payload(raw_json: str) -> dict[str, Any]:
    """A delivery body for the API: parsed when small, else its head with a marker."""
    size = len(raw_json.encode())
    if size <= RAW_ITEM_BYTES:
        try:
            return {"payload": json.loads(raw_json) if raw_json else None}
        except ValueError:  # a quarantined body is kept as text
            return {"payload": None, "raw_json": raw_json}
    head = raw_json.encode()[:RAW_ITEM_BYTES].decode("utf-8", "ignore")
    return {
        "payload": None,
        "payload_truncated": True,
        "payload_bytes": size,
        "raw_json": f"{head}...[truncated: {size} bytes, first {RAW_ITEM_BYTES} shown]",
    }


def delivery_view(d: DeliveryRecord, raw_json: str | None = None) -> dict[str, Any]:
    """The delivery's fields; with `raw_json` also its body (see `raw_payload`)."""
    view: dict[str, Any] = {
        "id": str(d.id),
        "delivery_key": d.delivery_key,
        "state": delivery_state(d),
        "received_at": iso_or_none(d.received_at),
        "source": d.source,
        "receiver": d.receiver,
        "group_key": d.group_key,
        "status": d.status,
        "alert_count": d.alert_count,
        "truncated_alerts": d.truncated_alerts,
        "external_url": d.external_url,
        "processed": d.processed,
        "attempts": d.attempts,
        "last_error": d.last_error or None,
        "next_attempt_at": iso_or_none(datetime.fromtimestamp(d.next_attempt_ts, UTC))
        if d.next_attempt_ts and not d.processed
        else None,
    }
    if raw_json is not None:
        view.update(raw_payload(raw_json))
    return view
