"""End to end: a real Alertmanager (Debian package) posting to the service under test."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx

from tests.support.prom import alertmanager
from tests.support.service import TOKEN, Running


def _am_alert(
    name: str, instance: str, ends: datetime | None = None, starts: str | None = None
) -> dict[str, Any]:
    alert: dict[str, Any] = {
        "labels": {"alertname": name, "instance": instance, "severity": "critical", "job": "web"},
        "annotations": {"summary": f"{name} on {instance}"},
        "generatorURL": "http://127.0.0.1:9/graph?g0.expr=up",
    }
    if ends is not None:
        alert["endsAt"] = ends.isoformat()
    if starts is not None:
        alert["startsAt"] = starts
    return alert


async def test_alertmanager_to_incident_and_replays(service: Running, tmp_path: Path) -> None:
    """Alerts pushed to Alertmanager become one incident; resolving closes it; replays no-op."""
    with alertmanager(tmp_path / "am", service.webhook, token=TOKEN) as am:
        async with httpx.AsyncClient(base_url=am.url, timeout=10) as client:
            firing = [_am_alert("BackendDown", f"web-{i}:8080") for i in range(3)]
            assert (await client.post("/api/v2/alerts", json=firing)).status_code == 200

            body = await service.wait_for(
                "/api/v1/incidents",
                lambda b: b["total"] == 1 and b["incidents"][0]["firing_count"] == 3,
            )
            incident = body["incidents"][0]
            assert incident["alertnames"] == ["BackendDown"]
            assert incident["severity"] == "critical"
            assert incident["key"] == '{}:{alertname="BackendDown"}'
            detail = await service.get(f"/api/v1/incidents/{incident['id']}")
            assert len(detail["episodes"]) == 3
            assert {e["status"] for e in detail["episodes"]} == {"firing"}

            # resolve as Prometheus does: same startsAt, endsAt now
            held = (await client.get("/api/v2/alerts")).json()
            starts = {a["labels"]["instance"]: a["startsAt"] for a in held}
            now = datetime.now(UTC)
            ended = [
                _am_alert("BackendDown", inst, ends=now, starts=starts[inst])
                for inst in sorted(starts)
            ]
            assert len(ended) == 3
            assert (await client.post("/api/v2/alerts", json=ended)).status_code == 200
            await service.wait_for(
                f"/api/v1/incidents/{incident['id']}", lambda b: b["status"] == "resolved"
            )

    await service.settled()
    snapshot = (await service.get("/api/v1/incidents"), await service.get("/anomalies"))
    deliveries = (await service.get("/api/v1/deliveries", raw="1"))["deliveries"]
    assert deliveries
    assert all(d["processed"] for d in deliveries)
    for _ in range(2):
        for delivery in deliveries:
            resp = await service.post_alerts(delivery["payload"])
            assert resp.status_code == 200
            assert resp.json()["status"] == "duplicate"
    await service.settled()
    assert (await service.get("/api/v1/incidents"), await service.get("/anomalies")) == snapshot
    again = await service.get("/api/v1/deliveries")
    assert again["total"] == len(deliveries)


async def test_alertmanager_retries_after_503(embedded_store: Any, tmp_path: Path) -> None:
    """With the store down, Alertmanager's delivery gets 503 and is retried until it lands."""
    from receiver.store.embedded import EmbeddedStore
    from tests.support.service import make_settings, serve

    store = EmbeddedStore(tmp_path / "flaky-store")
    await store.start()
    try:
        settings = make_settings(store.uri, tmp_path, store_timeout_seconds=1.0)
        async with serve(settings) as svc:
            await store.stop()
            with alertmanager(tmp_path / "am", svc.webhook, token=TOKEN) as am:
                async with httpx.AsyncClient(base_url=am.url, timeout=10) as client:
                    alert = [_am_alert("Retried", "db-1:5432")]
                    assert (await client.post("/api/v2/alerts", json=alert)).status_code == 200
                    # wait until the service has refused at least one delivery
                    for _ in range(100):
                        text = (await svc.client.get(f"{svc.url}/metrics")).text
                        if 'webhook_requests_total{outcome="store_unavailable"}' in text:
                            break
                        await asyncio.sleep(0.1)
                    else:
                        raise AssertionError("Alertmanager never reached the service")
                    # the store comes back on the same port and data dir
                    await store.restart()
                    body = await svc.wait_for(
                        "/api/v1/incidents", lambda b: b["total"] == 1, within=40
                    )
                    assert body["incidents"][0]["alertnames"] == ["Retried"]
    finally:
        await store.stop()
