"""Rendering: subjects, escaping, Slack layout and limits, digests."""

from __future__ import annotations

import json
import re
from html.parser import HTMLParser
from typing import Any

import pytest

from receiver.domain import Severity, Source, Status
from receiver.notify.render import (
    RESOLVED_COLOUR,
    SEVERITY_COLOURS,
    SLACK_TEXT_LIMIT,
    Event,
    RenderOptions,
    render,
)
from receiver.safety import slack_escape
from tests.notify.conftest import HOSTILE, make_analysis, make_incident, make_signal


def _blocks(payload: dict[str, Any]) -> list[dict[str, Any]]:
    blocks = payload["attachments"][0]["blocks"]
    assert isinstance(blocks, list)
    return blocks


def _all_text(payloads: tuple[dict[str, Any], ...]) -> str:
    return json.dumps(payloads, ensure_ascii=False)


@pytest.mark.parametrize(
    ("event", "subject"),
    [
        (Event.FIRING, "[HIGH] cpu_usage"),
        (Event.RESOLVED, "[RESOLVED] [HIGH] cpu_usage"),
        (Event.ANALYSIS, "Re: [HIGH] cpu_usage"),
    ],
)
def test_subject_per_event(event: Event, subject: str) -> None:
    """The subject is `[SEVERITY] metric`, prefixed for resolved and follow-up emails."""
    assert render(make_incident(), event, make_analysis()).title == subject


def test_subject_counts_other_alerts_and_is_one_line() -> None:
    """Several alerts add `(+N more)`; newlines in a metric name cannot split the header."""
    signals = [make_signal(metric="cpu\r\nBcc: evil@example.com"), make_signal(fingerprint="2")]
    title = render(make_incident(signals=signals), Event.FIRING).title
    assert "\n" not in title
    assert "\r" not in title
    assert title.endswith("(+1 more)")


def test_html_has_facts_and_analysis() -> None:
    """The HTML body carries metric, instance, value, reason and every analysis part."""
    message = render(make_incident(), Event.FIRING, make_analysis())
    for needle in (
        "cpu_usage",
        "node-1:9100",
        "97.5",
        "cpu_usage above 90% for 5m",
        "CPU saturated on node-1",
        "runaway worker loop",
        "<li>Roll back the 18:40 deploy</li>",
        "In plain words:",
        "One server is overworked",
        'href="http://prometheus.local:9090/graph?g0.expr=cpu_usage+%3E+90"',
    ):
        assert needle in message.html
    assert "In plain words: One server is overworked" in message.text


def test_untrusted_text_is_html_escaped() -> None:
    """Hostile labels, reasons and model output never reach the HTML as markup."""
    signal = make_signal(metric=HOSTILE, instance=HOSTILE, reason=HOSTILE)
    analysis = make_analysis(summary=HOSTILE, cause=HOSTILE, fix=[HOSTILE], simplified=HOSTILE)
    message = render(make_incident(signals=[signal]), Event.FIRING, analysis)
    assert "<script>" not in message.html
    assert "<b>bold</b>" not in message.html
    assert "&lt;script&gt;alert(&quot;x&quot;)&lt;/script&gt;" in message.html


def test_javascript_links_are_dropped() -> None:
    """Only http(s) generator URLs become links."""
    signal = make_signal().model_copy(update={"generator_url": "javascript:alert(1)"})
    message = render(make_incident(signals=[signal]), Event.FIRING)
    assert "javascript:" not in message.html
    assert "javascript:" not in _all_text(message.slack)


def test_firing_without_analysis_says_it_is_pending() -> None:
    """A first page without analysis promises a follow-up instead of leaving a gap."""
    assert "not available yet" in render(make_incident(), Event.FIRING).text


@pytest.mark.parametrize("severity", list(Severity))
def test_slack_colour_per_severity(severity: Severity) -> None:
    """Each severity has its own colour bar; resolved is grey."""
    firing = render(make_incident(severity), Event.FIRING)
    resolved = render(make_incident(severity, status=Status.RESOLVED), Event.RESOLVED)
    assert firing.slack[0]["attachments"][0]["color"] == SEVERITY_COLOURS[severity]
    assert resolved.slack[0]["attachments"][0]["color"] == RESOLVED_COLOUR
    assert len(set(SEVERITY_COLOURS.values())) == 4
    assert SEVERITY_COLOURS[Severity.CRITICAL] == "#A32037"


