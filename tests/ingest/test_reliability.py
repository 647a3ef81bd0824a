"""Reconciler, Watchdog dead man's switch and backpressure, against real components."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx

from receiver.store.embedded import EmbeddedStore
from tests.support.payloads import alert, webhook
from tests.support.prom import alertmanager
from tests.support.service import TOKEN, make_settings, serve


def _am_alert(name: str, starts: str | None = None, ends: str | None = None) -> dict[str, Any]:
    body: dict[str, Any] = {"labels": {"alertname": name, "instance": "db-1", "severity": "high"}}
    if starts:
        body["startsAt"] = starts
    if ends:
        body["endsAt"] = ends
    return body


async def test_reconciler_round_trip(embedded_store: EmbeddedStore, tmp_path: Path) -> None:
    """Silenced-then-resolved alert is closed by the reconciler (resolved_by), the other stays."""
    from tests.support.procs import free_port

    port = free_port()
    am_url = f"http://127.0.0.1:{port}"
    settings = make_settings(
        embedded_store.uri,
        tmp_path,
        reconcile_interval=0.3,
        reconcile_grace_seconds=0,
        alertmanager_urls=am_url,
    )
    async with serve(settings) as svc:
        with alertmanager(
            tmp_path / "am", svc.webhook, token=TOKEN, group_by=("instance",), port=port
        ):
            async with httpx.AsyncClient(base_url=am_url, timeout=10) as am:
                assert (
                    await am.post("/api/v2/alerts", json=[_am_alert("A"), _am_alert("B")])
                ).is_success
                body = await svc.wait_for(
                    "/api/v1/incidents",
                    lambda b: b["total"] == 1 and b["incidents"][0]["firing_count"] == 2,
                )
                incident_id = body["incidents"][0]["id"]
                now = datetime.now(UTC)
                silence = {
                    "matchers": [
                        {"name": "alertname", "value": "A", "isRegex": False, "isEqual": True}
                    ],
                    "startsAt": now.isoformat(),
                    "endsAt": (now + timedelta(hours=1)).isoformat(),
                    "createdBy": "test",
                    "comment": "maintenance",
                }
                assert (await am.post("/api/v2/silences", json=silence)).is_success
                held = {
                    a["labels"]["alertname"]: a["startsAt"]
                    for a in (await am.get("/api/v2/alerts")).json()
                }
                resolve_a = _am_alert("A", starts=held["A"], ends=datetime.now(UTC).isoformat())
                assert (await am.post("/api/v2/alerts", json=[resolve_a])).is_success
                detail = await svc.wait_for(
                    f"/api/v1/incidents/{incident_id}",
                    lambda b: (
                        {e["alertname"]: e["status"] for e in b["episodes"]}.get("A") == "resolved"
                    ),
                )
                episodes = {e["alertname"]: e for e in detail["episodes"]}
                assert episodes["A"]["resolved_by"] == "reconciler"
                assert episodes["B"]["status"] == "firing"
                assert detail["status"] == "firing"


async def test_reconciler_closes_nothing_when_alertmanager_unreachable(
    embedded_store: EmbeddedStore, tmp_path: Path
) -> None:
    """With the only Alertmanager unreachable, open incidents stay open."""
    settings = make_settings(
        embedded_store.uri,
        tmp_path,
        reconcile_interval=0.2,
        reconcile_grace_seconds=0,
        alertmanager_urls="http://127.0.0.1:9",
    )
    async with serve(settings) as svc:
        await svc.post_alerts(webhook([alert("Kept", "web-1")]))
        await svc.settled()
        for _ in range(10):
            text = (await svc.client.get(f"{svc.url}/metrics")).text
            if 'reconciler_errors_total{reason="alertmanager"} 2.0' in text:
                break
            await asyncio.sleep(0.2)
        else:
            raise AssertionError("reconciler never tried")
        body = await svc.get("/api/v1/incidents")
        assert [i["status"] for i in body["incidents"]] == ["firing"]


async def test_watchdog_is_a_heartbeat_and_its_absence_pages(
    embedded_store: EmbeddedStore, tmp_path: Path
) -> None:
    """Watchdog is no incident; its absence raises AlertingPipelineDown; its return resolves."""
    settings = make_settings(embedded_store.uri, tmp_path, watchdog_timeout_seconds=1.0)
    async with serve(settings) as svc:
        beat = webhook([alert("Watchdog", "", severity="none")], group="wd")
        assert (await svc.post_alerts(beat)).status_code == 200
        await svc.settled()
        listed = (await svc.get("/api/v1/incidents"))["incidents"]
        assert not any("Watchdog" in i["alertnames"] for i in listed)
        assert (await svc.get("/anomalies"))["total"] <= 1  # at most AlertingPipelineDown
        body = await svc.wait_for(
            "/api/v1/incidents",
            lambda b: any("AlertingPipelineDown" in i["alertnames"] for i in b["incidents"]),
            within=15,
        )
        [down] = body["incidents"]
        assert down["severity"] == "critical"
        assert down["source"] == "receiver"
        assert down["status"] == "firing"
        # Alertmanager's next repeat is byte-identical: a duplicate delivery, yet a heartbeat
        resp = await svc.post_alerts(beat)
        assert resp.json()["status"] == "duplicate"
        await svc.wait_for(
            f"/api/v1/incidents/{down['id']}", lambda b: b["status"] == "resolved", within=15
        )
        assert (await svc.get("/api/v1/incidents"))["total"] == 1


async def test_backpressure_answers_503_and_readyz_says_so(tmp_path: Path) -> None:
    """With the store stalled and the bound reached, the webhook sheds load with 503 at once."""
    async with EmbeddedStore(tmp_path / "stalled") as store:
        settings = make_settings(
            store.uri, tmp_path, store_timeout_seconds=3.0, max_pending_deliveries=2
        )
        async with serve(settings) as svc:
            await store.stop()
            posts = [
                svc.post_alerts(webhook([alert("Load", f"h{i}")], group=f"g{i}")) for i in range(8)
            ]
            ready_probe = asyncio.create_task(_readyz_during(svc.client, f"{svc.url}/readyz"))
            responses = await asyncio.gather(*posts)
            assert {r.status_code for r in responses} == {503}
            assert any("waiting for the store" in r.json()["detail"] for r in responses)
            assert await ready_probe == 503


async def _readyz_during(client: httpx.AsyncClient, url: str) -> int:
    await asyncio.sleep(0.3)
    return (await client.get(url)).status_code
