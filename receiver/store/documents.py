"""Beanie documents and their indexes: the records (`receiver.records`) bound to collections.

Notes from the embedded server's known gaps (README "Store notes"): no partial indexes, so the
"one open incident per group" rule is a plain unique index on `open_key`, which a resolved
incident moves out of the way; no `$addToSet` on missing fields, so arrays are created on insert.
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, TypeVar

from beanie import Document, Indexed
from pydantic import BaseModel, Field
from pymongo import ASCENDING, DESCENDING, IndexModel

from receiver.records import (
    AnalysisRecord,
    AuditRecord,
    ChatSessionRecord,
    DeliveryRecord,
    EpisodeRecord,
    FeedbackRecord,
    IncidentEventRecord,
    IncidentRecord,
    LeaseRecord,
    NotificationRecord,
    SnapshotRecord,
    TargetRecord,
)
from receiver.timeutil import utcnow as utcnow  # re-exported: modules not moved yet import it here

D = TypeVar("D", bound=Document)


class Delivery(Document, DeliveryRecord):
    """One webhook delivery as received; the unique key makes retries and HA duplicates no-ops."""

    delivery_key: Annotated[str, Indexed(unique=True)]

    class Settings:
        name = "deliveries"
        indexes = [
            IndexModel([("processed", ASCENDING), ("received_at", ASCENDING)], name="pending"),
            # the embedded server uses single-field equality indexes only: without this twin
            # the worker's read of pending deliveries scanned them all (57 ms at 5,000 → 2 ms)
            IndexModel([("processed", ASCENDING)], name="processed"),
            IndexModel([("failed", ASCENDING), ("received_at", DESCENDING)], name="failed"),
            IndexModel([("received_at", DESCENDING)], name="received_at_desc"),
            IndexModel([("expire_at", ASCENDING)], name="ttl_expire_at", expireAfterSeconds=0),
        ]


class Anomaly(Document, EpisodeRecord):
    """One alert episode. Identity: (group, fingerprint, starts_at) as `episode_key`."""

    episode_key: Annotated[str, Indexed(unique=True)]

    class Settings:
        name = "anomalies"
        indexes = [
            IndexModel([("incident_id", ASCENDING), ("status", ASCENDING)], name="incident_status"),
            IndexModel([("starts_at", DESCENDING)], name="starts_at_desc"),
            IndexModel([("status", ASCENDING), ("starts_at", DESCENDING)], name="status_starts"),
            IndexModel([("fingerprint", ASCENDING)], name="fingerprint"),
            # Single-field twins of prefixes MongoDB would take from the compound indexes: the
            # embedded server only uses single-field indexes, and scans every episode in Python
            # otherwise (5 ms → 0.7 ms per query at 5,000 episodes, several per delivery).
            IndexModel([("incident_id", ASCENDING)], name="incident_id"),
            IndexModel([("group_id", ASCENDING)], name="group_id"),
        ]


class Incident(Document, IncidentRecord):
    """Episodes that share one analysis and one notification thread (an Alertmanager group)."""

    open_key: Annotated[str, Indexed(unique=True)]

    class Settings:
        name = "incidents"
        indexes = [
            IndexModel([("correlating", ASCENDING)], name="correlating"),
            IndexModel([("opened_ts", DESCENDING)], name="opened_ts_desc"),
            IndexModel([("storm_id", ASCENDING)], name="storm_id"),
            IndexModel([("source", ASCENDING), ("status", ASCENDING)], name="source_status"),
            IndexModel([("key", ASCENDING), ("started_at", DESCENDING)], name="key_started"),
            IndexModel([("status", ASCENDING), ("started_at", DESCENDING)], name="status_started"),
            IndexModel([("started_at", DESCENDING)], name="started_at_desc"),
            IndexModel([("needs_analysis", ASCENDING)], name="needs_analysis"),
            IndexModel([("needs_notification", ASCENDING)], name="needs_notification"),
        ]


class Rca(Document, AnalysisRecord):
    """One analysis of an incident (the seed's `rca` collection); the newest one is current."""

    incident_id: Annotated[str, Indexed()]

    class Settings:
        name = "rca"
        indexes = [IndexModel([("created_at", DESCENDING)], name="created_at_desc")]


class Notification(Document, NotificationRecord):
    """See `NotificationRecord`."""

    key: Annotated[str, Indexed(unique=True)]

    class Settings:
        name = "notifications"
        indexes = [
            IndexModel([("status", ASCENDING), ("next_attempt_at", ASCENDING)], name="due"),
            # the embedded server uses single-field indexes only: the queue reads by status
            IndexModel([("status", ASCENDING)], name="status"),
            IndexModel([("incident_id", ASCENDING)], name="incident"),
            IndexModel([("digest_key", ASCENDING)], name="digest"),
            # a bulk claim reads the rows it won by their claim's token (an equality)
            IndexModel([("lease_owner", ASCENDING)], name="lease_owner"),
            IndexModel([("channel", ASCENDING), ("created_at", DESCENDING)], name="channel"),
        ]


class RateWindow(Document):
    """Per-channel rate window: `sent` messages admitted since `start` (anchored windows).

    `start` is unix seconds: the embedded server stores a `$set` datetime as a string.
    """

    channel: Annotated[str, Indexed(unique=True)]
    start: float = 0.0
    sent: int = 0

    class Settings:
        name = "notify_windows"


class StoredSetting(Document):
    """Configuration changed through the API (email recipients, routing); `name` is unique."""

    name: Annotated[str, Indexed(unique=True)]
    value: dict[str, Any] = Field(default_factory=dict)
    updated_at: datetime = Field(default_factory=utcnow)

    class Settings:
        name = "settings"


class Target(Document, TargetRecord):
    """See `TargetRecord`."""

    name: Annotated[str, Indexed(unique=True)]

    class Settings:
        name = "targets"


class Lease(Document, LeaseRecord):
    """Which replica polls a target: `holder` until `expires_at`, renewed every cycle."""

    name: Annotated[str, Indexed(unique=True)]

    class Settings:
        name = "leases"


class PollSnapshot(Document, SnapshotRecord):
    """One poll cycle of one target (the seed's `metrics` collection, shown by /prom-metrics)."""

    class Settings:
        name = "metrics"
        indexes = [
            IndexModel([("created_at", DESCENDING)], name="created_at_desc"),
            IndexModel([("target", ASCENDING), ("created_at", DESCENDING)], name="target_created"),
        ]


class ChatSession(Document, ChatSessionRecord):
    """A conversation with the assistant: its history and what it cost (`chat_sessions`)."""

    session_id: Annotated[str, Indexed(unique=True)]

    class Settings:
        name = "chat_sessions"
        indexes = [IndexModel([("last_activity", DESCENDING)], name="last_activity_desc")]


class Feedback(Document, FeedbackRecord):
    """A person's verdict on an incident's analysis, kept for ranking analyses later."""

    incident_id: Annotated[str, Indexed()]

    class Settings:
        name = "rca_feedback"


class IncidentEvent(Document, IncidentEventRecord):
    """See `IncidentEventRecord`."""

    incident_id: Annotated[str, Indexed()]

    class Settings:
        name = "incident_events"


class AuditEntry(Document, AuditRecord):
    """One admin or operator change made through the API: who, what, when (`audit`)."""

    class Settings:
        name = "audit"
        indexes = [IndexModel([("at", DESCENDING)], name="at_desc")]


# Other stages append their documents here (one line each) so init_beanie sees them all.
DOCUMENT_MODELS: list[type[Document]] = [
    Delivery,
    Anomaly,
    Incident,
    Rca,
    Notification,
    RateWindow,
    StoredSetting,
    Target,
    Lease,
    PollSnapshot,
    ChatSession,
    Feedback,
    IncidentEvent,
    AuditEntry,
]


def document_of(model: type[D], record: BaseModel) -> D:
    """A record handed in from outside the store as a document of `model` (itself if it is
    one already); `inserted` copies the new id back onto the record."""
    if isinstance(record, model):
        return record
    document: D = model.model_validate(record.model_dump(exclude={"id"}))
    return document


def inserted(record: BaseModel, document: Document) -> None:
    if record is not document:
        record.id = document.id  # type: ignore[attr-defined]
