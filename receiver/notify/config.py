"""The notification configuration in force: settings, overridden by what the API stored.

Email recipients and the `enabled` switch (`/agent/email-config`) and the severity routing
(`/api/v1/routing`) live in the `settings` collection, so every replica reads the same values;
SMTP credentials, webhook URLs and APPRISE_URLS stay in the environment only.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from receiver.domain import Severity
from receiver.notify.channels import (
    Channel,
    ChannelError,
    Routing,
    SmtpMode,
    build_channels,
    parse_routes,
)
from receiver.settings import Settings
from receiver.store.notify import OutboxStore

EMAIL_SETTING = "notify.email"
ROUTING_SETTING = "notify.routing"
MAX_RECIPIENTS = 50

_ADDRESS = re.compile(r"^[^@\s/,;<>\"]+@[^@\s/,;<>\"]+\.[^@\s/,;<>\"]+$")
_TAG = re.compile(r"^[a-z0-9_-]{1,40}$")


@dataclass(frozen=True)
class EmailConfig:
    enabled: bool
    recipients: tuple[str, ...]
    stored: bool  # False = the SMTP_TO default, never changed through the API


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

    def validate_settings(self) -> list[Channel]:
        """Build the channels from settings alone; ChannelError names the bad variable."""
        return self._build(self.default_email())

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
        routing, _ = await self.routing()
        key = (email.enabled, email.recipients)
        if key != self._cache_key:
            self._channels = self._build(email)
            self._cache_key = key
        return list(self._channels), routing

    def _build(self, email: EmailConfig) -> list[Channel]:
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
