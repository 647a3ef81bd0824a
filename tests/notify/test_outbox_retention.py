"""Retention and the outbox: an incident open longer than the notifications' TTL keeps its
sent rows, so its resolve sends the resolved message only, not its page a second time."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path
from typing import Any

from prometheus_client import CollectorRegistry
from pymongo import AsyncMongoClient

from receiver.retention import Limits, Retention, RetentionMetrics
from receiver.settings import Settings
from receiver.store.collections import Collections
from receiver.store.documents import utcnow
from receiver.store.embedded import EmbeddedStore
from receiver.store.repo import Store
from tests.notify.outbox_helpers import notify_settings, rows, rows_where
from tests.support.payloads import alert, resolved, webhook
from tests.support.service import serve
from tests.support.smtp import email_event, smtp_server

DONE = alert("DiskFull", "node-1:9100", severity="high")
OPEN = alert("HighCPU", "node-2:9100", severity="high")


async def _retention_40_days_later(settings: Settings) -> dict[str, int]:
    """One retention pass with a 30-day TTL on notifications, as if run 40 days from now."""
    assert settings.mongo_uri is not None
    # A client of our own, not `Store.connect`: that would re-bind the service's Beanie models.
    client: AsyncMongoClient[dict[str, Any]] = AsyncMongoClient(
        settings.mongo_uri.get_secret_value(), tz_aware=True
    )
    store = Store(client, settings.mongo_db, "embedded")
    try:
        limits = Limits.from_settings(Settings(_env_file=None, retention_days="notifications=30"))
        retention = Retention(Collections(store), limits, RetentionMetrics(CollectorRegistry()), 0)
        return await retention.run_once(now=utcnow() + timedelta(days=40))
    finally:
        await store.close()


async def test_open_incident_past_retention_is_not_paged_again_on_resolve(
    embedded_store: EmbeddedStore, tmp_path: Path
) -> None:
    """A TTL pass removes a finished incident's rows but not an open one's; resolving the open
    incident then sends one resolved email and no second firing email."""
    with smtp_server() as smtp:
        settings = notify_settings(
            embedded_store.uri, tmp_path, smtp=smtp, notify_rca_wait_seconds=0
        )
        async with serve(settings) as service:
            assert (await service.post_alerts(webhook([DONE], group="done"))).status_code == 200
            assert (await service.post_alerts(webhook([OPEN], group="open"))).status_code == 200
            await rows_where(service, lambda found: len(found) == 2, event="firing", status="sent")
            done = await service.post_alerts(webhook([resolved(DONE)], group="done"))
            assert done.status_code == 200
            await rows_where(service, lambda f: len(f) == 1, event="resolved", status="sent")

            deleted = await _retention_40_days_later(settings)
            # the finished incident's firing and resolved rows went; the open one's page stayed
            assert deleted.get("notifications") == 2
            [kept] = await rows(service, event="firing")
            assert kept["status"] == "sent"

            again = await service.post_alerts(webhook([resolved(OPEN)], group="open"))
            assert again.status_code == 200
            # the resolve waits for any firing row of its channel, so a re-planned page would
            # have been sent before it
            await rows_where(
                service,
                lambda found: len(found) == 1 and found[0]["incident_id"] == kept["incident_id"],
                event="resolved",
                status="sent",
            )
            firing_rows = await rows(service, event="firing")

    assert [r["key"] for r in firing_rows] == [kept["key"]]
    events = [email_event(m) for m in smtp.messages]
    assert sorted(events) == ["firing", "firing", "resolved", "resolved"]
