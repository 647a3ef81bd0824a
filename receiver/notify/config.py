"""The notification configuration in force: settings, overridden by what the API stored.

Email recipients and the `enabled` switch (`/agent/email-config`), Slack's switch and webhook
URL (`/agent/slack-config`, the seed's) and the severity routing (`/api/v1/routing`) live in the
`settings` collection, so every replica reads the same values; the Slack URL stored there is a
secret like SLACK_WEBHOOK_URL (masked in every answer). SMTP credentials and APPRISE_URLS stay
in the environment only.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from pydantic import SecretStr

from receiver.domain import Severity
from receiver.notify.channels import (
    Channel,
    ChannelError,
    Routing,
    SmtpMode,
    build_channels,
    parse_routes,
    slack_channel,
)
from receiver.settings import Settings
from receiver.store.notify import OutboxStore

log = logging.getLogger(__name__)

EMAIL_SETTING = "notify.email"
ROUTING_SETTING = "notify.routing"
SLACK_SETTING = "notify.slack"
MAX_URL = 2048
MAX_RECIPIENTS = 50

_ADDRESS = re.compile(r"^[^@\s/,;<>\"]+@[^@\s/,;<>\"]+\.[^@\s/,;<>\"]+$")
_TAG = re.compile(r"^[a-z0-9_-]{1,40}$")


@dataclass(frozen=True)
class EmailConfig:
    enabled: bool
    recipients: tuple[str, ...]
    stored: bool  # False = the SMTP_TO default, never changed through the API


@dataclass(frozen=True)
class SlackConfig:
    enabled: bool
    webhook_url: str | None  # a secret: shown masked only
    stored: bool  # False = SLACK_ENABLED / SLACK_WEBHOOK_URL, never changed through the API

    def __repr__(self) -> str:
        return f"SlackConfig(enabled={self.enabled}, stored={self.stored})"


def parse_slack_body(body: Any, base: SlackConfig) -> SlackConfig:
    """`{"enabled": bool, "webhook_url": str}` over `base`; ChannelError names the bad field
    (the URL masked). Enabling needs a URL, given now or before."""
    if not isinstance(body, dict):
        raise ChannelError("body: expected a JSON object")
    unknown = sorted(set(body) - {"enabled", "webhook_url"})
    if unknown:
        raise ChannelError(f"{unknown[0][:40]}: unknown field (enabled, webhook_url)")
    enabled = body.get("enabled", base.enabled)
    if not isinstance(enabled, bool):
        raise ChannelError("enabled: expected true or false")
    url = body.get("webhook_url", base.webhook_url)
    if url is not None:
        if not isinstance(url, str) or not url.strip() or len(url) > MAX_URL:
            raise ChannelError(f"webhook_url: expected a URL of at most {MAX_URL} characters")
        url = url.strip()
        try:
            slack_channel(url)
        except ChannelError as err:
            raise ChannelError(
                "webhook_url: " + str(err).removeprefix("invalid setting SLACK_WEBHOOK_URL: ")
            ) from None
    if enabled and url is None:
        raise ChannelError("webhook_url: required to enable Slack")
    return SlackConfig(enabled=enabled, webhook_url=url, stored=True)


def parse_recipients(raw: Any) -> tuple[str, ...]:
    """A list (or comma-separated string) of addresses; ChannelError names the bad one."""
    items = raw.split(",") if isinstance(raw, str) else raw
    if not isinstance(items, list | tuple):
        raise ChannelError("recipients: expected a list of email addresses")
    out: list[str] = []
    for item in items:
        if not isinstance(item, str):
            raise ChannelError("recipients: expected a list of email addresses")
        address = item.strip()
        if not address:
            continue
        if len(address) > 254 or not _ADDRESS.match(address):
            raise ChannelError(f"recipients: not an email address: {address[:80]!r}")
        if address not in out:
            out.append(address)
    if len(out) > MAX_RECIPIENTS:
        raise ChannelError(f"recipients: at most {MAX_RECIPIENTS}")
    return tuple(out)


def parse_routing_body(body: Any, base: Routing) -> Routing:
    """`{"routes": {"critical": ["email", "slack"], ...}, "resolved": true}` over `base`."""
    if not isinstance(body, dict):
        raise ChannelError("body: expected a JSON object")
    routes: dict[Severity, frozenset[str]] = dict(base.routes)
    raw_routes = body.get("routes", {})
    if not isinstance(raw_routes, dict):
        raise ChannelError("routes: expected an object of severity → list of tags")
    for name, tags in raw_routes.items():
        try:
            severity = Severity(str(name).lower())
        except ValueError:
            raise ChannelError(
                f"routes: unknown severity {str(name)[:40]!r} (critical, high, medium, low)"
            ) from None
        if isinstance(tags, str):
            tags = [t for t in re.split(r"[,\s]+", tags) if t]
        if not isinstance(tags, list) or not all(isinstance(t, str) for t in tags):
            raise ChannelError(f"routes.{severity.value}: expected a list of tags")
        clean = {t.strip().lower() for t in tags}
        bad = sorted(t for t in clean if not _TAG.match(t))
        if bad:
            raise ChannelError(f"routes.{severity.value}: invalid tag {bad[0][:40]!r}")
        routes[severity] = frozenset(clean)
    resolved = body.get("resolved", base.resolved)
    if not isinstance(resolved, bool):
        raise ChannelError("resolved: expected true or false")
    return Routing(routes=routes, resolved=resolved)


def routing_json(routing: Routing) -> dict[str, Any]:
    return {
        "routes": {s.value: sorted(routing.routes.get(s, frozenset())) for s in Severity},
        "resolved": routing.resolved,
    }


class NotifyConfig:
    """Reads the effective configuration; rebuilds channels only when it changed."""

    def __init__(self, settings: Settings, outbox: OutboxStore) -> None:
        self.settings = settings
        self.outbox = outbox
        self.default_routing = parse_routes(
            settings.notify_routes, resolved=settings.notify_resolved
        )
        self._cache_key: tuple[Any, ...] | None = None
        self._channels: list[Channel] = []

    def default_email(self) -> EmailConfig:
        return default_email(self.settings)

    def default_slack(self) -> SlackConfig:
        url = self.settings.slack_webhook_url
        return SlackConfig(
            enabled=self.settings.slack_enabled,
            webhook_url=url.get_secret_value() if url is not None else None,
            stored=False,
        )

    def validate_settings(self) -> list[Channel]:
        """Build the channels from settings alone; ChannelError names the bad variable."""
        return self._build(self.default_email(), self.default_slack())

    async def slack(self) -> SlackConfig:
        stored = await self.outbox.get_setting(SLACK_SETTING)
        if stored is None:
            return self.default_slack()
        url = stored.value.get("webhook_url")
        return SlackConfig(
            # the embedded store may hand a stored bool back as 0/1
            enabled=bool(stored.value.get("enabled", False)),
            webhook_url=url if isinstance(url, str) and url else None,
            stored=True,
        )

    async def set_slack(self, slack: SlackConfig) -> SlackConfig:
        await self.outbox.put_setting(
            SLACK_SETTING, {"enabled": slack.enabled, "webhook_url": slack.webhook_url}
        )
        return await self.slack()

    async def email(self) -> EmailConfig:
        stored = await self.outbox.get_setting(EMAIL_SETTING)
        if stored is None:
            return self.default_email()
        value = stored.value
        return EmailConfig(
            enabled=bool(value.get("enabled", True)),
            recipients=tuple(str(r) for r in value.get("recipients", [])),
            stored=True,
        )

    async def set_email(self, enabled: bool, recipients: Sequence[str]) -> EmailConfig:
        await self.outbox.put_setting(
            EMAIL_SETTING, {"enabled": enabled, "recipients": list(recipients)}
        )
        return await self.email()

    async def routing(self) -> tuple[Routing, bool]:
        """(routing in force, whether it was set through the API)."""
        stored = await self.outbox.get_setting(ROUTING_SETTING)
        if stored is None:
            return self.default_routing, False
        try:
            return parse_routing_body(stored.value, self.default_routing), True
        except ChannelError:
            return self.default_routing, False  # validated on write; never trust old data

    async def set_routing(self, routing: Routing) -> None:
        await self.outbox.put_setting(ROUTING_SETTING, routing_json(routing))

    async def current(self) -> tuple[list[Channel], Routing]:
        email = await self.email()
        slack = await self.slack()
        routing, _ = await self.routing()
        key = (email.enabled, email.recipients, slack.enabled, slack.webhook_url)
        if key != self._cache_key:
            self._channels = self._build(email, slack)
            self._cache_key = key
        return list(self._channels), routing

    def _build(self, email: EmailConfig, slack: SlackConfig) -> list[Channel]:
        if slack.stored:
            url = SecretStr(slack.webhook_url) if slack.webhook_url else None
            settings = self.settings.model_copy(
                update={
                    "slack_enabled": slack.enabled and url is not None,
                    "slack_webhook_url": url,
                }
            )
            try:
                return settings_channels(settings, email)
            except ChannelError as err:  # validated on write; never trust old data
                log.warning("stored Slack config ignored: %s", err)
        return settings_channels(self.settings, email)


def default_email(settings: Settings) -> EmailConfig:
    """Email as SMTP_TO sets it, before any change through the API."""
    try:
        recipients = parse_recipients(settings.smtp_to) if settings.smtp_to else ()
    except ChannelError as err:
        raise ChannelError(f"invalid setting SMTP_TO: {err}") from None
    return EmailConfig(enabled=True, recipients=recipients, stored=False)


def settings_channels(settings: Settings, email: EmailConfig) -> list[Channel]:
    """The channels of `settings`, with `email`'s recipients when it is enabled."""
    return build_channels(
        settings,
        email_to=email.recipients if email.enabled else (),
        smtp_mode=SmtpMode(settings.smtp_mode),
        smtp_verify=settings.smtp_verify,
    )


def check_settings(settings: Settings) -> None:
    """Parse the notification variables as start-up will; ChannelError names the bad one
    (NOTIFY_ROUTES, SMTP_TO, SLACK_WEBHOOK_URL, APPRISE_URLS) without its secret."""
    parse_routes(settings.notify_routes, resolved=settings.notify_resolved)
    settings_channels(settings, default_email(settings))


def channel_json(channel: Channel, routing: Routing) -> dict[str, Any]:
    """A channel for the API: masked URL, tags and the severities routed to it."""
    return {
        "name": channel.name,
        "kind": channel.kind.value,
        "url": channel.masked_url,
        "tags": sorted(channel.tags),
        "severities": [s.value for s in Severity if channel.tags & routing.tags_for(s)],
    }
