"""Retention: cap each collection at MAX_DOCS and drop documents older than their TTL days.

What may go is decided here, per collection: never a firing (open) incident or episode, never
an incident still waiting for its notification, never an unsent notification, never an
unprocessed delivery. Notification rows also stay while their incident is open (or its resolve
is not planned yet) and while the digest that lists them is unsent: the outbox plans a page per
(incident, channel, event) key, so a deleted `sent` row of an open incident would page again on
resolve, and a digest renders its suppressed members when it is sent. Configuration collections
(targets, settings, leases, ...) are not touched.

Age is insertion time, read from the ObjectId `_id`: on the embedded server a datetime written
by `$set` (`updated_at`, `last_seen`, ...) is stored as a string and no longer compares as a
time, while `_id` is set once on insert everywhere.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from bson import ObjectId
from prometheus_client import CollectorRegistry, Counter

from receiver.settings import Settings
from receiver.store.collections import Collections
from receiver.store.documents import utcnow
from receiver.store.repo import StoreError

log = logging.getLogger(__name__)


# Protection that depends on other documents, read once per pass: extra filter terms.
Guard = Callable[[Collections], Awaitable[Mapping[str, Any]]]

UNFINISHED = ["pending", "sending", "waiting"]


@dataclass(frozen=True)
class Rule:
    collection: str
    deletable: Mapping[str, Any] = field(default_factory=dict)
    guard: Guard | None = None


async def _notification_guard(collections: Collections) -> Mapping[str, Any]:
    """Rows of open (or not yet re-planned) incidents, and members of unsent digests, stay."""
    open_ids = await collections.values(
        "incidents",
        "_id",
        {"$or": [{"status": {"$ne": "resolved"}}, {"needs_notification": True}]},
    )
    unsent = await collections.values(
        "notifications", "key", {"event": "digest", "status": {"$in": UNFINISHED}}
    )
    guard: dict[str, Any] = {}
    if open_ids:
        guard["incident_id"] = {"$nin": sorted(str(i) for i in open_ids)}
    if unsent:
        guard["digest_key"] = {"$nin": sorted(str(k) for k in unsent)}
    return guard


RULES: tuple[Rule, ...] = (
    Rule("deliveries", {"processed": True}),
    Rule("anomalies", {"status": {"$ne": "firing"}}),
    Rule("incidents", {"status": {"$ne": "firing"}, "needs_notification": {"$ne": True}}),
    Rule("rca"),
    Rule("notifications", {"status": {"$in": ["sent", "suppressed"]}}, _notification_guard),
    Rule("chat_sessions"),
    Rule("metrics"),
    Rule("incident_events"),
    Rule("audit"),
)


def parse_pairs(raw: str) -> dict[str, int]:
    """`name=N,name=N` (validated by Settings) → {name: N}."""
    out: dict[str, int] = {}
    for part in filter(None, (p.strip() for p in raw.split(","))):
        name, _, number = part.partition("=")
        out[name.strip()] = int(number)
    return out


@dataclass(frozen=True)
class Limits:
    max_docs: dict[str, int]
    ttl_days: dict[str, int]

    @classmethod
    def from_settings(cls, settings: Settings) -> Limits:
        overrides = parse_pairs(settings.max_docs_per_collection)
        ttl = parse_pairs(settings.retention_days)
        names = {r.collection for r in RULES}
        return cls(
            max_docs={n: overrides.get(n, settings.max_docs) for n in names},
            ttl_days={n: d for n, d in ttl.items() if n in names},
        )


class RetentionMetrics:
    def __init__(self, registry: CollectorRegistry) -> None:
        self.deleted = Counter(
            "retention_deleted_total",
            "Documents removed by retention",
            ["collection", "reason"],
            registry=registry,
        )
        self.runs = Counter(
            "retention_runs_total", "Retention passes by outcome", ["outcome"], registry=registry
        )


class Retention:
    """One pass with `run_once()`; `run()` repeats it every RETENTION_INTERVAL_SECONDS."""

    def __init__(
        self,
        collections: Collections,
        limits: Limits,
        metrics: RetentionMetrics,
        interval: float,
    ) -> None:
        self.collections = collections
        self.limits = limits
        self.metrics = metrics
        self.interval = interval

    async def run_once(self, now: datetime | None = None) -> dict[str, int]:
        """Apply TTLs, then caps; returns deletions per collection."""
        now = now or utcnow()
        deleted: dict[str, int] = {}
        present = await self.collections.names()
        for rule in RULES:
            if rule.collection not in present:
                continue
            removed = 0
            deletable = rule.deletable
            if rule.guard is not None:
                deletable = {**deletable, **await rule.guard(self.collections)}
            days = self.limits.ttl_days.get(rule.collection)
            if days:
                cutoff = ObjectId.from_datetime(now - timedelta(days=days))
                n = await self.collections.delete_older_than(
                    rule.collection, "_id", cutoff, deletable
                )
                self.metrics.deleted.labels(rule.collection, "ttl").inc(n)
                removed += n
            cap = self.limits.max_docs.get(rule.collection)
            if cap:
                excess = await self.collections.count(rule.collection) - cap
                if excess > 0:
                    n = await self.collections.delete_oldest(
                        rule.collection, excess, "_id", deletable
                    )
                    self.metrics.deleted.labels(rule.collection, "max_docs").inc(n)
                    removed += n
            if removed:
                deleted[rule.collection] = removed
        if deleted:
            log.info("retention removed %s", deleted, extra={"deleted": str(deleted)})
        return deleted

    async def run(self) -> None:
        if self.interval <= 0:
            return
        while True:
            await asyncio.sleep(self.interval)
            try:
                await self.run_once()
            except StoreError as err:
                self.metrics.runs.labels("error").inc()
                log.warning("retention pass failed: %s", err)
                continue
            self.metrics.runs.labels("ok").inc()
