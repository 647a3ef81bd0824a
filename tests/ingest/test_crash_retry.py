"""A delivery applied again after a crash between two of its writes converges: the processor
reads only what it needs, so these pin that the half-written states are still found."""

from __future__ import annotations

from receiver.domain import Status
from receiver.ingest.processor import SignalProcessor
from receiver.ingest.senders import parse_payload
from receiver.ingest.worker import batch_from
from receiver.store.documents import Anomaly, Incident
from receiver.store.repo import Store
from tests.support.payloads import alert, resolved, webhook


async def test_incident_left_without_episodes_takes_them(store: Store) -> None:
    """An open incident a crash left before its first episodes gets them; no second opens."""
    body = webhook([alert("DiskFull", "db-1"), alert("DiskFull", "db-2")], group="crash-open")
    batch = batch_from(parse_payload(body))
    left = await store.create_incident(
        key=batch.group_key,
        open_key=batch.group_id,
        source=batch.source.value,
        severity="high",
        title="DiskFull",
        receiver=batch.receiver,
        group_labels={},
        common_labels={},
        external_url="",
        started_at=batch.signals[0].starts_at,
        priority=0,
        correlating=False,
    )
    result = await SignalProcessor(store).apply(batch)
    assert (result.incident_id, result.incident_created, result.new_episodes) == (left.id, False, 2)
    assert await Incident.find({"key": batch.group_key}).count() == 1
    incident = await store.get_incident(left.id)
    assert incident is not None
    assert (incident.episode_count, incident.firing_count) == (2, 2)
    assert sorted(incident.instances) == ["db-1", "db-2"]


async def test_resolved_episodes_still_resolve_their_incident(store: Store) -> None:
    """Episodes a crash left resolved under a firing incident: the resolve, applied again,
    closes the incident."""
    firing = alert("QueueBacklog", "worker-1")
    processor = SignalProcessor(store)
    opened = await processor.apply(batch_from(parse_payload(webhook([firing], group="crash"))))
    await Anomaly.get_pymongo_collection().update_many(
        {"incident_id": opened.incident_id}, {"$set": {"status": Status.RESOLVED.value}}
    )
    again = await processor.apply(
        batch_from(parse_payload(webhook([resolved(firing)], group="crash")))
    )
    assert (again.resolved_episodes, again.incident_resolved) == (0, True)
    incident = await store.get_incident(opened.incident_id)
    assert incident is not None
    assert incident.status == Status.RESOLVED.value
