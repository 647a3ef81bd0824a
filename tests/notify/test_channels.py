"""Channel building from settings, APPRISE_URLS syntax, routing and URL masking."""

from __future__ import annotations

from typing import Any

import pytest
from pydantic import SecretStr

from receiver.domain import Severity
from receiver.notify.channels import (
    Channel,
    ChannelError,
    ChannelKind,
    SmtpMode,
    build_channels,
    email_url,
    make_channel,
    parse_apprise_urls,
    parse_routes,
    resolve_smtp_mode,
    slack_channel,
)
from receiver.notify.render import Event
from receiver.safety import mask_url
from receiver.settings import Settings


def _settings(**values: Any) -> Settings:
    return Settings(_env_file=None, **values)


# (url, masked form, secrets that must not survive)
MASK_CASES = [
    (
        "mailto://alerts:s3cr3t-Pa55@smtp.example.com:587/?smtp=smtp.example.com&mode=starttls"
        "&from=a%40example.com&to=ops%40example.com",
        "mailto://alerts:****@smtp.example.com:587/?smtp=smtp.example.com&mode=starttls"
        "&from=a%40example.com&to=ops%40example.com",
        ["s3cr3t-Pa55"],
    ),
    (
        "mailtos://u%40x.com:p%40ss%3Aw%2Frd@127.0.0.1:465/?mode=ssl",
        "mailtos://u%40x.com:****@127.0.0.1:465/?mode=ssl",
        ["p%40ss%3Aw%2Frd", "p@ss:w/rd"],
    ),
    (
        "slack://T1ABCD2EF/B1ABCD2EF/abcdefghijklmnopqrstuvwx/#alerts",
        "slack://T1…/****/****/#alerts",
        ["T1ABCD2EF", "B1ABCD2EF", "abcdefghijklmnopqrstuvwx"],
    ),
    (
        "https://hooks.slack.com/services/T1ABCD2EF/B1ABCD2EF/abcdefghijklmnopqrstuvwx",
        "https://hooks.slack.com/services/****/****/****",
        ["T1ABCD2EF", "B1ABCD2EF", "abcdefghijklmnopqrstuvwx"],
    ),
    ("slack://xoxb-1234-1234-abc124/#alerts", "slack://xo…/#alerts", ["xoxb-1234-1234-abc124"]),
    (
        "tgram://123456789:AAbbCCddEEff/987654",
        "tgram://12…/****",
        ["123456789:AAbbCCddEEff", "AAbbCCddEEff", "987654"],
    ),
    ("discord://1234567890/abcDEFghiJKL", "discord://12…/****", ["1234567890", "abcDEFghiJKL"]),
    (
        "json://127.0.0.1:8080/hook?+X-Token=abc123secret&method=POST&apikey=k3y",
        "json://127.0.0.1:8080/hook?+X-Token=****&method=POST&apikey=****",
        ["abc123secret", "k3y"],
    ),
    (
        "http://127.0.0.1:9/services/T0001/B0001/secretXYZ",
        "http://127.0.0.1:9/services/****/****/****",
        ["T0001", "B0001", "secretXYZ"],
    ),
    ("pover://ukey4bcdef12345@atoken4bcdef12345", "pover://uk…@at…", ["ukey4bcdef12345"]),
    ("just some text with hunter2", "****", ["hunter2"]),
]


@pytest.mark.parametrize(("url", "masked", "secrets"), MASK_CASES)
def test_mask_url_hides_every_secret(url: str, masked: str, secrets: list[str]) -> None:
    """Passwords, tokens, webhook path parts and API keys never survive masking."""
    assert mask_url(url) == masked
    for secret in secrets:
        assert secret not in mask_url(url)


def test_channel_redacts_its_secrets_from_any_text() -> None:
    """An error string quoting the URL or a secret comes out masked; repr is masked too."""
    url = "https://hooks.slack.com/services/T1ABCD2EF/B1ABCD2EF/abcdefghijklmnopqrstuvwx"
    channel = slack_channel(url)
    text = channel.redact(f"POST {url} failed; token abcdefghijklmnopqrstuvwx rejected")
    assert "abcdefghijklmnopqrstuvwx" not in text
    assert "B1ABCD2EF" not in text
    assert "abcdefghijklmnopqrstuvwx" not in repr(channel)


