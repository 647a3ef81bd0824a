"""Text, URL and secret safety: the one copy every channel, page and log line uses.

Everything that shows untrusted text (labels, annotations, model output, webhook bodies) or a
configured URL goes through here: email and Slack rendering, the console, the chat, the logs and
the API's health answer. A fix made here reaches all of them; a second copy elsewhere would drift.
Pure functions, no I/O.
"""

from __future__ import annotations

import html
import re
from collections.abc import Iterable
from urllib.parse import unquote, urlsplit, urlunsplit

MASK = "****"
SLACK_HOSTS = ("hooks.slack.com", "hooks.slack-gov.com")

# C0 controls but tab and newline (bodies keep their lines), DEL and C1 controls, the bidi
# embedding/override/isolate marks (they can make shown text read differently from what it
# is: "Trojan Source") and lone surrogates (they cannot be encoded into an email or a page).
_CONTROL = re.compile(
    "[\x00-\x08\x0b-\x1f\x7f-\x9f\u061c\u200e\u200f\u202a-\u202e\u2066-\u2069\ud800-\udfff]"
)
# Plain-text broadcast mentions; `<!channel>` forms are already defused by escaping `<`.
_MENTION = re.compile(r"([@!])(channel|here|everyone)\b", re.IGNORECASE)


# --- text -----------------------------------------------------------------------------------


def strip_control(raw: str, replacement: str = "") -> str:
    """`raw` without control, bidi-override and lone-surrogate characters (tab, newline kept)."""
    return _CONTROL.sub(replacement, raw)


def one_line(raw: str, limit: int) -> str:
    """Collapse whitespace and control characters; cap the length (subjects, headers, summaries)."""
    flat = " ".join(strip_control(raw, " ").split())
    return flat if len(flat) <= limit else flat[: limit - 1].rstrip() + "…"


def html_escape(raw: str) -> str:
    """Escape untrusted text for HTML element content and quoted attributes."""
    return html.escape(strip_control(raw), quote=True)


def defuse_mentions(text: str) -> str:
    """A zero-width space after `@`/`!` so Slack does not read `@channel`/`@here` as a mention."""
    return _MENTION.sub("\\1\u200b\\2", text)


def slack_escape(raw: str) -> str:
    """Escape untrusted text for Slack mrkdwn and defuse broadcast mentions.

    Escaping `&<>` turns `<!channel>`, `<@U123>` and `<url|text>` into literal text.
    """
    escaped = strip_control(raw).replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
    return defuse_mentions(escaped)


def slack_plain(raw: str, limit: int) -> str:
    """Untrusted text for a Slack `plain_text` object: one line, mentions and `<...>` defused."""
    text = defuse_mentions(one_line(raw, limit)).replace("<", "<\u200b")
    return text if len(text) <= limit else text[: limit - 1] + "…"


# --- URLs -----------------------------------------------------------------------------------


def safe_url(raw: str) -> str:
    """`raw` if it is an absolute http(s) URL, else "" (no javascript:, data: ...)."""
    try:
        parts = urlsplit(raw.strip())
    except ValueError:
        return ""
    if parts.scheme.lower() not in ("http", "https") or not parts.netloc:
        return ""
    return raw.strip()


def split_userinfo(url: str) -> tuple[str, tuple[str, str] | None]:
    """(`url` without `user:password@`, the decoded (user, password) or None)."""
    try:
        parts = urlsplit(url)
    except ValueError:
        return url, None
    userinfo, at, host = parts.netloc.rpartition("@")
    if not at:
        return url, None
    user, _, password = userinfo.partition(":")
    return urlunsplit(parts._replace(netloc=host)), (unquote(user), unquote(password))


def redact(text: str, secrets: Iterable[str], mask: str = MASK) -> str:
    """`text` with every one of `secrets` replaced by `mask` (pass the longest first)."""
    for secret in secrets:
        if secret and secret in text:
            text = text.replace(secret, mask)
    return text


# --- secrets in URLs -----------------------------------------------------------------------

