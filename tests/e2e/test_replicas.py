"""Fault test: two receiver processes on one store behind one Alertmanager configuration.

The Alertmanager's receiver has one webhook_config per replica, so every notification (firing and
resolved) reaches both: the harshest case for duplicates. Nothing may be doubled: one incident
per alert group, one model analysis per incident, one firing and one resolved email per incident.
Real processes: `receiver serve` (twice), the embedded store, Alertmanager (Debian), an SMTP
server; the model is a loopback fake speaking the OpenAI protocol.
"""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx

from receiver.store.embedded import EmbeddedStore
from tests.notify.outbox_helpers import counter
from tests.support.fake_llm import FakeLLM, analysis_answer, openai_chat
from tests.support.payloads import postable_alerts
from tests.support.prom import alertmanager
from tests.support.replica import Replica, model_env, receiver, replica_env, smtp_env, wait_until
from tests.support.service import TOKEN
from tests.support.smtp import SmtpServer, email_event, email_text, smtp_server

GROUPS = 4
ALERTS_PER_GROUP = 2
QUIET = 3.0  # seconds to wait after the counts are reached, so a second copy would be seen


async def test_two_replicas_behind_one_alertmanager_do_everything_once(tmp_path: Path) -> None:
    """Every group reaches both replicas; each incident, analysis and email exists once."""
    async with EmbeddedStore(tmp_path / "store") as store:
        await asyncio.to_thread(_scenario, store.uri, tmp_path)


def _get(replica: Replica, path: str, **params: Any) -> Any:
    response = httpx.get(f"{replica.url}{path}", params=params, timeout=10)
    response.raise_for_status()
    return response.json()


def _emails(smtp: SmtpServer, event: str) -> Counter[str]:
    """Emails of one event, counted per incident (X-Incident-Id)."""
    return Counter(
        str(m.message["X-Incident-Id"]) for m in smtp.messages if email_event(m) == event
    )


def _scenario(store_uri: str, tmp_path: Path) -> None:
    with FakeLLM() as llm, smtp_server() as smtp:
        # Spare answers: a second analysis of an incident would get one, and be counted.
        llm.script(*[openai_chat(analysis_answer()) for _ in range(GROUPS * 2)])
        env = replica_env(
            store_uri,
            "replicas",
            tmp_path / "data",
            **smtp_env(smtp),
            **model_env(llm),
            NOTIFY_RCA_WAIT_SECONDS="60",  # each page waits for the model's analysis
            NOTIFY_POLL_SECONDS="0.2",
        )
        with (
            receiver(env, tmp_path / "a.log") as one,
            receiver(env, tmp_path / "b.log") as two,
            # group_wait 1s: a group's alerts land in its first notification together, so an
            # incident never grows afterwards (growth would rightly ask for a second analysis)
            alertmanager(
                tmp_path / "am", [one.webhook, two.webhook], token=TOKEN, group_wait="1s"
            ) as am,
        ):
            started = datetime.now(UTC) - timedelta(minutes=1)
            names = [f"Replica{g}" for g in range(GROUPS)]
            firing = [a for n in names for a in postable_alerts(n, ALERTS_PER_GROUP, started)]
            assert httpx.post(f"{am.url}/api/v2/alerts", json=firing, timeout=10).is_success

            wait_until(
                lambda: sum(_emails(smtp, "firing").values()) >= GROUPS, 60, "a page per group"
            )
            time.sleep(QUIET)
            incidents = _get(one, "/api/v1/incidents", limit=100)
            assert incidents["total"] == GROUPS
            ids = sorted(i["id"] for i in incidents["incidents"])
            # each incident holds its whole group: both alerts came in the first notification
            assert sorted(i["title"] for i in incidents["incidents"]) == [
                f"{n} on {ALERTS_PER_GROUP} instances" for n in names
            ]
            assert _emails(smtp, "firing") == Counter(dict.fromkeys(ids, 1))

            ended = datetime.now(UTC) - timedelta(seconds=1)
            resolved = [
                a for n in names for a in postable_alerts(n, ALERTS_PER_GROUP, started, ends=ended)
            ]
            assert httpx.post(f"{am.url}/api/v2/alerts", json=resolved, timeout=10).is_success
            wait_until(
                lambda: sum(_emails(smtp, "resolved").values()) >= GROUPS,
                60,
                "a resolved email per group",
            )
            time.sleep(QUIET)

            incidents = _get(two, "/api/v1/incidents", limit=100)
            rca = _get(two, "/rca", limit=100)
            rows = _get(one, "/api/v1/notifications", limit=100)
            metrics = [httpx.get(f"{r.url}/metrics", timeout=10).text for r in (one, two)]

    # one incident per group, every one resolved
    assert incidents["total"] == GROUPS
    assert sorted(i["id"] for i in incidents["incidents"]) == ids
    assert {i["status"] for i in incidents["incidents"]} == {"resolved"}
    # one analysis per incident, from the model, from one call each
    assert rca["total"] == GROUPS
    assert Counter(r["incident_id"] for r in rca["rca"]) == Counter(dict.fromkeys(ids, 1))
    assert {(r["provider"], r["offline"]) for r in rca["rca"]} == {("openai", False)}
    assert len(llm.requests) == GROUPS
    # one page (with the model's analysis) and one resolved email per incident, nothing else
    assert _emails(smtp, "firing") == Counter(dict.fromkeys(ids, 1))
    assert _emails(smtp, "resolved") == Counter(dict.fromkeys(ids, 1))
    assert len(smtp.messages) == 2 * GROUPS
    pages = [m for m in smtp.messages if email_event(m) == "firing"]
    assert all("Model analysis" in email_text(m) for m in pages)
    assert rows["total"] == 2 * GROUPS
    assert Counter((r["incident_id"], r["event"]) for r in rows["notifications"]) == Counter(
        {(i, e): 1 for i in ids for e in ("firing", "resolved")}
    )
    assert {(r["status"], r["attempts"]) for r in rows["notifications"]} == {("sent", 1)}
    # both replicas were posted every notification: one stored it, the other saw a duplicate
    for text in metrics:
        seen = counter(text, "webhook_requests_total", outcome="accepted") + counter(
            text, "webhook_requests_total", outcome="duplicate"
        )
        assert seen >= 2 * GROUPS  # each group's firing and resolved notification
    # the same payload from both webhook_configs: stored once, the second copy a duplicate
    duplicates = sum(counter(t, "webhook_requests_total", outcome="duplicate") for t in metrics)
    assert duplicates >= 2 * GROUPS
