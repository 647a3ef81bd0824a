"""Storms end to end: alerts through the webhook, the correlator, one analysis, and the
outbox to a real loopback SMTP server (aiosmtpd); plus the batched delivery worker on two
app instances sharing one store."""

from __future__ import annotations

import asyncio
import contextlib
import re
import uuid
from collections import Counter
from pathlib import Path
from typing import Any

from receiver.ingest.normalise import fingerprint
from receiver.store.embedded import EmbeddedStore
from tests.notify.outbox_helpers import eventually
from tests.support.service import Running, make_settings, serve
from tests.support.smtp import Received, SmtpServer, email_text, smtp_server

STARTS = "2026-11-28T10:00:00Z"
MEMBER = re.compile(r"\b[0-9a-f]{24}\b")  # incident ids: members are listed by id without a URL


def _delivery(labels: dict[str, str], receiver: str = "monitor") -> dict[str, Any]:
    """One Alertmanager notification of one alert, grouped by all its labels (severity high:
    the default routing emails it)."""
    labels = {**labels, "severity": "high"}
    key = "{}:{" + ",".join(f'{k}="{v}"' for k, v in sorted(labels.items())) + "}"
    return {
        "receiver": receiver,
        "status": "firing",
        "alerts": [
            {
                "status": "firing",
                "labels": labels,
                "annotations": {"summary": f"{labels['alertname']} on {labels['instance']}"},
                "startsAt": STARTS,
                "endsAt": "0001-01-01T00:00:00Z",
                "generatorURL": "http://127.0.0.1:9/graph?g0.expr=up",
                "fingerprint": fingerprint(labels),
            }
        ],
        "groupLabels": labels,
        "commonLabels": labels,
        "commonAnnotations": {},
        "externalURL": "http://127.0.0.1:9093",
        "version": "4",
        "groupKey": key,
        "truncatedAlerts": 0,
    }


def _smtp(smtp: SmtpServer, **overrides: Any) -> dict[str, Any]:
    return {
        "smtp_host": "127.0.0.1",
        "smtp_port": smtp.port,
        "smtp_from": "monitor@example.com",
        "smtp_to": "oncall@example.com",
        "smtp_mode": "plain",
        "notify_rate_limit": 0,
        "notify_rca_wait_seconds": 5.0,
        "notify_resolved": False,
        "notify_email_chart": False,
        "prom_url": "",
        "storm_hold_seconds": 2.0,
        **overrides,
    }


async def _post_all(service: Running, payloads: list[dict[str, Any]]) -> None:
    slots = asyncio.Semaphore(16)

    async def post(payload: dict[str, Any]) -> None:
        async with slots:
            resp = await service.post_alerts(payload)
            assert resp.status_code == 200, resp.text

    await asyncio.gather(*(post(p) for p in payloads))


def _storm_mails(smtp: SmtpServer) -> list[Received]:
    return [m for m in smtp.messages if "Storm: " in str(m.message["Subject"])]


async def _all_incidents(service: Running) -> list[dict[str, Any]]:
    found: list[dict[str, Any]] = []
    while True:
        body = await service.get("/api/v1/incidents", limit=500, offset=len(found))
        found += body["incidents"]
        if body["next_offset"] is None:
            return found


async def test_storm_of_one_job_pages_once_listing_every_member(
    embedded_store: EmbeddedStore, tmp_path: Path
) -> None:
    """500 alerts of one job on 500 instances → one storm, one analysis, one storm page, every
    member listed in the storm's messages, no member paged on its own, each member a full
    incident that names its storm."""
    with smtp_server() as smtp:
        settings = make_settings(embedded_store.uri, tmp_path, **_smtp(smtp))
        async with serve(settings) as service:
            payloads = [
                _delivery({"alertname": "ApiDown", "job": "api", "instance": f"api-{i}:8080"})
                for i in range(500)
            ]
            await _post_all(service, payloads)
            storms = await service.wait_for(
                "/api/v1/storms",
                lambda b: b["total"] == 1 and b["storms"][0]["members"] == 500,
                within=120,
            )
            storm = storms["storms"][0]
            assert storm["key"] == "job=api"
            assert storm["shared_labels"] == {"alertname": "ApiDown", "job": "api"}
            incidents = [i for i in await _all_incidents(service) if i["source"] != "storm"]
            assert len(incidents) == 500
            assert {i["storm_id"] for i in incidents} == {storm["id"]}
            ids = {i["id"] for i in incidents}

            def listed() -> set[str]:
                return {i for m in _storm_mails(smtp) for i in MEMBER.findall(email_text(m))}

            await eventually(lambda: listed() >= ids, within=120, what="every member listed")
            subjects = [str(m.message["Subject"]) for m in smtp.messages]
            pages = [s for s in subjects if not s.startswith(("Re:", "[RESOLVED]"))]
            assert len(pages) == 1
            assert "Storm: " in pages[0]
            assert "share job=api" in pages[0]
            assert "alertname=ApiDown, job=api" in email_text(_storm_mails(smtp)[0])
            assert "Likely cause:" in email_text(_storm_mails(smtp)[0])

            detail = await service.get(f"/api/v1/storms/{storm['id']}", limit=500)
            assert {m["id"] for m in detail["member_incidents"]} == ids
            analyses = await service.get(f"/api/v1/incidents/{storm['id']}")
            assert analyses["analysis_id"]
            one = await service.get(f"/api/v1/incidents/{incidents[0]['id']}")
            assert one["storm_id"] == storm["id"]
            assert len(one["episodes"]) == 1
            text = (await service.client.get(f"{service.url}/metrics")).text
            generated = [ln for ln in text.splitlines() if ln.startswith("rca_generated_total{")]
            produced = sum(
                float(ln.rsplit(" ", 1)[1]) for ln in generated if 'provider="storm"' not in ln
            )
            assert produced == 1  # one analysis for the whole storm


