"""The outbox through the real service: webhook → incident → one email and one Slack message per
event, with the analysis, threading, retries and follow-ups."""

from __future__ import annotations

import socket
from email.message import EmailMessage
from pathlib import Path
from typing import Any

from receiver.store.embedded import EmbeddedStore
from tests.notify.outbox_helpers import (
    PUBLIC_URL,
    SENDER,
    counter,
    incident_id,
    metrics,
    notify_settings,
    put_analysis,
    rows_where,
)
from tests.support.fake_slack import fake_slack
from tests.support.payloads import alert, resolved, webhook
from tests.support.service import serve
from tests.support.smtp import smtp_server

FIRING = alert("HighCPU", "node-1:9100", severity="high", metric="cpu_usage")
FIRING["annotations"]["value"] = "97.5"
RESOLVED = resolved(FIRING)


def _parts(message: EmailMessage) -> dict[str, str]:
    return {
        part.get_content_type(): str(part.get_content())
        for part in message.walk()
        if not part.is_multipart()
    }


def _all_final(found: list[dict[str, Any]], count: int) -> bool:
    return len(found) == count and all(r["status"] in {"sent", "failed"} for r in found)


def _expected_slack(incident: str) -> dict[str, Any]:
    def section(text: str) -> dict[str, Any]:
        return {"type": "section", "text": {"type": "mrkdwn", "text": text}}

    return {
        "text": "[HIGH] cpu_usage",
        "attachments": [
            {
                "color": "#E8731A",
                "fallback": "[HIGH] cpu_usage",
                "blocks": [
                    {"type": "header", "text": {"type": "plain_text", "text": "[HIGH] cpu_usage"}},
                    {
                        "type": "section",
                        "fields": [
                            {"type": "mrkdwn", "text": "*Metric*\ncpu_usage"},
                            {"type": "mrkdwn", "text": "*Severity*\nhigh"},
                            {"type": "mrkdwn", "text": "*Value*\n97.5"},
                            {"type": "mrkdwn", "text": "*Instance*\nnode-1:9100"},
                        ],
                    },
                    section("*Reason*\nHighCPU on node-1:9100"),
                    section(
                        "*Analysis (ollama, confidence 80%)*\n"
                        "CPU saturated on node-1 after the 18:40 deploy."
                    ),
                    section(
                        "*Likely cause*\nA runaway worker loop in the new release pins two cores."
                    ),
                    section("*Fix*\n1. Roll back the 18:40 deploy\n2. Restart the worker pool"),
                    section(
                        "*In plain words*\nOne server is overworked because of a faulty update."
                    ),
                    {
                        "type": "context",
                        "elements": [
                            {
                                "type": "mrkdwn",
                                "text": f"<{PUBLIC_URL}/ui/incidents/{incident}|Console>"
                                " · <http://127.0.0.1:9093/#/silences/new"
                                "?filter=%7Bgroup%3D%22g1%22%7D|Silence>"
                                " · <http://127.0.0.1:9/graph?g0.expr=up|Prometheus>"
                                " · <http://127.0.0.1:9093|Alertmanager>"
                                f" · <{PUBLIC_URL}/api/v1/incidents/{incident}|Incident API>",
                            }
                        ],
                    },
                ],
            }
        ],
    }


async def test_one_email_and_one_slack_message_per_event(
    embedded_store: EmbeddedStore, tmp_path: Path
) -> None:
    """Firing waits for the analysis and carries it; resolved threads under it; one of each."""
    with smtp_server() as smtp, fake_slack() as slack:
        settings = notify_settings(
            embedded_store.uri, tmp_path, smtp=smtp, slack=slack, notify_rca_wait_seconds=15
        )
        async with serve(settings) as service:
            assert (await service.post_alerts(webhook([FIRING]))).status_code == 200
            incident = await incident_id(service)
            await put_analysis(settings, incident)
            await rows_where(service, lambda found: _all_final(found, 2))

            [mail] = smtp.messages
            assert len(slack.accepted) == 1
            assert slack.accepted[0] == _expected_slack(incident)

            assert mail.mail_from == "alerts@example.com"
            assert mail.rcpt_tos == ["ops@example.com"]
            first = mail.message
            assert first["Subject"] == "[HIGH] cpu_usage"
            assert first["From"] == SENDER
            assert first["To"] == "ops@example.com"
            assert first["References"] == f"<incident.{incident}@ai-devops-monitor>"
            assert first["In-Reply-To"] is None
            assert first["X-Incident-Id"] == incident
            assert first.get_content_type() == "multipart/alternative"
            parts = _parts(first)
            assert set(parts) == {"text/plain", "text/html"}
            for body in parts.values():
                for needle in (
                    "cpu_usage",
                    "node-1:9100",
                    "97.5",
                    "HighCPU on node-1:9100",
                    "CPU saturated on node-1 after the 18:40 deploy.",
                    "A runaway worker loop in the new release pins two cores.",
                    "Roll back the 18:40 deploy",
                    "One server is overworked because of a faulty update.",
                ):
                    assert needle in body, needle
            assert "<h2>[HIGH] cpu_usage</h2>" in parts["text/html"]
            assert "<ol><li>Roll back the 18:40 deploy</li>" in parts["text/html"]
            assert f'href="{PUBLIC_URL}/api/v1/incidents/{incident}"' in parts["text/html"]

            assert (await service.post_alerts(webhook([RESOLVED]))).status_code == 200
            found = await rows_where(service, lambda found: _all_final(found, 4))
            assert sorted((r["channel"], r["event"], r["status"]) for r in found) == [
                ("email", "firing", "sent"),
                ("email", "resolved", "sent"),
                ("slack", "firing", "sent"),
                ("slack", "resolved", "sent"),
            ]
            text = await metrics(service)

    assert len(smtp.messages) == 2
    second = smtp.messages[1].message
    assert second["Subject"] == "[RESOLVED] [HIGH] cpu_usage"
    assert second["In-Reply-To"] == f"<incident.{incident}@ai-devops-monitor>"
    assert second["References"] == f"<incident.{incident}@ai-devops-monitor>"
    assert len(slack.accepted) == 2
    assert slack.accepted[1]["attachments"][0]["color"] == "#8D9BA6"
    assert slack.accepted[1]["text"] == "[RESOLVED] [HIGH] cpu_usage"
    assert counter(text, "alerts_sent_total", channel="email") == 2
    assert counter(text, "alerts_sent_total", channel="slack") == 2


