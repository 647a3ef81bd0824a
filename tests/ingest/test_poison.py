"""Poison isolation: one bad delivery or incident never stops the stage that handles it.

The documents are planted straight into the store (as an older version, a replica with weaker
validation or a hand edit would leave them); the service's own code path runs untouched.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import pytest
from pymongo import AsyncMongoClient

from receiver.store.embedded import EmbeddedStore
from tests.support.payloads import alert, webhook
from tests.support.service import Running, make_settings, serve

ADMIN = "admin-token-0123456789"


@pytest.fixture
async def svc(embedded_store: EmbeddedStore, tmp_path: Path) -> AsyncIterator[Running]:
    settings = make_settings(
        embedded_store.uri,
        tmp_path,
        retry_base_seconds=0.05,
        retry_max_seconds=0.2,
        retry_max_attempts=3,
        enrich_poll_seconds=0.2,
        enrich_settle_seconds=0,
        admin_token=ADMIN,
        api_token="read-token-0123456789",
    )
    async with serve(settings) as running:
        running.client.headers["Authorization"] = f"Bearer {ADMIN}"
        yield running


async def _db(svc: Running) -> Any:
    client: AsyncMongoClient[dict[str, Any]] = AsyncMongoClient(
        svc.settings.mongo_uri.get_secret_value() if svc.settings.mongo_uri else ""
    )
    return client, client[svc.settings.mongo_db]


async def _plant_delivery(svc: Running, raw: str, key: str) -> None:
    client, db = await _db(svc)
    try:
        await db["deliveries"].insert_one(
            {
                "delivery_key": key,
                "received_at": datetime.now(UTC),
                "raw_json": raw,
                "processed": False,
                "attempts": 0,
                "next_attempt_ts": 0.0,
            }
        )
    finally:
        await client.close()


async def _post(svc: Running, payload: dict[str, Any]) -> httpx.Response:
    return await svc.client.post(
        svc.webhook,
        content=json.dumps(payload).encode(),
        headers={
            "Authorization": "Bearer test-token-0123456789",
            "Content-Type": "application/json",
        },
    )


def _poison_payload() -> str:
    bad = webhook([alert("Poison", "p1", starts="0001-01-01T00:00:00+01:00")], group="poison")
    return json.dumps(bad)


async def test_poison_delivery_is_quarantined_and_later_alerts_still_become_incidents(
    svc: Running,
) -> None:
    """A stored delivery that fails every time is retried, quarantined, and blocks nothing."""
    await _plant_delivery(svc, _poison_payload(), "poison-1")
    resp = await _post(svc, webhook([alert("Healthy", "h1")], group="healthy"))
    assert resp.status_code == 200, resp.text
    body = await svc.wait_for("/api/v1/incidents", lambda b: b["total"] == 1)
    assert body["incidents"][0]["alertnames"] == ["Healthy"]
    failed = await svc.wait_for(
        "/api/v1/deliveries", lambda b: b["total"] == 1, status="failed", within=30
    )
    row = failed["deliveries"][0]
    assert row["state"] == "failed"
    assert row["attempts"] == 3
    assert "startsAt" in row["last_error"]
    stats = await svc.get("/stats")
    assert stats["quarantined"]["deliveries"] == 1
    console = (await svc.client.get(f"{svc.url}/ui")).text
    assert "Quarantined after their last attempt" in console
    assert "1 deliveries" in console
    metrics = (await svc.client.get(f"{svc.url}/metrics")).text
    assert 'pipeline_item_errors_total{outcome="quarantined",stage="delivery"} 1.0' in metrics
    assert 'pipeline_item_errors_total{outcome="retry",stage="delivery"} 2.0' in metrics


async def test_operator_retries_a_quarantined_delivery(svc: Running) -> None:
    """POST .../retry (admin) puts it back with fresh attempts; a reader may not."""
    await _plant_delivery(svc, _poison_payload(), "poison-2")
    failed = await svc.wait_for(
        "/api/v1/deliveries", lambda b: b["total"] == 1, status="failed", within=30
    )
    delivery_id = failed["deliveries"][0]["id"]
    as_reader = await svc.client.post(
        f"{svc.url}/api/v1/deliveries/{delivery_id}/retry",
        headers={"Authorization": "Bearer read-token-0123456789"},
    )
    assert as_reader.status_code == 403
    resp = await svc.client.post(f"{svc.url}/api/v1/deliveries/{delivery_id}/retry")
    assert resp.status_code == 202, resp.text
    assert resp.json()["state"] == "pending"
    # still poison: it runs its attempts again and ends quarantined again
    again = await svc.wait_for(
        "/api/v1/deliveries",
        lambda b: b["total"] == 1 and b["deliveries"][0]["attempts"] == 3,
        status="failed",
        within=30,
    )
    assert again["deliveries"][0]["id"] == delivery_id
    missing = await svc.client.post(f"{svc.url}/api/v1/deliveries/{'0' * 24}/retry")
    assert missing.status_code == 404


async def test_malformed_delivery_document_is_quarantined(svc: Running) -> None:
    """A document that is not a delivery at all does not stop the worker's reads."""
    client, db = await _db(svc)
    try:
        await db["deliveries"].insert_one(
            {
                "delivery_key": "junk",
                "processed": False,
                "received_at": "yesterday",
                "attempts": "x",
            }
        )
    finally:
        await client.close()
    resp = await _post(svc, webhook([alert("AfterJunk", "h2")], group="after-junk"))
    assert resp.status_code == 200
    await svc.wait_for("/api/v1/incidents", lambda b: b["total"] == 1)
    await svc.wait_for("/api/v1/deliveries", lambda b: b["total"] == 1, status="failed")


async def test_malformed_incident_is_quarantined_by_enrichment(svc: Running) -> None:
    """An incident document the enrichment stage cannot read is set aside; others are analysed."""
    client, db = await _db(svc)
    try:
        await db["incidents"].insert_one(
            {
                "key": "broken",
                "open_key": "broken",
                "source": "alertmanager",
                "needs_analysis": True,
                "alertnames": "not-a-list",
                "started_at": datetime.now(UTC),
            }
        )
    finally:
        await client.close()
    resp = await _post(svc, webhook([alert("Analysed", "h3")], group="analysed"))
    assert resp.status_code == 200
    body = await svc.wait_for(
        "/api/v1/incidents",
        lambda b: any(i.get("analysis_id") for i in b["incidents"]),
        within=30,
    )
    assert [i["title"] for i in body["incidents"] if i.get("analysis_id")] == ["Analysed on h3"]
    stats = await svc.wait_for("/stats", lambda b: b["quarantined"]["analyses"] == 1)
    assert stats["quarantined"]["analyses"] == 1


async def test_go_zero_end_time_in_any_offset_means_unset(svc: Running) -> None:
    """endsAt at Go's zero time, even with an offset, is accepted as "not resolved yet"."""
    payload = webhook([alert("ZeroEnd", "z1", ends="0001-01-01T00:00:00+01:00")], group="zero")
    resp = await _post(svc, payload)
    assert resp.status_code == 200, resp.text
    body = await svc.wait_for("/anomalies", lambda b: b["total"] == 1)
    assert body["anomalies"][0]["ends_at"] is None
    assert body["anomalies"][0]["status"] == "firing"
