"""Fault tests: the store dies during a burst; two clustered Alertmanagers post the same alerts
(one incident, one email per event).

Real processes on loopback only: Alertmanager (Debian), the embedded store, the service, an SMTP
server.
"""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx

from receiver.store.embedded import EmbeddedStore
from tests.notify.outbox_helpers import eventually
from tests.support.payloads import postable_alerts
from tests.support.procs import free_port
from tests.support.prom import alertmanager
from tests.support.service import TOKEN, make_settings, serve
from tests.support.smtp import email_event, smtp_server


def _alerts(group: int, size: int) -> list[dict[str, Any]]:
    return [
        {
            "labels": {
                "alertname": f"Burst{group}",
                "instance": f"node-{group}-{i}:9100",
                "severity": "high",
            },
            "annotations": {"summary": f"burst {group}/{i}"},
        }
        for i in range(size)
    ]


async def test_store_killed_during_burst_loses_nothing(tmp_path: Path) -> None:
    """Store down mid-burst: 503s make Alertmanager retry; afterwards every alert is stored once."""
    store = EmbeddedStore(tmp_path / "store")
    await store.start()
    try:
        settings = make_settings(store.uri, tmp_path, store_timeout_seconds=1.0)
        async with serve(settings) as svc:
            with alertmanager(tmp_path / "am", svc.webhook, token=TOKEN) as am:
                async with httpx.AsyncClient(base_url=am.url, timeout=10) as client:
                    for group in range(10):
                        await client.post("/api/v2/alerts", json=_alerts(group, 5))
                        if group == 4:
                            await store.stop()  # half the burst meets a dead store
                    held = (await client.get("/api/v2/alerts")).json()
                    assert len(held) == 50
                    await asyncio.sleep(2.0)  # Alertmanager keeps retrying against 503s
                    await store.restart()
                    await svc.wait_for(
                        "/anomalies", lambda b: b["total"] >= 50, within=60, limit=500
                    )
                    await svc.settled()
                    episodes = (await svc.get("/anomalies", limit=500))["anomalies"]
                    fingerprints = [e["fingerprint"] for e in episodes]
                    assert len(fingerprints) == len(set(fingerprints)) == 50
                    assert {a["fingerprint"] for a in held} == set(fingerprints)
                    incidents = await svc.get("/api/v1/incidents", limit=100)
                    assert incidents["total"] == 10
                    text = (await svc.client.get(f"{svc.url}/metrics")).text
                    assert 'webhook_requests_total{outcome="store_unavailable"}' in text
    finally:
        await store.stop()


async def test_clustered_alertmanagers_make_one_incident(
    embedded_store: EmbeddedStore, tmp_path: Path
) -> None:
    """Two gossiping Alertmanagers receiving the same alerts give one incident, one episode set,
    one firing email and, once the alerts are resolved at both, one resolved email."""
    with smtp_server() as smtp:
        settings = make_settings(
            embedded_store.uri,
            tmp_path,
            smtp_host="127.0.0.1",
            smtp_port=smtp.port,
            smtp_from="monitor@example.com",
            smtp_to="oncall@example.com",
            notify_rca_wait_seconds=30,  # the offline analysis lands well before
            notify_poll_seconds=0.1,
        )
        async with serve(settings) as svc:
            p1, p2 = free_port(), free_port()
            with (
                alertmanager(
                    tmp_path / "am1", svc.webhook, token=TOKEN, cluster_port=p1, peers=[p2]
                ) as a,
                alertmanager(
                    tmp_path / "am2", svc.webhook, token=TOKEN, cluster_port=p2, peers=[p1]
                ) as b,
            ):
                async with httpx.AsyncClient(timeout=10) as client:
                    for _ in range(50):  # wait until the pair has formed
                        status = (await client.get(f"{a.url}/api/v2/status")).json()
                        if len(status["cluster"].get("peers") or []) == 2:
                            break
                        await asyncio.sleep(0.1)
                    else:
                        raise AssertionError("Alertmanager cluster did not form")
                    started = datetime.now(UTC) - timedelta(minutes=1)
                    alerts = postable_alerts("Burst0", 3, started)
                    for url in (a.url, b.url):
                        assert (await client.post(f"{url}/api/v2/alerts", json=alerts)).is_success
                    await svc.wait_for("/anomalies", lambda body: body["total"] == 3)
                    await eventually(lambda: smtp.messages, within=30, what="the firing email")
                    await asyncio.sleep(3.0)  # both instances' flushes (and any HA twin) arrived
                    await svc.settled()
                    incidents = await svc.get("/api/v1/incidents")
                    assert incidents["total"] == 1
                    [incident] = incidents["incidents"]
                    assert incident["episode_count"] == 3
                    assert (await svc.get("/anomalies"))["total"] == 3
                    deliveries = await svc.get("/api/v1/deliveries")
                    assert deliveries["total"] >= 1
                    assert [email_event(m) for m in smtp.messages] == ["firing"]

                    # Resolved at both instances, as Prometheus would tell each of them.
                    ended = datetime.now(UTC) - timedelta(seconds=1)
                    resolved = postable_alerts("Burst0", 3, started, ends=ended)
                    for url in (a.url, b.url):
                        answer = await client.post(f"{url}/api/v2/alerts", json=resolved)
                        assert answer.is_success
                    await svc.wait_for(
                        "/api/v1/incidents",
                        lambda body: body["incidents"][0]["status"] == "resolved",
                    )
                    await eventually(
                        lambda: len(smtp.messages) >= 2, within=30, what="the resolved email"
                    )
                    await asyncio.sleep(3.0)  # a second copy of anything would arrive now
                    await svc.settled()
                    incidents = await svc.get("/api/v1/incidents")
                    rows = await svc.get("/api/v1/notifications")
    assert incidents["total"] == 1
    assert [email_event(m) for m in smtp.messages] == ["firing", "resolved"]
    assert {str(m.message["X-Incident-Id"]) for m in smtp.messages} == {incident["id"]}
    assert sorted((r["event"], r["status"]) for r in rows["notifications"]) == [
        ("firing", "sent"),
        ("resolved", "sent"),
    ]