async def test_unrelated_groups_at_the_same_time_are_not_merged(
    embedded_store: EmbeddedStore, tmp_path: Path
) -> None:
    """Groups opening together that share no cause label stay separate incidents, each paged
    on its own, even with the smallest storm size."""
    with smtp_server() as smtp:
        settings = make_settings(embedded_store.uri, tmp_path, **_smtp(smtp, storm_min_size=2))
        async with serve(settings) as service:
            await _post_all(
                service,
                [
                    _delivery({"alertname": "DiskFull", "job": "db", "instance": "db-1:9100"}),
                    _delivery({"alertname": "HighLatency", "job": "web", "instance": "web-1:80"}),
                ],
            )
            await eventually(lambda: len(smtp.messages) >= 2, within=60, what="two pages")
            await asyncio.sleep(1.0)  # a third message (a storm page) would land now
            subjects = sorted(str(m.message["Subject"]) for m in smtp.messages)
            assert len(subjects) == 2
            assert not any("Storm" in s for s in subjects)
            assert (await service.get("/api/v1/storms"))["total"] == 0
            incidents = await _all_incidents(service)
            assert len(incidents) == 2
            assert all(i["storm_id"] is None for i in incidents)


async def test_batched_worker_exactly_once_across_two_instances(
    embedded_store: EmbeddedStore, tmp_path: Path
) -> None:
    """Two app instances on one store, every delivery posted to both: each group becomes one
    incident with its episodes once, every delivery processed, one email per incident."""
    db = f"t_{uuid.uuid4().hex[:12]}"
    with smtp_server() as smtp:
        common = _smtp(smtp, mongo_db=db, ingest_concurrency=8, storm_enabled=False)
        one = make_settings(embedded_store.uri, tmp_path / "a", **common)
        two = make_settings(embedded_store.uri, tmp_path / "b", **common)
        async with contextlib.AsyncExitStack() as stack:
            a = await stack.enter_async_context(serve(one))
            b = await stack.enter_async_context(serve(two))
            payloads = [
                _delivery({"alertname": f"Check{g}", "group": f"g{g}", "instance": f"n{g}:9"})
                for g in range(120)
            ]
            await asyncio.gather(_post_all(a, payloads), _post_all(b, payloads[::-1]))

            async def all_processed() -> bool:
                found = await a.get("/api/v1/deliveries", limit=500, status="processed")
                return bool(found["total"] == 120)

            await eventually(all_processed, within=120, what="every delivery processed")
            await a.settled(within=120)
            await b.settled(within=120)
            incidents = await _all_incidents(a)
            assert len(incidents) == 120
            assert Counter(i["key"] for i in incidents).most_common(1)[0][1] == 1
            assert all(i["episode_count"] == 1 for i in incidents)
            episodes = (await a.get("/anomalies", limit=500))["total"]
            assert episodes == 120
            deliveries = await a.get("/api/v1/deliveries", limit=500)
            assert deliveries["total"] == 120
            assert all(d["state"] == "processed" for d in deliveries["deliveries"])
            await eventually(lambda: len(smtp.messages) >= 120, within=120, what="120 emails")
            await asyncio.sleep(1.0)  # a doubled email would land now
            per_incident = Counter(str(m.message["X-Incident-Id"]) for m in smtp.messages)
            assert set(per_incident) == {i["id"] for i in incidents}
            assert set(per_incident.values()) == {1}
