"""What the store keeps, as plain read models: fields only, no database behind them.

The store's documents (its `documents` module) extend these with their collection and
indexes, so a repository method hands back an instance of one of these and a caller outside
the store reads fields without being able to save or query. A caller builds one to hand a new
row to the store (an audit entry, a feedback, a chat session), which stores its fields.
Names follow the glossary; the seed's document names stay in the store.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any, ClassVar

from pydantic import BaseModel, Field, model_validator

from receiver.domain import MAX_NAMES, AnalysisFields, EpisodeKeys, SignalFields
from receiver.timeutil import utcnow


class DeliveryRecord(BaseModel):
    """One webhook delivery as received; the unique key makes retries and HA duplicates no-ops."""

    id: Any = None  # the store's identity once stored (an ObjectId)
    delivery_key: str
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


class EpisodeRecord(SignalFields, EpisodeKeys):
    """One alert episode. Identity: (group, fingerprint, starts_at) as `episode_key`.

    The signal's fields as stored: plain strings and JSON, so a row an older version wrote
    still reads (`receiver.store.convert` turns it into a `Signal`)."""

    id: Any = None  # the store's identity once stored (an ObjectId)
    source: str
    status: str
    severity: str = "medium"
    detector: dict[str, Any] | None = None
    first_seen: datetime = Field(default_factory=utcnow)
    last_seen: datetime = Field(default_factory=utcnow)
    analyzed: bool = False


class IncidentRecord(BaseModel):
    """Episodes that share one analysis and one notification thread (an Alertmanager group)."""

    id: Any = None  # the store's identity once stored (an ObjectId)
    key: str  # the group key as the source shows it (Alertmanager's groupKey)
    # the group's identity (`normalise.group_id`) while open; moved aside when resolved
    open_key: str
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


class AnalysisRecord(AnalysisFields):
    """One analysis of an incident (the seed's `rca` collection); the newest one is current."""

    id: Any = None  # the store's identity once stored (an ObjectId)
    incident_id: str
    incident_key: str = ""
    signature: str = ""  # alertnames+instances analysed; a new one means re-analysis
    created_at: datetime = Field(default_factory=utcnow)
    alertname: str = ""
    instance: str = ""
    severity: str = ""
    # stored as written: an older row may hold a confidence outside [0, 1] or a hypothesis
    # the domain type would refuse (`receiver.store.convert.rca_analysis` clamps and skips)
    confidence: float = 0.0
    hypotheses: list[dict[str, Any]] = Field(default_factory=list)
    evidence: list[dict[str, Any]] = Field(default_factory=list)
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


class NotificationRecord(BaseModel):
    """One outbox row: an (incident, channel, event) message, or a digest per (channel, window).

    `key` is unique, so planning the same event twice (a retry, a second replica) is a no-op;
    `status` pending → sending (leased) → sent | failed | suppressed; `waiting` holds an
    analysis follow-up until the analysis lands.
    """

    id: Any = None  # the store's identity once stored (an ObjectId)
    key: str
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


class TargetRecord(BaseModel):
    """A Prometheus the outlier poller watches besides PROM_URL; `name` is unique.

    `auth` is {"type": "bearer", "token"} or {"type": "basic", "username", "password"}: stored
    because the poller must send it, never returned by the API.
    """

    id: Any = None  # the store's identity once stored (an ObjectId)
    name: str
    url: str
    job: str = ""
    enabled: bool = True
    auth: dict[str, str] | None = None
    created_at: datetime = Field(default_factory=utcnow)
    updated_at: datetime = Field(default_factory=utcnow)

    @model_validator(mode="before")
    @classmethod
    def _seed_endpoint(cls, data: Any) -> Any:
        """The seed stored `{name, endpoint, job, enabled}`: its `endpoint` is our `url`."""
        if isinstance(data, dict) and "url" not in data and "endpoint" in data:
            return {**data, "url": data["endpoint"]}
        return data


class LeaseRecord(BaseModel):
    """Which replica polls a target: `holder` until `expires_at`, renewed every cycle."""

    id: Any = None  # the store's identity once stored (an ObjectId)
    name: str
    holder: str
    expires_at: datetime
    acquired_at: datetime = Field(default_factory=utcnow)


class SnapshotRecord(BaseModel):
    """One poll cycle of one target (the seed's `metrics` collection, shown by /prom-metrics)."""

    id: Any = None  # the store's identity once stored (an ObjectId)
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


class ChatSessionRecord(BaseModel):
    """A conversation with the assistant: its history and what it cost (`chat_sessions`)."""

    id: Any = None  # the store's identity once stored (an ObjectId)
    session_id: str
    # receiver.api.access.principal of the API token that created it ("" with auth off)
    owner: str = ""
    title: str = ""
    created_at: datetime = Field(default_factory=utcnow)
    last_activity: datetime = Field(default_factory=utcnow)
    messages: list[dict[str, Any]] = Field(default_factory=list)
    message_count: int = 0
    tokens_in: int = 0
    tokens_out: int = 0


class FeedbackRecord(BaseModel):
    """A person's verdict on an incident's analysis, kept for ranking analyses later."""

    id: Any = None  # the store's identity once stored (an ObjectId)
    incident_id: str
    rca_id: str = ""
    helpful: bool | None = None
    actual_cause: str = ""
    comment: str = ""
    created_at: datetime = Field(default_factory=utcnow)


class IncidentEventRecord(BaseModel):
    """One on-call action on an incident (ack, note, close, ...): its history, insert-only.

    A collection of its own, not an array on the incident: the embedded server turns `$push`ed
    sub-documents into JSON strings, and a busy incident's history must not grow one document.
    """

    id: Any = None  # the store's identity once stored (an ObjectId)
    incident_id: str
    at: datetime = Field(default_factory=utcnow)
    kind: str  # ack | unack | assign | note | close | silence | unsilence
    actor: str  # receiver.api.audit.actor_of: scope + token digest prefix, never the token
    author: str = ""  # the name the caller gave (`author` in the body), unverified
    text: str = ""  # the note, the assignee, the silence comment
    detail: dict[str, Any] = Field(default_factory=dict)


class AuditRecord(BaseModel):
    """One admin or operator change made through the API: who, what, when (`audit`)."""

    id: Any = None  # the store's identity once stored (an ObjectId)
    at: datetime = Field(default_factory=utcnow)
    actor: str
    scope: str = ""  # admin | operator | "" (API auth off)
    method: str
    path: str
    action: str  # a short name (`incident.ack`, `PUT /api/v1/routing`)
    status: int = 0
    target: str = ""
    detail: dict[str, Any] = Field(default_factory=dict)
