"""Storm correlation: many incidents opening together with a shared likely cause become one
storm — one analysis, one page listing every member, bounded updates as members join.

Rules:
- a new incident is held back (`correlating`) from analysis and paging for at most `hold`
  seconds while the correlator decides;
- its *cause labels* are the values of `labels` (job, service, cluster, a dependency, the
  alertname, ...) that all its alerts share (Alertmanager's commonLabels and groupLabels);
- an incident whose cause label matches an open storm that gained a member within `window`
  joins it; otherwise, once `min_size` incidents opened within `window` share a cause label
  and are in no storm, they form one (the largest group first; on a tie the label listed
  first in `labels` wins). Incidents that share nothing but time are never merged;
- a held incident that joined nothing after `hold` seconds goes on alone (one without any
  cause label at once: it cannot join anything);
- a new storm is analysed (and so paged) once no member joined for `hold` seconds, or
  `settle` seconds after it formed while members keep coming, so its page lists the burst.
A storm is an incident with source "storm" (so analysis, outbox, API and console handle it
like any other) whose `open_key` is `storm:<label>=<value>`: the unique index makes two
replicas racing to form the same storm converge on one, and a member joins only while its
`storm_id` is empty, so it is in at most one storm. Members stay full incidents.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from prometheus_client import CollectorRegistry
from prometheus_client import Counter as PromCounter

from receiver.domain import Severity
from receiver.ingest.processor import STORM_PRIORITY
from receiver.records import IncidentRecord
from receiver.settings import Settings
from receiver.store.repo import DuplicateKey, Store
from receiver.store.storms import STORM_SOURCE, StormStore
from receiver.timeutil import utcnow

log = logging.getLogger(__name__)

DEFAULT_LABELS = (
    "service", "job", "app", "deployment", "namespace", "cluster", "dependency", "alertname",
)  # fmt: skip
SCAN_LIMIT = 5000  # incidents compared per cycle
RESOLVE_SECONDS = 5.0  # open storms are checked for resolution at most this often

Cause = tuple[str, str]


@dataclass(frozen=True)
class StormOptions:
    enabled: bool = True
    window: float = 120.0
    min_size: int = 10
    hold: float = 3.0
    followup: float = 60.0
    settle: float = 15.0
    labels: tuple[str, ...] = DEFAULT_LABELS

    @classmethod
    def from_settings(cls, settings: Settings) -> StormOptions:
        labels = tuple(x.strip() for x in settings.storm_labels.split(",") if x.strip())
        return cls(
            enabled=settings.storm_enabled,
            window=settings.storm_window_seconds,
            min_size=settings.storm_min_size,
            hold=settings.storm_hold_seconds,
            followup=settings.storm_followup_seconds,
            settle=settings.storm_settle_seconds,
            labels=labels or DEFAULT_LABELS,
        )


def incident_labels(incident: IncidentRecord) -> dict[str, str]:
    """Labels every alert of the incident shares."""
    return {**incident.common_labels, **incident.group_labels}


def causes(incident: IncidentRecord, keys: Sequence[str]) -> list[Cause]:
    """The incident's cause labels, in the order of `keys`."""
    labels = incident_labels(incident)
    return [(k, labels[k]) for k in keys if labels.get(k)]


def shared_labels(incidents: Sequence[IncidentRecord]) -> dict[str, str]:
    """Labels with the same value on every incident (severity aside: it is shown anyway)."""
    if not incidents:
        return {}
    common = incident_labels(incidents[0])
    for incident in incidents[1:]:
        labels = incident_labels(incident)
        common = {k: v for k, v in common.items() if labels.get(k) == v}
    common.pop("severity", None)
    return dict(sorted(common.items()))


def storm_key(cause: Cause) -> str:
    return f"{cause[0]}={cause[1]}"


class StormMetrics:
    def __init__(self, registry: CollectorRegistry) -> None:
        self.formed = PromCounter("storms_formed_total", "Storms formed", registry=registry)
        self.joined = PromCounter(
            "storm_members_total", "Incidents that joined a storm", registry=registry
        )
        self.released = PromCounter(
            "storm_released_total",
            "Held incidents that joined no storm and went on alone",
            registry=registry,
        )


