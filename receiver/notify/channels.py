"""Notification channels built from settings, severity routing, and URL masking.

A channel is "a URL is the configuration" (Apprise's idea): email becomes a `mailto://` /
`mailtos://` URL, Slack a webhook URL, anything else an Apprise URL from APPRISE_URLS. Every
URL carries secrets, so nothing prints one: use `Channel.masked_url`, `Channel.redact(text)`
or `receiver.safety.mask_url(url)`.
"""

from __future__ import annotations

import ipaddress
import logging
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from enum import StrEnum
from urllib.parse import quote, unquote, urlsplit

import apprise

from receiver.domain import Severity
from receiver.notify.render import Event
from receiver.safety import EMAIL_ADDRESS, mask_url, mask_url_secrets, redact
from receiver.settings import Settings

log = logging.getLogger(__name__)

SLACK_WEBHOOK_BASE = "https://hooks.slack.com/services"


class ChannelError(ValueError):
    """Invalid channel or routing configuration; the message names the variable, no secrets."""


class ChannelKind(StrEnum):
    EMAIL = "email"  # Apprise mailto:// / mailtos://
    SLACK = "slack"  # Slack incoming webhook, posted by us (see send.py)
    APPRISE = "apprise"  # any other Apprise URL, including slack:// bot tokens


class SmtpMode(StrEnum):
    """How the SMTP connection is secured; AUTO picks by port (465 ssl, 587 starttls)."""

    AUTO = "auto"
    PLAIN = "plain"
    STARTTLS = "starttls"
    SSL = "ssl"


@dataclass(frozen=True, repr=False)
class Channel:
    """One destination. `url` holds secrets: never log it, use `masked_url`."""

    name: str  # stable id, part of the outbox key: "email", "slack", "apprise-1", ...
    kind: ChannelKind
    url: str = field(compare=False)
    tags: frozenset[str] = frozenset()
    slack_channel: str = ""  # "#alerts" from a slack://T/B/X/#alerts URL
    masked_url: str = ""
    secrets: tuple[str, ...] = field(default=(), compare=False)

    def redact(self, text: str) -> str:
        """`text` with this channel's URL and every secret in it replaced by the mask."""
        return redact(text.replace(self.url, self.masked_url), self.secrets)

    def __repr__(self) -> str:
        return f"Channel({self.name!r}, {self.kind.value}, {self.masked_url!r})"


def make_channel(
    name: str, kind: ChannelKind, url: str, tags: Iterable[str] = (), slack_channel: str = ""
) -> Channel:
    """A channel with its masked URL and secret list precomputed."""
    masked, secrets = mask_url_secrets(url)
    return Channel(
        name=name,
        kind=kind,
        url=url,
        tags=frozenset(tags) | {name},
        slack_channel=slack_channel,
        masked_url=masked,
        secrets=secrets,
    )


# --- email ----------------------------------------------------------------------------------

_SMTP_MODES = {SmtpMode.PLAIN: "insecure", SmtpMode.STARTTLS: "starttls", SmtpMode.SSL: "ssl"}


def resolve_smtp_mode(port: int, mode: SmtpMode | str = SmtpMode.AUTO) -> SmtpMode:
    """AUTO → SSL on 465, STARTTLS on 587, PLAIN otherwise; explicit modes win."""
    try:
        chosen = SmtpMode(str(mode).lower())
    except ValueError:
        allowed = ", ".join(m.value for m in SmtpMode)
        raise ChannelError(f"invalid setting SMTP_MODE: expected one of {allowed}") from None
    if chosen is not SmtpMode.AUTO:
        return chosen
    return {465: SmtpMode.SSL, 587: SmtpMode.STARTTLS}.get(port, SmtpMode.PLAIN)


def email_url(
    *,
    host: str,
    port: int,
    recipients: Sequence[str],
    user: str = "",
    password: str = "",
    sender: str = "",
    mode: SmtpMode | str = SmtpMode.AUTO,
    verify: bool = True,
) -> str:
    """The Apprise URL for an SMTP server: `mailto[s]://[user:pass@]host:port?smtp=&mode=&from=&to=`.

    No user → no AUTH. `smtp=` pins the server so Apprise never applies its provider
    templates (gmail, outlook, ...) to our host.
    """
    if not host:
        raise ChannelError("invalid setting SMTP_HOST: empty")
    bad = [r for r in recipients if not EMAIL_ADDRESS.match(r)]
    if not recipients or bad:
        raise ChannelError("invalid setting SMTP_TO: expected comma-separated email addresses")
    resolved = resolve_smtp_mode(port, mode)
    scheme = "mailto" if resolved is SmtpMode.PLAIN else "mailtos"
    auth = ""
    if user:
        auth = quote(user, safe="") + (":" + quote(password, safe="") if password else "") + "@"
    netloc_host = f"[{host}]" if ":" in host and not host.startswith("[") else host
    from_addr = sender or (user if "@" in user else f"alerts@{host}")
    params = [
        f"smtp={quote(host, safe='')}",
        f"mode={_SMTP_MODES[resolved]}",
        f"from={quote(from_addr, safe='')}",
        "to=" + ",".join(quote(r, safe="") for r in recipients),
    ]
    if not verify:
        params.append("verify=no")
    return f"{scheme}://{auth}{netloc_host}:{port}/?{'&'.join(params)}"


