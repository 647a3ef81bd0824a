"""Turn an incident (plus its analysis) into one channel-neutral `Message`.

Every label, annotation, reason and model-written string is untrusted, so it is HTML-escaped
for email and Slack-escaped (with broadcast mentions neutralised) for Slack, with the helpers of
`receiver.safety`. Pure functions, no I/O.
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

from receiver.domain import Analysis, IncidentView, Severity, Signal, Source, Status
from receiver.oncall.matchers import silence_link
from receiver.safety import html_escape, one_line, safe_url, slack_escape, slack_plain


class Event(StrEnum):
    """Why a notification is sent; the outbox keys on (incident, channel, event)."""

    FIRING = "firing"
    RESOLVED = "resolved"
    ANALYSIS = "analysis"  # follow-up once the analysis arrives after the first page
    DIGEST = "digest"  # "N more alerts in this group"
    UPDATE = "update"  # a storm gained members since its page (receiver/notify/storm_render.py)


# Slack limits (api.slack.com/reference/block-kit/blocks, chat.postMessage): section text 3000,
# header 150, section fields 10 x 2000, 50 blocks per message, message text truncated at 40k.
SLACK_TEXT_LIMIT = 3000
SLACK_HEADER_LIMIT = 150
SLACK_FIELD_LIMIT = 2000
SLACK_MAX_BLOCKS = 45  # below 50, leaving room for the header/footer blocks of each part
SLACK_MESSAGE_LIMIT = 38_000  # characters of block text per message, below the 40k cap
SLACK_MAX_MESSAGES = 5  # longer content is truncated with a pointer to the API
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
class RenderOptions:
    """Links and identifiers that come from settings, not from the incident."""

    public_url: str = ""  # this service's base URL, for the console and API links
    incident_path: str = "/api/v1/incidents/{id}"  # appended to public_url; {id} = incident id
    console_path: str = "/ui/incidents/{id}"  # the incident's console page; "" = no link
    link: str = ""  # an explicit API link (a digest's query); wins over incident_path
    thread_domain: str = "ai-devops-monitor"  # right-hand side of the email thread id


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
    primary = _primary(incident)
    colour = RESOLVED_COLOUR if event is Event.RESOLVED else SEVERITY_COLOURS[incident.severity]
    title = _title(incident, event, primary)
    api_link = _api_link(incident, opts)
    attachments: tuple[Attachment, ...] = ()
    if event is Event.DIGEST:
        text, body_html, slack = _digest(incident, title, colour, api_link)
    else:
        facts = _facts(incident, primary)
        console = _service_link(incident, opts, opts.console_path)
        links = _links(incident, primary, api_link, console)
        shown = None if event is Event.RESOLVED else analysis
        pending = event is Event.FIRING
        text = _text(title, facts, shown, links, pending=pending, chart=chart is not None)
        body_html = _html(title, facts, shown, links, pending=pending, chart=chart is not None)
        slack = _slack(title, colour, facts, shown, links)
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


# --- links ----------------------------------------------------------------------------------


def _slack_link(url: str, label: str) -> str:
    # Inside <url|label> the URL must not contain `|` or `>`; percent-encode them.
    target = url.replace("&", "&amp;").replace("<", "%3C").replace(">", "%3E").replace("|", "%7C")
    return f"<{target}|{slack_escape(label)}>"


# --- content --------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Facts:
    metric: str
    instance: str
    value: str
    reason: str
    severity: str
    status: str
    started: str
    alerts: int


@dataclass(frozen=True)
class _Links:
    prometheus: str
    alertmanager: str
    api: str
    runbook: str
    console: str = ""
    dashboard: str = ""  # Grafana: the alert's dashboard (or panel)
    # a silence form: Grafana's own for the alert, else Alertmanager's for the group (firing)
    silence: str = ""
    sender: str = "Alertmanager"  # what `alertmanager` (the externalURL) links to


def _primary(incident: IncidentView) -> Signal | None:
    """The signal the headline describes: firing before resolved, then most severe, earliest."""
    if not incident.signals:
        return None
    return min(
        incident.signals,
        key=lambda s: (s.status is not Status.FIRING, -s.severity.rank, s.starts_at),
    )


def _name(incident: IncidentView, primary: Signal | None) -> str:
    if primary is not None and (primary.metric or primary.alertname):
        return primary.metric or primary.alertname
    return incident.title or (incident.alertnames[0] if incident.alertnames else incident.key)


def _title(incident: IncidentView, event: Event, primary: Signal | None) -> str:
    head = f"[{incident.severity.value.upper()}] {one_line(_name(incident, primary), 120)}"
    others = len(incident.signals) - 1
    if event is Event.RESOLVED:
        return one_line(f"[RESOLVED] {head}", SUBJECT_LIMIT)
    if event is Event.ANALYSIS:
        return one_line(
            f"Re: {head}", SUBJECT_LIMIT
        )  # a reply: clients thread it under the first page
    if event is Event.DIGEST:
        return one_line(
            f"{head}: {len(incident.signals)} more alerts in {_group_phrase(incident)}",
            SUBJECT_LIMIT,
        )
    return one_line(f"{head} (+{others} more)" if others > 0 else head, SUBJECT_LIMIT)


def _group_phrase(incident: IncidentView) -> str:
    """`group k=v, ...` from the group labels; else the title (a digest says "12 groups")."""
    if incident.group_labels:
        return "group " + ", ".join(f"{k}={v}" for k, v in sorted(incident.group_labels.items()))
    return incident.title or f"group {incident.key}"


def _fmt_value(value: float | None) -> str:
    if value is None:
        return "n/a"
    return f"{value:.6g}"


def _facts(incident: IncidentView, primary: Signal | None) -> _Facts:
    instance = primary.instance if primary is not None else ""
    if not instance and incident.instances:
        instance = ", ".join(incident.instances[:5])
    reason = ""
    if primary is not None:
        reason = (
            primary.reason
            or primary.annotations.get("summary", "")
            or primary.annotations.get("description", "")
        )
    return _Facts(
        metric=_name(incident, primary),
        instance=instance or "n/a",
        value=_fmt_value(primary.value if primary is not None else None),
        reason=reason,
        severity=incident.severity.value,
        status=incident.status.value,
        started=incident.started_at.isoformat(timespec="seconds"),
        alerts=len(incident.signals),
    )


def _api_link(incident: IncidentView, opts: RenderOptions) -> str:
    if opts.link:
        return safe_url(opts.link)
    return _service_link(incident, opts, opts.incident_path)


def _service_link(incident: IncidentView, opts: RenderOptions, path: str) -> str:
    """`public_url` + `path` for the incident; "" without a base URL or a path."""
    if not opts.public_url or not path:
        return ""
    return safe_url(opts.public_url.rstrip("/") + path.format(id=incident.id))


_SENDER_NAMES = {Source.GRAFANA: "Grafana", Source.ONCALL: "OnCall"}


def _silence(incident: IncidentView, primary: Signal | None) -> str:
    """Grafana's own silence form for the alert, else Alertmanager's for a firing group."""
    grafana = safe_url(primary.links.get("silence", "")) if primary else ""
    if grafana:
        return grafana
    if incident.source is Source.ALERTMANAGER and incident.status is Status.FIRING:
        return safe_url(silence_link(incident.external_url, incident.group_labels))
    return ""


def _links(incident: IncidentView, primary: Signal | None, api: str, console: str) -> _Links:
    return _Links(
        prometheus=safe_url(primary.generator_url) if primary is not None else "",
        alertmanager=safe_url(incident.external_url),
        api=api,
        runbook=safe_url(primary.annotations.get("runbook_url", "")) if primary else "",
        console=console,
        dashboard=safe_url(primary.links.get("dashboard") or primary.links.get("panel", ""))
        if primary
        else "",
        silence=_silence(incident, primary),
        sender=_SENDER_NAMES.get(incident.source, "Alertmanager"),
    )


def _link_pairs(links: _Links) -> list[tuple[str, str]]:
    pairs = [
        ("Console", links.console),
        ("Silence", links.silence),
        ("Prometheus", links.prometheus),
        (links.sender, links.alertmanager),
        ("Dashboard", links.dashboard),
        ("Silence", links.silence),
        ("Runbook", links.runbook),
        ("Incident API", links.api),
    ]
    return [(label, url) for label, url in pairs if url]


def _analysis_label(analysis: Analysis) -> str:
    if analysis.offline:
        return "Evidence summary (offline analyst, no LLM)"
    return f"Analysis ({analysis.provider}, confidence {analysis.confidence:.0%})"


# --- plain text -----------------------------------------------------------------------------


def _text(
    title: str,
    facts: _Facts,
    analysis: Analysis | None,
    links: _Links,
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
        lines += [_analysis_label(analysis), f"Summary: {analysis.summary}"]
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
    lines += ["", *(f"{label}: {url}" for label, url in _link_pairs(links))]
    return "\n".join(lines).strip() + "\n"


# --- HTML -----------------------------------------------------------------------------------

_TD = 'style="padding:2px 12px 2px 0;vertical-align:top"'


def _html_row(label: str, value: str) -> str:
    return f'<tr><th align="left" {_TD}>{label}</th><td {_TD}>{html_escape(value)}</td></tr>'


def _html_block(text: str) -> str:
    # Keep the author's line breaks without trusting any markup in them.
    return "<br>".join(html_escape(line) for line in text.splitlines()) or "&nbsp;"


def _html(
    title: str,
    facts: _Facts,
    analysis: Analysis | None,
    links: _Links,
    *,
    pending: bool,
    chart: bool = False,
) -> str:
    rows = [
        _html_row("Metric", facts.metric),
        _html_row("Instance", facts.instance),
        _html_row("Value", facts.value),
        _html_row("Severity", facts.severity),
        _html_row("Status", f"{facts.status} since {facts.started}"),
    ]
    if facts.reason:
        rows.append(_html_row("Reason", facts.reason))
    if facts.alerts > 1:
        rows.append(_html_row("Alerts", str(facts.alerts)))
    parts = [
        '<div style="font-family:sans-serif;font-size:14px">',
        f"<h2>{html_escape(title)}</h2>",
        f"<table>{''.join(rows)}</table>",
    ]
    if chart:
        # Apprise embeds an attachment inline (multipart/related) when the body names its cid
        parts.append(
            f'<p><img src="cid:{CHART_NAME}" alt="Main evidence series" '
            'style="max-width:100%;border:1px solid #ddd"></p>'
        )
    if analysis is not None:
        parts += [
            f"<h3>{html_escape(_analysis_label(analysis))}</h3>",
            f"<p><b>Summary:</b> {_html_block(analysis.summary)}</p>",
            f"<p><b>Likely cause:</b> {_html_block(analysis.cause)}</p>",
        ]
        if analysis.fix:
            steps = "".join(f"<li>{_html_block(step)}</li>" for step in analysis.fix)
            parts.append(f"<p><b>Fix:</b></p><ol>{steps}</ol>")
        if analysis.simplified:
            parts.append(f"<p><b>In plain words:</b> {_html_block(analysis.simplified)}</p>")
    elif pending:
        parts.append("<p><i>Analysis not available yet; a follow-up will carry it.</i></p>")
    link_html = " | ".join(
        f'<a href="{html_escape(url)}">{label}</a>' for label, url in _link_pairs(links)
    )
    if link_html:
        parts.append(f"<p>{link_html}</p>")
    parts.append("</div>")
    return "\n".join(parts)


# --- Slack ----------------------------------------------------------------------------------


def _chunks(raw: str, limit: int) -> Iterator[str]:
    """Slack-escaped pieces of `raw`, each at most `limit` characters after escaping.

    Splits at line ends where possible; escaping happens per piece so an entity such as
    `&amp;` is never cut in half.
    """
    piece: list[str] = []
    size = 0
    for line in raw.splitlines(keepends=True):
        escaped = slack_escape(line)
        if size + len(escaped) <= limit:
            piece.append(escaped)
            size += len(escaped)
            continue
        if piece:
            yield "".join(piece)
            piece, size = [], 0
        while len(escaped) > limit:
            cut = _cut(line, limit)
            yield slack_escape(line[:cut])
            line = line[cut:]
            escaped = slack_escape(line)
        piece, size = [escaped], len(escaped)
    if piece:
        yield "".join(piece)


def _cut(line: str, limit: int) -> int:
    """The longest prefix of `line` whose escaped form fits `limit`, preferring a space."""
    cut = min(len(line), limit)  # escaping never shrinks text, so this is an upper bound
    while cut > 1:
        excess = len(slack_escape(line[:cut])) - limit
        if excess <= 0:
            break
        cut -= max(1, excess // 5)  # an escaped char costs at most 5 (`&amp;`)
    cut = max(cut, 1)
    space = line.rfind(" ", 0, cut)
    return space + 1 if space > cut // 2 else cut


def _section(text: str) -> dict[str, Any]:
    return {"type": "section", "text": {"type": "mrkdwn", "text": text}}


def _sections(heading: str, raw: str) -> list[dict[str, Any]]:
    """`*heading*` followed by `raw`, split into sections within the Slack text limit."""
    head = f"*{slack_escape(heading)}*\n"
    # Anything past what SLACK_MAX_MESSAGES can carry is cut anyway; do not chunk megabytes.
    raw = raw[: SLACK_MAX_MESSAGES * SLACK_MESSAGE_LIMIT]
    pieces = list(_chunks(raw, SLACK_TEXT_LIMIT - len(head))) or [""]
    return [_section(head + pieces[0])] + [_section(p) for p in pieces[1:]]


def _slack(
    title: str, colour: str, facts: _Facts, analysis: Analysis | None, links: _Links
) -> tuple[dict[str, Any], ...]:
    fields = [
        ("Metric", facts.metric),
        ("Severity", facts.severity),
        ("Value", facts.value),
        ("Instance", facts.instance),
    ]
    field_block = {
        "type": "section",
        "fields": [
            {"type": "mrkdwn", "text": next(_chunks(f"*{k}*\n{v}", SLACK_FIELD_LIMIT))}
            for k, v in fields
        ],
    }
    body: list[dict[str, Any]] = [field_block]
    if facts.reason:
        body += _sections("Reason", facts.reason)
    if analysis is not None:
        body += _sections(_analysis_label(analysis), analysis.summary)
        body += _sections("Likely cause", analysis.cause)
        if analysis.fix:
            steps = "\n".join(f"{n}. {step}" for n, step in enumerate(analysis.fix, 1))
            body += _sections("Fix", steps)
        if analysis.simplified:
            body += _sections("In plain words", analysis.simplified)
    link_text = " · ".join(_slack_link(url, label) for label, url in _link_pairs(links))
    footer = [{"type": "context", "elements": [{"type": "mrkdwn", "text": link_text}]}]
    return _pack(title, colour, body, footer if link_text else [])


def _block_size(block: dict[str, Any]) -> int:
    if "text" in block:
        return len(block["text"]["text"])
    return sum(len(item["text"]) for item in block.get("fields", block.get("elements", [])))


def _pack(
    title: str, colour: str, body: Sequence[dict[str, Any]], footer: list[dict[str, Any]]
) -> tuple[dict[str, Any], ...]:
    """Spread blocks over as few webhook messages as the limits allow (colour kept on each)."""
    parts: list[list[dict[str, Any]]] = [[]]
    size = 0
    for block in body:
        n = _block_size(block)
        if parts[-1] and (size + n > SLACK_MESSAGE_LIMIT or len(parts[-1]) >= SLACK_MAX_BLOCKS):
            parts.append([])
            size = 0
        parts[-1].append(block)
        size += n
    if len(parts) > SLACK_MAX_MESSAGES:
        parts = parts[:SLACK_MAX_MESSAGES]
        parts[-1].append(_section("_… truncated; the full text is in the incident API._"))
    total = len(parts)
    messages = []
    for index, blocks in enumerate(parts, 1):
        label = title if total == 1 else f"{title} ({index}/{total})"
        header = {
            "type": "header",
            "text": {"type": "plain_text", "text": slack_plain(label, SLACK_HEADER_LIMIT)},
        }
        messages.append(
            {
                # Top-level text is what notifications and screen readers show.
                "text": slack_escape(one_line(label, SLACK_HEADER_LIMIT)),
                "attachments": [
                    {
                        "color": colour,
                        "fallback": slack_escape(one_line(label, SLACK_HEADER_LIMIT)),
                        "blocks": [header, *blocks, *(footer if index == total else [])],
                    }
                ],
            }
        )
    return tuple(messages)


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
            _fmt_value(s.value),
            s.status.value,
        )
        for s in top
    ]
    count = len(incident.signals)
    intro = f"{count} more alerts in {_group_phrase(incident)}; top {len(rows)} by severity:"
    text_lines = [
        title,
        "",
        intro,
        *(f"- [{r[0]}] {r[1]} on {r[2]} = {r[3]} ({r[4]})" for r in rows),
    ]
    if api_link:
        text_lines += ["", f"All alerts: {api_link}"]
    html_rows = "".join(
        "<tr>" + "".join(f"<td {_TD}>{html_escape(cell)}</td>" for cell in r) + "</tr>"
        for r in rows
    )
    body_html = "\n".join(
        [
            '<div style="font-family:sans-serif;font-size:14px">',
            f"<h2>{html_escape(title)}</h2>",
            f"<p>{html_escape(intro)}</p>",
            "<table><tr><th>Severity</th><th>Metric</th><th>Instance</th><th>Value</th>"
            f"<th>Status</th></tr>{html_rows}</table>",
            f'<p><a href="{html_escape(api_link)}">All alerts (API)</a></p>' if api_link else "",
            "</div>",
        ]
    )
    listing = "\n".join(f"• [{r[0]}] {r[1]} on {r[2]} = {r[3]} ({r[4]})" for r in rows)
    body = _sections(intro, listing)
    footer = []
    if api_link:
        link = _slack_link(api_link, "All alerts (API)")
        footer = [{"type": "context", "elements": [{"type": "mrkdwn", "text": link}]}]
    return "\n".join(text_lines) + "\n", body_html, _pack(title, colour, body, footer)
