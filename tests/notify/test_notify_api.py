"""The notification config API (seed paths): email config, Slack status, test messages and
routing; stored settings apply to every instance; secrets never appear in answers or logs."""

from __future__ import annotations

import socket
from pathlib import Path

import pytest
from pydantic import SecretStr

from receiver.store.embedded import EmbeddedStore
from tests.notify.outbox_helpers import notify_settings, rows, rows_where
from tests.support.fake_slack import fake_slack
from tests.support.payloads import alert, resolved, webhook
from tests.support.service import serve
from tests.support.smtp import smtp_server

SMTP_PASSWORD = "hunter2-smtp-secret"
SLACK_SECRET = "xoxFakeWebhookSecret9"


async def test_email_config_is_stored_and_shared(
    embedded_store: EmbeddedStore, tmp_path: Path
) -> None:
    """PUT /agent/email-config persists; another instance on the same store reads it back."""
    with smtp_server(auth=("alerts", SMTP_PASSWORD)) as smtp:
        settings = notify_settings(
            embedded_store.uri,
            tmp_path,
            smtp=smtp,
            smtp_user="alerts",
            smtp_password=SecretStr(SMTP_PASSWORD),
        )
        async with serve(settings) as one, serve(settings) as two:
            before = await one.get("/agent/email-config")
            assert before["enabled"] is True
            assert before["recipients"] == ["ops@example.com"]
            assert before["source"] == "settings"
            assert before["smtp"]["password_set"] is True
            assert before["smtp"]["mode"] == "plain"
            put = await one.client.put(
                f"{one.url}/agent/email-config",
                json={"recipients": ["oncall@example.com", "lead@example.com"]},
            )
            assert put.status_code == 200, put.text
            after = await two.get("/agent/email-config")
            bad = await two.client.put(
                f"{two.url}/agent/email-config", json={"recipients": ["not-an-address"]}
            )
            wrong = await two.client.put(f"{two.url}/agent/email-config", json={"enabled": "yes"})
            sent = await two.client.post(f"{two.url}/agent/test-email")
            bodies = [before, put.text, after, bad.text, sent.text]

    assert after["recipients"] == ["oncall@example.com", "lead@example.com"]
    assert after["enabled"] is True
    assert after["source"] == "api"
    assert bad.status_code == 422
    assert bad.json() == {
        "error": "invalid_config",
        "detail": "recipients: not an email address: 'not-an-address'",
    }
    assert wrong.status_code == 422
    assert wrong.json()["detail"] == "enabled: expected true or false"
    assert sent.status_code == 200, sent.text
    assert sent.json()["status"] == "sent"
    assert sorted(m.rcpt_tos[0] for m in smtp.messages) == [
        "lead@example.com",
        "oncall@example.com",
    ]
    assert {m.login for m in smtp.messages} == {"alerts"}
    assert smtp.messages[0].message["Subject"] == "[LOW] test_notification"
    assert all(SMTP_PASSWORD not in str(body) for body in bodies)


async def test_disabled_email_gets_nothing(embedded_store: EmbeddedStore, tmp_path: Path) -> None:
    """enabled=false removes the email channel: alerts go to Slack only, test-email says 409."""
    with smtp_server() as smtp, fake_slack() as slack:
        settings = notify_settings(
            embedded_store.uri, tmp_path, smtp=smtp, slack=slack, notify_rca_wait_seconds=0
        )
        async with serve(settings) as service:
            put = await service.client.put(
                f"{service.url}/agent/email-config", json={"enabled": False}
            )
            assert put.json()["active"] is False
            routing = await service.get("/api/v1/routing")
            assert [c["name"] for c in routing["channels"]] == ["slack"]
            refused = await service.client.post(f"{service.url}/agent/test-email")
            payload = webhook([alert("HighCPU", "node-1:9100", severity="critical")])
            assert (await service.post_alerts(payload)).status_code == 200
            await rows_where(
                service,
                lambda found: bool(found) and found[0]["status"] == "sent",
                event="firing",
            )
            found = await rows(service, event="firing")
    assert refused.status_code == 409
    assert refused.json()["error"] == "not_configured"
    assert [r["channel"] for r in found] == ["slack"]
    assert smtp.messages == []