# --- slack ----------------------------------------------------------------------------------


def _is_loopback(host: str) -> bool:
    if host.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def slack_channel(raw: str, name: str = "slack", tags: Iterable[str] = ()) -> Channel:
    """A Slack channel from any of the accepted webhook forms.

    - `https://hooks.slack.com/services/T…/B…/…` (also slack-gov): posted by us.
    - `slack://T…/B…/…[/#channel]`: the same webhook, written Apprise's way.
    - `slack://xoxb-…/#channel` (bot token): handed to Apprise's slack plugin (text only).
    - any other `https://` URL, or `http://` on loopback: a Slack-compatible webhook
      (Mattermost, a test server) that gets the same JSON payload.
    """
    url = raw.strip()
    parts = urlsplit(url)
    scheme = parts.scheme.lower()
    if scheme == "slack":
        # `/#channel` would parse as a URL fragment; Apprise reads it as a target, so do we.
        path = urlsplit(url.replace("/#", "/%23")).path
        tokens = [unquote(p) for p in (parts.netloc.rpartition("@")[2] + path).split("/")]
        tokens = [t for t in tokens if t]
        targets = [t for t in tokens if t[:1] in "#@"]
        keys = [t for t in tokens if t[:1] not in "#@"]
        if len(keys) == 3 and not keys[0].startswith("xox"):
            hook = f"{SLACK_WEBHOOK_BASE}/{keys[0]}/{keys[1]}/{keys[2]}"
            target = next((t for t in targets if t.startswith("#")), "")
            return _slack(name, hook, tags, target, display=url)
        if keys and keys[0].startswith("xox"):
            return make_channel(name, ChannelKind.APPRISE, url, tags)
        raise ChannelError(f"invalid setting SLACK_WEBHOOK_URL: not a Slack URL ({mask_url(url)})")
    if scheme == "https" and parts.hostname:
        return _slack(name, url, tags, "")
    if scheme == "http" and parts.hostname and _is_loopback(parts.hostname):
        return _slack(name, url, tags, "")
    raise ChannelError(
        "invalid setting SLACK_WEBHOOK_URL: expected https://hooks.slack.com/services/..., "
        f"slack://T/B/X or a loopback http URL ({mask_url(url)})"
    )


def _slack(name: str, hook: str, tags: Iterable[str], target: str, display: str = "") -> Channel:
    channel = make_channel(name, ChannelKind.SLACK, hook, tags, slack_channel=target)
    if not display:
        return channel
    # Secrets of the slack:// spelling too, so an error quoting it is still redacted.
    shown, extra = mask_url_secrets(display)
    secrets = tuple(sorted({*channel.secrets, *extra}, key=len, reverse=True))
    return Channel(channel.name, channel.kind, hook, channel.tags, target, shown, secrets)


# --- APPRISE_URLS ---------------------------------------------------------------------------

_TAGGED = re.compile(
    r"^(?P<tags>[A-Za-z0-9_-]+(?:,[A-Za-z0-9_-]+)*)=(?=[A-Za-z][A-Za-z0-9+.-]*://)"
)
# A comma starts a new entry only if what follows looks like one (`[tags=]scheme://`).
_ENTRY_START = re.compile(r"(?:[A-Za-z0-9_-]+(?:,[A-Za-z0-9_-]+)*=)?[A-Za-z][A-Za-z0-9+.-]*://")


def _split_entries(raw: str) -> list[str]:
    entries = []
    for word in raw.split():
        start = 0
        for comma in (i for i, c in enumerate(word) if c == ","):
            # The comma inside `tag1,tag2=url` is not a separator: the entry so far has no URL.
            if "://" in word[start:comma] and _ENTRY_START.match(word, comma + 1):
                entries.append(word[start:comma])
                start = comma + 1
        entries.append(word[start:])
    return [e for e in entries if e]


def parse_apprise_urls(raw: str) -> list[tuple[frozenset[str], str]]:
    """Split APPRISE_URLS into (tags, url) pairs.

    Syntax: entries separated by whitespace (or a comma directly followed by the next entry);
    each entry is `url` or `tag1,tag2=url`, e.g.
    `critical,oncall=pagerduty://KEY@ROUTING discord://ID/TOKEN`. An entry without tags gets
    the tag `all` (every severity).
    """
    entries = []
    for item in _split_entries(raw):
        match = _TAGGED.match(item)
        tags = frozenset(t.lower() for t in match["tags"].split(",")) if match else frozenset()
        url = item[match.end() :] if match else item
        if "://" not in url:
            raise ChannelError(f"invalid setting APPRISE_URLS: not a URL ({mask_url(url)})")
        entries.append((tags or frozenset({"all"}), url))
    return entries


