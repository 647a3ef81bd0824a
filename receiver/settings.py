"""Typed settings from the environment and `.env`, read once in `create_app`.

Field names are the environment variable names (case-insensitive); the seed's names
(PROM_URL, MONGO_URI, ...) stay valid. Secrets are `SecretStr` so they never print.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

from pydantic import Field, SecretStr, ValidationError, ValidationInfo, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from receiver.durations import parse_duration


def _is_number(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True


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
    ingest_concurrency: int = Field(default=8, ge=1, le=64)  # groups applied at once

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
    # store connections of everything but the webhook's inserts (which get their own): the
    # embedded server runs one command at a time, so this bounds what a webhook waits behind
    # (0 = the driver's default of 100)
    mongo_pool_size: int = Field(default=2, ge=0, le=1000)
    store_timeout_seconds: float = Field(default=5.0, gt=0)
    nx_start_timeout_seconds: float = Field(default=20.0, gt=0)
    max_docs: int = Field(default=10_000, gt=0)
    delivery_retention_days: int = Field(default=30, gt=0)

    # prometheus / detection
    prom_url: str = "http://127.0.0.1:9090"
    monitor_interval: int = Field(default=60, ge=0)
    z_threshold: float = Field(default=3.0, gt=0)
    # outlier poller; durations are seconds or Prometheus durations (`90s`, `2h`, `14d`)
    detect_selectors: str = ""  # `;`-separated PromQL; empty = `auto` (recorded + all series)
    detect_include_internal: bool = False  # also prometheus_*, go_*, scrape_*, process_* ...
    detect_rules_dir: Path = Path("rules/specs")  # recording-rule specs polled first
    detect_max_series: int = Field(default=10_000, gt=0)
    detect_method: Literal["range", "robust", "zscore"] = "range"
    detect_threshold: float | None = Field(default=None, gt=0, lt=1)  # None = DEFAULT_THRESHOLD
    detect_window: float = Field(default=7200.0, gt=0)  # one query_range per selector
    detect_step: float = Field(default=60.0, gt=0)
    detect_lookback: float = Field(default=14 * 86400.0, gt=0)  # history a value is judged on
    detect_min_history: float = Field(default=86400.0, ge=0)
    detect_min_duration: float = Field(default=0.0, ge=0)  # hold before an alarm
    detect_suppress: float = Field(default=3600.0, ge=0)  # quiet time after an episode ends
    detect_settle: float = Field(default=6 * 3600.0, ge=0)  # a lasting shift resolves after
    detect_rate_window: float = Field(default=300.0, gt=0)  # rate() over counters
    detect_clear_ratio: float = Field(default=0.8, gt=0, le=1)  # resolve below ratio x threshold
    detect_severity: Literal["critical", "high", "medium", "low"] = "medium"
    detect_alertname: str = Field(default="OutlierDetected", min_length=1)
    detect_query_timeout: float = Field(default=30.0, gt=0)
    detect_season_span: float = Field(default=8 * 86400.0, ge=0)  # seasonal fit history; 0 = off
    detect_season_refit: float = Field(default=3600.0, gt=0)  # a series' profile is renewed

    @field_validator(
        "detect_window",
        "detect_step",
        "detect_lookback",
        "detect_min_history",
        "detect_min_duration",
        "detect_suppress",
        "detect_settle",
        "detect_rate_window",
        "detect_query_timeout",
        "detect_season_span",
        "detect_season_refit",
        mode="before",
    )
    @classmethod
    def _duration_seconds(cls, value: Any) -> Any:
        if isinstance(value, str) and value.strip() and not _is_number(value):
            return parse_duration(value.strip()) / 1000.0
        return value

    @field_validator("detect_step")
    @classmethod
    def _step_within_window(cls, value: float, info: ValidationInfo) -> float:
        window = info.data.get("detect_window")
        if window is not None and value * 2 > window:
            raise ValueError(f"must be at most half of DETECT_WINDOW ({window:g}s)")
        return value

    @field_validator("detect_min_history")
    @classmethod
    def _history_within_lookback(cls, value: float, info: ValidationInfo) -> float:
        lookback = info.data.get("detect_lookback")
        if lookback is not None and value > lookback:
            raise ValueError(f"must not exceed DETECT_LOOKBACK ({lookback:g}s)")
        return value

    # llm
    llm_provider: Literal["auto", "ollama", "openai", "offline"] = "auto"
    llm_url: str = ""
    llm_model: str = "llama3.1:8b"
    llm_api_key: SecretStr | None = None
    llm_timeout_seconds: float = Field(default=60.0, gt=0)
    llm_num_ctx: int = Field(default=8192, ge=0)  # Ollama context window; 0 = model default
    # JSON {"model-prefix": [input, output]} per 1k tokens; merged over the built-in list
    llm_prices_per_1k: dict[str, tuple[float, float]] = Field(default_factory=dict)
    llm_max_tokens_per_incident: int = Field(default=16_000, ge=0)  # prompt estimate; 0 = off
    llm_max_tokens_per_hour: int = Field(default=300_000, ge=0)  # all replicas; 0 = off

    # enrichment worker
    enrich_concurrency: int = Field(default=2, ge=1, le=64)
    enrich_timeout_seconds: float = Field(default=180.0, gt=0)  # evidence + LLM, per incident
    enrich_lease_margin_seconds: float = Field(default=60.0, ge=0)  # a claim outlives the timeout
    enrich_poll_seconds: float = Field(default=5.0, gt=0)
    enrich_settle_seconds: float = Field(default=0.5, ge=0)  # let a burst land before analysing
    enrich_rules_dir: Path = Path("rules/generated")  # alert expressions by alertname
    # analyses without a model (offline analyst) run beside model calls, never behind them
    enrich_offline_concurrency: int = Field(default=8, ge=1, le=256)

    # storms: incidents opening within STORM_WINDOW_SECONDS that share a cause label form one
    # storm once STORM_MIN_SIZE of them do (one analysis, one page listing every member)
    storm_enabled: bool = True
    storm_window_seconds: float = Field(default=120.0, gt=0)
    storm_min_size: int = Field(default=10, ge=2)
    storm_hold_seconds: float = Field(default=3.0, ge=0)  # a new incident waits for a storm
    storm_followup_seconds: float = Field(default=60.0, gt=0)  # at most one update per interval
    # a new storm's analysis (and so its page) waits while members keep joining, each join
    # pushing it STORM_HOLD_SECONDS on, but never past this long after the storm formed
    storm_settle_seconds: float = Field(default=15.0, ge=0)
    storm_labels: str = "service,job,app,deployment,namespace,cluster,dependency,alertname"

    # a delivery or analysis that fails is retried after RETRY_BASE_SECONDS, doubling (with
    # jitter) up to RETRY_MAX_SECONDS, and quarantined after RETRY_MAX_ATTEMPTS failures
    retry_base_seconds: float = Field(default=2.0, gt=0)
    retry_max_seconds: float = Field(default=600.0, gt=0)
    retry_max_attempts: int = Field(default=5, ge=1, le=100)

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
    smtp_to: str = ""  # comma-separated; the default recipients until set via the API
    smtp_mode: Literal["auto", "plain", "starttls", "ssl"] = "auto"
    smtp_verify: bool = True
    notify_routes: str = ""  # `critical=email,slack;low=slack`; unset severities keep defaults
    notify_resolved: bool = True
    notify_rate_limit: int = Field(default=20, ge=0)  # messages per channel per window; 0 = off
    notify_rate_window_seconds: float = Field(default=60.0, gt=0)
    notify_max_attempts: int = Field(default=8, ge=1)
    notify_retry_base_seconds: float = Field(default=5.0, gt=0)
    notify_retry_max_seconds: float = Field(default=600.0, gt=0)
    notify_send_timeout_seconds: float = Field(default=30.0, gt=0)
    notify_lease_seconds: float = Field(default=300.0, gt=0)
    notify_poll_seconds: float = Field(default=1.0, gt=0)
    notify_followup_max_seconds: float = Field(default=3600.0, gt=0)
    notify_email_chart: bool = True  # attach the main evidence series (PNG) to emails
    notify_channel_concurrency: int = Field(default=8, ge=1, le=64)  # sends at once per channel

    # tracing
    langfuse_public_key: SecretStr | None = None
    langfuse_secret_key: SecretStr | None = None
    langfuse_host: str = ""

    # API access (separate from the webhook's credentials); each a comma-separated list
    api_token: SecretStr | None = None  # read scope
    admin_token: SecretStr | None = None  # admin scope (config changes, deletes, re-analysis)
    # operator scope: the on-call actions on incidents (ack, assign, note, silence, close)
    operator_token: SecretStr | None = None
    cors_origins: str = ""  # comma-separated origins allowed by CORS; none by default
    # Host headers answered; empty = localhost, 127.0.0.1, ::1, the bind address and PUBLIC_URL's
    # host while no API token is set (stops DNS rebinding), any host once tokens are set
    receiver_allowed_hosts: str = ""
    login_failures_per_minute: int = Field(default=5, ge=0)  # per client address; 0 = off
    chat_rate_per_minute: int = Field(default=20, ge=0)  # per API token (or address); 0 = off

    # logs: app.log (info+), debug.log, error.log, rotated
    log_dir: Path | None = None  # default DATA_DIR/logs
    log_files: bool = True
    log_max_bytes: int = Field(default=10 * 1024 * 1024, ge=1024)
    log_backup_count: int = Field(default=5, ge=1)

    # retention: MAX_DOCS caps each collection; overrides and TTLs as `name=N,name=N`
    max_docs_per_collection: str = ""
    retention_days: str = ""
    retention_interval_seconds: float = Field(default=300.0, ge=0)

    # chat
    chat_history_messages: int = Field(default=20, ge=0, le=200)
    chat_max_incidents: int = Field(default=8, ge=1, le=50)
    chat_session_active_minutes: int = Field(default=60, gt=0)

    @field_validator("max_docs_per_collection", "retention_days")
    @classmethod
    def _name_number_pairs(cls, value: str) -> str:
        for part in filter(None, (p.strip() for p in value.split(","))):
            name, sep, number = part.partition("=")
            if not sep or not name.strip() or not number.strip().isdigit():
                raise ValueError(f"expected name=number pairs, got {part[:60]!r}")
            if int(number) <= 0:
                raise ValueError(f"{name.strip()}: must be greater than 0")
        return value

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
        "api_token",
        "admin_token",
        "operator_token",
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

    @property
    def api_auth_configured(self) -> bool:
        return (
            self.api_token is not None
            or self.admin_token is not None
            or self.operator_token is not None
        )

    @property
    def log_path(self) -> Path:
        return self.log_dir if self.log_dir is not None else self.data_dir / "logs"

    @property
    def links_url(self) -> str:
        """Base URL of the console/API links in notifications: PUBLIC_URL, else the address
        the service binds when that is one host (a wildcard bind has no URL to offer)."""
        if self.public_url:
            return self.public_url
        host = self.receiver_host.strip("[]")
        if host in ("", "0.0.0.0", "::"):
            return ""
        return f"http://{f'[{host}]' if ':' in host else host}:{self.receiver_port}"


def check_startup(settings: Settings) -> None:
    """Refuse combinations that would leave a door open; `SettingsError` names the variable."""
    if settings.webhook_user is not None and settings.webhook_password is None:
        raise SettingsError(
            "invalid setting WEBHOOK_PASSWORD: must not be empty when WEBHOOK_USER is set "
            "(basic auth with an empty password is no protection)"
        )
    if settings.webhook_password is not None and settings.webhook_user is None:
        raise SettingsError(
            "invalid setting WEBHOOK_USER: must be set when WEBHOOK_PASSWORD is "
            "(a password without a user is never checked)"
        )


def load_settings(**overrides: Any) -> Settings:
    """Read settings; raise `SettingsError` with one line naming the first bad variable."""
    try:
        settings = Settings(**overrides)
        check_startup(settings)
        return settings
    except ValidationError as err:
        first = err.errors()[0]
        name = str(first["loc"][0]).upper() if first["loc"] else "settings"
        raw = first.get("input")
        shown = "" if name.endswith(("PASSWORD", "TOKEN", "KEY", "URI", "URL", "URLS")) else raw
        got = f" (got {shown!r})" if isinstance(shown, str | int | float) and shown != "" else ""
        raise SettingsError(f"invalid setting {name}: {first['msg']}{got}") from err
