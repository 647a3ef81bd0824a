"""Slack webhook delivery against a loopback server speaking the webhook protocol."""

from __future__ import annotations

import socket

import pytest

from receiver.domain import Severity
from receiver.notify.channels import apprise_channels, slack_channel
from receiver.notify.render import SEVERITY_COLOURS, Event, render
from receiver.notify.send import AppriseNotifier
from tests.notify.conftest import make_analysis, make_incident
from tests.support.fake_slack import fake_slack
from tests.support.procs import free_port

SECRET = "xoxFakeWebhookSecret9"


@pytest.mark.parametrize("severity", list(Severity))
async def test_slack_colour_and_fields(notifier: AppriseNotifier, severity: Severity) -> None:
    """The posted JSON has the severity colour, the four fields and the analysis."""
    with fake_slack() as slack:
        channel = slack_channel(slack.hook_url())
        message = render(make_incident(severity), Event.FIRING, make_analysis())
        result = await notifier.send(channel, message)
    assert result.ok, result.error
    assert result.parts_sent == 1
    [request] = slack.requests
    assert request.path == "/services/T0FAKE01/B0FAKE02/xoxFakeWebhookSecret9"
    assert request.headers["Content-Type"] == "application/json"
    attachment = request.json["attachments"][0]
    assert attachment["color"] == SEVERITY_COLOURS[severity]
    fields = [f["text"].split("\n")[0] for f in attachment["blocks"][1]["fields"]]
    assert fields == ["*Metric*", "*Severity*", "*Value*", "*Instance*"]
    assert "runaway worker loop" in request.body.decode()


async def test_long_analysis_arrives_in_several_accepted_posts(notifier: AppriseNotifier) -> None:
    """A 50k analysis is posted as several messages, each accepted under Slack's limits."""
    analysis = make_analysis(cause="A very long explanation. " * 2000)
    assert len(analysis.cause) >= 50_000
    with fake_slack() as slack:
        message = render(make_incident(), Event.FIRING, analysis)
        result = await notifier.send(slack_channel(slack.hook_url()), message)
    assert result.ok, result.error
    assert len(slack.accepted) == len(message.slack) >= 2
    assert result.parts_sent == len(message.slack)


async def test_channel_override_from_slack_url(notifier: AppriseNotifier) -> None:
    """A `#channel` target is sent as the payload's channel."""
    with fake_slack() as slack:
        channel = slack_channel(slack.hook_url())
        channel = type(channel)(**{**channel.__dict__, "slack_channel": "#ops"})
        assert (await notifier.send(channel, render(make_incident(), Event.FIRING))).ok
    assert slack.requests[0].json["channel"] == "#ops"


@pytest.mark.parametrize(
    ("status", "body", "headers", "retryable", "retry_after"),
    [
        (500, "internal_error", {}, True, None),
        (503, "", {"Retry-After": "7"}, True, 7.0),
        (429, "rate_limited", {"Retry-After": "30"}, True, 30.0),
        (400, "invalid_payload", {}, False, None),
        (404, "no_service", {}, False, None),
        (410, "channel_is_archived", {}, False, None),
    ],
)
async def test_failures_say_whether_to_retry(
    notifier: AppriseNotifier,
    status: int,
    body: str,
    headers: dict[str, str],
    retryable: bool,
    retry_after: float | None,
) -> None:
    """5xx and 429 are retryable (with Retry-After), other 4xx are final; errors are masked."""
    with fake_slack() as slack:
        slack.script(status, body, headers)
        result = await notifier.send(
            slack_channel(slack.hook_url()), render(make_incident(), Event.FIRING)
        )
    assert not result.ok
    assert result.retryable is retryable
    assert result.retry_after == retry_after
    assert str(status) in result.error
    assert body in result.error
    assert SECRET not in result.error
    assert "/services/****/****/****" in result.error


async def test_failed_part_reports_progress_and_resumes(notifier: AppriseNotifier) -> None:
    """If part 2 fails, parts_sent says 1 and a retry from there sends only the rest."""
    analysis = make_analysis(cause="Another long explanation. " * 2000)
    message = render(make_incident(), Event.FIRING, analysis)
    with fake_slack() as slack:
        channel = slack_channel(slack.hook_url())
        slack.script(200, "ok")
        slack.script(500, "internal_error")
        first = await notifier.send(channel, message)
        second = await notifier.send(channel, message, first_part=first.parts_sent)
    assert (first.ok, first.retryable, first.parts_sent) == (False, True, 1)
    assert (second.ok, second.parts_sent) == (True, len(message.slack))
    assert len(slack.requests) == 2 + len(message.slack) - 1


async def test_unreachable_webhook_is_retryable(notifier: AppriseNotifier) -> None:
    """Connection refused is retryable and the error hides the webhook secret."""
    url = f"http://127.0.0.1:{free_port()}/services/T0FAKE01/B0FAKE02/{SECRET}"
    result = await notifier.send(slack_channel(url), render(make_incident(), Event.FIRING))
    assert not result.ok
    assert result.retryable
    assert SECRET not in result.error


async def test_timeout_is_retryable() -> None:
    """A webhook that accepts the connection but never answers gives a retryable timeout."""
    with socket.socket() as silent:
        silent.bind(("127.0.0.1", 0))
        silent.listen(1)  # the kernel completes the handshake; nobody ever reads or answers
        url = f"http://127.0.0.1:{silent.getsockname()[1]}/services/T0FAKE01/B0FAKE02/{SECRET}"
        async with AppriseNotifier(timeout=0.3) as notifier:
            result = await notifier.send(slack_channel(url), render(make_incident(), Event.FIRING))
    assert not result.ok
    assert result.retryable
    assert "timeout" in result.error
    assert SECRET not in result.error


async def test_generic_apprise_url_gets_plain_text(notifier: AppriseNotifier) -> None:
    """An APPRISE_URLS entry (json://) is sent by Apprise with the title and text body."""
    with fake_slack() as server:
        server.script(200, "ok")
        [channel] = apprise_channels(f"critical=json://127.0.0.1:{server.port}/notify")
        message = render(make_incident(Severity.CRITICAL), Event.FIRING, make_analysis())
        result = await notifier.send(channel, message)
    assert result.ok, result.error
    body = server.requests[0].json
    assert body["title"] == "[CRITICAL] cpu_usage"
    assert "In plain words: One server is overworked" in body["message"]


async def test_generic_apprise_failure_is_retryable_and_masked(notifier: AppriseNotifier) -> None:
    """A failing Apprise service reports a retryable error without its secret header."""
    with fake_slack() as server:
        server.script(500, "boom")
        [channel] = apprise_channels(f"json://127.0.0.1:{server.port}/n?+X-Token=t0kenSecret9")
        result = await notifier.send(channel, render(make_incident(), Event.FIRING))
    assert server.requests[0].headers["X-Token"] == "t0kenSecret9"
    assert not result.ok
    assert result.retryable
    assert "t0kenSecret9" not in result.error
