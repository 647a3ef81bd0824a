"""Render a storm's page: how many incidents, the labels they share, the likely cause, and
every member with a link. Same escaping and Slack packing as `render` (one place for them).
Pure functions, no I/O.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from receiver.domain import Analysis, Severity
from receiver.notify.content import analysis_label
from receiver.notify.render import (
    RESOLVED_COLOUR,
    SEVERITY_COLOURS,
    SUBJECT_LIMIT,
    Event,
    Message,
    RenderOptions,
    thread_id,
)
from receiver.notify.slack_blocks import pack, sections, slack_link
from receiver.safety import html_escape, one_line, safe_url


def _html_block(text: str) -> str:
    # Keep the author's line breaks without trusting any markup in them.
    return "<br>".join(html_escape(line) for line in text.splitlines()) or "&nbsp;"


@dataclass(frozen=True)
class StormMember:
    id: str
    title: str
    severity: str
    status: str


@dataclass(frozen=True)
class StormFacts:
    id: str
    key: str  # the cause label it formed on, `job=api`
    severity: Severity
    resolved: bool
    started: str
    labels: dict[str, str]  # shared by every member
    members: Sequence[StormMember]
    previously_paged: int = 0  # members the last page or update listed


def _link(opts: RenderOptions, incident_id: str, api: bool = False) -> str:
    path = opts.incident_path if api else (opts.console_path or opts.incident_path)
    if not opts.public_url or not path:
        return ""
    return safe_url(opts.public_url.rstrip("/") + path.format(id=incident_id))


def _title(storm: StormFacts, event: Event) -> str:
    head = (
        f"[{storm.severity.value.upper()}] Storm: {len(storm.members)} incidents share {storm.key}"
    )
    if event is Event.RESOLVED:
        return one_line(f"[RESOLVED] {head}", SUBJECT_LIMIT)
    if event is Event.UPDATE:
        new = len(storm.members) - storm.previously_paged
        return one_line(f"Re: {head} (+{max(new, 0)} since the last message)", SUBJECT_LIMIT)
    if event is Event.ANALYSIS:
        return one_line(f"Re: {head}", SUBJECT_LIMIT)
    return one_line(head, SUBJECT_LIMIT)


def _cause(storm: StormFacts, analysis: Analysis | None) -> str:
    if analysis is not None and analysis.cause:
        return analysis.cause
    return f"a problem common to everything with {storm.key}"


def render_storm(
    storm: StormFacts,
    event: Event,
    analysis: Analysis | None = None,
    options: RenderOptions | None = None,
) -> Message:
    """One message for the whole storm; the member list names and links every member."""
    opts = options or RenderOptions()
    title = _title(storm, event)
    colour = RESOLVED_COLOUR if event is Event.RESOLVED else SEVERITY_COLOURS[storm.severity]
    shared = ", ".join(f"{k}={v}" for k, v in storm.labels.items()) or storm.key
    intro = (
        f"{len(storm.members)} incidents opened together since {storm.started} and share: {shared}"
    )
    cause = _cause(storm, analysis)
    shown = None if event is Event.RESOLVED else analysis
    lines = [
        f"- [{m.severity}] {one_line(m.title, 150)} ({m.status}) {_link(opts, m.id) or m.id}"
        for m in storm.members
    ]
    storm_link = _link(opts, storm.id)

    text = [title, "", intro, f"Likely cause: {cause}", ""]
    if shown is not None:
        text += [analysis_label(shown), f"Summary: {shown.summary}"]
        text += [f"  {n}. {step}" for n, step in enumerate(shown.fix, 1)]
        text.append("")
    text += [f"Members ({len(storm.members)}):", *lines]
    if storm_link:
        text += ["", f"Storm: {storm_link}"]

    rows = "".join(
        f"<li>[{html_escape(m.severity)}] "
        + (
            f'<a href="{html_escape(_link(opts, m.id))}">{html_escape(one_line(m.title, 150))}</a>'
            if _link(opts, m.id)
            else f"{html_escape(one_line(m.title, 150))} ({html_escape(m.id)})"
        )
        + f" ({html_escape(m.status)})</li>"
        for m in storm.members
    )
    parts = [
        '<div style="font-family:sans-serif;font-size:14px">',
        f"<h2>{html_escape(title)}</h2>",
        f"<p>{html_escape(intro)}</p>",
        f"<p><b>Likely cause:</b> {_html_block(cause)}</p>",
    ]
    if shown is not None:
        parts.append(f"<h3>{html_escape(analysis_label(shown))}</h3>")
        parts.append(f"<p><b>Summary:</b> {_html_block(shown.summary)}</p>")
        if shown.fix:
            steps = "".join(f"<li>{_html_block(step)}</li>" for step in shown.fix)
            parts.append(f"<p><b>Fix:</b></p><ol>{steps}</ol>")
    parts.append(f"<h3>Members ({len(storm.members)})</h3><ul>{rows}</ul>")
    if storm_link:
        parts.append(f'<p><a href="{html_escape(storm_link)}">Storm</a></p>')
    parts.append("</div>")

    body = sections("Shared", intro) + sections("Likely cause", cause)
    if shown is not None:
        body += sections(analysis_label(shown), shown.summary)
    body += sections(f"Members ({len(storm.members)})", "\n".join(lines))
    footer = []
    if storm_link:
        link = {"type": "mrkdwn", "text": slack_link(storm_link, "Storm")}
        footer = [{"type": "context", "elements": [link]}]
    return Message(
        incident_id=storm.id,
        event=event,
        severity=storm.severity,
        title=title,
        text="\n".join(text).strip() + "\n",
        html="\n".join(parts),
        slack=pack(title, colour, body, footer),
        thread_id=thread_id(storm.id, opts.thread_domain),
        colour=colour,
    )
