"""Turn an incident (plus its analysis) into one channel-neutral `Message`.

Every label, annotation, reason and model-written string is untrusted, so it is HTML-escaped
for email (Jinja2 templates, `receiver.notify.email_html`) and Slack-escaped with broadcast
mentions neutralised for Slack (`receiver.notify.slack_blocks`), with the helpers of
`receiver.safety`. The plain text is built here. Pure functions, no I/O.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

from receiver.domain import Analysis, IncidentView, Severity, Signal
from receiver.notify import content
from receiver.notify.content import Facts, Links, RenderOptions, analysis_label, link_pairs
from receiver.notify.email_html import digest_html, incident_html
from receiver.notify.slack_blocks import SLACK_FIELD_LIMIT as SLACK_FIELD_LIMIT
from receiver.notify.slack_blocks import SLACK_HEADER_LIMIT as SLACK_HEADER_LIMIT
from receiver.notify.slack_blocks import SLACK_MAX_BLOCKS as SLACK_MAX_BLOCKS
from receiver.notify.slack_blocks import SLACK_MAX_MESSAGES as SLACK_MAX_MESSAGES
from receiver.notify.slack_blocks import SLACK_MESSAGE_LIMIT as SLACK_MESSAGE_LIMIT
from receiver.notify.slack_blocks import SLACK_TEXT_LIMIT as SLACK_TEXT_LIMIT
from receiver.notify.slack_blocks import incident_blocks, pack, sections, slack_link
from receiver.safety import one_line

__all__ = [
    "CHART_NAME",
    "RESOLVED_COLOUR",
    "SEVERITY_COLOURS",
    "SLACK_FIELD_LIMIT",
    "SLACK_HEADER_LIMIT",
    "SLACK_MAX_BLOCKS",
    "SLACK_MAX_MESSAGES",
    "SLACK_MESSAGE_LIMIT",
    "SLACK_TEXT_LIMIT",
    "Attachment",
    "Event",
    "Message",
    "RenderOptions",
    "render",
    "thread_id",
]


class Event(StrEnum):
    """Why a notification is sent; the outbox keys on (incident, channel, event)."""

    FIRING = "firing"
    RESOLVED = "resolved"
    ANALYSIS = "analysis"  # follow-up once the analysis arrives after the first page
    DIGEST = "digest"  # "N more alerts in this group"
    UPDATE = "update"  # a storm gained members since its page (receiver/notify/storm_render.py)


SUBJECT_LIMIT = 200
DIGEST_TOP = 10

SEVERITY_COLOURS: dict[Severity, str] = {
    Severity.CRITICAL: "#A32037",  # red
    Severity.HIGH: "#E8731A",  # orange
    Severity.MEDIUM: "#E3B505",  # yellow
    Severity.LOW: "#2EB67D",  # green
}
RESOLVED_COLOUR = "#8D9BA6"  # grey: "cleared", distinct from the low-severity green

_THREAD_ID_UNSAFE = re.compile(r"[^A-Za-z0-9._-]")


@dataclass(frozen=True)
class Attachment:
    """A file carried by an email (the evidence chart); other channels ignore it."""

    name: str
    mimetype: str
    data: bytes = field(repr=False)


CHART_NAME = "evidence.png"


@dataclass(frozen=True)
class Message:
    """One rendered notification, ready for any channel."""

    incident_id: str
    event: Event
    severity: Severity
    title: str  # email subject and Slack header; one line
    text: str  # plain-text body (generic Apprise services)
    html: str  # HTML body (email; Apprise derives the text/plain alternative from it)
    slack: tuple[dict[str, Any], ...] = field(repr=False)  # webhook JSON bodies, sent in order
    thread_id: str  # RFC 5322 msg-id, e.g. "<incident.abc@ai-devops-monitor>"
    colour: str
    attachments: tuple[Attachment, ...] = field(default=(), repr=False)


def render(
    incident: IncidentView,
    event: Event,
    analysis: Analysis | None = None,
    options: RenderOptions | None = None,
    *,
    chart: bytes | None = None,
) -> Message:
    """Render `incident` for `event`; for DIGEST, `incident.signals` are the alerts to list.

    `chart` (a PNG of the main evidence series) is attached as `evidence.png` and shown inline
    in the HTML body through its Content-ID; the plain-text body names the attachment.
    """
    opts = options or RenderOptions()
    primary = content.primary(incident)
    colour = RESOLVED_COLOUR if event is Event.RESOLVED else SEVERITY_COLOURS[incident.severity]
    title = _title(incident, event, primary)
    api_link = content.api_link(incident, opts)
    attachments: tuple[Attachment, ...] = ()
    if event is Event.DIGEST:
        text, body_html, slack = _digest(incident, title, colour, api_link)
    else:
        facts = content.facts(incident, primary)
        console = content.service_link(incident, opts, opts.console_path)
        links = content.links(incident, primary, api_link, console)
        shown = None if event is Event.RESOLVED else analysis
        pending = event is Event.FIRING
        text = _text(title, facts, shown, links, pending=pending, chart=chart is not None)
        body_html = incident_html(
            title, facts, shown, links, pending=pending, chart=CHART_NAME if chart else ""
        )
        slack = incident_blocks(title, colour, facts, shown, links)
        if chart is not None:
            attachments = (Attachment(CHART_NAME, "image/png", chart),)
    return Message(
        incident_id=incident.id,
        event=event,
        severity=incident.severity,
        title=title,
        text=text,
        html=body_html,
        slack=slack,
        thread_id=thread_id(incident.id, opts.thread_domain),
        colour=colour,
        attachments=attachments,
    )


def thread_id(incident_id: str, domain: str = "ai-devops-monitor") -> str:
    """The msg-id every email of one incident references, so clients thread them."""
    local = _THREAD_ID_UNSAFE.sub("-", incident_id)[:64] or "incident"
    right = _THREAD_ID_UNSAFE.sub("-", domain)[:64] or "localhost"
    return f"<incident.{local}@{right}>"


def _title(incident: IncidentView, event: Event, primary: Signal | None) -> str:
    head = f"[{incident.severity.value.upper()}] {one_line(content.name(incident, primary), 120)}"
    others = len(incident.signals) - 1
    if event is Event.RESOLVED:
        return one_line(f"[RESOLVED] {head}", SUBJECT_LIMIT)
    if event is Event.ANALYSIS:
        return one_line(
            f"Re: {head}", SUBJECT_LIMIT
        )  # a reply: clients thread it under the first page
    if event is Event.DIGEST:
        return one_line(
            f"{head}: {len(incident.signals)} more alerts in {content.group_phrase(incident)}",
            SUBJECT_LIMIT,
        )
    return one_line(f"{head} (+{others} more)" if others > 0 else head, SUBJECT_LIMIT)


# --- plain text -----------------------------------------------------------------------------


def _text(
    title: str,
    facts: Facts,
    analysis: Analysis | None,
    links: Links,
    *,
    pending: bool,
    chart: bool = False,
) -> str:
    lines = [
        title,
        "",
        f"Metric: {facts.metric}",
        f"Instance: {facts.instance}",
        f"Value: {facts.value}",
        f"Severity: {facts.severity}",
        f"Status: {facts.status} since {facts.started}",
    ]
    if facts.reason:
        lines.append(f"Reason: {facts.reason}")
    if facts.alerts > 1:
        lines.append(f"Alerts in this incident: {facts.alerts}")
    lines.append("")
    if analysis is not None:
        lines += [analysis_label(analysis), f"Summary: {analysis.summary}"]
        lines.append(f"Likely cause: {analysis.cause}")
        if analysis.fix:
            lines.append("Fix:")
            lines += [f"  {n}. {step}" for n, step in enumerate(analysis.fix, 1)]
        if analysis.simplified:
            lines.append(f"In plain words: {analysis.simplified}")
    elif pending:
        lines.append("Analysis: not available yet; a follow-up will carry it.")
    if chart:
        lines += ["", f"Chart of the main evidence series: attached as {CHART_NAME}"]
    lines += ["", *(f"{label}: {url}" for label, url in link_pairs(links))]
    return "\n".join(lines).strip() + "\n"


# --- digest ---------------------------------------------------------------------------------


def _digest(
    incident: IncidentView, title: str, colour: str, api_link: str
) -> tuple[str, str, tuple[dict[str, Any], ...]]:
    top = sorted(incident.signals, key=lambda s: (-s.severity.rank, s.starts_at))[:DIGEST_TOP]
    rows = [
        (
            s.severity.value,
            s.metric or s.alertname or "?",
            s.instance or "n/a",
            content.fmt_value(s.value),
            s.status.value,
        )
        for s in top
    ]
    count = len(incident.signals)
    intro = f"{count} more alerts in {content.group_phrase(incident)}; top {len(rows)} by severity:"
    text_lines = [
        title,
        "",
        intro,
        *(f"- [{r[0]}] {r[1]} on {r[2]} = {r[3]} ({r[4]})" for r in rows),
    ]
    if api_link:
        text_lines += ["", f"All alerts: {api_link}"]
    listing = "\n".join(f"• [{r[0]}] {r[1]} on {r[2]} = {r[3]} ({r[4]})" for r in rows)
    body = sections(intro, listing)
    footer = []
    if api_link:
        link = slack_link(api_link, "All alerts (API)")
        footer = [{"type": "context", "elements": [{"type": "mrkdwn", "text": link}]}]
    html = digest_html(title, intro, rows, api_link)
    return "\n".join(text_lines) + "\n", html, pack(title, colour, body, footer)
