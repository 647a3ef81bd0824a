"""Repeats on the real store through the processor: a repeat with changed content updates its
episode without a new notification (unless the severity rose), an alert listed twice in a batch
counts once, the title follows the incident as it grows, and legacy-keyed incidents migrate."""

from __future__ import annotations

import copy
from datetime import UTC, datetime
from typing import Any

from receiver.domain import Episode, Source, Status
from receiver.ingest.migrate import migrate_groups
from receiver.ingest.normalise import delivery_key, fingerprint
from receiver.ingest.processor import SignalProcessor
from receiver.ingest.senders import parse_payload
from receiver.ingest.worker import batch_from
from receiver.store.documents import Incident
from receiver.store.repo import Store
from tests.support.payloads import alert, resolved, webhook


async def _apply(store: Store, body: dict[str, Any]) -> Incident:
    result = await SignalProcessor(store).apply(batch_from(parse_payload(body)))
    incident = await store.get_incident(result.incident_id)
    assert incident is not None
    return incident


async def _quiet(store: Store, incident: Incident) -> None:
    """As if the outbox had planned the opening page."""
    await store.update_incident(incident.id, {"$set": {"needs_notification": False}})


async def test_changed_annotations_update_the_episode_without_a_page(store: Store) -> None:
    """A repeat whose description and value changed updates the episode, not the pager."""
    first = alert("QueueBacklog", "worker-1")
    first["annotations"] |= {"description": "412 jobs waiting", "value": "412"}
    repeat = copy.deepcopy(first)
    repeat["annotations"] |= {"description": "1904 jobs waiting", "value": "1904"}
    assert delivery_key(parse_payload(webhook([first]))) != delivery_key(
        parse_payload(webhook([repeat]))
    )
    incident = await _apply(store, webhook([first]))
    await _quiet(store, incident)
    await _apply(store, webhook([repeat]))
    after = await store.get_incident(str(incident.id))
    assert after is not None
    assert (after.needs_notification, after.episode_count) == (False, 1)
    [episode] = await store.episodes_of(str(incident.id))
    assert episode.value == 1904.0
    assert episode.annotations["description"] == "1904 jobs waiting"


async def test_a_raised_severity_is_notified(store: Store) -> None:
    """A repeat (same sender fingerprint) whose severity rose raises the incident and pages."""
    low = alert("QueueBacklog", "worker-2", severity="warning")
    high = copy.deepcopy(low)
    high["labels"]["severity"] = "critical"  # the fingerprint field is the sender's, unchanged
    incident = await _apply(store, webhook([low]))
    await _quiet(store, incident)
    await _apply(store, webhook([high]))
    after = await store.get_incident(str(incident.id))
    assert after is not None
    assert (after.severity, after.needs_notification) == ("critical", True)


async def test_an_alert_twice_in_one_batch_counts_once(store: Store) -> None:
    """15 copies each of two alerts in one delivery are 2 episodes, episode_count 2."""
    a, b = alert("Dup", "h-1"), alert("Dup", "h-2")
    incident = await _apply(store, webhook([a, b] * 15))
    assert incident.episode_count == 2
    assert len(await store.episodes_of(str(incident.id))) == 2


async def test_title_follows_the_incident(store: Store) -> None:
    """Instances and alertnames joining later show in the title with exact counts."""
    incident = await _apply(
        store, webhook([alert("InstanceDown", "a"), alert("InstanceDown", "b")])
    )
    assert incident.title == "InstanceDown on 2 instances"
    await _apply(store, webhook([alert("InstanceDown", "c")]))
    names = ["DiskFull", "HighCPU", "HighMemory"]
    grown = await _apply(store, webhook([alert(n, "c") for n in names]))
    assert grown.id == incident.id
    assert grown.title == "DiskFull, HighCPU, HighMemory (+1 more) on 3 instances"


async def test_legacy_incident_is_migrated_and_resolved_by_its_group(store: Store) -> None:
    """An incident and episode keyed the pre-group way are re-keyed; the resolve closes them."""
    firing = alert("LegacyDown", "old-1")
    group_key = '{}:{group="g1"}'
    legacy = Incident(key=group_key, open_key=group_key, source="alertmanager", receiver="monitor")
    await store.insert_incident(legacy)
    starts = datetime(2026, 11, 28, 10, tzinfo=UTC)
    fp = fingerprint(firing["labels"])
    episode = Episode(
        episode_key=f"alertmanager:{fp}:{starts.isoformat(timespec='milliseconds')}",
        source=Source.ALERTMANAGER,
        fingerprint=fp,
        status=Status.FIRING,
        starts_at=starts,
        incident_id=str(legacy.id),
        group_key=group_key,
    )
    await store.insert_episodes([episode])
    assert await migrate_groups() == (1, 1)
    assert await migrate_groups() == (0, 0)  # idempotent
    result = await SignalProcessor(store).apply(
        batch_from(parse_payload(webhook([resolved(firing)])))
    )
    assert result.resolved_episodes == 1
    assert result.incident_resolved
    after = await store.get_incident(str(legacy.id))
    assert after is not None
    assert after.status == "resolved"
