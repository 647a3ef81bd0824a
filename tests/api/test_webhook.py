"""POST /api/v1/alerts against the real service and embedded store: statuses and idempotency."""

from __future__ import annotations

import base64
import json
from typing import Any

import pytest

from tests.support.payloads import alert, load, resolved, webhook
from tests.support.service import TOKEN, Running


async def _totals(svc: Running) -> tuple[int, int, int]:
    await svc.settled()
    inc = await svc.get("/api/v1/incidents")
    anomalies = await svc.get("/anomalies")
    text = (await svc.client.get(f"{svc.url}/metrics")).text
    accepted = sum(
        float(ln.split()[-1])
        for ln in text.splitlines()
        if ln.startswith('webhook_requests_total{outcome="accepted"}')
    )
    return inc["total"], anomalies["total"], int(accepted)


def _raw(svc: Running, body: bytes, token: str | None = TOKEN, **headers: str) -> Any:
    hdrs = {"Content-Type": "application/json", **headers}
    if token:
        hdrs["Authorization"] = f"Bearer {token}"
    return svc.client.post(svc.webhook, content=body, headers=hdrs)


def _big_labels() -> bytes:
    p = webhook([alert("Big", "h1")])
    p["alerts"][0]["labels"]["blob"] = "x" * 20_000
    return json.dumps(p).encode()


def _many_alerts() -> bytes:
    alerts = [alert("Storm", f"h{i}") for i in range(10_000)]
    return json.dumps(webhook(alerts)).encode()


def _mutated(**changes: Any) -> bytes:
    p = load("am_payload_firing.json")
    for path, value in changes.items():
        target: Any = p
        parts = path.split("__")
        for part in parts[:-1]:
            target = target[int(part)] if part.isdigit() else target[part]
        if value is _DELETE:
            del target[parts[-1]]
        else:
            target[parts[-1]] = value
    return json.dumps(p).encode()


_DELETE = object()

BAD_INPUT = [
    ("not json", b"this is not json", 400, "malformed_json"),
    ("invalid utf-8", b'{"version": "4", "x": "\xff\xfe"}', 400, "invalid_utf8"),
    ("json array", b"[]", 422, "invalid_payload"),
    ("wrong version", _mutated(version="3"), 422, "version"),
    ("missing alerts", _mutated(alerts=_DELETE), 422, "alerts"),
    ("empty alerts", _mutated(alerts=[]), 422, "alerts"),
    ("alerts wrong type", _mutated(alerts="many"), 422, "alerts"),
    ("startsAt not a time", _mutated(alerts__0__startsAt="yesterday"), 422, "alerts.0.startsAt"),
    ("status unknown", _mutated(alerts__0__status="exploded"), 422, "alerts.0.status"),
    ("labels not strings", _mutated(alerts__0__labels={"a": 1}), 422, "alerts.0.labels.a"),
    ("huge label value", _big_labels(), 422, "alerts.0.labels.blob"),
    ("10k alerts", _many_alerts(), 413, "too_many_alerts"),
]


@pytest.mark.parametrize(
    ("case", "body", "status", "needle"), BAD_INPUT, ids=[c[0] for c in BAD_INPUT]
)
async def test_bad_input_is_refused_and_nothing_stored(
    service: Running, case: str, body: bytes, status: int, needle: str
) -> None:
    """Each bad payload gets its documented status, a message naming the problem, no writes."""
    before = await _totals(service)
    resp = await _raw(service, body)
    assert resp.status_code == status, resp.text
    text = resp.text
    assert needle in text
    assert await _totals(service) == before


async def test_oversized_body_is_413(service: Running) -> None:
    """A body over MAX_BODY_BYTES (default 5 MiB) is refused with 413 before parsing."""
    body = b'{"pad": "' + b"x" * (service.settings.max_body_bytes + 10) + b'"}'
    resp = await _raw(service, body)
    assert resp.status_code == 413
    assert "MAX_BODY_BYTES" in resp.json()["detail"]


@pytest.mark.parametrize(
    "auth",
    [None, "Bearer wrong-token", "Basic " + base64.b64encode(b"am:nope").decode(), "Bearer"],
)
async def test_wrong_credentials_are_401(service: Running, auth: str | None) -> None:
    """Missing or wrong credentials → 401 and nothing stored."""
    before = await _totals(service)
    headers = {"Authorization": auth} if auth else {}
    resp = await service.client.post(
        service.webhook, json=load("am_payload_firing.json"), headers=headers
    )
    assert resp.status_code == 401
    assert await _totals(service) == before


