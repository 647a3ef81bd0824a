"""A local SMTP sink (aiosmtpd) that writes every message it receives to a directory as .eml."""

from __future__ import annotations

import email
import email.policy
import re
import threading
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from types import TracebackType
from typing import Any

from aiosmtpd.controller import Controller

from receiver.ports import free_port


@dataclass(frozen=True)
class Mail:
    path: Path
    subject: str
    recipients: tuple[str, ...]
    raw: bytes


def _slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9]+", "-", text).strip("-")[:60] or "message"


class _Handler:
    def __init__(self, sink: MailSink) -> None:
        self.sink = sink

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        raw: bytes = envelope.original_content or envelope.content
        self.sink.store(raw, tuple(envelope.rcpt_tos))
        return "250 OK"


class MailSink:
    """Listens on 127.0.0.1:`port` (0 = a free one); `mails` lists what arrived, in order."""

    def __init__(self, directory: Path, port: int = 0) -> None:
        self.directory = directory
        self.directory.mkdir(parents=True, exist_ok=True)
        self._lock = threading.Lock()
        self._mails: list[Mail] = []
        self.port = port or free_port()
        self._controller = Controller(_Handler(self), hostname="127.0.0.1", port=self.port)

    @property
    def mails(self) -> list[Mail]:
        with self._lock:
            return list(self._mails)

    def store(self, raw: bytes, recipients: tuple[str, ...]) -> Mail:
        message = email.message_from_bytes(raw, policy=email.policy.default)
        subject = str(message.get("Subject", ""))
        stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%S")
        with self._lock:
            n = len(self._mails) + 1
            path = self.directory / f"{stamp}-{n:03d}-{_slug(subject)}.eml"
            path.write_bytes(raw)
            mail = Mail(path, subject, recipients, raw)
            self._mails.append(mail)
        return mail

    def __enter__(self) -> MailSink:
        self._controller.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self._controller.stop()