def test_slack_fields_analysis_and_links() -> None:
    """Slack shows metric/severity/value/instance fields, the analysis and both links."""
    message = render(make_incident(), Event.FIRING, make_analysis())
    assert len(message.slack) == 1
    blocks = _blocks(message.slack[0])
    assert blocks[0] == {
        "type": "header",
        "text": {"type": "plain_text", "text": "[HIGH] cpu_usage"},
    }
    fields = [f["text"] for f in blocks[1]["fields"]]
    assert fields == [
        "*Metric*\ncpu_usage",
        "*Severity*\nhigh",
        "*Value*\n97.5",
        "*Instance*\nnode-1:9100",
    ]
    text = _all_text(message.slack)
    assert "runaway worker loop" in text
    assert "*In plain words*" in text
    assert "<http://prometheus.local:9090/graph?g0.expr=cpu_usage+%3E+90|Prometheus>" in text
    assert "<http://alertmanager.local:9093|Alertmanager>" in text


def test_slack_mentions_are_neutralised() -> None:
    """`<!channel>`, `<!here>`, `@channel`, `@here` in untrusted text cannot ping anyone."""
    hostile = "<!channel> <!here|here> @channel @here @everyone <@U123> <http://x|y>"
    analysis = make_analysis(summary=hostile, cause=hostile, simplified=hostile)
    signal = make_signal(metric=hostile, reason=hostile)
    text = _all_text(render(make_incident(signals=[signal]), Event.FIRING, analysis).slack)
    assert "<!" not in text
    assert "<@" not in text
    assert "<http://x|y>" not in text
    assert re.search(r"@(channel|here|everyone)\b", text) is None
    assert slack_escape("@here") == "@\u200bhere"


def test_long_analysis_is_split_within_slack_limits() -> None:
    """A 50k-character analysis spreads over several messages, none over Slack's limits."""
    long_cause = "\n".join(f"line {n}: " + "evidence & <detail> " * 12 for n in range(220))
    long_cause += "\n" + "x" * 7000  # one unbroken line longer than a block
    assert len(long_cause) > 50_000
    message = render(make_incident(), Event.FIRING, make_analysis(cause=long_cause))
    assert len(message.slack) >= 2
    for index, payload in enumerate(message.slack, 1):
        blocks = _blocks(payload)
        assert len(blocks) <= 50
        assert blocks[0]["text"]["text"].endswith(f"({index}/{len(message.slack)})")
        assert payload["attachments"][0]["color"] == SEVERITY_COLOURS[Severity.HIGH]
        sections = [b["text"]["text"] for b in blocks if b["type"] == "section" and "text" in b]
        assert all(len(s) <= SLACK_TEXT_LIMIT for s in sections)
        assert sum(map(len, sections)) <= 40_000
    joined = "".join(
        b["text"]["text"]
        for p in message.slack
        for b in _blocks(p)
        if b["type"] == "section" and "text" in b
    )
    assert joined.count("evidence &amp; &lt;detail&gt;") == 220 * 12
    assert "x" * 7000 in joined.replace("*", "")


def test_huge_analysis_is_truncated() -> None:
    """Content past the message cap is cut with a pointer to the API, not sent as 100 posts."""
    message = render(make_incident(), Event.FIRING, make_analysis(cause="y" * 1_000_000))
    assert len(message.slack) == 5
    assert "truncated" in _all_text(message.slack[-1:])


def test_digest_lists_top_ten_and_links_api() -> None:
    """A digest says how many more alerts the group has, lists ten, and links the API."""
    signals = [
        make_signal(
            Severity.LOW if n % 2 else Severity.CRITICAL, instance=f"node-{n}", fingerprint=str(n)
        )
        for n in range(25)
    ]
    options = RenderOptions(public_url="http://monitor.local:8000")
    message = render(make_incident(signals=signals), Event.DIGEST, options=options)
    assert "25 more alerts in group alertname=HighCPU" in message.title
    assert message.text.count("\n- [") == 10
    assert "- [critical]" in message.text
    assert "- [low]" not in message.text
    assert "http://monitor.local:8000/api/v1/incidents/inc-0001" in message.html
    assert "http://monitor.local:8000/api/v1/incidents/inc-0001" in _all_text(message.slack)


def test_digest_link_override_and_group_phrase() -> None:
    """An explicit link replaces the incident link; without group labels the title names it."""
    incident = make_incident(signals=[make_signal(), make_signal(fingerprint="2")])
    incident = incident.model_copy(update={"group_labels": {}, "title": "2 groups"})
    link = "http://monitor.local:8000/api/v1/incidents?since=1795000000"
    message = render(incident, Event.DIGEST, options=RenderOptions(link=link))
    assert message.title.endswith("2 more alerts in 2 groups")
    assert f'<a href="{link}">' in message.html
    assert "/api/v1/incidents/inc-0001" not in message.html
    assert (
        render(incident, Event.DIGEST, options=RenderOptions(link="javascript:x")).html.count(
            "<a href"
        )
        == 0
    )