def apprise_channels(raw: str) -> list[Channel]:
    """Channels for APPRISE_URLS, named apprise-1, apprise-2, ... in order; each URL checked."""
    channels = []
    for index, (tags, url) in enumerate(parse_apprise_urls(raw), 1):
        name = f"apprise-{index}"
        if url.lower().startswith("slack://"):
            channels.append(slack_channel(url, name, tags))
            continue
        if apprise.Apprise.instantiate(url) is None:
            raise ChannelError(
                f"invalid setting APPRISE_URLS: entry {index} is not a URL Apprise accepts "
                f"({mask_url(url)})"
            )
        channels.append(make_channel(name, ChannelKind.APPRISE, url, tags))
    return channels


# --- building from settings -----------------------------------------------------------------


def build_channels(
    settings: Settings,
    *,
    email_to: Sequence[str] = (),
    smtp_mode: SmtpMode | str = SmtpMode.AUTO,
    smtp_verify: bool = True,
) -> list[Channel]:
    """Every configured channel: email (SMTP_HOST + recipients), Slack, APPRISE_URLS entries.

    `email_to`, `smtp_mode` and `smtp_verify` are not in `Settings` yet (SMTP_TO, SMTP_MODE,
    SMTP_VERIFY); the caller passes them.
    """
    channels: list[Channel] = []
    if settings.smtp_host and email_to:
        password = settings.smtp_password.get_secret_value() if settings.smtp_password else ""
        url = email_url(
            host=settings.smtp_host,
            port=settings.smtp_port,
            recipients=list(email_to),
            user=settings.smtp_user,
            password=password,
            sender=settings.smtp_from,
            mode=smtp_mode,
            verify=smtp_verify,
        )
        if (
            settings.smtp_user
            and resolve_smtp_mode(settings.smtp_port, smtp_mode) is SmtpMode.PLAIN
        ):
            log.warning(
                "SMTP AUTH over a plain connection to %s: the password is sent in clear",
                settings.smtp_host,
            )
        channels.append(make_channel("email", ChannelKind.EMAIL, url))
    elif settings.smtp_host:
        log.warning("SMTP_HOST is set but there are no recipients; email is disabled")
    if settings.slack_enabled:
        if settings.slack_webhook_url is None:
            raise ChannelError("invalid setting SLACK_WEBHOOK_URL: required when SLACK_ENABLED")
        channels.append(slack_channel(settings.slack_webhook_url.get_secret_value()))
    if settings.apprise_urls is not None:
        channels += apprise_channels(settings.apprise_urls.get_secret_value())
    return channels


# --- routing --------------------------------------------------------------------------------

# medium is what the outlier poller raises (DETECT_SEVERITY): emailed too, so a setup with only
# SMTP hears of outliers
DEFAULT_ROUTES = "critical=email,slack;high=email,slack;medium=email,slack;low=slack"


@dataclass(frozen=True)
class Routing:
    """Which channels get which severity. A channel matches when one of its tags is routed.

    Tags always routed implicitly: the severity's own name (`critical`, ...) and `all`, so an
    APPRISE_URLS entry tagged `critical` gets critical incidents and an untagged one gets all.
    """

    routes: Mapping[Severity, frozenset[str]]
    resolved: bool = True

    def tags_for(self, severity: Severity) -> frozenset[str]:
        return self.routes.get(severity, frozenset()) | {severity.value, "all"}

    def select(
        self, channels: Iterable[Channel], severity: Severity, event: Event
    ) -> list[Channel]:
        """The channels that get `event` for an incident of `severity`, in config order."""
        if event is Event.RESOLVED and not self.resolved:
            return []
        wanted = self.tags_for(severity)
        return [c for c in channels if c.tags & wanted]


def parse_routes(raw: str | None = None, *, resolved: bool = True) -> Routing:
    """Parse NOTIFY_ROUTES: `severity=tag,tag;severity=...` (`;` or whitespace between items).

    Severities left out keep their default; `low=` routes low to nothing but `low`/`all` tags.
    """
    routes = dict(_parse_routes(DEFAULT_ROUTES))
    if raw and raw.strip():
        routes.update(_parse_routes(raw))
    return Routing(routes=routes, resolved=resolved)


def _parse_routes(raw: str) -> dict[Severity, frozenset[str]]:
    routes: dict[Severity, frozenset[str]] = {}
    for item in re.split(r"[;\s]+", raw.strip()):
        if not item:
            continue
        name, eq, tags = item.partition("=")
        try:
            severity = Severity(name.strip().lower())
        except ValueError:
            raise ChannelError(
                f"invalid setting NOTIFY_ROUTES: unknown severity {name.strip()!r} "
                "(expected critical, high, medium, low)"
            ) from None
        if not eq:
            raise ChannelError(f"invalid setting NOTIFY_ROUTES: {item!r} has no '='")
        routes[severity] = frozenset(
            t.strip().lower() for t in re.split(r"[,+]", tags) if t.strip()
        )
    return routes
