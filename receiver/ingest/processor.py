"""Signals → episodes and incidents: the one path for Alertmanager alerts and detector outliers.

Rules (ARCHITECTURE "Data model"):
- a group is Alertmanager's receiver + groupKey, or a synthetic key for the service's own signals
  (`normalise.group_id`); a batch only creates, touches, supersedes or resolves its own group's
  episodes, so one alert routed to two groups lives and resolves in each separately;
- an episode is (group, fingerprint, startsAt); a "firing" for an episode already resolved does
  not re-open it; "resolved" closes a firing episode once;
- one incident per group while any of its episodes fires; resolved when none fires;
- the incident gains `needs_analysis` when it is new or gains an alertname or instance, and
  `needs_notification` when it opens, resolves or a repeat raises its severity; its title is
  recomputed as it grows. Repeats of the same content change nothing; a repeat with changed
  content (annotations, value, links) updates its episode without a new notification. An alert
  listed twice in one batch is one episode.
Every step is idempotent, so a batch applied twice (a crash between steps, a replica race)
converges to the same state.
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from receiver.domain import MAX_NAMES, Episode, IncidentState, Severity, Signal, Source, Status
from receiver.ingest.normalise import episode_key, group_id
from receiver.store.repo import DuplicateKey, Store
from receiver.timeutil import utcnow

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class SignalBatch:
    """Signals that belong to one group (an Alertmanager notification or a detector cycle)."""

    source: Source
    group_key: str
    signals: Sequence[Signal]
    receiver: str = ""
    group_labels: dict[str, str] = field(default_factory=dict)
    common_labels: dict[str, str] = field(default_factory=dict)
    external_url: str = ""

    @functools.cached_property
    def group_id(self) -> str:
        return group_id(self.source, self.receiver, self.group_key)

    def episode_key(self, signal: Signal) -> str:
        return episode_key(signal.source, signal.fingerprint, signal.starts_at, self.group_id)


@dataclass
class ApplyResult:
    incident_id: str = ""
    new_episodes: int = 0
    resolved_episodes: int = 0
    updated_episodes: int = 0  # repeats whose content changed (value, annotations, ...)
    incident_created: bool = False
    incident_resolved: bool = False


@dataclass
class _Changes:
    """What a batch changes on stored episodes: by episode id, the fields to set."""

    changed: dict[str, dict[str, Any]] = field(default_factory=dict)  # superseded, updated
    resolved: dict[str, dict[str, Any]] = field(default_factory=dict)
    raised: list[tuple[str, Severity]] = field(default_factory=list)  # (incident, severity)


def _episode(signal: Signal, incident_id: str, batch: SignalBatch) -> Episode:
    return Episode(
        **dict(signal),
        episode_key=batch.episode_key(signal),
        incident_id=incident_id,
        group_key=batch.group_key,
        group_id=batch.group_id,
    )


def title_of(
    names: Sequence[str], name_count: int, instances: Sequence[str], instance_count: int, key: str
) -> str:
    """ "A, B, C (+2 more) on 3 instances": the first alertnames and the exact counts."""
    shown = sorted(names)[:3]
    title = ", ".join(shown) or key
    if shown and name_count > len(shown):
        title += f" (+{name_count - len(shown)} more)"
    if instance_count == 1 and instances:
        title += f" on {instances[0]}"
    elif instance_count > 1:
        title += f" on {instance_count} instances"
    return title[:200]


def _title(batch: SignalBatch) -> str:
    names = sorted({s.alertname for s in batch.signals if s.alertname})
    instances = sorted({s.instance for s in batch.signals if s.instance})
    return title_of(names, len(names), instances, len(instances), batch.group_key)


def _max_severity(signals: Sequence[Signal], current: str | None = None) -> str:
    levels = [s.severity for s in signals]
    if current:
        levels.append(Severity.parse(current))
    return max(levels, key=lambda s: s.rank).value if levels else Severity.MEDIUM.value


class SignalProcessor:
    """Applies signal batches to the store."""

    def __init__(self, store: Store, hold_for_storms: bool = False) -> None:
        self.store = store
        # new incidents wait for the storm correlator (receiver/ingest/storms.py) before they
        # are analysed or paged; only set when a correlator runs
        self.hold_for_storms = hold_for_storms
        # called (synchronously, must not block) when an incident newly needs analysis
        self.analysis_listeners: list[Callable[[], None]] = []
        # called once per episode this replica stored first, with (source, severity)
        self.episode_listeners: list[Callable[[str, str], None]] = []

    async def apply(self, batch: SignalBatch) -> ApplyResult:
        """Apply one batch in few store commands: the group's episodes are read once (an
        indexed equality), its open incident only when new episodes join it, new episodes go
        in one insert, episode changes in one bulk write per kind, and an incident grows and
        takes its firing count in one update. Each step stays idempotent."""
        result = ApplyResult()
        if not batch.signals:
            return result
        # One alert listed twice in a batch is one episode (the last copy wins, as the sender's
        # latest word), so it is inserted and counted once.
        unique = {batch.episode_key(s): s for s in batch.signals}
        keys = list(unique)
        signals = list(unique.values())
        known = await self.store.group_episodes(batch.group_id, unique)
        new_signals = [s for s, k in zip(signals, keys, strict=True) if k not in known]
        # a plain repeat needs nothing else: the incident is read only when episodes join it,
        # and not even then while none of the group's episodes fires (its incident is closed
        # then, or left by a crash before its first episodes: creating it finds that one)
        incident = None
        if new_signals and any(e.status is Status.FIRING for e in known.values()):
            incident = await self.store.open_incident_state(batch.group_id)
        if new_signals and incident is None:
            incident = await self._open(batch, new_signals, result)
        # incident id → its firing count when known without a read (an incident this batch
        # opened and filled alone), else None: counted from the store before it is judged
        touched: dict[str, int | None] = {}
        grow: list[Signal] = []
        if new_signals and incident is not None:
            fresh = [_episode(s, incident.id, batch) for s in new_signals]
            raced = set(await self.store.insert_episodes(fresh))
            result.new_episodes = len(fresh) - len(raced)
            if raced:  # another replica inserted them first: treat as existing
                known = await self.store.group_episodes(batch.group_id, unique)
            for episode in fresh:
                if episode.episode_key not in raced:
                    for listener in self.episode_listeners:
                        listener(episode.source.value, episode.severity.value)
            grow = new_signals
            firing = sum(1 for e in fresh if e.status is Status.FIRING)
            alone = result.incident_created and not raced and firing > 0
            touched[incident.id] = firing if alone else None

        changes = self._episode_changes(batch, signals, keys, new_signals, known, touched, result)
        await self.store.update_firing_episodes(changes.changed)
        result.resolved_episodes = await self.store.update_firing_episodes(changes.resolved)

        for incident_id in sorted(touched):
            mine = incident if incident is not None and incident.id == incident_id else None
            resolved = await self._settle(
                incident_id,
                batch,
                mine,
                grow if mine else [],
                touched[incident_id],
                result.new_episodes,
            )
            result.incident_resolved = result.incident_resolved or resolved
        # after the growth, which sets the severity it read at the start of the batch
        for incident_id, severity in changes.raised:
            await self._severity_changed(incident_id, severity)
        result.incident_id = incident.id if incident is not None else _incident_of(keys, known)
        return result

    def _episode_changes(
        self,
        batch: SignalBatch,
        signals: Sequence[Signal],
        keys: Sequence[str],
        new_signals: Sequence[Signal],
        known: dict[str, Episode],
        touched: dict[str, int | None],
        result: ApplyResult,
    ) -> _Changes:
        """What the batch changes on stored episodes; adds the incidents it touches."""
        out = _Changes()
        # Alertmanager holds one alert per fingerprint: a newer episode replaces the group's
        # older firing one, whose resolve would otherwise never arrive. Only within the group:
        # the same alert in another group resolves there.
        newest: dict[str, datetime] = {}
        for signal in new_signals:
            if signal.fingerprint not in newest or signal.starts_at > newest[signal.fingerprint]:
                newest[signal.fingerprint] = signal.starts_at
        batch_keys = set(keys)
        for episode in known.values():
            if (
                episode.status is Status.FIRING
                and episode.source is batch.source
                and episode.episode_key not in batch_keys
                and episode.fingerprint in newest
                and episode.starts_at < newest[episode.fingerprint]
            ):
                out.changed[episode.id] = {
                    "status": Status.RESOLVED.value,
                    "ends_at": newest[episode.fingerprint],
                    "resolved_by": "superseded",
                }
                touched.setdefault(episode.incident_id, None)
        for signal, key in zip(signals, keys, strict=True):
            current = known.get(key)
            if current is None:
                continue  # new: inserted above
            if signal.status is Status.RESOLVED:
                # judged even when already resolved: a retry after a crash between the two
                # writes still resolves the incident
                touched[current.incident_id] = None
                if current.status is Status.FIRING:
                    out.resolved[current.id] = {
                        "status": Status.RESOLVED.value,
                        "ends_at": signal.ends_at or utcnow(),
                        "annotations": dict(signal.annotations),
                        "resolved_by": batch.source.value,
                    }
            elif current.status is Status.FIRING and (fields := _changed_fields(signal, current)):
                # a firing repeat never re-opens a resolved episode
                out.changed.setdefault(current.id, {}).update(fields)
                result.updated_episodes += 1
                if "severity" in fields:
                    out.raised.append((current.incident_id, signal.severity))
        return out

    async def _open(
        self, batch: SignalBatch, new_signals: Sequence[Signal], result: ApplyResult
    ) -> IncidentState:
        """Open the group's incident for its first new episodes."""
        severity = _max_severity(new_signals)
        try:
            incident = await self.store.create_incident(
                key=batch.group_key,
                open_key=batch.group_id,
                source=batch.source.value,
                severity=severity,
                title=_title(batch),
                receiver=batch.receiver,
                group_labels=batch.group_labels,
                common_labels=batch.common_labels,
                external_url=batch.external_url,
                started_at=min(s.starts_at for s in new_signals),
                priority=priority_of(severity),
                correlating=self.hold_for_storms,
            )
        except DuplicateKey:
            # another worker opened it between our read and our insert
            found = await self.store.open_incident_state(batch.group_id)
            if found is None:
                raise
            return found
        result.incident_created = True
        log.info("incident %s opened for %s", incident.id, batch.group_key)
        return incident

    async def _settle(
        self,
        incident_id: str,
        batch: SignalBatch,
        known: IncidentState | None,
        grown: Sequence[Signal],
        firing: int | None,
        added: int,
    ) -> bool:
        """Grow the incident by `grown` (new episodes) and judge it: record its firing count,
        or resolve it when nothing fires any more. True when this resolved it."""
        if firing is None:
            firing = await self.store.count_firing(incident_id)
        if grown and known is not None:
            await self._grow_incident(known, grown, added, firing if firing > 0 else None)
            if firing > 0:
                return False
        return await self._maybe_resolve(incident_id, batch, firing=firing, known=known)

    async def close_episodes(self, episodes: Sequence[Episode], resolved_by: str) -> int:
        """Close firing episodes the source no longer reports; resolve incidents left empty."""
        closed = 0
        touched: set[str] = set()
        for episode in episodes:
            if await self.store.resolve_episode(
                episode.episode_key, utcnow(), episode.annotations, resolved_by
            ):
                closed += 1
                touched.add(episode.incident_id)
        for incident_id in sorted(touched):
            await self._maybe_resolve(incident_id, None, resolved_by)
        return closed

    async def _grow_incident(
        self, incident: IncidentState, signals: Sequence[Signal], added: int, firing: int | None
    ) -> None:
        names, name_count = await self._grown(
            incident.id,
            "alertname",
            incident.alertnames,
            incident.alertname_count,
            {s.alertname for s in signals if s.alertname},
        )
        instances, instance_count = await self._grown(
            incident.id,
            "instance",
            incident.instances,
            incident.instance_count,
            {s.instance for s in signals if s.instance},
        )
        # the title follows the incident as it grows (counts are exact, names the first few)
        all_names = sorted(set(incident.alertnames) | set(names))
        all_instances = sorted(set(incident.instances) | set(instances))
        title = title_of(all_names, name_count, all_instances, instance_count, incident.key)
        severity = _max_severity(signals, incident.severity)
        # new alertnames or instances change the story: analyse again
        grew = name_count > max(incident.alertname_count, len(incident.alertnames)) or (
            instance_count > max(incident.instance_count, len(incident.instances))
        )
        await self.store.grow_incident(
            incident.id,
            added=added,
            severity=severity,
            title=title,
            names=names,
            name_count=name_count,
            instances=instances,
            instance_count=instance_count,
            priority=priority_of(severity),
            needs_analysis=grew,
            firing=firing,
        )
        if grew:
            for listener in self.analysis_listeners:
                listener()

    async def _severity_changed(self, incident_id: str, severity: Severity) -> None:
        """A repeat raised (or lowered) an episode's severity: the incident takes the highest,
        and a rise is notified, so a channel routed only for the new level gets its page."""
        incident = await self.store.incident_state(incident_id)
        if incident is None or incident.status is not Status.FIRING:
            return
        if severity.rank <= incident.severity.rank:
            return
        await self.store.raise_incident_severity(incident_id, severity.value)

    async def _grown(
        self, incident_id: str, field: str, kept: list[str], count: int, seen: set[str]
    ) -> tuple[list[str], int]:
        """(values to add to the capped array, the exact distinct count after this batch).

        While the array holds every value it is the count; once it is full the count comes
        from the episodes (already inserted), so it stays exact without storing every value.
        """
        new = sorted(seen - set(kept))
        count = max(count, len(kept))  # incidents stored before the counts existed
        if count == len(kept) and len(kept) + len(new) <= MAX_NAMES:
            return new, len(kept) + len(new)
        if not new:
            return [], count
        total = len(await self.store.distinct_in_incident(incident_id, field))
        return new[: max(0, MAX_NAMES - len(kept))], max(count, total)

    async def _maybe_resolve(
        self,
        incident_id: str,
        batch: SignalBatch | None,
        resolved_by: str = "",
        firing: int | None = None,
        known: IncidentState | None = None,
    ) -> bool:
        """Record the firing count, or resolve the incident when nothing fires. `firing` and
        `known` (the open incident as read at the start of the batch) save a read each."""
        if firing is None:
            firing = await self.store.count_firing(incident_id)
        incident = known or await self.store.incident_state(incident_id)
        if incident is None or incident.status is not Status.FIRING:
            return False
        if firing > 0:
            if firing != incident.firing_count:
                await self.store.set_firing_count(incident_id, firing)
            return False
        resolved_at = (_latest_end(batch.signals) if batch else None) or utcnow()
        by = resolved_by or (batch.source.value if batch else "receiver")
        resolved = await self.store.resolve_incident_state(incident, resolved_at, by)
        if resolved:
            log.info("incident %s resolved", incident_id)
        return resolved


