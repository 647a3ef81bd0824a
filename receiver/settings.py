"""Typed settings from the environment and `.env`, read once in `create_app`.

Field names are the environment variable names (case-insensitive); the seed's names
(PROM_URL, MONGO_URI, ...) stay valid. Secrets are `SecretStr` so they never print.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

from pydantic import Field, SecretStr, ValidationError, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict


class SettingsError(Exception):
    """An invalid setting; the message is one line naming the variable."""


class Settings(BaseSettings):
    model_config = SettingsConfigDict(
        env_file=".env", env_file_encoding="utf-8", extra="ignore", case_sensitive=False
    )

    # service
    receiver_host: str = "127.0.0.1"
    receiver_port: int = Field(default=8000, ge=0, le=65535)
    data_dir: Path = Path("data")
    log_level: Literal["debug", "info", "warning", "error"] = "info"
    max_body_bytes: int = Field(default=5 * 1024 * 1024, gt=0)
    max_pending_deliveries: int = Field(default=2000, gt=0)  # in-memory, in front of the store

    # reliability: Alertmanager reconciliation and the Watchdog dead man's switch
    alertmanager_urls: str = ""  # comma-separated; empty = reconciler off
    reconcile_interval: float = Field(default=60.0, gt=0)
    reconcile_grace_seconds: float = Field(default=30.0, ge=0)
    watchdog_alertname: str = "Watchdog"
    watchdog_timeout_seconds: float = Field(default=600.0, ge=0)  # 0 = off
    public_url: str = ""

    # webhook auth as Alertmanager's http_config sends it
    webhook_token: SecretStr | None = None
    webhook_user: str | None = None
    webhook_password: SecretStr | None = None

    # store
    mongo_uri: SecretStr | None = None
    mongo_db: str = "ai_devops_monitor"
    store_timeout_seconds: float = Field(default=5.0, gt=0)
    nx_start_timeout_seconds: float = Field(default=20.0, gt=0)
    max_docs: int = Field(default=10_000, gt=0)
    delivery_retention_days: int = Field(default=30, gt=0)

    # prometheus / detection
    prom_url: str = "http://127.0.0.1:9090"
    monitor_interval: int = Field(default=60, ge=0)
    z_threshold: float = Field(default=3.0, gt=0)

    # llm
    llm_provider: Literal["auto", "ollama", "openai", "offline"] = "auto"
    llm_url: str = ""
    llm_model: str = "llama3.1:8b"
    llm_api_key: SecretStr | None = None
    llm_timeout_seconds: float = Field(default=60.0, gt=0)

    # notifications
    smtp_host: str = ""
    smtp_port: int = Field(default=25, ge=0, le=65535)
    smtp_user: str = ""
    smtp_password: SecretStr | None = None
    smtp_from: str = ""
    slack_enabled: bool = False
    slack_webhook_url: SecretStr | None = None
    apprise_urls: SecretStr | None = None
    notify_rca_wait_seconds: float = Field(default=30.0, ge=0)

    # tracing
    langfuse_public_key: SecretStr | None = None
    langfuse_secret_key: SecretStr | None = None
    langfuse_host: str = ""

    @field_validator(
        "webhook_token",
        "webhook_password",
        "mongo_uri",
        "llm_api_key",
        "smtp_password",
        "slack_webhook_url",
        "apprise_urls",
        "langfuse_public_key",
        "langfuse_secret_key",
        mode="before",
    )
    @classmethod
    def _empty_secret_is_unset(cls, value: Any) -> Any:
        if isinstance(value, str) and not value.strip():
            return None
        return value

    @field_validator("webhook_user", mode="before")
    @classmethod
    def _empty_user_is_unset(cls, value: Any) -> Any:
        if isinstance(value, str) and not value.strip():
            return None
        return value

    @property
    def webhook_auth_configured(self) -> bool:
        return self.webhook_token is not None or self.webhook_user is not None


def load_settings(**overrides: Any) -> Settings:
    """Read settings; raise `SettingsError` with one line naming the first bad variable."""
    try:
        return Settings(**overrides)
    except ValidationError as err:
        first = err.errors()[0]
        name = str(first["loc"][0]).upper() if first["loc"] else "settings"
        raw = first.get("input")
        shown = "" if name.endswith(("PASSWORD", "TOKEN", "KEY", "URI", "URL", "URLS")) else raw
        got = f" (got {shown!r})" if isinstance(shown, str | int | float) and shown != "" else ""
        raise SettingsError(f"invalid setting {name}: {first['msg']}{got}") from err