@pytest.mark.parametrize(
    ("port", "mode", "expected", "scheme"),
    [
        (25, "auto", SmtpMode.PLAIN, "mailto://"),
        (2525, "auto", SmtpMode.PLAIN, "mailto://"),
        (587, "auto", SmtpMode.STARTTLS, "mailtos://"),
        (465, "auto", SmtpMode.SSL, "mailtos://"),
        (2525, "starttls", SmtpMode.STARTTLS, "mailtos://"),
        (587, "plain", SmtpMode.PLAIN, "mailto://"),
        (1465, "SSL", SmtpMode.SSL, "mailtos://"),
    ],
)
def test_smtp_mode_by_port_or_explicit(
    port: int, mode: str, expected: SmtpMode, scheme: str
) -> None:
    """465 → implicit TLS, 587 → STARTTLS, other ports plain, unless a mode is given."""
    assert resolve_smtp_mode(port, mode) is expected
    url = email_url(host="mx.example.com", port=port, recipients=["a@example.com"], mode=mode)
    assert url.startswith(scheme)
    wire = {SmtpMode.PLAIN: "insecure", SmtpMode.STARTTLS: "starttls", SmtpMode.SSL: "ssl"}
    assert f"mode={wire[expected]}" in url


def test_email_url_without_user_has_no_auth() -> None:
    """No SMTP user → no credentials in the URL; `smtp=` and `from=` are always set."""
    url = email_url(host="mx.example.com", port=25, recipients=["a@example.com", "b@example.com"])
    assert url == (
        "mailto://mx.example.com:25/?smtp=mx.example.com&mode=insecure"
        "&from=alerts%40mx.example.com&to=a%40example.com,b%40example.com"
    )


def test_bad_email_settings_are_reported_by_name() -> None:
    """Bad recipients or mode name the variable in the error."""
    with pytest.raises(ChannelError, match="SMTP_TO"):
        email_url(host="mx", port=25, recipients=["not-an-address"])
    with pytest.raises(ChannelError, match="SMTP_MODE"):
        resolve_smtp_mode(25, "tls13")


def test_build_channels_from_settings() -> None:
    """SMTP + Slack + APPRISE_URLS settings give email, slack and apprise-N channels."""
    settings = _settings(
        smtp_host="mx.example.com",
        smtp_port=587,
        smtp_user="alerts",
        smtp_password=SecretStr("s3cr3t-Pa55"),
        smtp_from="Alert Bot <alerts@example.com>",
        slack_enabled=True,
        slack_webhook_url=SecretStr("slack://T1ABCD2EF/B1ABCD2EF/abcdefghijklmnopqrstuvwx/#ops"),
        apprise_urls=SecretStr(
            "critical,oncall=json://127.0.0.1:9/hook discord://1234567890/tok3nABC"
        ),
    )
    channels = build_channels(settings, email_to=["ops@example.com"])
    assert [(c.name, c.kind) for c in channels] == [
        ("email", ChannelKind.EMAIL),
        ("slack", ChannelKind.SLACK),
        ("apprise-1", ChannelKind.APPRISE),
        ("apprise-2", ChannelKind.APPRISE),
    ]
    email, slack, first, second = channels
    assert email.url.startswith("mailtos://alerts:s3cr3t-Pa55@mx.example.com:587/")
    assert "from=Alert%20Bot%20%3Calerts%40example.com%3E" in email.url
    assert "s3cr3t-Pa55" not in email.masked_url
    assert (
        slack.url == "https://hooks.slack.com/services/T1ABCD2EF/B1ABCD2EF/abcdefghijklmnopqrstuvwx"
    )
    assert slack.slack_channel == "#ops"
    assert first.tags == {"critical", "oncall", "apprise-1"}
    assert second.tags == {"all", "apprise-2"}


def test_no_recipients_or_disabled_slack_builds_nothing() -> None:
    """Email without recipients and Slack without SLACK_ENABLED are skipped."""
    settings = _settings(smtp_host="mx.example.com", slack_webhook_url=SecretStr("https://x/y"))
    assert build_channels(settings) == []


