"""Notification metrics, registered on the app's own registry.

`alerts_sent_total{channel}` counts incident messages delivered (firing, resolved, analysis
follow-up); `notifications_suppressed_total{reason}` counts rows not sent on purpose
(`rate_limit`: reported in a digest instead; `parent_suppressed`: the resolve of a suppressed
page; `unrouted`: no channel takes that severity; `no_analysis`: a follow-up whose analysis never
came). In a storm, sent + suppressed{rate_limit} per channel add up to the events planned.
`pipeline_item_errors_total{stage="outbox", outcome}` (shared with the other stages, see
receiver/retry.py) counts rows and incidents that raised while being planned, rendered or sent
(or could not be read at all) and were set aside so the worker goes on;
`notifications_failed_total{reason="poison"|"unreadable"}` counts those that ended `failed`.
"""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge

from receiver.retry import StageFailures


class NotifyMetrics:
    def __init__(self, registry: CollectorRegistry, failures: StageFailures | None = None) -> None:
        # the stages share one counter: the app passes it; alone, this registers its own
        self.failures = failures if failures is not None else StageFailures(registry)
        self.sent = Counter(
            "alerts_sent_total",
            "Incident notifications delivered, by channel",
            ["channel"],
            registry=registry,
        )
        self.digests = Counter(
            "notification_digests_sent_total",
            "Digests delivered (summaries of rate-limited notifications), by channel",
            ["channel"],
            registry=registry,
        )
        self.suppressed = Counter(
            "notifications_suppressed_total",
            "Notifications deliberately not sent, by reason",
            ["reason"],
            registry=registry,
        )
        self.failed = Counter(
            "notifications_failed_total",
            "Failed delivery attempts: transient (retried), permanent, exhausted, unconfigured",
            ["channel", "reason"],
            registry=registry,
        )
        self.active = Gauge(
            "notifications_active",
            "Outbox rows not finished yet (pending, sending, waiting for the analysis)",
            registry=registry,
        )
