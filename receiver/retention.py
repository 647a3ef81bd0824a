"""Retention: cap each collection at MAX_DOCS and drop documents older than their TTL days.

Which collections, how old and how many is decided here; what may never go is the store's to
enforce (`Collections.prune`): never a firing (open) incident or episode, never
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

import logging
from dataclasses import dataclass
from datetime import datetime, timedelta

from prometheus_client import CollectorRegistry, Counter

from receiver.settings import Settings
from receiver.store.collections import Collections
from receiver.store.repo import StoreError
from receiver.work import REAL_CLOCK, Clock, WorkMetrics, every

log = logging.getLogger(__name__)


# The collections retention keeps in bounds (which of their rows are still needed, and so never
# deleted, is the store's to know: `Collections.prune`).
COLLECTIONS: tuple[str, ...] = (
    "deliveries",
    "anomalies",
    "incidents",
    "rca",
    "notifications",
    "chat_sessions",
    "metrics",
    "incident_events",
    "audit",
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
        names = set(COLLECTIONS)
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
        *,
        clock: Clock = REAL_CLOCK,
        work: WorkMetrics | None = None,
    ) -> None:
        self.clock = clock
        self.work = work
        self.collections = collections
        self.limits = limits
        self.metrics = metrics
        self.interval = interval

    async def run_once(self, now: datetime | None = None) -> dict[str, int]:
        """Apply TTLs, then caps; returns deletions per collection."""
        now = now or self.clock.now()
        deleted: dict[str, int] = {}
        present = await self.collections.names()
        for name in COLLECTIONS:
            if name not in present:
                continue
            days = self.limits.ttl_days.get(name)
            by_age, by_count = await self.collections.prune(
                name,
                created_before=now - timedelta(days=days) if days else None,
                keep_at_most=self.limits.max_docs.get(name) or None,
            )
            if days:
                self.metrics.deleted.labels(name, "ttl").inc(by_age)
            if by_count:
                self.metrics.deleted.labels(name, "max_docs").inc(by_count)
            if by_age + by_count:
                deleted[name] = by_age + by_count
        if deleted:
            log.info("retention removed %s", deleted, extra={"deleted": str(deleted)})
        return deleted

    async def run(self) -> None:
        if self.interval <= 0:
            return
        await every(self.interval, self.round, self.clock)

    async def round(self) -> None:
        """One timed pass; a store outage skips it and the next pass tries again."""
        try:
            deleted = await self.run_once()
        except StoreError as err:
            self.metrics.runs.labels("error").inc()
            if self.work is not None:
                self.work.outages.labels("retention").inc()
            log.warning("retention pass failed: %s", err)
            return
        self.metrics.runs.labels("ok").inc()
        if self.work is not None:
            self.work.items.labels("retention").inc(sum(deleted.values()))
