"""One shared TLS context for Apprise's email plugin instead of a new one per email.

Apprise's `AppriseSMTPController.__enter__` (apprise/plugins/email/smtp.py) calls
`ssl.create_default_context()` for every message, before it knows whether the connection is
plain, STARTTLS or implicit TLS, and offers no argument to pass a context in. Building one loads
the system CA store (~30 ms of CPU each); under a storm it was a third of the service's busy
samples, even over plain SMTP where the context is never used.

`install()` points that module's `ssl` name at a stand-in whose `create_default_context()`
returns a `_LazyContext`: it takes the two settings Apprise changes (`check_hostname`,
`verify_mode` for SMTP_VERIFY=false) and, only when smtplib wraps a socket, hands the call to a
real context built once per settings pair and shared by every later email. Those real
contexts are never changed after they are built, so a non-verifying channel cannot weaken a
verifying one. Apprise stays the dispatcher; only how its context is obtained changes. A CA
store changed on disk is seen after a restart.
"""

from __future__ import annotations

import functools
import logging
import socket
import ssl
import threading
import types
from typing import Any

log = logging.getLogger(__name__)

_lock = threading.Lock()


@functools.cache
def shared_context(check_hostname: bool, verify_mode: ssl.VerifyMode) -> ssl.SSLContext:
    """The real client context for one settings pair; built on first use, then read-only."""
    context = ssl.create_default_context()
    # check_hostname must go off before CERT_NONE is allowed
    context.check_hostname = check_hostname
    context.verify_mode = verify_mode
    return context


class _LazyContext:
    """What Apprise's controller gets from `ssl.create_default_context()` once installed."""

    def __init__(self, *_: Any, **__: Any) -> None:
        self.check_hostname = True
        self.verify_mode = ssl.CERT_REQUIRED

    def wrap_socket(self, sock: socket.socket, *args: Any, **kwargs: Any) -> ssl.SSLSocket:
        with _lock:  # functools.cache may otherwise build the same context twice at once
            context = shared_context(self.check_hostname, ssl.VerifyMode(self.verify_mode))
        return context.wrap_socket(sock, *args, **kwargs)


class _SslStandIn(types.ModuleType):
    """The `ssl` module as Apprise's SMTP plugin sees it: everything real but the factory."""

    def __init__(self) -> None:
        super().__init__("ssl")
        self.create_default_context = _LazyContext

    def __getattr__(self, name: str) -> Any:
        return getattr(ssl, name)


def install() -> bool:
    """Give Apprise's SMTP plugin the lazy shared context; True when it is (now) in place.

    Idempotent. Returns False, leaving Apprise as it is, when its module no longer has the
    shape this adapter was written against (a newer Apprise may already do better).
    """
    try:
        from apprise.plugins.email import smtp as apprise_smtp
    except ImportError:  # pragma: no cover - Apprise is a hard dependency
        return False
    current = getattr(apprise_smtp, "ssl", None)
    if isinstance(current, _SslStandIn):
        return True
    if current is not ssl or not hasattr(apprise_smtp, "AppriseSMTPController"):
        log.info("Apprise's SMTP module changed shape; it builds its own TLS context per email")
        return False
    apprise_smtp.ssl = _SslStandIn()  # type: ignore[attr-defined]
    return True
