"""The seed's endpoints on the real service with pipeline data: shapes, filters, pagination."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from receiver.api import schemas
from receiver.store.embedded import EmbeddedStore
from tests.support.payloads import alert, resolved, webhook
from tests.support.procs import free_port
from tests.support.service import Running, make_settings, serve


async def _pipeline(svc: Running) -> None:
    """Three groups through the webhook: two critical firing on web-*, one low resolved."""
    web1 = alert("HighLatency", "web-01:9100", severity="critical")
    web2 = alert("HighLatency", "web-02:9100", severity="critical", starts="2026-11-28T10:01:00Z")
    db = alert("DiskFull", "db-1:9100", severity="info", starts="2020-01-01T00:00:00Z")
    assert (await svc.post_alerts(webhook([web1, web2], group="web"))).status_code == 200
    assert (await svc.post_alerts(webhook([db], group="db"))).status_code == 200
    done = resolved(db, ends="2020-01-01T00:10:00Z")
    assert (await svc.post_alerts(webhook([done], group="db"))).status_code == 200
    await svc.settled()


async def test_status(service: Running) -> None:
    """GET / has the seed's status fields."""
    body = await service.get("/")
    schemas.ServiceStatus.model_validate(body)
    assert body["status"] == "running"
    assert body["llm_provider"] == "offline"


async def test_stats_counts_pipeline_data(service: Running) -> None:
    """/stats counts episodes, open ones, incidents and deliveries the webhook produced."""
    empty = await service.get("/stats")
    schemas.Stats.model_validate(empty)
    assert empty["anomalies"] == {"total": 0, "open": 0, "analyzed": 0}
    await _pipeline(service)
    body = await service.get("/stats")
    schemas.Stats.model_validate(body)
    assert body["anomalies"]["total"] == 3
    assert body["anomalies"]["open"] == 2
    assert body["incidents"] == {"total": 2, "open": 1}
    assert body["deliveries"] == {"total": 3, "pending": 0, "failed": 0}
    assert body["quarantined"] == {"deliveries": 0, "analyses": 0, "notifications": 0}
    assert body["metrics"] == 0
    assert body["rca_results"] >= 0
    assert body["chat_sessions"] == {"total": 0, "active": 0}
    assert body["notifications"]["slack"] == {"enabled": False, "configured": False}
    assert body["store"] == "mongodb"


async def test_anomalies_filters_and_pages(service: Running) -> None:
    """/anomalies filters by severity, status, instance and since, and pages with limit/offset."""
    await _pipeline(service)
    everything = await service.get("/anomalies")
    schemas.AnomalyList.model_validate(everything)
    assert everything["total"] == 3
    assert everything["count"] == 3
    critical = await service.get("/anomalies", severity="critical")
    assert {a["instance"] for a in critical["anomalies"]} == {"web-01:9100", "web-02:9100"}
    assert (await service.get("/anomalies", status="resolved"))["total"] == 1
    assert (await service.get("/anomalies", status="open"))["total"] == 2
    one = await service.get("/anomalies", instance="web-02:9100")
    assert [a["instance"] for a in one["anomalies"]] == ["web-02:9100"]
    recent = await service.get("/anomalies", since="2026-01-01T00:00:00Z")
    assert recent["total"] == 2
    first = await service.get("/anomalies", limit=2)
    second = await service.get("/anomalies", limit=2, offset=2)
    assert first["count"] == 2
    assert second["count"] == 1
    assert first["total"] == 3
    ids = [a["id"] for a in first["anomalies"] + second["anomalies"]]
    assert len(set(ids)) == 3
    for bad in (
        {"limit": "0"},
        {"severity": "loud"},
        {"since": "yesterdayish"},
        {"since": "9" * 30 + "d"},
    ):
        resp = await service.client.get(f"{service.url}/anomalies", params=bad)
        assert resp.status_code == 400, bad
        assert resp.json()["error"] == "bad_parameter"


async def test_incidents_list_and_detail(service: Running) -> None:
    """Incident list filters and detail match their documented shapes."""
    await _pipeline(service)
    listed = await service.get("/api/v1/incidents", status="open")
    schemas.IncidentList.model_validate(listed)
    assert listed["total"] == 1
    assert listed["incidents"][0]["instances"] == [
        "web-01:9100",
        "web-02:9100",
    ]
    detail = await service.get(f"/api/v1/incidents/{listed['incidents'][0]['id']}")
    schemas.IncidentDetail.model_validate(detail)
    assert len(detail["episodes"]) == 2
    deliveries = await service.get("/api/v1/deliveries", raw="1")
    schemas.DeliveryList.model_validate(deliveries)
    assert deliveries["total"] == 3
    assert deliveries["deliveries"][0]["payload"]["version"] == "4"


async def test_http_metrics_use_route_templates(service: Running) -> None:
    """/metrics counts requests by route template, never by the raw path."""
    await _pipeline(service)
    listed = await service.get("/api/v1/incidents")
    for incident in listed["incidents"]:
        await service.get(f"/api/v1/incidents/{incident['id']}")
    await service.client.get(f"{service.url}/no/such/path/123")
    text = (await service.client.get(f"{service.url}/metrics")).text
    assert (
        'http_requests_total{method="GET",route="/api/v1/incidents/{incident_id}",status="200"} 2.0'
        in text
    )
    assert 'route="<unmatched>",status="404"' in text
    assert listed["incidents"][0]["id"] not in text
    assert "/no/such/path" not in text
    assert 'http_request_duration_seconds_count{method="POST",route="/api/v1/alerts"} 3.0' in text


class _Health:
    """A loopback stand-in for a Langfuse host: answers GET /api/public/health."""

    def __init__(self) -> None:
        self.port = free_port()

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                ok = self.path == "/api/public/health"
                body = json.dumps({"status": "OK"} if ok else {}).encode()
                self.send_response(200 if ok else 404)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, format: str, *args: object) -> None:
                return

        self.server = ThreadingHTTPServer(("127.0.0.1", self.port), Handler)
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)


@pytest.fixture
def langfuse_host() -> Iterator[str]:
    health = _Health()
    health.thread.start()
    try:
        yield f"http://127.0.0.1:{health.port}"
    finally:
        health.server.shutdown()
        health.server.server_close()
        health.thread.join(timeout=5)


async def test_langfuse_status_off(service: Running) -> None:
    """Without keys tracing is off and nothing is probed."""
    body = await service.get("/langfuse/status")
    schemas.LangfuseStatus.model_validate(body)
    assert body["enabled"] is False
    assert body["connected"] is None
    assert body["public_key"] == "missing"
    assert body["installed"] is True


async def test_langfuse_status_on_masks_keys(
    embedded_store: EmbeddedStore, tmp_path: Path, langfuse_host: str
) -> None:
    """With keys and a host: enabled, connected, and neither key appears in the answer."""
    settings = make_settings(
        embedded_store.uri,
        tmp_path,
        langfuse_public_key="pk-lf-visible-nowhere",
        langfuse_secret_key="sk-lf-visible-nowhere",
        langfuse_host=langfuse_host,
    )
    async with serve(settings) as svc:
        resp = await svc.client.get(f"{svc.url}/langfuse/status")
    body = resp.json()
    schemas.LangfuseStatus.model_validate(body)
    assert body["enabled"] is True
    assert body["connected"] is True
    assert body["host"] == langfuse_host
    assert body["public_key"] == "configured"
    assert body["secret_key"] == "configured"
    assert "visible-nowhere" not in resp.text