STORM_PRIORITY = 100  # above every severity: one storm analysis serves all its members


def priority_of(severity: str) -> int:
    """Analysis priority of an incident of `severity` (critical highest)."""
    return Severity.parse(severity).rank


def _changed_fields(signal: Signal, current: Episode) -> dict[str, Any]:
    """What a repeat of a firing episode changes: its annotations (description, `$value`),
    value, links and Grafana values; the severity too when the sender's fingerprint does not
    cover it. Empty for a plain repeat."""
    fresh: dict[str, Any] = {
        "annotations": signal.annotations,
        "reason": signal.reason,
        "generator_url": signal.generator_url,
        "links": signal.links,
        "values": signal.values,
        "severity": signal.severity.value,
    }
    if signal.value is not None:  # a repeat without a value keeps the one it had
        fresh["value"] = signal.value
    return {k: v for k, v in fresh.items() if getattr(current, k) != v}


def _incident_of(keys: Sequence[str], known: dict[str, Episode]) -> str:
    """The incident of a batch that added no episode: that of its firing episodes (the open
    one), else of any it names."""
    mentioned = [known[k] for k in keys if k in known]
    firing = [e for e in mentioned if e.status is Status.FIRING]
    return (firing or mentioned)[0].incident_id if mentioned else ""


def _latest_end(signals: Sequence[Signal]) -> datetime | None:
    ends = [s.ends_at for s in signals if s.ends_at is not None]
    return max(ends) if ends else None
