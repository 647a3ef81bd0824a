"""Building the service from the environment: what `receiver serve` does before it listens, and
what `uvicorn receiver.app:app` (or gunicorn with uvicorn workers) does in each worker process.
"""

from __future__ import annotations

import logging
from typing import Any

from starlette.applications import Starlette

from receiver.logs import RedactSecrets, secret_values
from receiver.settings import Settings, load_settings


def checked_settings(**overrides: Any) -> Settings:
    """Settings from the environment (and `.env`), the notification variables parsed as
    start-up will; `SettingsError` / `ChannelError` carry one line naming the variable."""
    from receiver.notify.config import check_settings as check_channels

    settings = load_settings(**overrides)
    check_channels(settings)
    return settings


def configure_console(settings: Settings) -> None:
    """Console logging at LOG_LEVEL with secrets masked. The log files (receiver.logs) lower
    the `receiver` logger to DEBUG for debug.log; the console keeps LOG_LEVEL."""
    logging.basicConfig(
        level=settings.log_level.upper(),
        format="%(asctime)s %(levelname)s %(name)s %(message)s",
    )
    for handler in logging.getLogger().handlers:
        handler.setLevel(settings.log_level.upper())
        if not any(isinstance(f, RedactSecrets) for f in handler.filters):
            handler.addFilter(RedactSecrets(secret_values(settings)))


def app_from_environment() -> Starlette:
    """The ASGI app as `receiver serve` would build it, from this process' environment."""
    from receiver.app import create_app

    settings = checked_settings()
    configure_console(settings)
    return create_app(settings)
