"""Webhook credentials exactly as Alertmanager's http_config sends them (Bearer and/or Basic)."""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac

from starlette.requests import Request

from receiver.settings import Settings


def _same(given: str, expected: str) -> bool:
    """Constant time, also in the lengths: digests of equal size are compared."""
    return hmac.compare_digest(
        hashlib.sha256(given.encode()).digest(), hashlib.sha256(expected.encode()).digest()
    )


def webhook_authorised(request: Request, settings: Settings) -> bool:
    """True when no credentials are configured, or the request carries a configured one."""
    if not settings.webhook_auth_configured:
        return True
    header = request.headers.get("authorization", "")
    scheme, _, value = header.partition(" ")
    scheme = scheme.lower()
    value = value.strip()
    if scheme == "bearer" and settings.webhook_token is not None:
        return _same(value, settings.webhook_token.get_secret_value())
    if scheme == "basic" and settings.webhook_user is not None:
        try:
            decoded = base64.b64decode(value, validate=True).decode()
        except (binascii.Error, UnicodeDecodeError):
            return False
        user, sep, password = decoded.partition(":")
        expected = settings.webhook_password.get_secret_value() if settings.webhook_password else ""
        # both compared every time, joined without short-circuit: the time taken must not
        # tell which of the two was wrong
        user_ok = _same(user, settings.webhook_user)
        password_ok = _same(password, expected)
        return bool(sep) & user_ok & password_ok & bool(expected)
    return False
