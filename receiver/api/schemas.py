"""Pydantic models of the API's requests and responses: the source of /openapi.json.

Response models describe what the views return; they allow extra fields (the default), so a
stage adding a field does not break the contract, while a changed type does (schemathesis
checks every documented response against these). Query models document the list filters that
`receiver.api.params` parses. The chat API's models are in `receiver.api.chat_schemas`.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, Field

Severity = Literal["critical", "high", "medium", "low"]

SINCE = (
    "RFC3339 time, unix seconds, or a duration back from now (`15m`, `2h`, `7d`); "
    "only items at or after it"
)


class Error(BaseModel):
    """Every error: a stable code and a message naming the problem."""

    error: str
    detail: str


# --- status and health ---------------------------------------------------------------------


class LlmStatus(BaseModel):
    provider: str = Field(description="`offline` when no LLM_URL is set")
    model: str
    url: str | None = Field(description="LLM_URL, masked")
    configured: bool


class LangfuseBrief(BaseModel):
    enabled: bool = Field(description="both keys are set")
    host: str | None


class SessionCounts(BaseModel):
    total: int
    active: int = Field(description="sessions with activity in CHAT_SESSION_ACTIVE_MINUTES")


class ServiceStatus(BaseModel):
    status: Literal["running"]
    service: str
    version: str
    prometheus: str
    llm_model: str
    llm_provider: str
    store: str
    monitor_interval: int
    webhook_auth: bool
    llm: LlmStatus
    langfuse: LangfuseBrief
    sessions: SessionCounts | None = Field(description="chat sessions; null when the store is down")


class Health(BaseModel):
    status: Literal["ok"]


class Ready(BaseModel):
    status: Literal["ready"]
    store: str


# --- webhook -------------------------------------------------------------------------------


class WebhookAccepted(BaseModel):
    status: Literal["accepted", "duplicate"]
    delivery: str = Field(description="sha256 delivery key")
    alerts: int


# --- incidents, episodes, deliveries -------------------------------------------------------


class PageQuery(BaseModel):
    limit: int = Field(default=50, ge=1, le=500, description="items per page")
    offset: int = Field(default=0, ge=0, le=10_000_000, description="items to skip")


class IncidentQuery(PageQuery):
    status: Literal["firing", "resolved", "open"] | None = Field(
        default=None, description="`open` is the same as `firing`"
    )
    severity: Severity | None = None
    alertname: str | None = Field(default=None, max_length=512)
    instance: str | None = Field(default=None, max_length=512)
    source: str | None = Field(default=None, max_length=512)
    since: str | None = Field(default=None, description=SINCE)


class AnomalyQuery(PageQuery):
    status: Literal["firing", "resolved", "open"] | None = None
    severity: Severity | None = None
    instance: str | None = Field(default=None, max_length=512)
    source: str | None = Field(default=None, max_length=512)
    since: str | None = Field(default=None, description=SINCE)


class DeliveryQuery(PageQuery):
    raw: Literal["1", "0", "true", "false", "yes", "no"] | None = Field(
        default=None,
        description="`1` adds the payload as received (at most 50 per page, 256 KB each, "
        "4 MB a page; follow `next_offset`)",
    )
    status: Literal["pending", "processed", "failed"] | None = Field(
        default=None, description="`failed` lists the quarantined deliveries"
    )


class Episode(BaseModel):
    """One alert episode; the seed's anomaly fields first."""

    id: str
    metric: str
    value: float | None
    instance: str
    severity: str
    reason: str
    timestamp: str | None
    status: str
    source: str
    alertname: str
    fingerprint: str
    starts_at: str | None
    ends_at: str | None
    labels: dict[str, str]
    annotations: dict[str, str]
    generator_url: str
    links: dict[str, str] = Field(
        description="links the sender added (Grafana: silence, dashboard, panel, image)"
    )
    values: dict[str, float] = Field(description="Grafana: the rule's values by query refId")
    detector: dict[str, Any] | None
    incident_id: str
    analyzed: bool


class Incident(BaseModel):
    id: str
    key: str
    source: str
    status: str
    severity: str
    title: str
    receiver: str
    alertnames: list[str] = Field(description="the first 100 distinct alertnames")
    instances: list[str] = Field(description="the first 100 distinct instances")
    alertname_count: int = Field(description="distinct alertnames, exact")
    instance_count: int = Field(description="distinct instances, exact")
    group_labels: dict[str, str]
    common_labels: dict[str, str]
    external_url: str
    started_at: str | None
    updated_at: str | None
    resolved_at: str | None
    episode_count: int
    firing_count: int
    needs_analysis: bool
    needs_notification: bool
    analysis_id: str | None
    storm_id: str | None = Field(description="the storm this incident joined, if any")


