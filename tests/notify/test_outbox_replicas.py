"""Exactly once across duplicates, replicas and restarts: Alertmanager retries, an HA twin and
two service instances on one database never produce a second message for the same event; a
worker that dies mid-send leaves a lease that another instance takes over."""

from __future__ import annotations

import asyncio
import socket
from collections import Counter
from pathlib import Path

from receiver.store.embedded import EmbeddedStore
from tests.notify.outbox_helpers import (
    incident_id,
    notify_settings,
    put_analysis,
    rows,
    rows_where,
)
from tests.support.fake_slack import fake_slack
from tests.support.payloads import alert, resolved, webhook
from tests.support.service import serve
from tests.support.smtp import smtp_server

FIRING = alert("HighCPU", "node-1:9100", severity="critical", metric="cpu_usage")
RESOLVED = resolved(FIRING)


def _final(found: list[dict[str, object]], count: int) -> bool:
    return len(found) == count and all(r["status"] == "sent" for r in found)


async def test_duplicates_and_two_instances_send_each_event_once(
    embedded_store: EmbeddedStore, tmp_path: Path
) -> None:
    """Same payload 3x across two instances sharing a database → one message per event."""
    with smtp_server() as smtp, fake_slack() as slack:
        settings = notify_settings(
            embedded_store.uri, tmp_path, smtp=smtp, slack=slack, notify_rca_wait_seconds=0.2
        )
        async with serve(settings) as one, serve(settings) as two:
            # An Alertmanager retry and an HA twin: the same notification three times.
            answers = await asyncio.gather(
                one.post_alerts(webhook([FIRING])),
                two.post_alerts(webhook([FIRING])),
                one.post_alerts(webhook([FIRING], externalURL="http://127.0.0.1:9094")),
            )
            assert all(a.status_code == 200 for a in answers)
            incident = await incident_id(one)
            await rows_where(one, lambda found: len(found) == 2, status="waiting")
            await put_analysis(settings, incident)
            await rows_where(one, lambda found: _final(found, 4))
            twins = await asyncio.gather(
                two.post_alerts(webhook([RESOLVED])), one.post_alerts(webhook([RESOLVED]))
            )
            assert all(a.status_code == 200 for a in twins)
            found = await rows_where(two, lambda found: _final(found, 6))
            incidents = await one.get("/api/v1/incidents")

    assert incidents["total"] == 1
    assert sorted((r["channel"], r["event"]) for r in found) == [
        ("email", "analysis"),
        ("email", "firing"),
        ("email", "resolved"),
        ("slack", "analysis"),
        ("slack", "firing"),
        ("slack", "resolved"),
    ]
    assert {r["attempts"] for r in found} == {1}
    subjects = Counter(m.message["Subject"] for m in smtp.messages)
    assert subjects == Counter(
        {
            "[CRITICAL] cpu_usage": 1,
            "Re: [CRITICAL] cpu_usage": 1,
            "[RESOLVED] [CRITICAL] cpu_usage": 1,
        }
    )
    assert Counter(p["text"] for p in slack.accepted) == Counter(
        {
            "[CRITICAL] cpu_usage": 1,
            "Re: [CRITICAL] cpu_usage": 1,
            "[RESOLVED] [CRITICAL] cpu_usage": 1,
        }
    )
    assert len(slack.requests) == 3


async def test_restart_takes_over_a_send_that_died(
    embedded_store: EmbeddedStore, tmp_path: Path
) -> None:
    """An instance stopped mid-send leaves the row `sending`; after the lease, another sends it."""
    with socket.socket() as silent, fake_slack() as slack:
        # Accepts connections (the kernel completes them) and never answers.
        silent.bind(("127.0.0.1", 0))
        silent.listen(8)
        stuck = f"http://127.0.0.1:{silent.getsockname()[1]}/services/T0FAKE01/B0FAKE02/xoxStuck9"
        first = notify_settings(
            embedded_store.uri,
            tmp_path,
            slack=stuck,
            notify_rca_wait_seconds=0,
            notify_send_timeout_seconds=60,
            notify_lease_seconds=1.5,
        )
        async with serve(first) as service:
            assert (await service.post_alerts(webhook([FIRING]))).status_code == 200
            [row] = await rows_where(
                service, lambda found: bool(found) and found[0]["status"] == "sending"
            )
        # The first instance is gone; its row still says `sending` under its lease.
        second = notify_settings(
            embedded_store.uri,
            tmp_path,
            slack=slack,
            mongo_db=first.mongo_db,
            notify_rca_wait_seconds=0,
        )
        async with serve(second) as service:
            assert (await rows(service, event="firing"))[0]["status"] in {"sending", "sent"}
            [done] = await rows_where(
                service,
                lambda found: bool(found) and found[0]["status"] == "sent",
                event="firing",
            )
    assert row["attempts"] == 1
    assert done["attempts"] == 2
    # The second instance's enrichment worker analyses the incident as it starts, so an
    # analysis follow-up ("Re: ...") may come too; the page itself arrives exactly once.
    pages = [p["text"] for p in slack.accepted if not p["text"].startswith("Re: ")]
    assert pages == ["[CRITICAL] cpu_usage"]