async def test_slack_status_and_test_message_hide_the_webhook(
    embedded_store: EmbeddedStore, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """Slack status shows the masked URL and the last send; test-slack posts once."""
    with fake_slack() as slack:
        settings = notify_settings(embedded_store.uri, tmp_path, slack=slack)
        async with serve(settings) as service:
            status = await service.get("/agent/slack-status")
            sent = await service.client.post(f"{service.url}/agent/test-slack")
            slack.script(500, "internal_error")
            failed = await service.client.post(f"{service.url}/agent/test-slack")
            payload = webhook([alert("HighCPU", "node-1:9100", severity="critical")])
            assert (await service.post_alerts(payload)).status_code == 200
            await rows_where(
                service,
                lambda found: bool(found) and found[0]["status"] == "sent",
                event="firing",
            )
            later = await service.get("/agent/slack-status")
            routing = await service.get("/api/v1/routing")
    assert status["enabled"] is True
    assert status["configured"] is True
    assert status["webhook_url"] == f"http://127.0.0.1:{slack.port}/services/****/****/****"
    assert status["last_sent_at"] is None
    assert later["last_sent_at"] is not None
    assert sent.status_code == 200, sent.text
    assert sent.json()["url"] == status["webhook_url"]
    assert failed.status_code == 502
    assert failed.json()["error"] == "send_failed"
    assert failed.json()["retryable"] is True
    assert "500 internal_error" in failed.json()["detail"]
    assert slack.accepted[0]["text"] == "[LOW] test_notification"
    for body in (status, sent.text, failed.text, later, routing):
        assert SLACK_SECRET not in str(body)
    assert SLACK_SECRET not in caplog.text


async def test_routing_api_changes_who_gets_what(
    embedded_store: EmbeddedStore, tmp_path: Path
) -> None:
    """PUT /api/v1/routing: low → email only, no resolved messages; bad input is a 422."""
    with smtp_server() as smtp, fake_slack() as slack:
        settings = notify_settings(
            embedded_store.uri, tmp_path, smtp=smtp, slack=slack, notify_rca_wait_seconds=0
        )
        async with serve(settings) as service:
            default = await service.get("/api/v1/routing")
            put = await service.client.put(
                f"{service.url}/api/v1/routing",
                json={"routes": {"low": ["email"]}, "resolved": False},
            )
            bad = await service.client.put(
                f"{service.url}/api/v1/routing", json={"routes": {"urgent": ["email"]}}
            )
            bad_tag = await service.client.put(
                f"{service.url}/api/v1/routing", json={"routes": {"low": ["e mail!"]}}
            )
            low = alert("DiskLow", "node-2:9100", severity="low")
            assert (await service.post_alerts(webhook([low], group="low"))).status_code == 200
            await rows_where(
                service,
                lambda found: bool(found) and found[0]["status"] == "sent",
                event="firing",
            )
            resolved_low = webhook([resolved(low)], group="low")
            assert (await service.post_alerts(resolved_low)).status_code == 200
            await service.wait_for(
                "/api/v1/incidents", lambda b: b["incidents"][0]["status"] == "resolved"
            )
            await service.wait_for(
                "/api/v1/incidents", lambda b: not b["incidents"][0]["needs_notification"]
            )
            found = await rows(service)
    assert default["routes"] == {
        "critical": ["email", "slack"],
        "high": ["email", "slack"],
        "medium": ["email", "slack"],
        "low": ["slack"],
    }
    assert default["source"] == "settings"
    assert put.status_code == 200, put.text
    assert put.json()["routes"]["low"] == ["email"]
    assert put.json()["routes"]["critical"] == ["email", "slack"]
    assert put.json()["resolved"] is False
    assert put.json()["source"] == "api"
    email = next(c for c in put.json()["channels"] if c["name"] == "email")
    assert email["severities"] == ["critical", "high", "medium", "low"]
    assert bad.status_code == 422
    assert "unknown severity 'urgent'" in bad.json()["detail"]
    assert bad_tag.status_code == 422
    assert {(r["channel"], r["event"]) for r in found} <= {
        ("email", "firing"),
        ("email", "analysis"),
    }
    assert [m.message["Subject"] for m in smtp.messages] == ["[LOW] DiskLow"]
    assert slack.requests == []


async def test_test_email_failure_is_masked(
    embedded_store: EmbeddedStore, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """A failing test email answers 502 with a masked error; the password is in no log line."""
    with socket.socket() as reserved:
        reserved.bind(("127.0.0.1", 0))  # nothing listens: connection refused
        settings = notify_settings(
            embedded_store.uri,
            tmp_path,
            smtp=reserved.getsockname()[1],
            smtp_user="alerts",
            smtp_password=SecretStr(SMTP_PASSWORD),
        )
        async with serve(settings) as service:
            failed = await service.client.post(f"{service.url}/agent/test-email")
    assert failed.status_code == 502
    assert failed.json()["detail"].startswith("email: ")
    assert SMTP_PASSWORD not in failed.text
    assert SMTP_PASSWORD not in caplog.text
    assert "alerts:****@" in caplog.text  # the masked URL is what the log shows