async def test_basic_auth_as_alertmanager_sends_it(embedded_store: Any, tmp_path: Any) -> None:
    """With WEBHOOK_USER/WEBHOOK_PASSWORD set, Basic credentials are accepted."""
    from tests.support.service import make_settings, serve

    settings = make_settings(
        embedded_store.uri,
        tmp_path,
        webhook_token=None,
        webhook_user="am",
        webhook_password="s3cret",
    )
    async with serve(settings) as svc:
        good = base64.b64encode(b"am:s3cret").decode()
        resp = await svc.client.post(
            svc.webhook,
            json=load("am_payload_firing.json"),
            headers={"Authorization": f"Basic {good}"},
        )
        assert resp.status_code == 200
        bad = base64.b64encode(b"am:s3cre").decode()
        resp = await svc.client.post(
            svc.webhook,
            json=load("am_payload_firing.json"),
            headers={"Authorization": f"Basic {bad}"},
        )
        assert resp.status_code == 401


async def test_seed_path_is_accepted(service: Running) -> None:
    """The seed-style path /webhook/alertmanager is the same endpoint."""
    resp = await service.client.post(
        f"{service.url}/webhook/alertmanager",
        json=load("am_payload_firing.json"),
        headers={"Authorization": f"Bearer {TOKEN}"},
    )
    assert resp.status_code == 200
    assert resp.json()["status"] == "accepted"


async def test_unknown_fields_tolerated_and_kept(service: Running) -> None:
    """Fields newer Alertmanagers add are accepted (kept in the stored raw payload)."""
    payload = load("am_payload_firing.json")
    payload["notification_reason"] = "new_alerts"
    payload["alerts"][0]["someFutureField"] = {"x": 1}
    resp = await service.post_alerts(payload)
    assert resp.status_code == 200


async def test_captured_lifecycle_and_replays(service: Running) -> None:
    """firing → partial → resolved: one incident, resolved at the end; replays change nothing."""
    sequence = [
        "am_payload_firing.json",
        "am_payload_partially_resolved.json",
        "am_payload_resolved.json",
    ]
    resp = await service.post_alerts(load(sequence[0]))
    assert resp.json()["status"] == "accepted"
    await service.settled()
    body = await service.get("/api/v1/incidents")
    assert body["total"] == 1
    inc = body["incidents"][0]
    assert inc["status"] == "firing"
    assert inc["firing_count"] == 2
    assert inc["alertnames"] == ["HighLatency"]
    assert sorted(inc["instances"]) == ["checkout-1:8080", "checkout-2:8080"]
    assert inc["severity"] == "critical"

    await service.post_alerts(load(sequence[1]))
    await service.settled()
    detail = await service.get(f"/api/v1/incidents/{inc['id']}")
    assert detail["status"] == "firing"
    states = sorted((e["instance"], e["status"]) for e in detail["episodes"])
    assert states == [("checkout-1:8080", "firing"), ("checkout-2:8080", "resolved")]

    await service.post_alerts(load(sequence[2]))
    await service.settled()
    detail = await service.get(f"/api/v1/incidents/{inc['id']}")
    assert detail["status"] == "resolved"
    assert detail["resolved_at"] is not None
    snapshot = (await service.get("/api/v1/incidents"), await service.get("/anomalies"))

    for _ in range(2):
        for name in sequence:
            resp = await service.post_alerts(load(name))
            assert resp.status_code == 200
            assert resp.json()["status"] == "duplicate"
    await service.settled()
    assert (await service.get("/api/v1/incidents"), await service.get("/anomalies")) == snapshot


async def test_late_firing_does_not_reopen(service: Running) -> None:
    """A firing that arrives after its episode was resolved (out-of-order retry) is ignored."""
    a = alert("DiskFull", "db-1")
    await service.post_alerts(webhook([resolved(a)]))
    await service.settled()
    await service.post_alerts(webhook([a]))
    await service.settled()
    body = await service.get("/api/v1/incidents")
    assert [i["status"] for i in body["incidents"]] == ["resolved"]
    anomalies = await service.get("/anomalies")
    assert [x["status"] for x in anomalies["anomalies"]] == ["resolved"]


async def test_new_episode_after_resolution_opens_new_incident(service: Running) -> None:
    """Same group firing again with a new startsAt is a new episode and a new incident."""
    a = alert("CPU", "web-1")
    await service.post_alerts(webhook([a]))
    await service.post_alerts(webhook([resolved(a)]))
    again = alert("CPU", "web-1", starts="2026-11-28T11:00:00Z")
    await service.post_alerts(webhook([again]))
    await service.settled()
    body = await service.get("/api/v1/incidents")
    assert sorted(i["status"] for i in body["incidents"]) == ["firing", "resolved"]
    assert (await service.get("/anomalies"))["total"] == 2


