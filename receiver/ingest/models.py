"""Alertmanager webhook (version "4") payload models.

Unknown fields are tolerated (newer Alertmanagers add some); the raw payload is kept as received.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated, Literal

from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    StringConstraints,
    field_validator,
)

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

# Prometheus' label-name syntax (Alertmanager 0.25 validates the same on its API).
LABEL_NAME_PATTERN = r"^[a-zA-Z_][a-zA-Z0-9_]*$"

LabelName = Annotated[
    str, StringConstraints(min_length=1, max_length=MAX_LABEL_NAME, pattern=LABEL_NAME_PATTERN)
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


class WebhookAlert(BaseModel):
    model_config = ConfigDict(extra="allow")

    status: Literal["firing", "resolved"]
    labels: LabelSet
    annotations: LabelSet = Field(default_factory=dict)
    startsAt: datetime
    endsAt: datetime | None = None
    generatorURL: Annotated[str, StringConstraints(max_length=MAX_LABEL_VALUE)] = ""
    fingerprint: Annotated[str, StringConstraints(min_length=1, max_length=64)] | None = None

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

    version: Literal["4"]
    groupKey: Annotated[str, StringConstraints(max_length=MAX_LABEL_VALUE)]
    status: Literal["firing", "resolved"]
    receiver: Annotated[str, StringConstraints(max_length=MAX_LABEL_NAME)]
    alerts: Annotated[list[WebhookAlert], Field(min_length=1)]
    groupLabels: LabelSet = Field(default_factory=dict)
    commonLabels: LabelSet = Field(default_factory=dict)
    commonAnnotations: LabelSet = Field(default_factory=dict)
    externalURL: Annotated[str, StringConstraints(max_length=MAX_LABEL_VALUE)] = ""
    truncatedAlerts: int = Field(default=0, ge=0, le=MAX_TRUNCATED_ALERTS)
