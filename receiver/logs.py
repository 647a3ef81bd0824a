"""Log files under LOG_DIR: app.log (info+), debug.log (everything), error.log (error+).

Each line is one JSON object (time, level, logger, message, and any `extra` fields such as
`incident_id`), rotated by size. A filter replaces every configured secret with `***` before
a line is written, whatever code logged it.
"""

from __future__ import annotations

import json
import logging
import logging.handlers
from collections.abc import Callable, Iterable
from datetime import UTC, datetime
from typing import Any

from pydantic import SecretStr

from receiver.safety import redact, split_userinfo
from receiver.settings import Settings

LOGGER = "receiver"
MASK = "***"
MIN_SECRET_LEN = 4  # shorter values would mask ordinary words

# Attributes every LogRecord has; anything else came in through `extra=`.
_STANDARD = frozenset(
    vars(logging.LogRecord("x", logging.INFO, "x", 0, "", None, None)).keys()
    | {"message", "asctime", "taskName"}
)


def secret_values(settings: Settings) -> list[str]:
    """Every secret the settings hold, and each comma-separated part of token lists."""
    values: list[str] = []
    for name in type(settings).model_fields:
        value = getattr(settings, name)
        if isinstance(value, SecretStr):
            raw = value.get_secret_value()
            values.append(raw)
            values.extend(part.strip() for part in raw.split(","))
    # PROM_URL is a plain URL setting, but a password in its user-info is a secret all the same
    _, credentials = split_userinfo(settings.prom_url)
    if credentials is not None:
        values.append(credentials[1])
    return sorted({v for v in values if len(v) >= MIN_SECRET_LEN}, key=len, reverse=True)


class RedactSecrets(logging.Filter):
    """Rewrites the record's message and extras with every secret replaced by `***`."""

    def __init__(self, secrets: Iterable[str]) -> None:
        super().__init__()
        self.secrets = list(secrets)

    def _clean(self, text: str) -> str:
        return redact(text, self.secrets, MASK)

    def filter(self, record: logging.LogRecord) -> bool:
        if not self.secrets:
            return True
        record.msg = self._clean(record.getMessage())
        record.args = None
        if record.exc_info and not record.exc_text:
            record.exc_text = logging.Formatter().formatException(record.exc_info)
        if record.exc_text:
            record.exc_text = self._clean(record.exc_text)
        for key, value in list(vars(record).items()):
            if key not in _STANDARD and isinstance(value, str):
                setattr(record, key, self._clean(value))
        return True


class JsonLines(logging.Formatter):
    """One JSON object per line; extras (incident_id, ...) become top-level fields."""

    def format(self, record: logging.LogRecord) -> str:
        line: dict[str, Any] = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
        }
        for key, value in vars(record).items():
            if key not in _STANDARD and not key.startswith("_"):
                line[key] = value if isinstance(value, str | int | float | bool) else repr(value)
        if record.exc_info and not record.exc_text:
            record.exc_text = self.formatException(record.exc_info)
        if record.exc_text:
            line["exception"] = record.exc_text
        return json.dumps(line, ensure_ascii=False)


def install(settings: Settings) -> Callable[[], None]:
    """Attach the three rotating files to the `receiver` logger; returns the undo."""
    if not settings.log_files:
        return lambda: None
    directory = settings.log_path
    directory.mkdir(parents=True, exist_ok=True)
    redact = RedactSecrets(secret_values(settings))
    formatter = JsonLines()
    handlers: list[logging.handlers.RotatingFileHandler] = []
    for name, level in (
        ("app.log", logging.INFO),
        ("debug.log", logging.DEBUG),
        ("error.log", logging.ERROR),
    ):
        handler = logging.handlers.RotatingFileHandler(
            directory / name,
            maxBytes=settings.log_max_bytes,
            backupCount=settings.log_backup_count,
            encoding="utf-8",
        )
        handler.setLevel(level)
        handler.addFilter(redact)
        handler.setFormatter(formatter)
        handlers.append(handler)
    logger = logging.getLogger(LOGGER)
    previous_level = logger.level
    logger.setLevel(logging.DEBUG)
    for handler in handlers:
        logger.addHandler(handler)

    def uninstall() -> None:
        for handler in handlers:
            logger.removeHandler(handler)
            handler.close()
        logger.setLevel(previous_level)

    return uninstall
