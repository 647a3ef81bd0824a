"""The outbox's rows and options: keys, constants, what a row's message is stored as."""

from __future__ import annotations

import base64
import logging
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from receiver.domain import Severity
from receiver.notify.render import Attachment, Event, Message
from receiver.records import AnalysisRecord, EpisodeRecord, IncidentRecord, NotificationRecord
from receiver.retry import RetryPolicy
from receiver.settings import Settings

log = logging.getLogger(__name__)


UNFINISHED = frozenset({"pending", "sending", "waiting"})
# messages that wait until their incident's first message on the channel is final
FOLLOWUPS = frozenset({Event.RESOLVED.value, Event.ANALYSIS.value, Event.UPDATE.value})
EPISODES_PER_INCIDENT = 500
DIGEST_GRACE = timedelta(seconds=1)
REFRESH_SECONDS = 1.0
CHART_TIMEOUT = 10.0  # a chart that takes longer is left out; the email goes without it
STAGE = "outbox"  # label of pipeline_item_errors_total
# the stages' one backoff formula with the outbox's defaults (NOTIFY_RETRY_*, NOTIFY_MAX_ATTEMPTS)
RETRY = RetryPolicy(base_seconds=5.0, cap_seconds=600.0, max_attempts=8)

# The main evidence chart of an incident as PNG, None when there is nothing to draw.
ChartSource = Callable[
    [IncidentRecord, Sequence[EpisodeRecord], AnalysisRecord | None], Awaitable[bytes | None]
]


def row_key(incident_id: str, channel: str, event: Event) -> str:
    return f"{incident_id}:{channel}:{event.value}"


def digest_key(channel: str, window_start: datetime) -> str:
    return f"digest:{channel}:{int(window_start.timestamp() * 1000)}"


@dataclass(frozen=True)
class Facts:
    """Incidents, their newest episodes and current analyses for one cycle's due rows, read in
    three queries for the batch instead of three per row (the store serialises every query)."""

    incidents: dict[str, IncidentRecord] = field(default_factory=dict)
    episodes: dict[str, list[EpisodeRecord]] = field(default_factory=dict)
    analyses: dict[str, AnalysisRecord] = field(default_factory=dict)


@dataclass(frozen=True)
class OutboxOptions:
    rca_wait: timedelta = timedelta(seconds=30)
    rate_limit: int = 20  # per channel per window; 0 = no limit
    rate_window: timedelta = timedelta(seconds=60)
    retry: RetryPolicy = RETRY
    lease: timedelta = timedelta(seconds=300)
    poll: float = 1.0
    followup_max: timedelta = timedelta(hours=1)
    batch: int = 200
    channel_concurrency: int = 8  # rows of one channel sent at once (one incident's in order)
    storm_followup: timedelta = timedelta(seconds=60)  # at most one storm update per interval
    storm_settle: timedelta = timedelta(seconds=15)  # a storm's analysis may wait this long more

    @classmethod
    def from_settings(cls, settings: Settings) -> OutboxOptions:
        return cls(
            rca_wait=timedelta(seconds=settings.notify_rca_wait_seconds),
            rate_limit=settings.notify_rate_limit,
            rate_window=timedelta(seconds=settings.notify_rate_window_seconds),
            retry=RetryPolicy(
                base_seconds=settings.notify_retry_base_seconds,
                cap_seconds=settings.notify_retry_max_seconds,
                max_attempts=settings.notify_max_attempts,
            ),
            lease=timedelta(seconds=settings.notify_lease_seconds),
            poll=settings.notify_poll_seconds,
            followup_max=timedelta(seconds=settings.notify_followup_max_seconds),
            channel_concurrency=settings.notify_channel_concurrency,
            storm_followup=timedelta(seconds=settings.storm_followup_seconds),
            storm_settle=timedelta(seconds=settings.storm_settle_seconds),
        )

    def backoff(self, attempts: int, retry_after: float | None, rand: float | None = None) -> float:
        """Seconds before attempt `attempts + 1`: `RetryPolicy.delay` (base x 2^(n-1), capped,
        ± its jitter, so rows that failed together do not retry together); a channel's
        Retry-After is a floor, itself capped."""
        delay = self.retry.delay(attempts, rand)
        if retry_after is not None:
            delay = max(delay, min(retry_after, self.retry.cap_seconds))
        return delay


def _rate_limited(row: NotificationRecord) -> bool:
    """Messages below critical count against the budget (and may be digested); digests and
    every message of a critical incident do not."""
    return row.event != Event.DIGEST.value and row.severity != Severity.CRITICAL.value


def _suppressible(row: NotificationRecord) -> bool:
    """A rate-limited first message that has not taken a rate-limit slot yet."""
    return (
        _rate_limited(row)
        and row.event == Event.FIRING.value
        and row.status == "pending"
        and not row.admitted
    )


def _common_labels(label_sets: list[dict[str, str]]) -> dict[str, str]:
    if not label_sets:
        return {}
    common = dict(label_sets[0])
    for labels in label_sets[1:]:
        common = {k: v for k, v in common.items() if labels.get(k) == v}
    return common


def message_to_doc(message: Message) -> dict[str, Any]:
    return {
        "incident_id": message.incident_id,
        "event": message.event.value,
        "severity": message.severity.value,
        "title": message.title,
        "text": message.text,
        "html": message.html,
        "slack": list(message.slack),
        "thread_id": message.thread_id,
        "colour": message.colour,
        # a retry sends the same bytes, so the chart is stored with the message
        "attachments": [
            {"name": a.name, "mimetype": a.mimetype, "data": base64.b64encode(a.data).decode()}
            for a in message.attachments
        ],
    }


def message_from_doc(doc: dict[str, Any]) -> Message:
    return Message(
        incident_id=str(doc["incident_id"]),
        event=Event(doc["event"]),
        severity=Severity(doc["severity"]),
        title=str(doc["title"]),
        text=str(doc["text"]),
        html=str(doc["html"]),
        slack=tuple(doc["slack"]),
        thread_id=str(doc["thread_id"]),
        colour=str(doc["colour"]),
        attachments=tuple(
            Attachment(str(a["name"]), str(a["mimetype"]), base64.b64decode(a["data"]))
            for a in doc.get("attachments") or []
        ),
    )
