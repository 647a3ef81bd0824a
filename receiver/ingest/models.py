"""Webhook payload models: Alertmanager's version "4" and Grafana alerting's version "1".

Grafana's body is Alertmanager's plus extra fields (orgId, state, title, message; per alert
values, valueString and silence/dashboard/panel/image links); `receiver.ingest.senders` decides
which sender a body comes from before these models see it. Unknown fields are tolerated (newer
senders add some); the raw payload is kept as received.
"""

from __future__ import annotations

import unicodedata
from datetime import UTC, datetime
from typing import Annotated, Any, Literal

from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    PrivateAttr,
    StringConstraints,
    field_validator,
)

from receiver.domain import Source

# Bounds that make a payload "bad input" rather than data: a single label value of 16 KiB is
# not a label, and without a bound one alert can hold the store hostage.
MAX_LABELS = 128
MAX_LABEL_NAME = 256
MAX_LABEL_VALUE = 16 * 1024
MAX_ALERTS_PER_DELIVERY = 1000
# Alertmanager counts alerts it left out of a delivery (max_alerts); nothing real comes near a
# billion, and an unbounded integer overflows the store's 64-bit field.
MAX_TRUNCATED_ALERTS = 1_000_000_000

# Timestamps we can store, order and do arithmetic on: from the Unix epoch to the end of year
# 9999 in UTC. Go's zero time (year 1) in endsAt means "not resolved yet" and is kept as unset.
EARLIEST = datetime(1970, 1, 1, tzinfo=UTC)
LATEST = datetime(9999, 12, 31, 23, 59, 59, 999999, tzinfo=UTC)
GO_ZERO_YEAR = 1

# Label and annotation names: any UTF-8 (Prometheus 3 and Alertmanager 0.27+ send names such as
# `service.name`), 1-256 characters, no control characters (pydantic already refuses a lone
# surrogate such as JSON's `\ud800`, which is not UTF-8). Names that are not classic identifiers
# reach PromQL only quoted (`receiver.detect.promql.label_matcher`).


def _printable_name(value: str) -> str:
    for ch in value:
        if unicodedata.category(ch) == "Cc":
            raise ValueError(f"label names cannot hold control characters (U+{ord(ch):04X})")
    return value


LabelName = Annotated[
    str,
    StringConstraints(min_length=1, max_length=MAX_LABEL_NAME),
    AfterValidator(_printable_name),
]


def _no_nul(value: str) -> str:
    if "\x00" in value:
        raise ValueError("NUL characters are not allowed")
    return value


LabelValue = Annotated[str, StringConstraints(max_length=MAX_LABEL_VALUE), AfterValidator(_no_nul)]


def _bounded(labels: dict[str, str]) -> dict[str, str]:
    if len(labels) > MAX_LABELS:
        raise ValueError(f"at most {MAX_LABELS} labels/annotations per alert, got {len(labels)}")
    return labels


LabelSet = Annotated[dict[LabelName, LabelValue], AfterValidator(_bounded)]


def in_range(value: datetime) -> datetime:
    """`value` in UTC when it lies in [1970, 9999]; a naive time is taken as UTC."""
    if value.tzinfo is None:
        value = value.replace(tzinfo=UTC)
    try:
        utc = value.astimezone(UTC)
    except OverflowError:  # e.g. 0001-01-01T00:00:00+01:00 is in year 0 in UTC
        utc = None
    if utc is None or not EARLIEST <= utc <= LATEST:
        raise ValueError(
            f"{value.isoformat()} is outside the accepted range "
            f"{EARLIEST.isoformat()} .. {LATEST.isoformat()}"
        )
    return utc


def _empty_is_absent(value: Any) -> Any:
    return None if value == "" else value


Url = Annotated[str, StringConstraints(max_length=MAX_LABEL_VALUE)]


def _bounded_values(values: dict[str, float] | None) -> dict[str, float]:
    if values is None:  # Grafana marshals an alert without values as `null`
        return {}
    if len(values) > MAX_LABELS:
        raise ValueError(f"at most {MAX_LABELS} values per alert, got {len(values)}")
    return values


class WebhookAlert(BaseModel):
    model_config = ConfigDict(extra="allow")

    status: Literal["firing", "resolved"]
    labels: LabelSet
    annotations: LabelSet = Field(default_factory=dict)
    startsAt: datetime
    endsAt: datetime | None = None
    generatorURL: Url = ""
    # "" is how some senders say "none" (Grafana's test notification, hand-made payloads)
    fingerprint: Annotated[
        Annotated[str, StringConstraints(min_length=1, max_length=64)] | None,
        BeforeValidator(_empty_is_absent),
    ] = None
    # Grafana alerting only
    silenceURL: Url = ""
    dashboardURL: Url = ""
    panelURL: Url = ""
    imageURL: Url = ""
    values: Annotated[dict[LabelName, float] | None, AfterValidator(_bounded_values)] = Field(
        default_factory=dict
    )
    valueString: Annotated[str, StringConstraints(max_length=MAX_LABEL_VALUE)] = ""

    @field_validator("startsAt")
    @classmethod
    def _starts_in_range(cls, value: datetime) -> datetime:
        return in_range(value)

    @field_validator("endsAt")
    @classmethod
    def _ends_in_range(cls, value: datetime | None) -> datetime | None:
        # Go's zero time, in any offset, is how Alertmanager says "no end yet"
        if value is None or value.year <= GO_ZERO_YEAR:
            return None
        return in_range(value)


class WebhookPayload(BaseModel):
    model_config = ConfigDict(extra="allow")

    version: Literal["4", "1"]
    groupKey: Annotated[str, StringConstraints(max_length=MAX_LABEL_VALUE)]
    status: Literal["firing", "resolved"]
    receiver: Annotated[str, StringConstraints(max_length=MAX_LABEL_NAME)]
    alerts: Annotated[list[WebhookAlert], Field(min_length=1)]
    groupLabels: LabelSet = Field(default_factory=dict)
    commonLabels: LabelSet = Field(default_factory=dict)
    commonAnnotations: LabelSet = Field(default_factory=dict)
    externalURL: Annotated[str, StringConstraints(max_length=MAX_LABEL_VALUE)] = ""
    truncatedAlerts: int = Field(default=0, ge=0, le=MAX_TRUNCATED_ALERTS)
    # Grafana alerting only
    orgId: int | None = None
    state: Annotated[str, StringConstraints(max_length=MAX_LABEL_NAME)] = ""
    title: Annotated[str, StringConstraints(max_length=MAX_LABEL_VALUE)] = ""
    # which sender it came from (`senders.parse_payload` sets it; never read from the body)
    _source: Source = PrivateAttr(default=Source.ALERTMANAGER)

    @property
    def source(self) -> Source:
        return self._source
