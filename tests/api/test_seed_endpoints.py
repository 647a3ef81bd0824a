"""The seed's endpoints on the real service with pipeline data: shapes, filters, pagination."""

from __future__ import annotations

import json
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler
from pathlib import Path
from typing import Any

import pytest
from pymongo import AsyncMongoClient

from receiver.api import schemas
from receiver.ports import LoopbackHTTP, ServedOverHTTP, respond
from receiver.store.embedded import EmbeddedStore
from tests.support.fake_slack import fake_slack
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
    assert body["llm"] == {
        "provider": "offline",
        "model": service.settings.llm_model,
        "url": None,
        "configured": False,
    }
    assert body["langfuse"] == {"enabled": False, "host": None}
    assert body["sessions"] == {"total": 0, "active": 0}


async def test_stats_counts_pipeline_data(service: Running) -> None:
    """/stats counts episodes, open ones, incidents and deliveries the webhook produced."""
    empty = await service.get("/stats")
    schemas.Stats.model_validate(empty)
    assert empty["anomalies"] == {"total": 0, "open": 0, "analyzed": 0}
    await _pipeline(service)
    body = await service.get("/stats")
    schemas.Stats.model_validate(body)
    # the seed client's line: stats['collections']['anomalies']['total']
    assert body["collections"]["anomalies"]["total"] == 3
    assert body["collections"]["metrics"] == {"total": 0}
    assert body["collections"]["chat_sessions"] == {"total": 0}
    assert body["collections"]["rca_results"]["total"] == body["rca_results"]
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
    template = "/api/v1/incidents/{incident_id}"
    assert (
        f'http_requests_total{{method="GET",path="{template}",route="{template}",status="200"}} 2.0'
        in text
    )
    assert 'path="<unmatched>",route="<unmatched>",status="404"' in text
    assert listed["incidents"][0]["id"] not in text
    assert "/no/such/path" not in text
    assert 'http_request_duration_seconds_count{method="POST",route="/api/v1/alerts"} 3.0' in text


class _Health(ServedOverHTTP):
    """A loopback stand-in for a Langfuse host: answers GET /api/public/health."""

    def __init__(self) -> None:
        self.port = free_port()

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                ok = self.path == "/api/public/health"
                body = json.dumps({"status": "OK"} if ok else {}).encode()
                respond(self, 200 if ok else 404, body)

            def log_message(self, format: str, *args: object) -> None:
                return

        self._http = LoopbackHTTP(Handler, self.port)


@pytest.fixture
def langfuse_host() -> Iterator[str]:
    with _Health() as health:
        yield f"http://127.0.0.1:{health.port}"


async def test_langfuse_status_off(service: Running) -> None:
    """Without keys tracing is off and nothing is probed."""
    body = await service.get("/langfuse/status")
    schemas.LangfuseStatus.model_validate(body)
    assert body["enabled"] is False
    assert body["connected"] is None
    assert body["public_key"] == "missing"
    assert body["installed"] is True
    assert body["session_tracking"] is False


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
    assert body["session_tracking"] is True
    assert "visible-nowhere" not in resp.text


async def test_anomalies_detected_total_counts_each_new_episode_once(service: Running) -> None:
    """`anomalies_detected_total{source,severity}` grows per new episode, never for repeats."""
    await _pipeline(service)
    again = webhook([alert("HighLatency", "web-01:9100", severity="critical")], group="web")
    assert (await service.post_alerts(again)).status_code == 200
    await service.settled()
    text = (await service.client.get(f"{service.url}/metrics")).text
    assert 'anomalies_detected_total{severity="critical",source="alertmanager"} 2.0' in text
    # `info` is low; the resolve of the same episode adds nothing
    assert 'anomalies_detected_total{severity="low",source="alertmanager"} 1.0' in text


async def test_rca_rows_carry_the_seed_fields(service: Running) -> None:
    """/rca rows name the episode analysed, its metric and the analysis time in seconds."""
    firing = alert("HighCPUUsage", "node-b:9100", severity="high", metric="cpu_usage")
    firing["annotations"]["value"] = "97.2"
    assert (await service.post_alerts(webhook([firing], group="cpu"))).status_code == 200
    body = await service.wait_for("/rca", lambda b: b["total"] >= 1)
    row = body["rca"][0]
    incident = await service.get(f"/api/v1/incidents/{row['incident_id']}")
    (episode,) = incident["episodes"]
    assert row["anomaly_id"] == episode["id"]
    assert row["metric"] == episode["metric"] == "cpu_usage"
    assert episode["value"] == 97.2
    assert isinstance(row["processing_time"], float)
    assert 0 < row["processing_time"] < 600