async def test_analysis_after_the_deadline_is_a_follow_up(
    embedded_store: EmbeddedStore, tmp_path: Path
) -> None:
    """Past NOTIFY_RCA_WAIT_SECONDS the page goes without analysis; it follows as a reply."""
    with smtp_server() as smtp, fake_slack() as slack:
        settings = notify_settings(
            embedded_store.uri, tmp_path, smtp=smtp, slack=slack, notify_rca_wait_seconds=0.3
        )
        async with serve(settings) as service:
            assert (await service.post_alerts(webhook([FIRING]))).status_code == 200
            incident = await incident_id(service)
            first = await rows_where(service, lambda found: _all_final(found, 2), event="firing")
            assert {r["with_analysis"] for r in first} == {False}
            waiting = await rows_where(service, lambda found: len(found) == 2, status="waiting")
            assert sorted(r["channel"] for r in waiting) == ["email", "slack"]
            assert {r["event"] for r in waiting} == {"analysis"}

            await put_analysis(settings, incident)
            await rows_where(service, lambda found: _all_final(found, 4))

    first_mail, follow_up = (m.message for m in smtp.messages)
    assert "not available yet; a follow-up will carry it" in _parts(first_mail)["text/html"]
    assert follow_up["Subject"] == "Re: [HIGH] cpu_usage"
    assert follow_up["In-Reply-To"] == f"<incident.{incident}@ai-devops-monitor>"
    assert "A runaway worker loop" in _parts(follow_up)["text/html"]
    assert len(slack.accepted) == 2
    assert "runaway worker loop" not in str(slack.accepted[0])
    assert "runaway worker loop" in str(slack.accepted[1])
    assert slack.accepted[1]["text"] == "Re: [HIGH] cpu_usage"


async def test_smtp_down_is_retried_and_delivered_once(
    embedded_store: EmbeddedStore, tmp_path: Path
) -> None:
    """With the SMTP server down the email is retried with backoff, then delivered once."""
    # Bound but not listening: connections are refused, and nothing else can take the port.
    reserved = socket.socket()
    reserved.bind(("127.0.0.1", 0))
    port = reserved.getsockname()[1]
    with reserved, fake_slack() as slack:
        settings = notify_settings(
            embedded_store.uri, tmp_path, smtp=port, slack=slack, notify_rca_wait_seconds=0
        )
        async with serve(settings) as service:
            assert (await service.post_alerts(webhook([FIRING]))).status_code == 200
            [failing] = await rows_where(
                service,
                lambda found: (
                    bool(found) and found[0]["attempts"] >= 2 and found[0]["status"] == "pending"
                ),
                channel="email",
            )
            assert failing["last_error"].startswith("email: Connection error")
            reserved.close()
            with smtp_server(port=port) as smtp:
                [sent] = await rows_where(
                    service,
                    lambda found: bool(found) and found[0]["status"] == "sent",
                    channel="email",
                    event="firing",
                )
            text = await metrics(service)
    assert len(smtp.messages) == 1
    assert smtp.messages[0].message["Subject"] == "[HIGH] cpu_usage"
    assert sent["last_error"] is None
    assert sent["attempts"] >= 3
    assert len(slack.accepted) == 1
    assert counter(text, "notifications_failed_total", channel="email", reason="transient") >= 2
    assert counter(text, "alerts_sent_total", channel="email") == 1


async def test_slack_500_then_200_sends_exactly_one(
    embedded_store: EmbeddedStore, tmp_path: Path
) -> None:
    """A 500 from Slack is retried; the message arrives exactly once."""
    with fake_slack() as slack:
        slack.script(500, "internal_error")
        settings = notify_settings(
            embedded_store.uri, tmp_path, slack=slack, notify_rca_wait_seconds=0
        )
        async with serve(settings) as service:
            assert (await service.post_alerts(webhook([FIRING]))).status_code == 200
            [row] = await rows_where(
                service,
                lambda found: len(found) == 1 and found[0]["status"] == "sent",
                event="firing",
            )
            text = await metrics(service)
    assert len(slack.requests) == 2
    assert len(slack.accepted) == 1
    assert row["attempts"] == 2
    assert counter(text, "notifications_failed_total", channel="slack", reason="transient") == 1
