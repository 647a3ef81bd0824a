"""Which sender a webhook body comes from, and the one parse every stage uses.

Accepted (README "Webhook senders"):
- Alertmanager's webhook, `"version": "4"` (0.25 and later, UTF-8 label names included);
- Grafana alerting's webhook contact point, `"version": "1"` with Grafana's `orgId` or `state`
  (Grafana 8 and later), source `grafana`;
- a Grafana OnCall outgoing webhook that forwards its whole context (`event`, `alert_group`,
  `alert_payload`): the alert group's first alert becomes a one-alert delivery, source `oncall`,
  group = the alert group, resolved when the group is.
Bodies recognised as another sender's format (Grafana's legacy dashboard alerts, Alerta,
Microsoft Teams cards as prometheus-msteams sends them, Zulip messages) and unknown versions are
refused with a message that names what was recognised and what is accepted.
"""

from __future__ import annotations

from typing import Any

from receiver.domain import Source
from receiver.ingest.models import WebhookPayload

ACCEPTED = "Alertmanager webhook (version '4'), Grafana alerting webhook (version '1')"
_NAME_LIMIT = 256


class Refused(ValueError):
    """A body refused before schema validation: `field` and why (answered 422)."""

    def __init__(self, field: str, message: str, code: str = "unsupported_sender") -> None:
        super().__init__(f"{field}: {message}")
        self.field = field
        self.message = message
        self.code = code


def _foreign(data: dict[str, Any]) -> str:
    """The name of another sender's format `data` has, "" when it has none we know."""
    if "evalMatches" in data or ("ruleName" in data and "ruleId" in data):
        return "a legacy Grafana dashboard alert (ruleName/evalMatches)"
    if "resource" in data and "event" in data and "alerts" not in data:
        return "an Alerta alert (resource/event)"
    if data.get("@type") == "MessageCard" or "themeColor" in data:
        return "a Microsoft Teams card (what prometheus-msteams sends to Teams)"
    if data.get("type") == "message" and "attachments" in data:
        return "a Microsoft Teams message (adaptive card)"
    if "bot_email" in data or ("content" in data and ("topic" in data or "to" in data)):
        return "a Zulip message"
    return ""


def _obj(value: Any) -> dict[str, Any]:
    return value if isinstance(value, dict) else {}


def _is_oncall(data: dict[str, Any]) -> bool:
    event = data.get("event")
    return isinstance(event, dict) and "type" in event and "alert_payload" in data


def _oncall_delivery(data: dict[str, Any]) -> dict[str, Any]:
    """An OnCall outgoing webhook's context as an Alertmanager-shaped one-alert delivery."""
    alert = data.get("alert_payload")
    group = _obj(data.get("alert_group"))
    event = _obj(data.get("event"))
    if not isinstance(alert, dict) or not isinstance(alert.get("labels"), dict):
        raise Refused(
            "alert_payload",
            "a Grafana OnCall outgoing webhook whose alert_payload holds no alert with labels "
            "(only alerts that came from Alertmanager or Grafana alerting can be taken)",
        )
    group_id = group.get("id") or data.get("alert_group_id")
    if not isinstance(group_id, str) or not group_id:
        raise Refused("alert_group.id", "a Grafana OnCall outgoing webhook without an alert group")
    item = dict(alert)
    item.setdefault("startsAt", group.get("created_at") or event.get("time"))
    if event.get("type") == "resolve" or group.get("state") == "resolved":
        item["status"] = "resolved"
        item["endsAt"] = group.get("resolved_at") or event.get("time") or item.get("endsAt")
    else:
        item["status"] = "firing"
        item.pop("endsAt", None)
    name = _obj(data.get("integration")).get("name")
    web = _obj(group.get("permalinks")).get("web")
    return {
        "version": "4",
        "groupKey": group_id,
        "receiver": (name if isinstance(name, str) and name else "oncall")[:_NAME_LIMIT],
        "status": item["status"],
        "alerts": [item],
        "externalURL": web if isinstance(web, str) else "",
    }


def recognise(data: Any) -> tuple[Source, Any]:
    """(sender, body to validate); raises `Refused` for a format this receiver does not take.

    Leaves anything that is not a recognised foreign format to the schema, whose errors name the
    field (a missing `alerts`, a bad `startsAt`, ...).
    """
    if not isinstance(data, dict):
        return Source.ALERTMANAGER, data
    if _is_oncall(data):
        return Source.ONCALL, _oncall_delivery(data)
    version = data.get("version")
    if version == "4":
        return Source.ALERTMANAGER, data
    if version == "1":
        if "orgId" in data or "state" in data:
            return Source.GRAFANA, data
        raise Refused(
            "version",
            "'1' is Grafana alerting's webhook version, but the body has neither Grafana's orgId "
            f"nor its state; accepted: {ACCEPTED}",
            code="invalid_payload",
        )
    foreign = _foreign(data)
    if foreign:
        raise Refused("body", f"this is {foreign}, not an alert webhook; accepted: {ACCEPTED}")
    if version is None:
        raise Refused("version", f"missing; accepted: {ACCEPTED}", code="invalid_payload")
    shown = repr(version)[:40]
    raise Refused(
        "version", f"unsupported webhook version {shown}; accepted: {ACCEPTED}", "invalid_payload"
    )


def parse_payload(data: Any) -> WebhookPayload:
    """The delivery as a payload with its source set; raises `Refused` or pydantic's
    ValidationError. The webhook and the delivery worker both parse through here, so what is
    accepted is also what is processed."""
    source, body = recognise(data)
    payload = WebhookPayload.model_validate(body)
    payload._source = source
    return payload
