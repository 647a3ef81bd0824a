"""Fault tests: the model server and the SMTP server go away, and come back.

- The LLM is down (connection refused), hangs past LLM_TIMEOUT_SECONDS, or answers garbage:
  every incident is still stored, analysed offline and paged; once the model answers again,
  new incidents get its analysis (on the same LLM_URL, without a restart).
- SMTP is down for a minute while incidents fire and one resolves: the emails wait in the
  outbox, retried with backoff, and each arrives exactly once when the server is back.

Real processes on loopback only: the service (uvicorn), the embedded store, an SMTP server
(aiosmtpd); the model is a loopback fake speaking the OpenAI protocol.
"""

from __future__ import annotations

import asyncio
import socket
from collections import Counter
from dataclasses import replace
from pathlib import Path
from typing import Any

from receiver.store.embedded import EmbeddedStore
from tests.notify.outbox_helpers import all_rows, counter, eventually, metrics, rows_where
from tests.support.fake_llm import FakeLLM, Reply, analysis_answer, openai_chat
from tests.support.payloads import alert, resolved, webhook
from tests.support.service import Running, make_settings, serve
from tests.support.smtp import Received, SmtpServer, email_event, email_text, smtp_server

SMTP_OUTAGE = 60.0  # seconds the SMTP server is away (issue #8: "SMTP down for a minute")
QUIET = 3.0  # seconds to wait after the counts are reached, so a second copy would be seen
OFFLINE_LABEL = "Evidence summary (offline analyst, no LLM)"


def _reserve_port() -> socket.socket:
    """A loopback port bound but not listening: connections are refused, and nothing else can
    take the port until the socket is closed (then a server is started on it)."""
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    return sock


def _smtp(port: int) -> dict[str, Any]:
    return {
        "smtp_host": "127.0.0.1",
        "smtp_port": port,
        "smtp_from": "monitor@example.com",
        "smtp_to": "oncall@example.com",
    }


def _mails(smtp: SmtpServer, incident: str) -> list[Received]:
    return [m for m in smtp.messages if str(m.message["X-Incident-Id"]) == incident]


async def _incident(svc: Running, smtp: SmtpServer, name: str) -> tuple[dict[str, Any], Received]:
    """Fire a one-alert group `name`; return its analysis and its page once both exist."""
    payload = webhook([alert(name, f"{name.lower()}:9100")], group=name)
    assert (await svc.post_alerts(payload)).status_code == 200
    body = await svc.wait_for("/rca", lambda b: b["total"] >= 1, within=30, alertname=name)
    [rca] = body["rca"]
    [page] = await eventually(
        lambda: _mails(smtp, rca["incident_id"]), within=30, what=f"the page of {name}"
    )
    return rca, page


async def test_llm_down_hanging_or_garbage_then_back(
    embedded_store: EmbeddedStore, tmp_path: Path
) -> None:
    """While the model fails every incident is analysed offline and paged; once it is back,
    new incidents get the model's analysis."""
    reserved = _reserve_port()
    port = reserved.getsockname()[1]
    try:
        with smtp_server() as smtp:
            settings = make_settings(
                embedded_store.uri,
                tmp_path,
                llm_provider="openai",
                llm_url=f"http://127.0.0.1:{port}",
                llm_model="fake",
                llm_api_key="test-key",
                llm_timeout_seconds=2,
                notify_rca_wait_seconds=30,  # each page waits for its analysis
                notify_poll_seconds=0.1,
                **_smtp(smtp.port),
            )
            async with serve(settings) as svc:
                # down: nothing listens on the model's port (refused, retried, then offline)
                down = await _incident(svc, smtp, "LlmDown")
                reserved.close()
                with FakeLLM(port=port) as llm:
                    # hanging: no answer within LLM_TIMEOUT_SECONDS
                    llm.script(replace(openai_chat(analysis_answer()), delay=6))
                    hang = await _incident(svc, smtp, "LlmHang")
                    # garbage: prose instead of JSON, twice (the answer and its repair)
                    llm.script(
                        openai_chat("The database is probably slow."), openai_chat("{not json")
                    )
                    prose = await _incident(svc, smtp, "LlmProse")
                    # garbage: a proxy's HTML page instead of the protocol's JSON envelope
                    llm.script(Reply("<html><body>502 Bad Gateway</body></html>"))
                    html = await _incident(svc, smtp, "LlmHtml")
                    # back: the model answers again
                    llm.script(*[openai_chat(analysis_answer("The model is back")) for _ in "ab"])
                    back = [await _incident(svc, smtp, f"LlmBack{i}") for i in range(2)]
                    await asyncio.sleep(QUIET)
                    requests = len(llm.requests)
                rca = await svc.get("/rca", limit=50)
                incidents = await svc.get("/api/v1/incidents", limit=50)
                text = await metrics(svc)
    finally:
        reserved.close()

    failed = {"down": down, "hang": hang, "prose": prose, "html": html}
    reasons = {
        "down": "the LLM call failed (LLMTransportError)",
        "hang": "the LLM call failed (LLMTimeoutError)",
        "prose": "the LLM answer did not match the schema twice",
        "html": "the LLM call failed (LLMResponseError)",
    }
    for case, (analysis, page) in failed.items():
        assert (analysis["provider"], analysis["offline"]) == ("offline", True), case
        assert any(reasons[case] in u for u in analysis["unknowns"]), (case, analysis["unknowns"])
        assert email_event(page) == "firing"
        assert OFFLINE_LABEL in email_text(page), case
    for analysis, page in back:
        assert (analysis["provider"], analysis["offline"]) == ("openai", False)
        assert analysis["summary"] == "The model is back"
        assert email_event(page) == "firing"
        assert "The model is back" in email_text(page)
        assert OFFLINE_LABEL not in email_text(page)
    # hang 1 + prose 2 (answer and repair) + html 1 + back 2; the model was never asked twice
    assert requests == 6
    ids = sorted(i["id"] for i in incidents["incidents"])
    assert len(ids) == 6
    assert Counter(r["incident_id"] for r in rca["rca"]) == Counter(dict.fromkeys(ids, 1))
    assert Counter(str(m.message["X-Incident-Id"]) for m in smtp.messages) == Counter(
        dict.fromkeys(ids, 1)
    )
    assert counter(text, "rca_generated_total", provider="offline", outcome="fallback") == 4
    assert counter(text, "rca_generated_total", provider="openai", outcome="model") == 2