async def test_slack_config_put_enables_slack_with_a_masked_url(
    embedded_store: EmbeddedStore, tmp_path: Path
) -> None:
    """PUT /agent/slack-config turns Slack on with a URL shown masked; a test message reaches it;
    bad bodies are 422 and change nothing; turning it off stops Slack again."""
    with fake_slack() as slack:
        hook = slack.hook_url()
        async with serve(make_settings(embedded_store.uri, tmp_path)) as svc:
            url = f"{svc.url}/agent/slack-config"
            before = await svc.get("/agent/slack-status")
            no_url = await svc.client.put(url, json={"enabled": True})
            bad = await svc.client.put(
                url, json={"enabled": True, "webhook_url": "ftp://x/SECRETZ"}
            )
            unknown = await svc.client.put(url, json={"enabled": True, "channel": "#ops"})
            not_bool = await svc.client.put(url, json={"enabled": "yes", "webhook_url": hook})
            unchanged = await svc.get("/agent/slack-config")
            put = await svc.client.put(url, json={"enabled": True, "webhook_url": hook})
            stats = await svc.get("/stats")
            sent = await svc.client.post(f"{svc.url}/agent/test-slack")
            off = await svc.client.put(url, json={"enabled": False})
            after_off = await svc.get("/agent/slack-status")
            refused = await svc.client.post(f"{svc.url}/agent/test-slack")
    assert before["enabled"] is False
    assert before["source"] == "settings"
    for resp, needle in (
        (no_url, "webhook_url: required to enable Slack"),
        (bad, "webhook_url: expected"),
        (unknown, "channel: unknown field"),
        (not_bool, "enabled: expected true or false"),
    ):
        assert resp.status_code == 422, resp.text
        assert needle in resp.json()["detail"]
    assert "SECRETZ" not in bad.text
    assert unchanged == before
    assert put.status_code == 200, put.text
    view = put.json()
    assert view["enabled"] is True
    assert view["configured"] is True
    assert view["source"] == "api"
    assert view["webhook_url"] is not None
    assert "xoxFakeWebhookSecret9" not in put.text
    assert "xoxFakeWebhookSecret9" not in str(stats)
    assert stats["notifications"]["slack"] == {"enabled": True, "configured": True}
    assert sent.status_code == 200, sent.text
    assert len(slack.accepted) == 1
    assert off.status_code == 200
    assert after_off["enabled"] is False
    assert after_off["configured"] is False
    assert refused.status_code == 409
    assert len(slack.accepted) == 1


async def test_seed_target_documents_are_read_and_bad_ones_are_counted(
    service: Running,
) -> None:
    """A stored seed target `{name, endpoint, job, enabled}` is listed and polled as one; a
    document that is no target is skipped, counted and named in the API, never a 500; POST
    takes the seed's `endpoint` too."""
    uri = service.settings.mongo_uri
    assert uri is not None
    client: AsyncMongoClient[dict[str, Any]] = AsyncMongoClient(uri.get_secret_value())
    try:
        targets = client[service.settings.mongo_db]["targets"]
        await targets.insert_one(
            {"name": "seed-prom", "endpoint": "http://127.0.0.1:9", "job": "node", "enabled": True}
        )
        await targets.insert_one({"name": "broken", "enabled": True, "job": 7})
    finally:
        await client.close()
    listed = await service.get("/api/v1/targets")
    seed = next(t for t in listed["targets"] if t["name"] == "seed-prom")
    assert seed["url"] == seed["endpoint"] == "http://127.0.0.1:9"
    assert seed["job"] == "node"
    assert listed["skipped"] == 1
    (invalid,) = listed["invalid"]
    assert invalid["name"] == "broken"
    assert invalid["error"].startswith("url: ")
    assert (await service.get("/api/v1/targets/seed-prom"))["job"] == "node"
    missing = await service.client.get(f"{service.url}/api/v1/targets/broken")
    assert missing.status_code == 404
    created = await service.client.post(
        f"{service.url}/api/v1/targets",
        json={"name": "seed-post", "endpoint": "http://127.0.0.1:10/", "job": "api"},
    )
    assert created.status_code == 201, created.text
    assert created.json()["url"] == "http://127.0.0.1:10"
    clash = await service.client.post(
        f"{service.url}/api/v1/targets",
        json={"name": "x", "endpoint": "http://127.0.0.1:10", "url": "http://127.0.0.1:11"},
    )
    assert clash.status_code == 422