@pytest.mark.parametrize(
    ("raw", "kind", "url"),
    [
        (
            "https://hooks.slack.com/services/T1/B1/XX",
            ChannelKind.SLACK,
            "https://hooks.slack.com/services/T1/B1/XX",
        ),
        ("slack://T1/B1/XX", ChannelKind.SLACK, "https://hooks.slack.com/services/T1/B1/XX"),
        ("slack://bot@T1/B1/XX/#a", ChannelKind.SLACK, "https://hooks.slack.com/services/T1/B1/XX"),
        ("slack://xoxb-1-2-abc/#alerts", ChannelKind.APPRISE, "slack://xoxb-1-2-abc/#alerts"),
        ("http://127.0.0.1:8099/hook", ChannelKind.SLACK, "http://127.0.0.1:8099/hook"),
        ("http://localhost:8099/hook", ChannelKind.SLACK, "http://localhost:8099/hook"),
        (
            "https://chat.example.com/hooks/abc",
            ChannelKind.SLACK,
            "https://chat.example.com/hooks/abc",
        ),
    ],
)
def test_slack_url_forms(raw: str, kind: ChannelKind, url: str) -> None:
    """Slack accepts the https webhook, slack://T/B/X, bot tokens and loopback http."""
    channel = slack_channel(raw)
    assert channel.kind is kind
    assert channel.url == url


def test_plain_http_slack_to_a_remote_host_is_refused() -> None:
    """A webhook secret is never sent in clear over the network."""
    with pytest.raises(ChannelError, match="SLACK_WEBHOOK_URL") as err:
        slack_channel("http://chat.example.com/hooks/s3cr3tT0ken")
    assert "s3cr3tT0ken" not in str(err.value)


def test_apprise_urls_syntax() -> None:
    """Entries split on whitespace or on a comma that starts a new entry; `tags=` prefixes."""
    raw = "critical,oncall=json://h/x?to=a,b\ndiscord://1/2,low=ntfy://ntfy.sh/t,mailto://a:b@c?to=x@y,z@w"
    assert parse_apprise_urls(raw) == [
        (frozenset({"critical", "oncall"}), "json://h/x?to=a,b"),
        (frozenset({"all"}), "discord://1/2"),
        (frozenset({"low"}), "ntfy://ntfy.sh/t"),
        (frozenset({"all"}), "mailto://a:b@c?to=x@y,z@w"),
    ]
    with pytest.raises(ChannelError, match="APPRISE_URLS"):
        parse_apprise_urls("critical=not-a-url")


def _channel(name: str, *tags: str) -> Channel:
    return make_channel(name, ChannelKind.APPRISE, f"json://127.0.0.1:9/{name}", tags)


CHANNELS = [
    _channel("email"),
    _channel("slack"),
    _channel("apprise-1", "all"),
    _channel("apprise-2", "critical"),
    _channel("apprise-3", "oncall"),
]


@pytest.mark.parametrize(
    ("routes", "severity", "event", "expected"),
    [
        (None, Severity.CRITICAL, Event.FIRING, ["email", "slack", "apprise-1", "apprise-2"]),
        (None, Severity.HIGH, Event.FIRING, ["email", "slack", "apprise-1"]),
        (None, Severity.MEDIUM, Event.FIRING, ["email", "slack", "apprise-1"]),
        (None, Severity.LOW, Event.ANALYSIS, ["slack", "apprise-1"]),
        (None, Severity.CRITICAL, Event.RESOLVED, ["email", "slack", "apprise-1", "apprise-2"]),
        (
            "critical=email,oncall",
            Severity.CRITICAL,
            Event.FIRING,
            ["email", "apprise-1", "apprise-2", "apprise-3"],
        ),
        ("medium=email+slack low=", Severity.LOW, Event.FIRING, ["apprise-1"]),
        ("medium=email+slack low=", Severity.MEDIUM, Event.DIGEST, ["email", "slack", "apprise-1"]),
    ],
)
def test_routing_table(
    routes: str | None, severity: Severity, event: Event, expected: list[str]
) -> None:
    """Severity → channels by tag; defaults email critical, high and medium (outliers)."""
    routing = parse_routes(routes)
    assert [c.name for c in routing.select(CHANNELS, severity, event)] == expected


def test_resolved_notifications_can_be_switched_off() -> None:
    """With resolved off, no channel gets a resolved event; other events are unaffected."""
    routing = parse_routes(resolved=False)
    assert routing.select(CHANNELS, Severity.CRITICAL, Event.RESOLVED) == []
    assert routing.select(CHANNELS, Severity.CRITICAL, Event.FIRING) != []


def test_bad_routes_name_the_variable() -> None:
    """An unknown severity or missing `=` is a NOTIFY_ROUTES error."""
    with pytest.raises(ChannelError, match="NOTIFY_ROUTES: unknown severity 'urgent'"):
        parse_routes("urgent=email")
    with pytest.raises(ChannelError, match="NOTIFY_ROUTES"):
        parse_routes("critical")