async def test_smtp_down_for_a_minute_then_each_email_once(
    embedded_store: EmbeddedStore, tmp_path: Path
) -> None:
    """Pages (and a resolve) queued for a minute of SMTP outage arrive once each, in order."""
    reserved = _reserve_port()
    port = reserved.getsockname()[1]
    names = [f"MailDown{i}" for i in range(3)]
    alerts = {n: alert(n, f"{n.lower()}:9100") for n in names}
    try:
        settings = make_settings(
            embedded_store.uri,
            tmp_path,
            notify_rca_wait_seconds=10,
            notify_poll_seconds=0.2,
            notify_retry_base_seconds=1,
            notify_retry_max_seconds=4,  # delivered within seconds of the server's return
            notify_max_attempts=60,  # a minute of 4 s retries does not exhaust them
            **_smtp(port),
        )
        async with serve(settings) as svc:
            went_down = asyncio.get_running_loop().time()
            for name in names:
                answer = await svc.post_alerts(webhook([alerts[name]], group=name))
                assert answer.status_code == 200
            pending = await rows_where(
                svc,
                lambda found: (
                    len(found) == 3
                    and all(r["status"] == "pending" and r["attempts"] >= 2 for r in found)
                ),
                event="firing",
            )
            # the first group resolves during the outage; its email must follow its page
            answer = await svc.post_alerts(webhook([resolved(alerts[names[0]])], group=names[0]))
            assert answer.status_code == 200
            await rows_where(svc, lambda found: len(found) == 1, event="resolved")
            await asyncio.sleep(went_down + SMTP_OUTAGE - asyncio.get_running_loop().time())
            during = await all_rows(svc)
            reserved.close()
            with smtp_server(port=port) as smtp:
                await eventually(lambda: len(smtp.messages) >= 4, within=30, what="four emails")
                await asyncio.sleep(QUIET)
                after = await all_rows(svc)
                text = await metrics(svc)
                incidents = await svc.get("/api/v1/incidents", limit=50)
    finally:
        reserved.close()

    assert all(r["last_error"].startswith("email: Connection error") for r in pending)
    # nothing given up, nothing sent (a row caught mid-attempt reads `sending`)
    assert {r["status"] for r in during} <= {"pending", "sending"}
    assert len(during) == 4
    by_name = {i["title"].split(" ")[0]: i["id"] for i in incidents["incidents"]}
    assert sorted(by_name) == names
    sent = Counter((str(m.message["X-Incident-Id"]), email_event(m)) for m in smtp.messages)
    expected = {(by_name[n], "firing"): 1 for n in names}
    expected[(by_name[names[0]], "resolved")] = 1
    assert sent == Counter(expected)
    first = [email_event(m) for m in _mails(smtp, by_name[names[0]])]
    assert first == ["firing", "resolved"]
    assert len(after) == 4
    assert {r["status"] for r in after} == {"sent"}
    assert all(r["attempts"] >= 2 for r in after if r["event"] == "firing")  # retried
    assert [r["attempts"] for r in after if r["event"] == "resolved"] == [1]  # waited, untried
    transient = counter(text, "notifications_failed_total", channel="email", reason="transient")
    assert transient >= 6
    assert counter(text, "notifications_failed_total", channel="email", reason="exhausted") == 0
    assert counter(text, "alerts_sent_total", channel="email") == 4
