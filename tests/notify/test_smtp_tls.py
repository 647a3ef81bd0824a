"""Apprise's email plugin shares one TLS context per verify setting instead of one per email."""

from __future__ import annotations

import ssl
from pathlib import Path

import pytest
from apprise.plugins.email import smtp as apprise_smtp

from receiver.notify import smtp_tls
from receiver.notify.channels import Channel, ChannelKind, make_channel
from receiver.notify.channels import email_url as build_email_url
from receiver.notify.render import Event, render
from receiver.notify.send import AppriseNotifier
from tests.notify.conftest import make_incident
from tests.support.smtp import self_signed_context, smtp_server


def _email(port: int, mode: str, verify: bool) -> Channel:
    url = build_email_url(
        host="127.0.0.1",
        port=port,
        recipients=["ops@example.com"],
        sender="alerts@example.com",
        mode=mode,
        verify=verify,
    )
    return make_channel("email", ChannelKind.EMAIL, url)


@pytest.fixture
def tls_context(tmp_path: Path) -> ssl.SSLContext:
    context = self_signed_context(tmp_path)
    if context is None:
        pytest.skip("no way to make a self-signed certificate (neither cryptography nor openssl)")
    return context


def test_installed_by_the_notifier() -> None:
    """Building the notifier gives Apprise's SMTP module a factory that builds no real context."""
    AppriseNotifier()
    assert smtp_tls.install()
    seen = apprise_smtp.ssl  # type: ignore[attr-defined]
    assert not isinstance(seen.create_default_context(), ssl.SSLContext)
    assert seen.CERT_NONE is ssl.CERT_NONE


def test_one_real_context_per_setting_pair() -> None:
    """Every email with the same verify setting wraps with the same real context; off stays off."""
    verifying = smtp_tls.shared_context(True, ssl.CERT_REQUIRED)
    assert smtp_tls.shared_context(True, ssl.CERT_REQUIRED) is verifying
    lax = smtp_tls.shared_context(False, ssl.CERT_NONE)
    assert lax is not verifying
    assert verifying.check_hostname
    assert verifying.verify_mode is ssl.CERT_REQUIRED
    assert not lax.check_hostname
    assert lax.verify_mode is ssl.CERT_NONE


async def test_unverified_send_does_not_weaken_verified_one(tls_context: ssl.SSLContext) -> None:
    """After an SMTP_VERIFY=false email, a verifying channel still rejects a self-signed server."""
    async with AppriseNotifier() as notifier:
        with smtp_server(implicit_tls=tls_context) as server:
            lax = await notifier.send(
                _email(server.port, "ssl", False),
                render(make_incident(), Event.FIRING),
            )
            strict = await notifier.send(
                _email(server.port, "ssl", True),
                render(make_incident(), Event.FIRING),
            )
    assert lax.ok, lax.error
    assert not strict.ok
    assert len(server.messages) == 1
    assert server.messages[0].tls