class StormCorrelator:
    def __init__(
        self,
        store: Store,
        options: StormOptions,
        metrics: StormMetrics | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.storms = StormStore(store)
        self.options = options
        self.metrics = metrics
        self.clock = clock
        # called (synchronously, must not block) when held incidents or storms can go on
        self.listeners: list[Callable[[], None]] = []
        self._resolve_at = 0.0

    def _notify(self) -> None:
        for listener in self.listeners:
            listener()

    async def correlate(self) -> int:
        """One pass: join, form, release; return how many held incidents were decided."""
        now = self.clock()
        decided = 0
        held = await self.storms.correlating(SCAN_LIMIT)
        if held:
            decided = await self._decide(held, now)
        if now >= self._resolve_at:
            self._resolve_at = now + RESOLVE_SECONDS
            await self._resolve_storms()
        if decided:
            self._notify()
        return decided

    async def _decide(self, held: Sequence[IncidentRecord], now: float) -> int:
        opts = self.options
        keys = opts.labels
        open_storms = {
            s.storm_key: s
            for s in await self.storms.open_storms()
            if s.storm_joined_ts >= now - opts.window
        }
        joined: set[str] = set()
        plans: dict[str, tuple[IncidentRecord | None, Cause, list[IncidentRecord]]] = {}
        # 1. held incidents whose cause has an open storm join it
        for incident in held:
            for cause in causes(incident, keys):
                storm = open_storms.get(storm_key(cause))
                if storm is not None:
                    plans.setdefault(str(storm.id), (storm, cause, []))[2].append(incident)
                    joined.add(str(incident.id))
                    break
        # 2. free incidents sharing a cause form a new storm once there are enough of them. A
        # new storm needs a held member, so when every held incident with a cause joined one
        # above (a storm under way), the window is not read: that read scans every incident
        # opened in it, and during a burst it ran after every delivery batch
        unjoined = [i for i in held if str(i.id) not in joined and causes(i, keys)]
        recent: list[IncidentRecord] = []
        if unjoined:
            recent = list(await self.storms.recent(now - opts.window, SCAN_LIMIT))
            known = {str(i.id) for i in recent}
            recent += [i for i in held if str(i.id) not in known]  # opened before the window
        free = [i for i in recent if not i.storm_id and str(i.id) not in joined]
        by_cause = {str(i.id): causes(i, keys) for i in free}
        counts = Counter(c for cs in by_cause.values() for c in cs)
        order = {k: n for n, k in enumerate(keys)}
        for cause in sorted(counts, key=lambda c: (-counts[c], order[c[0]], c[1])):
            members = [i for i in free if cause in by_cause[str(i.id)] and str(i.id) not in joined]
            if len(members) < opts.min_size or not any(m.correlating for m in members):
                continue
            if storm_key(cause) in open_storms:
                continue  # it stopped growing: what joins now is a new story
            plans[f"new:{storm_key(cause)}"] = (None, cause, members)
            joined.update(str(m.id) for m in members)
        decided = 0
        for existing, cause, members in plans.values():
            decided += await self._join(existing, cause, members, now)
        # 3. held long enough (or sharing no cause label with anything) and in no storm: go
        # on alone
        alone = [
            i.id
            for i in held
            if str(i.id) not in joined and (now - i.opened_ts >= opts.hold or not causes(i, keys))
        ]
        if alone:
            released = await self.storms.release(alone)
            if self.metrics is not None:
                self.metrics.released.inc(released)
            decided += len(alone)
        return decided

    async def _join(
        self, storm: IncidentRecord | None, cause: Cause, members: list[IncidentRecord], now: float
    ) -> int:
        if storm is None:
            storm = await self._form(cause, members, now)
        assert storm.id is not None
        sid = str(storm.id)
        count = await self.storms.join(sid, [m.id for m in members])
        await self.storms.suppress_member_pages([str(m.id) for m in members])
        total = await self.storms.count_members(sid)
        await self.storms.grew(storm.id, total, now)
        # one page listing the whole burst beats a page and an update a minute later: while
        # members keep joining, the first analysis waits `hold` more, up to `settle` in all
        settle_until = min(now + self.options.hold, storm.opened_ts + self.options.settle)
        await self.storms.delay_first_analysis(storm.id, settle_until)
        # the analysis worker polls slowly when idle: wake it when the storm comes due
        asyncio.get_running_loop().call_later(max(0.0, settle_until - now) + 0.05, self._notify)
        if self.metrics is not None:
            self.metrics.joined.inc(count)
        log.info("storm %s (%s): %d joined, %d members", sid, storm.storm_key, count, total)
        return len(members)

    async def _form(
        self, cause: Cause, members: list[IncidentRecord], now: float
    ) -> IncidentRecord:
        key = storm_key(cause)
        severity = max((Severity.parse(m.severity) for m in members), key=lambda s: s.rank)
        names = sorted({n for m in members for n in m.alertnames})
        instances = sorted({n for m in members for n in m.instances})
        shared = shared_labels(members)
        storm = IncidentRecord(
            key=f"storm:{key}",
            open_key=f"storm:{key}",
            source=STORM_SOURCE,
            severity=severity.value,
            title=f"Storm: {len(members)} incidents with {key}",
            alertnames=names[: IncidentRecord.MAX_NAMES],
            instances=instances[: IncidentRecord.MAX_NAMES],
            alertname_count=len(names),
            instance_count=len(instances),
            group_labels={cause[0]: cause[1]},
            common_labels=shared,
            started_at=min(m.started_at for m in members),
            updated_at=utcnow(),
            needs_analysis=True,
            needs_notification=True,
            priority=STORM_PRIORITY,
            opened_ts=now,
            storm_key=key,
            storm_labels=shared,
            storm_members=len(members),
            storm_joined_ts=now,
            # the members of a burst land within moments: analyse (and so page) once they have
            analysis_claim_until=now + self.options.hold,
        )
        try:
            await self.storms.store.insert_incident(storm)
        except DuplicateKey:
            found = await self.storms.store.open_incident(f"storm:{key}")
            if found is None:
                raise
            return found  # another replica formed it first
        if self.metrics is not None:
            self.metrics.formed.inc()
        log.warning("storm %s formed: %d incidents share %s", storm.id, len(members), key)
        return storm

    async def _resolve_storms(self) -> None:
        """A storm whose members have all resolved resolves too (its page thread ends)."""
        for storm in await self.storms.open_storms():
            if not storm.storm_members or await self.storms.count_members(
                str(storm.id), firing_only=True
            ):
                continue
            if await self.storms.store.resolve_incident(storm, utcnow(), "receiver"):
                log.info("storm %s resolved", storm.id)
                self._notify()
