"""End to end: a real Alertmanager (Debian package) posting to the service under test."""

from __future__ import annotations

import asyncio
from collections import defaultdict
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest

from receiver.store.embedded import EmbeddedStore
from tests.notify.outbox_helpers import eventually
from tests.support.payloads import postable_alerts
from tests.support.prom import alertmanager
from tests.support.service import TOKEN, Running, make_settings, serve
from tests.support.smtp import email_event, smtp_server


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


# One alert, two receivers: the first route lets the alert go on (`continue: true`) to the next.
SPLIT_ROUTES: dict[str, tuple[list[dict[str, object]], set[tuple[str, str]]]] = {
    "group_by_differs": (
        [
            {"receiver": "monitor", "group_by": ["alertname"], "continue": True},
            {"receiver": "pager", "group_by": ["instance"]},
        ],
        {
            ("monitor", '{}/{}:{alertname="Split"}'),
            ("pager", '{}/{}:{instance="split-0:9100"}'),
        },
    ),
    # Alertmanager's groupKey is the route's matchers and the group labels, not its receiver:
    # two matcher-less routes grouping alike give both receivers the same groupKey.
    "group_key_shared": (
        [
            {"receiver": "monitor", "continue": True},
            {"receiver": "pager"},
        ],
        {
            ("monitor", '{}/{}:{alertname="Split"}'),
            ("pager", '{}/{}:{alertname="Split"}'),
        },
    ),
}


@pytest.mark.parametrize("case", sorted(SPLIT_ROUTES))
async def test_one_alert_routed_to_two_groups_resolves_in_each(
    embedded_store: EmbeddedStore, tmp_path: Path, case: str
) -> None:
    """One alert that Alertmanager routes to two receivers is two incidents, each with one
    firing and one resolved email of its own."""
    routes, groups = SPLIT_ROUTES[case]
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
            with alertmanager(
                tmp_path / "am", svc.webhook, token=TOKEN, routes=routes, resolve_timeout="30s"
            ) as am:
                async with httpx.AsyncClient(base_url=am.url, timeout=10) as client:
                    started = datetime.now(UTC) - timedelta(seconds=5)
                    alert = postable_alerts("Split", 1, started)
                    assert (await client.post("/api/v2/alerts", json=alert)).is_success
                    body = await svc.wait_for(
                        "/api/v1/incidents",
                        lambda b: (
                            b["total"] == 2 and {i["status"] for i in b["incidents"]} == {"firing"}
                        ),
                    )
                    firing = {(i["receiver"], i["key"]): i["id"] for i in body["incidents"]}
                    assert set(firing) == groups

                    ended = postable_alerts("Split", 1, started, ends=datetime.now(UTC))
                    assert (await client.post("/api/v2/alerts", json=ended)).is_success
                    body = await svc.wait_for(
                        "/api/v1/incidents",
                        lambda b: {i["status"] for i in b["incidents"]} == {"resolved"},
                    )
                    await eventually(lambda: len(smtp.messages) >= 4, within=30, what="four emails")
                    await asyncio.sleep(2.0)  # a repeat of any notification would arrive now
                    await svc.settled()
                    body = await svc.get("/api/v1/incidents")

    assert {(i["receiver"], i["key"]): i["id"] for i in body["incidents"]} == firing
    for incident in body["incidents"]:
        assert incident["resolved_by"] == "alertmanager"
        assert incident["episode_count"] == 1
    events: dict[str, list[str]] = defaultdict(list)
    for mail in smtp.messages:
        events[str(mail.message["X-Incident-Id"])].append(email_event(mail))
    assert dict(events) == {iid: ["firing", "resolved"] for iid in firing.values()}