def test_thread_id_is_stable_per_incident() -> None:
    """Every event of one incident carries the same RFC 5322 msg-id."""
    ids = {render(make_incident(), event, make_analysis()).thread_id for event in Event}
    assert ids == {"<incident.inc-0001@ai-devops-monitor>"}


def _grafana_incident(silence: str) -> Any:
    signal = make_signal().model_copy(
        update={
            "source": Source.GRAFANA,
            "links": {
                "dashboard": "http://127.0.0.1:3000/d/shop?orgId=1&viewPanel=4",
                "silence": silence,
            },
        }
    )
    return make_incident(signals=[signal]).model_copy(
        update={"source": Source.GRAFANA, "external_url": "http://127.0.0.1:3000/"}
    )


def test_grafana_dashboard_and_silence_links_in_every_channel() -> None:
    """A Grafana alert's dashboard and silence links show in text, HTML and Slack."""
    silence = "http://127.0.0.1:3000/alerting/silence/new?matcher=alertname%3DX"
    message = render(_grafana_incident(silence), Event.FIRING)
    assert "Dashboard: http://127.0.0.1:3000/d/shop?orgId=1&viewPanel=4" in message.text
    assert f"Silence: {silence}" in message.text
    assert "Grafana: http://127.0.0.1:3000/" in message.text
    assert "Alertmanager:" not in message.text
    assert '&amp;viewPanel=4">Dashboard</a>' in message.html
    assert f'href="{silence}">Silence</a>' in message.html
    slack = _all_text(message.slack)
    assert "|Dashboard>" in slack
    assert "|Silence>" in slack


def test_grafana_links_must_be_http() -> None:
    """A silence link that is not http(s) is left out everywhere."""
    message = render(_grafana_incident("javascript:alert(1)"), Event.FIRING)
    assert "Silence" not in message.text
    assert "javascript:" not in message.html
    assert "javascript:" not in _all_text(message.slack)


class _Markup(HTMLParser):
    """Every start tag and attribute of an HTML body, as a browser's tokenizer sees them."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.tags: list[tuple[str, dict[str, str]]] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.append((tag, {k: v or "" for k, v in attrs}))


def test_script_labels_and_javascript_urls_are_inert_in_the_template_html() -> None:
    """A `<script>` label, a quote-breaking annotation and `javascript:` URLs (generator,
    runbook, dashboard, silence) leave the template's HTML with no script element, no event
    handler attribute and only http(s) links, the hostile text still readable as text."""
    breakout = '"><img src=x onerror=alert(1)>'
    signal = make_signal(
        metric="<script>alert(1)</script>", instance=breakout, reason=breakout
    ).model_copy(
        update={
            "generator_url": "JaVaScRiPt:alert(1)",
            "annotations": {"runbook_url": "javascript:alert(2)", "summary": breakout},
            "links": {"dashboard": " javascript:alert(3)", "silence": "data:text/html,x"},
        }
    )
    analysis = make_analysis(summary=breakout, fix=["<script>x</script>\nnext"])
    for event in (Event.FIRING, Event.ANALYSIS, Event.DIGEST):
        message = render(make_incident(signals=[signal]), event, analysis, chart=b"png")
        parser = _Markup()
        parser.feed(message.html)
        tags = [tag for tag, _ in parser.tags]
        assert "script" not in tags
        assert tags.count("img") == (0 if event is Event.DIGEST else 1)  # only the chart's
        for tag, attrs in parser.tags:
            assert not [a for a in attrs if a.startswith("on")], (tag, attrs)
            if tag == "a":
                assert attrs["href"].startswith(("http://", "https://")), attrs
        assert "javascript:" not in message.html.lower()
        assert "&lt;script&gt;alert(1)&lt;/script&gt;" in message.html


def test_silence_link_is_listed_once() -> None:
    """The silence form is one link in each channel, not repeated after the dashboard."""
    message = render(make_incident(), Event.FIRING)
    assert message.html.count(">Silence</a>") == 1
    assert message.text.count("Silence: ") == 1
    assert _all_text(message.slack).count("|Silence>") == 1


def test_chart_is_shown_at_its_css_width() -> None:
    """The inline chart (drawn at twice the pixels) is sized 640 CSS pixels wide, scaling down
    on narrow screens; without a chart there is no image."""
    with_chart = render(make_incident(), Event.FIRING, chart=b"png").html
    assert '<img src="cid:evidence.png" width="640"' in with_chart
    assert "max-width:100%;height:auto" in with_chart
    assert "<img" not in render(make_incident(), Event.FIRING).html