class IncidentList(BaseModel):
    incidents: list[Incident]
    total: int
    limit: int
    offset: int
    next_offset: int | None


class IncidentDetail(Incident):
    episodes: list[Episode]


class StormMember(BaseModel):
    id: str
    title: str
    severity: str
    status: str
    started_at: str | None


class Storm(BaseModel):
    id: str
    key: str = Field(description="the cause label it formed on, `job=api`")
    status: str
    severity: str
    title: str
    shared_labels: dict[str, str] = Field(description="labels every member shares")
    members: int = Field(description="member incidents, exact")
    started_at: str | None
    resolved_at: str | None
    analysis_id: str | None


class StormList(BaseModel):
    storms: list[Storm]
    total: int
    limit: int
    offset: int
    next_offset: int | None


class StormDetail(Storm):
    member_incidents: list[StormMember] = Field(description="a page of members, oldest first")
    member_offset: int
    next_member_offset: int | None


class StormQuery(BaseModel):
    limit: int = Field(default=50, ge=1, le=500)
    offset: int = Field(default=0, ge=0)


class AnomalyList(BaseModel):
    """The seed's shape."""

    anomalies: list[Episode]
    count: int
    total: int


class Delivery(BaseModel):
    id: str
    delivery_key: str
    state: Literal["pending", "retrying", "processed", "failed"] = Field(
        description="failed = quarantined after its last attempt; retry it with POST .../retry"
    )
    received_at: str | None
    source: str = Field(description="alertmanager | grafana | oncall")
    receiver: str
    group_key: str
    status: str
    alert_count: int
    truncated_alerts: int
    external_url: str
    processed: bool
    attempts: int
    last_error: str | None
    next_attempt_at: str | None
    payload: dict[str, Any] | None = None
    payload_truncated: bool = Field(
        default=False, description="the body was over 256 KB: `raw_json` holds its head"
    )
    payload_bytes: int | None = None
    raw_json: str | None = None


class DeliveryRetry(Delivery):
    status: str = Field(description="queued")


class DeliveryList(BaseModel):
    deliveries: list[Delivery]
    total: int
    limit: int
    offset: int
    next_offset: int | None


# --- stats and langfuse --------------------------------------------------------------------


class AnomalyCounts(BaseModel):
    total: int
    open: int
    analyzed: int


class IncidentCounts(BaseModel):
    total: int
    open: int


class ChatCounts(BaseModel):
    total: int
    active: int = Field(description="sessions with activity in CHAT_SESSION_ACTIVE_MINUTES")


class EmailStatus(BaseModel):
    enabled: bool
    recipients: int


class SlackStatus(BaseModel):
    enabled: bool
    configured: bool


class OutboxCounts(BaseModel):
    pending: int
    sent: int
    failed: int
    suppressed: int


class NotificationStats(BaseModel):
    email: EmailStatus
    slack: SlackStatus
    outbox: OutboxCounts


class DeliveryCounts(BaseModel):
    total: int
    pending: int
    failed: int


class QuarantineCounts(BaseModel):
    """Items a background stage gave up on after its last attempt."""

    deliveries: int
    analyses: int
    notifications: int


class Total(BaseModel):
    total: int


class CollectionTotals(BaseModel):
    """The seed's `collections` block: `stats['collections']['anomalies']['total']`."""

    metrics: Total = Field(description="poll-cycle snapshots")
    anomalies: Total = Field(description="alert episodes")
    rca_results: Total = Field(description="analyses (the `rca` collection)")
    chat_sessions: Total


class Stats(BaseModel):
    """Collection totals: the seed's `collections` block, then this service's own counts."""

    collections: CollectionTotals
    metrics: int = Field(description="poll-cycle snapshots")
    anomalies: AnomalyCounts
    incidents: IncidentCounts
    rca_results: int
    chat_sessions: ChatCounts
    notifications: NotificationStats
    deliveries: DeliveryCounts
    quarantined: QuarantineCounts
    store: str


class LangfuseStatus(BaseModel):
    installed: bool
    version: str | None
    enabled: bool = Field(description="both keys are set")
    host: str | None = Field(description="LANGFUSE_HOST; null = the SDK's default")
    public_key: Literal["configured", "missing"]
    secret_key: Literal["configured", "missing"]
    connected: bool | None = Field(
        description="the host answered its health endpoint; null when not probed"
    )
    session_tracking: bool = Field(description="chat turns are traced under their session id")
