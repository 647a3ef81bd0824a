"""Email through Apprise to a real SMTP server on loopback: plain, STARTTLS, TLS, AUTH."""

from __future__ import annotations

import ssl
from email.message import EmailMessage
from pathlib import Path

import pytest
from pydantic import SecretStr

from receiver.domain import Severity
from receiver.notify.channels import Channel, ChannelKind, build_channels, make_channel
from receiver.notify.channels import email_url as build_email_url
from receiver.notify.render import Event, render
from receiver.notify.send import AppriseNotifier
from receiver.settings import Settings
from tests.notify.conftest import HOSTILE, make_analysis, make_incident, make_signal
from tests.support.procs import free_port
from tests.support.smtp import self_signed_context, smtp_server

SENDER = "Alert Bot <alerts@example.com>"


def _email(port: int, **options: object) -> Channel:
    url = build_email_url(
        host="127.0.0.1",
        port=port,
        recipients=["ops@example.com"],
        sender=SENDER,
        **options,  # type: ignore[arg-type]
    )
    return make_channel("email", ChannelKind.EMAIL, url)


def _parts(message: EmailMessage) -> dict[str, str]:
    return {
        part.get_content_type(): str(part.get_content())
        for part in message.walk()
        if not part.is_multipart()
    }


@pytest.fixture
def tls_context(tmp_path: Path) -> ssl.SSLContext:
    context = self_signed_context(tmp_path)
    if context is None:
        pytest.skip("no way to make a self-signed certificate (neither cryptography nor openssl)")
    return context


async def test_plain_email_is_multipart_with_analysis(notifier: AppriseNotifier) -> None:
    """A firing email has the seed subject, From/To, text + HTML parts and the analysis."""
    message = render(make_incident(), Event.FIRING, make_analysis())
    with smtp_server() as server:
        result = await notifier.send(_email(server.port), message)
    assert result.ok, result.error
    [mail] = server.messages
    assert mail.mail_from == "alerts@example.com"
    assert mail.rcpt_tos == ["ops@example.com"]
    assert mail.message["Subject"] == "[HIGH] cpu_usage"
    assert mail.message["From"] == SENDER
    assert mail.message["To"] == "ops@example.com"
    assert mail.message.get_content_type() == "multipart/alternative"
    parts = _parts(mail.message)
    assert set(parts) == {"text/plain", "text/html"}
    for part in parts.values():
        assert "runaway worker loop" in part
        assert "One server is overworked" in part
        assert "Roll back the 18:40 deploy" in part
    assert "<ol><li>Roll back the 18:40 deploy</li>" in parts["text/html"]


async def test_hostile_label_arrives_escaped(notifier: AppriseNotifier) -> None:
    """Markup in a label shows as text in the HTML part, never as markup."""
    signal = make_signal(instance=HOSTILE, reason=HOSTILE)
    message = render(make_incident(signals=[signal]), Event.FIRING)
    with smtp_server() as server:
        assert (await notifier.send(_email(server.port), message)).ok
    html = _parts(server.messages[0].message)["text/html"]
    assert "<script>" not in html
    assert "&lt;script&gt;alert(&quot;x&quot;)&lt;/script&gt;" in html


async def test_threading_headers(notifier: AppriseNotifier) -> None:
    """All emails of an incident reference one msg-id; follow-ups also reply to it."""
    incident = make_incident(Severity.CRITICAL)
    with smtp_server() as server:
        for event in (Event.FIRING, Event.ANALYSIS, Event.RESOLVED):
            result = await notifier.send(
                _email(server.port), render(incident, event, make_analysis())
            )
            assert result.ok, result.error
    first, follow_up, resolved = (m.message for m in server.messages)
    thread = "<incident.inc-0001@ai-devops-monitor>"
    assert first["References"] == thread
    assert first["In-Reply-To"] is None
    for mail in (follow_up, resolved):
        assert mail["References"] == thread
        assert mail["In-Reply-To"] == thread
    assert follow_up["Subject"] == "Re: [CRITICAL] cpu_usage"
    assert resolved["Subject"] == "[RESOLVED] [CRITICAL] cpu_usage"
    # Apprise makes its own Message-ID: exactly one per email, never our thread id.
    assert all(len(m.get_all("Message-ID") or []) == 1 for m in (first, follow_up, resolved))
    assert first["X-Incident-Id"] == "inc-0001"


