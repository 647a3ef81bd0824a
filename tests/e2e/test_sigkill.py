"""Fault test: the receiver is SIGKILLed with analyses and notifications pending.

A second receiver process on the same store finishes everything: one analysis per incident from
the model, one email per incident, nothing twice. Real processes: `receiver serve` (twice), the
embedded store, a real SMTP server; the model is a loopback fake speaking the OpenAI protocol.
"""

from __future__ import annotations

import asyncio
import signal
import time
from collections import Counter
from dataclasses import replace
from pathlib import Path

import httpx

from receiver.store.embedded import EmbeddedStore
from tests.support.fake_llm import FakeLLM, analysis_answer, openai_chat
from tests.support.payloads import alert, webhook
from tests.support.replica import model_env, receiver, replica_env, smtp_env, wait_until
from tests.support.service import TOKEN
from tests.support.smtp import smtp_server

ANSWER = analysis_answer()


async def test_sigkill_with_pending_work_completes_once_after_restart(tmp_path: Path) -> None:
    """After SIGKILL and restart every incident gets one model analysis and one email."""
    async with EmbeddedStore(tmp_path / "store") as store:
        await asyncio.to_thread(_scenario, store.uri, tmp_path)


def _scenario(store_uri: str, tmp_path: Path) -> None:
    with FakeLLM() as llm, smtp_server() as smtp:
        # the first receiver's three calls hang; the second receiver's calls are answered
        llm.script(*[replace(openai_chat(ANSWER), delay=30) for _ in range(3)])
        llm.script(*[openai_chat(ANSWER) for _ in range(10)])
        env = replica_env(
            store_uri,
            "sigkill",
            tmp_path / "data",
            **smtp_env(smtp),
            **model_env(llm),
            ENRICH_CONCURRENCY="3",
            ENRICH_TIMEOUT_SECONDS="20",
            ENRICH_LEASE_MARGIN_SECONDS="0",
            NOTIFY_RCA_WAIT_SECONDS="120",
            NOTIFY_LEASE_SECONDS="2",
            NOTIFY_RESOLVED="false",
        )
        headers = {"Authorization": f"Bearer {TOKEN}"}
        with receiver(env, tmp_path / "a.log") as first:
            for g in range(3):
                body = webhook([alert(f"Kill{g}", f"db-{g}")], group=f"k{g}")
                assert httpx.post(first.webhook, json=body, headers=headers).is_success
            wait_until(lambda: len(llm.requests) >= 3, 30, "first receiver asks the model")
            first.proc.send_signal(signal.SIGKILL)
            first.proc.wait(timeout=10)
        assert smtp.messages == []  # everything was still waiting for the analysis
        with receiver(env, tmp_path / "b.log") as second:
            wait_until(lambda: len(smtp.messages) >= 3, 90, "three emails after the restart")
            time.sleep(3.0)  # a second copy of anything would arrive now
            rca = httpx.get(f"{second.url}/rca", params={"limit": 50}).json()
            incidents = httpx.get(f"{second.url}/api/v1/incidents").json()
        assert incidents["total"] == 3
        assert rca["total"] == 3
        assert Counter(r["incident_id"] for r in rca["rca"]) == Counter(
            {i["id"]: 1 for i in incidents["incidents"]}
        )
        assert {r["provider"] for r in rca["rca"]} == {"openai"}
        per_incident = Counter(str(m.message["X-Incident-Id"]) for m in smtp.messages)
        assert sorted(per_incident) == sorted(i["id"] for i in incidents["incidents"])
        assert set(per_incident.values()) == {1}