_URL = re.compile(
    r"^(?P<scheme>[A-Za-z][A-Za-z0-9+.-]*)://(?P<netloc>[^/?]*)(?P<path>[^?]*)(?:\?(?P<query>.*))?$",
    re.S,
)
_HOSTLIKE = re.compile(r"^(\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9_.-]+)(:\d{1,5})?$")
EMAIL_ADDRESS = re.compile(r"^[^@\s/]+@[^@\s/]+\.[^@\s/]+$")
_HTTPISH = {"http", "https", "json", "jsons", "xml", "xmls", "form", "forms"}
_MAILISH = {"mailto", "mailtos"}
# Query keys whose values are configuration, not credentials; everything else is masked.
_PUBLIC_KEYS = {
    "to", "cc", "bcc", "from", "name", "smtp", "mode", "verify", "format", "overflow",
    "footer", "image", "blocks", "timestamp", "port", "reply", "method", "lang", "rto", "cto",
    "emojis", "retry", "wait", "optional", "priority", "channel", "channels", "avatar", "mrkdwn",
    "batch", "discovery", "tz", "store", "inline", "region", "threads", "botname",
}  # fmt: skip
_SECRETISH = re.compile(r"pass|token|secret|key|auth|sig|cred|session|cookie", re.I)


def mask_url(url: str) -> str:
    """`url` with passwords, tokens, webhook path secrets and API keys replaced by `****`.

    Examples: `mailto://user:****@host`, `slack://T1…/****/****`,
    `https://hooks.slack.com/services/****/****/****`. Unparseable input → `****`.
    """
    return mask_url_secrets(url)[0]


_WORD = re.compile(r"[a-z][a-z_-]{0,11}|v\d{1,2}")


def _tokenish(part: str) -> bool:
    """Anything but a short lowercase word ("services", "api", "v1") may be a credential."""
    return _WORD.fullmatch(unquote(part)) is None


def _partial(part: str) -> str:
    return part[:2] + "…" if len(part) >= 8 else MASK


def mask_url_secrets(url: str) -> tuple[str, tuple[str, ...]]:
    """(masked URL, the secret substrings it hid, longest first)."""
    match = _URL.match(url.strip())
    if match is None:
        return MASK, (url.strip(),) if url.strip() else ()
    scheme = match["scheme"].lower()
    secrets: list[str] = []

    def hide(value: str, replacement: str = MASK) -> str:
        if value:
            secrets.extend({value, unquote(value)})
        return replacement

    service = scheme not in _HTTPISH and scheme not in _MAILISH
    userinfo, _, hostport = match["netloc"].rpartition("@")
    if userinfo:
        user, sep, password = userinfo.partition(":")
        if service and _tokenish(user):
            user = hide(user, _partial(user))
        userinfo = user + (sep + hide(password) if sep else "") + "@"
    if service and not _looks_like_host(hostport):
        hostport = hide(hostport, _partial(hostport))

    # On Slack's own hosts every path segment after /services/ is part of the secret.
    slack_host = hostport.lower().split(":")[0] in SLACK_HOSTS
    segments = []
    for seg in match["path"].split("/"):
        keep = (
            not seg
            or (slack_host and seg in ("services", "workflows", "triggers"))
            or (scheme in _MAILISH and EMAIL_ADDRESS.match(unquote(seg)) is not None)
            or (not service and not slack_host and not _tokenish(seg))
            or (service and seg[:1] in "#@" and not _tokenish(seg[1:]))
            or (service and seg.startswith("%23") and not _tokenish(seg[3:]))
        )
        segments.append(seg if keep else hide(seg))
    path = "/".join(segments)

    query = ""
    if match["query"] is not None:
        pairs = []
        for item in match["query"].split("&"):
            key, eq, value = item.partition("=")
            bare = unquote(key).lstrip("+-:").lower()
            public = unquote(key)[:1] not in "+-:" and bare in _PUBLIC_KEYS
            if eq and value and (not public or _SECRETISH.search(bare)):
                value = hide(value)
            pairs.append(key + eq + value)
        query = "?" + "&".join(pairs)
    masked = f"{scheme}://{userinfo}{hostport}{path}{query}"
    unique = sorted({s for s in secrets if len(s) >= 3}, key=len, reverse=True)
    return masked, tuple(unique)


def _looks_like_host(hostport: str) -> bool:
    if not _HOSTLIKE.match(hostport):
        return False
    host = hostport.rsplit(":", 1)[0] if not hostport.startswith("[") else hostport
    return "." in host or host.lower() == "localhost" or host.startswith("[")