async def test_newer_episode_supersedes_older(service: Running) -> None:
    """A new startsAt for a firing fingerprint ends the older episode (Alertmanager keeps one)."""
    old = alert("Flappy", "web-9", starts="2026-11-28T09:00:00Z")
    new = alert("Flappy", "web-9", starts="2026-11-28T09:30:00Z")
    await service.post_alerts(webhook([old]))
    await service.post_alerts(webhook([new]))
    await service.settled()
    episodes = (await service.get("/anomalies"))["anomalies"]
    assert sorted((e["starts_at"][11:16], e["status"]) for e in episodes) == [
        ("09:00", "resolved"),
        ("09:30", "firing"),
    ]
    incidents = (await service.get("/api/v1/incidents"))["incidents"]
    assert [(i["status"], i["firing_count"]) for i in incidents] == [("firing", 1)]


async def test_incident_gains_alertname_needs_analysis(service: Running) -> None:
    """A group that gains a new alertname is flagged for re-analysis; a repeat is not."""
    a = alert("CPU", "web-1")
    await service.post_alerts(webhook([a]))
    await service.settled()
    body = await service.get("/api/v1/incidents")
    assert body["incidents"][0]["alertnames"] == ["CPU"]
    b = alert("Memory", "web-1")
    await service.post_alerts(webhook([a, b]))
    await service.settled()
    inc = (await service.get("/api/v1/incidents"))["incidents"][0]
    assert inc["alertnames"] == ["CPU", "Memory"]
    assert inc["needs_analysis"] is True
    assert inc["episode_count"] == 2


async def test_filters_and_pagination(service: Running) -> None:
    """Incident list filters by status/severity/alertname and paginates with next_offset."""
    for i in range(5):
        sev = "critical" if i % 2 else "low"
        await service.post_alerts(webhook([alert(f"A{i}", f"h{i}", severity=sev)], group=f"g{i}"))
    await service.settled()
    page1 = await service.get("/api/v1/incidents", limit=2)
    assert len(page1["incidents"]) == 2
    assert page1["total"] == 5
    assert page1["next_offset"] == 2
    page3 = await service.get("/api/v1/incidents", limit=2, offset=4)
    assert len(page3["incidents"]) == 1
    assert page3["next_offset"] is None
    crit = await service.get("/api/v1/incidents", severity="critical")
    assert crit["total"] == 2
    named = await service.get("/api/v1/incidents", alertname="A3")
    assert [i["alertnames"] for i in named["incidents"]] == [["A3"]]
    assert (await service.get("/api/v1/incidents", status="resolved"))["total"] == 0
    seed = await service.get("/anomalies", severity="low", limit=10)
    assert seed["count"] == 3
    assert {"metric", "value", "instance", "severity", "reason"} <= set(seed["anomalies"][0])


@pytest.mark.parametrize(
    ("params", "needle"),
    [
        ({"limit": "abc"}, "limit"),
        ({"limit": "0"}, "limit"),
        ({"severity": "apocalyptic"}, "severity"),
        ({"since": "last tuesday"}, "since"),
    ],
)
async def test_bad_query_parameters_are_400(
    service: Running, params: dict[str, str], needle: str
) -> None:
    """A bad list parameter gives 400 naming it."""
    resp = await service.client.get(f"{service.url}/api/v1/incidents", params=params)
    assert resp.status_code == 400
    assert resp.json()["detail"].startswith(needle)


async def test_unknown_incident_is_404(service: Running) -> None:
    """Unknown or malformed ids give 404."""
    for bad in ("nope", "0123456789abcdef01234567"):
        resp = await service.client.get(f"{service.url}/api/v1/incidents/{bad}")
        assert resp.status_code == 404


async def test_store_down_is_503(tmp_path: Any) -> None:
    """With the store unreachable the webhook and /readyz answer 503, so Alertmanager retries."""
    from receiver.store.embedded import EmbeddedStore
    from tests.support.service import make_settings, serve

    async with EmbeddedStore(tmp_path / "own-store") as store:
        settings = make_settings(store.uri, tmp_path, store_timeout_seconds=1.0)
        async with serve(settings) as svc:
            await store.stop()
            resp = await svc.post_alerts(load("am_payload_firing.json"))
            assert resp.status_code == 503
            assert resp.headers.get("retry-after") == "5"
            ready = await svc.client.get(f"{svc.url}/readyz")
            assert ready.status_code == 503


async def test_status_and_health(service: Running) -> None:
    """GET / reports running with the Prometheus URL, model and store kind; probes answer."""
    body = await service.get("/")
    assert body["status"] == "running"
    assert body["prometheus"] == service.settings.prom_url
    assert body["store"] == "mongodb"
    assert (await service.get("/healthz"))["status"] == "ok"
    assert (await service.get("/readyz"))["status"] == "ready"
    resp = await service.client.get(f"{service.url}/metrics")
    assert "webhook_requests_total" in resp.text
