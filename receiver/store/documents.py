"""Beanie documents and their indexes: the only place that knows the collections' shapes.

Notes from the embedded server's known gaps (README "Store notes"): no partial indexes, so the
"one open incident per group" rule is a plain unique index on `open_key`, which a resolved
incident moves out of the way; no `$addToSet` on missing fields, so arrays are created on insert.
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, ClassVar

from beanie import Document, Indexed
from pydantic import Field, model_validator
from pymongo import ASCENDING, DESCENDING, IndexModel

from receiver.domain import MAX_NAMES
from receiver.timeutil import utcnow as utcnow  # re-exported: modules not moved yet import it here


class Delivery(Document):
    """One webhook delivery as received; the unique key makes retries and HA duplicates no-ops."""

    delivery_key: Annotated[str, Indexed(unique=True)]
    received_at: datetime = Field(default_factory=utcnow)
    source: str = "alertmanager"  # the sender (`receiver.ingest.senders`)
    receiver: str = ""
    group_key: str = ""
    status: str = ""
    alert_count: int = 0
    truncated_alerts: int = 0
    external_url: str = ""
    raw_json: str = ""  # the body as received (validated), kept until expire_at
    processed: bool = False
    processed_at: datetime | None = None
    attempts: int = 0
    last_error: str = ""
    # retry time in unix seconds (a float: the embedded server turns a $set datetime into a
    # string); a failing delivery waits here while the ones behind it are processed
    next_attempt_ts: float = 0.0
    failed: bool = False  # quarantined after the last attempt; `processed` is then true too
    expire_at: datetime | None = None

    class Settings:
        name = "deliveries"
        indexes = [
            IndexModel([("processed", ASCENDING), ("received_at", ASCENDING)], name="pending"),
            IndexModel([("failed", ASCENDING), ("received_at", DESCENDING)], name="failed"),
            IndexModel([("received_at", DESCENDING)], name="received_at_desc"),
            IndexModel([("expire_at", ASCENDING)], name="ttl_expire_at", expireAfterSeconds=0),
        ]


class Anomaly(Document):
    """One alert episode. Identity: (group, fingerprint, starts_at) as `episode_key`."""

    episode_key: Annotated[str, Indexed(unique=True)]
    source: str
    fingerprint: str
    status: str
    starts_at: datetime
    ends_at: datetime | None = None
    alertname: str = ""
    metric: str = ""
    value: float | None = None
    instance: str = ""
    severity: str = "medium"
    reason: str = ""
    labels: dict[str, str] = Field(default_factory=dict)
    annotations: dict[str, str] = Field(default_factory=dict)
    generator_url: str = ""
    links: dict[str, str] = Field(default_factory=dict)  # Grafana: silence, dashboard, panel
    values: dict[str, float] = Field(default_factory=dict)  # Grafana: evaluated values by refId
    detector: dict[str, Any] | None = None
    incident_id: str = ""
    group_key: str = ""  # as the source shows it (Alertmanager's groupKey)
    group_id: str = ""  # the group it belongs to (`normalise.group_id`): source, receiver, groupKey
    resolved_by: str = ""  # alertmanager | detector | reconciler | superseded
    first_seen: datetime = Field(default_factory=utcnow)
    last_seen: datetime = Field(default_factory=utcnow)
    analyzed: bool = False

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


class Incident(Document):
    """Episodes that share one analysis and one notification thread (an Alertmanager group)."""

    key: str  # the group key as the source shows it (Alertmanager's groupKey)
    # the group's identity (`normalise.group_id`) while open; moved aside when resolved
    open_key: Annotated[str, Indexed(unique=True)]
    source: str
    status: str = "firing"
    severity: str = "medium"
    title: str = ""
    receiver: str = ""
    # the first MAX_NAMES distinct values; the counts are exact (a storm of thousands of
    # instances must not grow one document without bound)
    MAX_NAMES: ClassVar[int] = MAX_NAMES
    alertnames: list[str] = Field(default_factory=list)
    instances: list[str] = Field(default_factory=list)
    alertname_count: int = 0
    instance_count: int = 0
    group_labels: dict[str, str] = Field(default_factory=dict)
    common_labels: dict[str, str] = Field(default_factory=dict)
    external_url: str = ""
    started_at: datetime = Field(default_factory=utcnow)
    updated_at: datetime = Field(default_factory=utcnow)
    resolved_at: datetime | None = None
    resolved_by: str = ""  # alertmanager | detector | reconciler | receiver
    episode_count: int = 0
    firing_count: int = 0
    # work state: later stages pick work from here, so a restart loses nothing
    needs_analysis: bool = True
    analysis_signature: str = ""
    analysis_id: str = ""
    # enrichment lease: who analyses it now and until when (unix seconds, see receiver/store/rca.py)
    analysis_claim_token: str = ""
    analysis_claim_until: float = 0.0
    # failed analyses: retried after a backoff (analysis_claim_until holds the retry time),
    # quarantined (`analysis_failed`, no longer pending) after the last attempt
    analysis_attempts: int = 0
    analysis_error: str = ""
    analysis_failed: bool = False
    needs_notification: bool = True
    notified_events: list[str] = Field(default_factory=list)
    # the on-call workflow (receiver/oncall): times as unix seconds, because the embedded
    # server stores a `$set` datetime as a string; `closed_by` is set only by a hand close
    acked_by: str = ""
    acked_at_ts: float = 0.0
    assignee: str = ""
    closed_by: str = ""
    silence_id: str = ""
    silence_until_ts: float = 0.0
    # what the last analysis was: "budget" = the offline analyst answered because the model
    # budget was spent; such an incident is analysed again by the model when it allows
    analysis_outcome: str = ""
    # model calls go to storms and the most severe incidents first (higher = sooner)
    priority: int = 0
    # storms (receiver/ingest/storms.py): `opened_ts` is when the receiver opened it (unix
    # seconds); `correlating` holds a new incident back from analysis and paging until the
    # correlator decided whether it joins a storm; `storm_id` is the storm it joined
    opened_ts: float = 0.0
    correlating: bool = False
    storm_id: str = ""
    # on a storm (source "storm"): the label it formed on, the labels every member shares,
    # the exact member count, and how many members its last page or update listed
    storm_key: str = ""
    storm_labels: dict[str, str] = Field(default_factory=dict)
    storm_members: int = 0
    storm_paged_members: int = 0
    storm_joined_ts: float = 0.0  # when the last member joined (unix seconds)

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


class Rca(Document):
    """One analysis of an incident (the seed's `rca` collection); the newest one is current."""

    incident_id: Annotated[str, Indexed()]
    incident_key: str = ""
    signature: str = ""  # alertnames+instances analysed; a new one means re-analysis
    created_at: datetime = Field(default_factory=utcnow)
    alertname: str = ""
    instance: str = ""
    severity: str = ""
    summary: str
    cause: str
    fix: list[str] = Field(default_factory=list)
    simplified: str = ""
    confidence: float = 0.0
    hypotheses: list[dict[str, Any]] = Field(default_factory=list)
    unknowns: list[str] = Field(default_factory=list)
    evidence: list[dict[str, Any]] = Field(default_factory=list)
    provider: str = "offline"
    model: str = ""
    prompt_version: str = ""
    tokens_in: int = 0
    tokens_out: int = 0
    latency_ms: float = 0.0
    cost_estimate: float = 0.0
    quality: float = 0.0
    dropped_hypotheses: int = 0
    offline: bool = False
    trace_id: str = ""
    # sha256 of the evidence the model saw; (incident, signature, hash) is the cache key
    evidence_hash: str = ""
    evidence_queries: int = 0  # Prometheus requests made to gather the evidence
    evidence_seconds: float = 0.0  # time spent gathering it
    # the seed's row fields: the episode the analysis is about first, its metric, and the
    # whole analysis' duration (evidence + model), in seconds
    anomaly_id: str = ""
    metric: str = ""
    processing_seconds: float = 0.0

    class Settings:
        name = "rca"
        indexes = [IndexModel([("created_at", DESCENDING)], name="created_at_desc")]


class Notification(Document):
    """One outbox row: an (incident, channel, event) message, or a digest per (channel, window).

    `key` is unique, so planning the same event twice (a retry, a second replica) is a no-op;
    `status` pending → sending (leased) → sent | failed | suppressed; `waiting` holds an
    analysis follow-up until the analysis lands.
    """

    key: Annotated[str, Indexed(unique=True)]
    incident_id: str = ""
    group_key: str = ""
    channel: str
    event: str
    severity: str = "medium"
    status: str = "pending"
    reason: str = ""  # why suppressed or failed (rate_limit, permanent, exhausted, ...)
    created_at: datetime = Field(default_factory=utcnow)
    updated_at: datetime = Field(default_factory=utcnow)
    next_attempt_at: datetime = Field(default_factory=utcnow)
    hold_until: datetime | None = None  # firing: wait for the analysis until then
    attempts: int = 0
    last_error: str = ""  # masked by the notifier
    parts_sent: int = 0
    sent_at: datetime | None = None
    lease_owner: str = ""
    lease_until: datetime | None = None
    admitted: bool = False  # took a rate-limit slot (once per row, retries do not)
    window_start: datetime | None = None  # rate window the row was admitted or suppressed in
    digest_key: str = ""  # suppressed rows: the digest that reports them
    digest_count: int = 0  # digest rows: alerts it summarised
    with_analysis: bool = False
    message: dict[str, Any] | None = None  # rendered at the first attempt, reused by retries

    class Settings:
        name = "notifications"
        indexes = [
            IndexModel([("status", ASCENDING), ("next_attempt_at", ASCENDING)], name="due"),
            IndexModel([("incident_id", ASCENDING)], name="incident"),
            IndexModel([("digest_key", ASCENDING)], name="digest"),
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


class Target(Document):
    """A Prometheus the outlier poller watches besides PROM_URL; `name` is unique.

    `auth` is {"type": "bearer", "token"} or {"type": "basic", "username", "password"}: stored
    because the poller must send it, never returned by the API.
    """

    name: Annotated[str, Indexed(unique=True)]
    url: str
    job: str = ""
    enabled: bool = True
    auth: dict[str, str] | None = None
    created_at: datetime = Field(default_factory=utcnow)
    updated_at: datetime = Field(default_factory=utcnow)

    class Settings:
        name = "targets"

    @model_validator(mode="before")
    @classmethod
    def _seed_endpoint(cls, data: Any) -> Any:
        """The seed stored `{name, endpoint, job, enabled}`: its `endpoint` is our `url`."""
        if isinstance(data, dict) and "url" not in data and "endpoint" in data:
            return {**data, "url": data["endpoint"]}
        return data


class Lease(Document):
    """Which replica polls a target: `holder` until `expires_at`, renewed every cycle."""

    name: Annotated[str, Indexed(unique=True)]
    holder: str
    expires_at: datetime
    acquired_at: datetime = Field(default_factory=utcnow)

    class Settings:
        name = "leases"


class PollSnapshot(Document):
    """One poll cycle of one target (the seed's `metrics` collection, shown by /prom-metrics)."""

    target: str
    holder: str = ""
    created_at: datetime = Field(default_factory=utcnow)
    duration_seconds: float = 0.0
    selectors: int = 0
    series: int = 0
    flagged: int = 0
    opened: int = 0
    resolved: int = 0
    capped: bool = False
    error: str = ""
    sample: list[dict[str, Any]] = Field(default_factory=list)
    # series judged by the warm-up method (younger than DETECT_MIN_HISTORY), first few by name
    warming: int = 0
    warming_series: list[str] = Field(default_factory=list)
    # series scored against a cached seasonal profile; series (re)fitted this cycle
    seasonal: int = 0
    fitted: int = 0

    class Settings:
        name = "metrics"
        indexes = [
            IndexModel([("created_at", DESCENDING)], name="created_at_desc"),
            IndexModel([("target", ASCENDING), ("created_at", DESCENDING)], name="target_created"),
        ]


class ChatSession(Document):
    """A conversation with the assistant: its history and what it cost (`chat_sessions`)."""

    session_id: Annotated[str, Indexed(unique=True)]
    # receiver.api.access.principal of the API token that created it ("" with auth off)
    owner: str = ""
    title: str = ""
    created_at: datetime = Field(default_factory=utcnow)
    last_activity: datetime = Field(default_factory=utcnow)
    messages: list[dict[str, Any]] = Field(default_factory=list)
    message_count: int = 0
    tokens_in: int = 0
    tokens_out: int = 0

    class Settings:
        name = "chat_sessions"
        indexes = [IndexModel([("last_activity", DESCENDING)], name="last_activity_desc")]


class Feedback(Document):
    """A person's verdict on an incident's analysis, kept for ranking analyses later."""

    incident_id: Annotated[str, Indexed()]
    rca_id: str = ""
    helpful: bool | None = None
    actual_cause: str = ""
    comment: str = ""
    created_at: datetime = Field(default_factory=utcnow)

    class Settings:
        name = "rca_feedback"


class IncidentEvent(Document):
    """One on-call action on an incident (ack, note, close, ...): its history, insert-only.

    A collection of its own, not an array on the incident: the embedded server turns `$push`ed
    sub-documents into JSON strings, and a busy incident's history must not grow one document.
    """

    incident_id: Annotated[str, Indexed()]
    at: datetime = Field(default_factory=utcnow)
    kind: str  # ack | unack | assign | note | close | silence | unsilence
    actor: str  # receiver.api.audit.actor_of: scope + token digest prefix, never the token
    author: str = ""  # the name the caller gave (`author` in the body), unverified
    text: str = ""  # the note, the assignee, the silence comment
    detail: dict[str, Any] = Field(default_factory=dict)

    class Settings:
        name = "incident_events"


class AuditEntry(Document):
    """One admin or operator change made through the API: who, what, when (`audit`)."""

    at: datetime = Field(default_factory=utcnow)
    actor: str
    scope: str = ""  # admin | operator | "" (API auth off)
    method: str
    path: str
    action: str  # a short name (`incident.ack`, `PUT /api/v1/routing`)
    status: int = 0
    target: str = ""
    detail: dict[str, Any] = Field(default_factory=dict)

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
