"""What a chat question is about: instances, alertnames and a time window found in its words.

"why did web-01 page last night?" → instance `web-01` (matching `web-01:9100` too) and the
window yesterday 18:00 → today 08:00 UTC. Names are matched against those the store knows, so
ordinary words never become filters.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta

_TOKEN = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.:\-]*[A-Za-z0-9]|[A-Za-z0-9]")
_UNITS = {
    "minute": 60,
    "min": 60,
    "hour": 3600,
    "hr": 3600,
    "day": 86400,
    "week": 604800,
}
_LAST_N = re.compile(
    r"\b(?:last|past|previous)\s+(\d{1,4})\s*(minute|min|hour|hr|day|week)s?\b", re.IGNORECASE
)
_AGO = re.compile(r"\b(\d{1,4})\s*(minute|min|hour|hr|day|week)s?\s+ago\b", re.IGNORECASE)
_DATE = re.compile(r"\b(\d{4})-(\d{2})-(\d{2})\b")


@dataclass(frozen=True)
class Window:
    start: datetime
    end: datetime
    label: str


def _day(now: datetime, days_back: int = 0) -> datetime:
    return (now - timedelta(days=days_back)).replace(hour=0, minute=0, second=0, microsecond=0)


def time_window(text: str, now: datetime) -> Window | None:
    """The period the question names, in UTC; None when it names none."""
    lower = text.lower()
    if match := _LAST_N.search(lower):
        seconds = int(match.group(1)) * _UNITS[match.group(2)]
        return Window(now - timedelta(seconds=seconds), now, match.group(0))
    if match := _AGO.search(lower):
        seconds = int(match.group(1)) * _UNITS[match.group(2)]
        at = now - timedelta(seconds=seconds)
        slack = timedelta(seconds=max(seconds // 4, 900))
        return Window(at - slack, min(at + slack, now), match.group(0))
    today = _day(now)
    if "last night" in lower or "overnight" in lower:
        start = today - timedelta(hours=6)
        end = today + timedelta(hours=8)
        return Window(start, min(end, now), "last night")
    if "this morning" in lower:
        return Window(today, min(today + timedelta(hours=12), now), "this morning")
    if "yesterday" in lower:
        return Window(today - timedelta(days=1), today, "yesterday")
    if "today" in lower or "tonight" in lower or "this evening" in lower:
        return Window(today, now, "today")
    if re.search(r"\b(?:last|past|this)\s+hour\b", lower):
        return Window(now - timedelta(hours=1), now, "last hour")
    if re.search(r"\b(?:last|past|this)\s+week\b", lower):
        return Window(now - timedelta(days=7), now, "last week")
    if match := _DATE.search(lower):
        try:
            start = now.replace(
                year=int(match.group(1)),
                month=int(match.group(2)),
                day=int(match.group(3)),
                hour=0,
                minute=0,
                second=0,
                microsecond=0,
            )
        except ValueError:
            return None
        return Window(start, start + timedelta(days=1), match.group(0))
    return None


def tokens(text: str, limit: int = 64) -> list[str]:
    """Candidate names in the text, lower-cased, in order, without duplicates."""
    seen: dict[str, None] = {}
    for raw in _TOKEN.findall(text):
        seen.setdefault(raw.lower().strip(".:-"), None)
        if len(seen) >= limit:
            break
    return [t for t in seen if t]


def _forms(name: str) -> set[str]:
    """`web-01.prod:9100` is also `web-01.prod` and `web-01`."""
    lower = name.lower()
    host = lower.rsplit(":", 1)[0] if re.search(r":\d+$", lower) else lower
    return {lower, host, host.split(".", 1)[0]}


def match_names(words: Iterable[str], known: Iterable[str]) -> list[str]:
    """The known names one of `words` refers to (exactly, without port or domain)."""
    wanted = set(words)
    return sorted(name for name in known if _forms(name) & wanted)
