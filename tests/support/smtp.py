"""A real SMTP server on loopback (aiosmtpd) for notification tests: plain, STARTTLS,
implicit TLS and AUTH, plus a throwaway self-signed certificate."""

from __future__ import annotations

import contextlib
import email
import email.policy
import importlib.util
import shutil
import ssl
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass, field
from email.message import EmailMessage
from pathlib import Path
from typing import Any

from aiosmtpd.controller import Controller
from aiosmtpd.smtp import AuthResult, LoginPassword

from tests.support.procs import free_port


@dataclass(frozen=True)
class Received:
    """One message as the server saw it."""

    mail_from: str
    rcpt_tos: list[str]
    raw: bytes
    message: EmailMessage
    login: str | None  # the AUTH user, None when the session did not authenticate
    tls: bool


def email_event(mail: Received) -> str:
    """The outbox event an email carries, read from its subject: `firing` (the page),
    `resolved` or `analysis` (the follow-up of a page sent before its analysis)."""
    subject = str(mail.message["Subject"])
    if subject.startswith("[RESOLVED] "):
        return "resolved"
    if subject.startswith("Re: "):
        return "analysis"
    return "firing"


def email_text(mail: Received) -> str:
    """Every text part of an email (plain and HTML), one after another."""
    return "\n".join(
        str(part.get_content())
        for part in mail.message.walk()
        if not part.is_multipart() and part.get_content_maintype() == "text"
    )


@dataclass
class SmtpServer:
    port: int
    messages: list[Received] = field(default_factory=list)
    failed_logins: list[str] = field(default_factory=list)


class _Handler:
    def __init__(self, server: SmtpServer) -> None:
        self._server = server

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        raw: bytes = envelope.original_content or envelope.content
        parsed = email.message_from_bytes(raw, policy=email.policy.default)
        assert isinstance(parsed, EmailMessage)
        login = session.auth_data if session.authenticated else None
        self._server.messages.append(
            Received(
                mail_from=envelope.mail_from,
                rcpt_tos=list(envelope.rcpt_tos),
                raw=raw,
                message=parsed,
                login=login,
                tls=session.ssl is not None
                or server.transport.get_extra_info("ssl_object") is not None,
            )
        )
        return "250 OK"


class _Authenticator:
    def __init__(self, server: SmtpServer, user: str, password: str) -> None:
        self._server = server
        self._user = user.encode()
        self._password = password.encode()

    def __call__(
        self, server: Any, session: Any, envelope: Any, mechanism: str, auth_data: Any
    ) -> AuthResult:
        ok = isinstance(auth_data, LoginPassword) and (
            auth_data.login == self._user and auth_data.password == self._password
        )
        if not ok and isinstance(auth_data, LoginPassword):
            self._server.failed_logins.append(auth_data.login.decode())
        # handled=False: aiosmtpd sends the 235/535 reply itself.
        return AuthResult(success=ok, handled=False, auth_data=self._user.decode() if ok else None)


@contextlib.contextmanager
def smtp_server(
    *,
    starttls: ssl.SSLContext | None = None,
    implicit_tls: ssl.SSLContext | None = None,
    auth: tuple[str, str] | None = None,
    port: int | None = None,
) -> Iterator[SmtpServer]:
    """Run an SMTP server on a free loopback port; always stopped on exit.

    `starttls` offers and requires STARTTLS; `implicit_tls` wraps the socket from the start;
    `auth` = (user, password) enables AUTH (required, and only after TLS, when `starttls` is
    given; offered in clear otherwise, because aiosmtpd warns about requiring it in clear).
    `port` reuses a known port (a server that "comes back" where a client expects it).
    """
    state = SmtpServer(port=port or free_port())
    kwargs: dict[str, Any] = {}
    if starttls is not None:
        kwargs.update(tls_context=starttls, require_starttls=True)
    if auth is not None:
        kwargs["authenticator"] = _Authenticator(state, *auth)
        if starttls is not None:
            kwargs["auth_required"] = True
        else:
            kwargs["auth_require_tls"] = False
    controller = Controller(
        _Handler(state),
        hostname="127.0.0.1",
        port=state.port,
        ssl_context=implicit_tls,
        **kwargs,
    )
    controller.start()
    try:
        yield state
    finally:
        controller.stop()


def self_signed_context(directory: Path) -> ssl.SSLContext | None:
    """A server TLS context with a fresh self-signed cert for 127.0.0.1, or None if neither
    the `cryptography` package nor the `openssl` binary is available to make one."""
    cert, key = directory / "cert.pem", directory / "key.pem"
    if importlib.util.find_spec("cryptography") is not None:
        _cryptography_cert(cert, key)
    elif shutil.which("openssl") is not None:
        subprocess.run(
            [
                "openssl", "req", "-x509", "-newkey", "ec",
                "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes",
                "-keyout", str(key), "-out", str(cert), "-days", "1",
                "-subj", "/CN=127.0.0.1", "-addext", "subjectAltName=IP:127.0.0.1",
            ],
            check=True,
            capture_output=True,
        )  # fmt: skip
    else:
        return None
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(cert, key)
    return context


def _cryptography_cert(cert_path: Path, key_path: Path) -> None:
    import datetime
    import ipaddress

    from cryptography import x509  # type: ignore[import-not-found, unused-ignore]
    from cryptography.hazmat.primitives import hashes, serialization  # type: ignore[import-not-found, unused-ignore]
    from cryptography.hazmat.primitives.asymmetric import ec  # type: ignore[import-not-found, unused-ignore]
    from cryptography.x509.oid import NameOID  # type: ignore[import-not-found, unused-ignore]

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")])
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(
            x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
            critical=False,
        )
        .sign(key, hashes.SHA256())
    )
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
