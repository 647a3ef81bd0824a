"""Slack incoming-webhook bodies (Block Kit) for a notification: escaped text cut to Slack's
limits and spread over as few messages as those allow. Pure functions."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import Any

from receiver.domain import Analysis
from receiver.notify.content import Facts, Links, analysis_label, link_pairs
from receiver.safety import one_line, slack_escape, slack_plain

# Slack limits (api.slack.com/reference/block-kit/blocks, chat.postMessage): section text 3000,
# header 150, section fields 10 x 2000, 50 blocks per message, message text truncated at 40k.
SLACK_TEXT_LIMIT = 3000
SLACK_HEADER_LIMIT = 150
SLACK_FIELD_LIMIT = 2000
SLACK_MAX_BLOCKS = 45  # below 50, leaving room for the header/footer blocks of each part
SLACK_MESSAGE_LIMIT = 38_000  # characters of block text per message, below the 40k cap
SLACK_MAX_MESSAGES = 5  # longer content is truncated with a pointer to the API


def slack_link(url: str, label: str) -> str:
    # Inside <url|label> the URL must not contain `|` or `>`; percent-encode them.
    target = url.replace("&", "&amp;").replace("<", "%3C").replace(">", "%3E").replace("|", "%7C")
    return f"<{target}|{slack_escape(label)}>"


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


def sections(heading: str, raw: str) -> list[dict[str, Any]]:
    """`*heading*` followed by `raw`, split into sections within the Slack text limit."""
    head = f"*{slack_escape(heading)}*\n"
    # Anything past what SLACK_MAX_MESSAGES can carry is cut anyway; do not chunk megabytes.
    raw = raw[: SLACK_MAX_MESSAGES * SLACK_MESSAGE_LIMIT]
    pieces = list(_chunks(raw, SLACK_TEXT_LIMIT - len(head))) or [""]
    return [_section(head + pieces[0])] + [_section(p) for p in pieces[1:]]


def incident_blocks(
    title: str, colour: str, facts: Facts, analysis: Analysis | None, links: Links
) -> tuple[dict[str, Any], ...]:
    """The webhook bodies of one incident's page (facts, analysis, links)."""
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
        body += sections("Reason", facts.reason)
    if analysis is not None:
        body += sections(analysis_label(analysis), analysis.summary)
        body += sections("Likely cause", analysis.cause)
        if analysis.fix:
            steps = "\n".join(f"{n}. {step}" for n, step in enumerate(analysis.fix, 1))
            body += sections("Fix", steps)
        if analysis.simplified:
            body += sections("In plain words", analysis.simplified)
    link_text = " · ".join(slack_link(url, label) for label, url in link_pairs(links))
    footer = [{"type": "context", "elements": [{"type": "mrkdwn", "text": link_text}]}]
    return pack(title, colour, body, footer if link_text else [])


def _block_size(block: dict[str, Any]) -> int:
    if "text" in block:
        return len(block["text"]["text"])
    return sum(len(item["text"]) for item in block.get("fields", block.get("elements", [])))


def pack(
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
