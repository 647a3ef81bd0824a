"""Alertmanager webhook (version "4") payload models.

Unknown fields are tolerated (newer Alertmanagers add some); the raw payload is kept as received.
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Literal

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, StringConstraints

# Bounds that make a payload "bad input" rather than data: a single label value of 16 KiB is
# not a label, and without a bound one alert can hold the store hostage.
MAX_LABELS = 128
MAX_LABEL_NAME = 256
MAX_LABEL_VALUE = 16 * 1024
MAX_ALERTS_PER_DELIVERY = 1000

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


class WebhookAlert(BaseModel):
    model_config = ConfigDict(extra="allow")

    status: Literal["firing", "resolved"]
    labels: LabelSet
    annotations: LabelSet = Field(default_factory=dict)
    startsAt: datetime
    endsAt: datetime | None = None
    generatorURL: str = ""
    fingerprint: Annotated[str, StringConstraints(min_length=1, max_length=64)] | None = None


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
    externalURL: str = ""
    truncatedAlerts: int = Field(default=0, ge=0)
