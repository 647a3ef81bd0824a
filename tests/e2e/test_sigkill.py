"""Fault test: the receiver is SIGKILLed with analyses and notifications pending.

A second receiver process on the same store finishes everything: one analysis per incident from
the model, one email per incident, nothing twice. Real processes: `receiver serve` (twice), the
embedded store, a real SMTP server; the model is a loopback fake speaking the OpenAI protocol.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import replace
from pathlib import Path

import httpx

from receiver.store.embedded import EmbeddedStore
from tests.support.fake_llm import FakeLLM, openai_chat
from tests.support.payloads import alert, webhook
from tests.support.procs import free_port, stop, wait_http
from tests.support.service import TOKEN
from tests.support.smtp import smtp_server

ANSWER = json.dumps(
    {
        "summary": "Model analysis",
        "cause": "A cause",
        "fix": ["A fix"],
        "simplified": "Plain words.",
        "confidence": 0.7,
        "hypotheses": [{"claim": "grounded", "evidence_ids": ["E1"], "confidence": 0.7}],
        "unknowns": [],
    }
)


@contextmanager
def receiver(env: dict[str, str], log: Path) -> Iterator[tuple[subprocess.Popen[bytes], str]]:
    port = free_port()
    out = log.open("wb")
    proc = subprocess.Popen(
        [sys.executable, "-m", "receiver.cli", "serve", "--port", str(port)],
        env=env,
        stdout=out,
        stderr=subprocess.STDOUT,
        cwd=log.parent,
    )
    try:
        wait_http(f"http://127.0.0.1:{port}/readyz", timeout=60, proc=proc)
        yield proc, f"http://127.0.0.1:{port}"
    finally:
        stop(proc)
        out.close()


def _wait(check: Callable[[], bool], within: float, what: str) -> None:
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        if check():
            return
        time.sleep(0.1)
    raise AssertionError(f"timed out: {what}")


async def test_sigkill_with_pending_work_completes_once_after_restart(tmp_path: Path) -> None:
    """After SIGKILL and restart every incident gets one model analysis and one email."""
    async with EmbeddedStore(tmp_path / "store") as store:
        await asyncio.to_thread(_scenario, store.uri, tmp_path)


def _scenario(store_uri: str, tmp_path: Path) -> None:
    with FakeLLM() as llm, smtp_server() as smtp:
        # the first receiver's three calls hang; the second receiver's calls are answered
        llm.script(*[replace(openai_chat(ANSWER), delay=30) for _ in range(3)])
        llm.script(*[openai_chat(ANSWER) for _ in range(10)])
        env = {k: v for k, v in os.environ.items() if not k.startswith(("MONGO_", "WEBHOOK_"))}
        env.update(
            {
                "MONGO_URI": store_uri,
                "MONGO_DB": "sigkill",
                "DATA_DIR": str(tmp_path / "data"),
                "WEBHOOK_TOKEN": TOKEN,
                "MONITOR_INTERVAL": "0",
                "PROM_URL": "",
                "LOG_FILES": "false",
                "LLM_PROVIDER": "openai",
                "LLM_URL": llm.url,
                "LLM_MODEL": "fake",
                "LLM_API_KEY": "test-key",
                "ENRICH_CONCURRENCY": "3",
                "ENRICH_TIMEOUT_SECONDS": "20",
                "ENRICH_LEASE_MARGIN_SECONDS": "0",
                "SMTP_HOST": "127.0.0.1",
                "SMTP_PORT": str(smtp.port),
                "SMTP_FROM": "monitor@example.com",
                "SMTP_TO": "oncall@example.com",
                "NOTIFY_RCA_WAIT_SECONDS": "120",
                "NOTIFY_LEASE_SECONDS": "2",
                "NOTIFY_RESOLVED": "false",
            }
        )
        headers = {"Authorization": f"Bearer {TOKEN}"}
        with receiver(env, tmp_path / "a.log") as (first, url):
            for g in range(3):
                body = webhook([alert(f"Kill{g}", f"db-{g}")], group=f"k{g}")
                assert httpx.post(f"{url}/api/v1/alerts", json=body, headers=headers).is_success
            _wait(lambda: len(llm.requests) >= 3, 30, "first receiver asks the model")
            first.send_signal(signal.SIGKILL)
            first.wait(timeout=10)
        assert smtp.messages == []  # everything was still waiting for the analysis
        with receiver(env, tmp_path / "b.log") as (_, url):
            _wait(lambda: len(smtp.messages) >= 3, 90, "three emails after the restart")
            time.sleep(3.0)  # a second copy of anything would arrive now
            rca = httpx.get(f"{url}/rca", params={"limit": 50}).json()
            incidents = httpx.get(f"{url}/api/v1/incidents").json()
        assert incidents["total"] == 3
        assert rca["total"] == 3
        assert Counter(r["incident_id"] for r in rca["rca"]) == Counter(
            {i["id"]: 1 for i in incidents["incidents"]}
        )
        assert {r["provider"] for r in rca["rca"]} == {"openai"}
        per_incident = Counter(str(m.message["X-Incident-Id"]) for m in smtp.messages)
        assert sorted(per_incident) == sorted(i["id"] for i in incidents["incidents"])
        assert set(per_incident.values()) == {1}