async def test_starttls(notifier: AppriseNotifier, tls_context: ssl.SSLContext) -> None:
    """Port-independent STARTTLS works against a server that requires it."""
    with smtp_server(starttls=tls_context) as server:
        channel = _email(server.port, mode="starttls", verify=False)
        result = await notifier.send(channel, render(make_incident(), Event.FIRING))
    assert result.ok, result.error
    assert server.messages[0].tls


async def test_plain_to_starttls_only_server_fails(
    notifier: AppriseNotifier, tls_context: ssl.SSLContext
) -> None:
    """A server that requires STARTTLS refuses a plain session; the failure is retryable."""
    with smtp_server(starttls=tls_context) as server:
        result = await notifier.send(_email(server.port), render(make_incident(), Event.FIRING))
    assert not result.ok
    assert result.retryable
    assert server.messages == []


async def test_implicit_tls(notifier: AppriseNotifier, tls_context: ssl.SSLContext) -> None:
    """`mode=ssl` speaks TLS from the first byte."""
    with smtp_server(implicit_tls=tls_context) as server:
        channel = _email(server.port, mode="ssl", verify=False)
        result = await notifier.send(channel, render(make_incident(), Event.FIRING))
    assert result.ok, result.error
    assert server.messages[0].tls


async def test_auth_over_starttls(notifier: AppriseNotifier, tls_context: ssl.SSLContext) -> None:
    """User and password (with URL-special characters) authenticate after STARTTLS."""
    password = "p@ss:w/rd?#1"
    with smtp_server(starttls=tls_context, auth=("alerts", password)) as server:
        channel = _email(
            server.port, user="alerts", password=password, mode="starttls", verify=False
        )
        result = await notifier.send(channel, render(make_incident(), Event.FIRING))
    assert result.ok, result.error
    assert server.messages[0].login == "alerts"


async def test_auth_in_clear(notifier: AppriseNotifier) -> None:
    """AUTH also works on a plain connection when the server allows it."""
    with smtp_server(auth=("alerts", "s3cret")) as server:
        channel = _email(server.port, user="alerts", password="s3cret")
        result = await notifier.send(channel, render(make_incident(), Event.FIRING))
    assert result.ok, result.error
    assert server.messages[0].login == "alerts"


async def test_wrong_password_fails_without_leaking_it(notifier: AppriseNotifier) -> None:
    """A rejected login fails the send; the error never contains the password."""
    with smtp_server(auth=("alerts", "s3cret")) as server:
        channel = _email(server.port, user="alerts", password="wr0ngPassw0rd")
        result = await notifier.send(channel, render(make_incident(), Event.FIRING))
    assert not result.ok
    assert set(server.failed_logins) == {"alerts"}  # smtplib tries PLAIN, then LOGIN
    assert server.messages == []
    assert "wr0ngPassw0rd" not in result.error
    assert "wr0ngPassw0rd" not in repr(result)


async def test_connection_refused_is_retryable(notifier: AppriseNotifier) -> None:
    """Nobody listening → not ok, retryable, error names the masked channel."""
    result = await notifier.send(_email(free_port()), render(make_incident(), Event.FIRING))
    assert not result.ok
    assert result.retryable
    assert result.error.startswith("email:")


async def test_settings_to_inbox(notifier: AppriseNotifier) -> None:
    """SMTP_* settings build a channel that delivers with AUTH and the configured From."""
    with smtp_server(auth=("alerts", "s3cret")) as server:
        settings = Settings(
            _env_file=None,
            smtp_host="127.0.0.1",
            smtp_port=server.port,
            smtp_user="alerts",
            smtp_password=SecretStr("s3cret"),
            smtp_from=SENDER,
        )
        [channel] = build_channels(settings, email_to=["ops@example.com", "dev@example.com"])
        result = await notifier.send(channel, render(make_incident(), Event.DIGEST))
    assert result.ok, result.error
    assert sorted(m.rcpt_tos[0] for m in server.messages) == ["dev@example.com", "ops@example.com"]
    assert {m.login for m in server.messages} == {"alerts"}
