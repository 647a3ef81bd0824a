"""Finding what a chat question is about: time words, names, and their known forms."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from receiver.chat.grounding import match_names, time_window, tokens

NOW = datetime(2026, 11, 28, 14, 30, tzinfo=UTC)
TODAY = datetime(2026, 11, 28, tzinfo=UTC)


def test_last_night_spans_evening_to_morning() -> None:
    """'last night' is yesterday 18:00 to today 08:00 UTC."""
    window = time_window("why did web-01 page last night?", NOW)
    assert window is not None
    assert (window.start, window.end) == (TODAY - timedelta(hours=6), TODAY + timedelta(hours=8))


def test_relative_and_named_periods() -> None:
    """Durations, 'ago', yesterday/today and ISO dates become windows ending no later than now."""
    cases = {
        "in the last 3 hours": (NOW - timedelta(hours=3), NOW),
        "past 2 days": (NOW - timedelta(days=2), NOW),
        "yesterday": (TODAY - timedelta(days=1), TODAY),
        "today": (TODAY, NOW),
        "this morning": (TODAY, TODAY + timedelta(hours=12)),
        "on 2026-11-20": (datetime(2026, 11, 20, tzinfo=UTC), datetime(2026, 11, 21, tzinfo=UTC)),
    }
    for text, (start, end) in cases.items():
        window = time_window(text, NOW)
        assert window is not None, text
        assert (window.start, window.end) == (start, end), text
    ago = time_window("it paged 2 hours ago", NOW)
    assert ago is not None
    assert ago.start < NOW - timedelta(hours=2) < ago.end <= NOW
    assert time_window("why is db-2 slow?", NOW) is None
    assert time_window("on 2026-13-45", NOW) is None


def test_names_match_with_or_without_port_and_domain() -> None:
    """web-01 matches web-01:9100 and web-01.prod:9100; alertnames match case-insensitively."""
    words = tokens("Why did WEB-01 and highlatency page? cc: db")
    known = ["web-01:9100", "web-01.prod:9100", "web-011:9100", "db-1:9100", "HighLatency"]
    assert match_names(words, known) == ["HighLatency", "web-01.prod:9100", "web-01:9100"]
    assert match_names(tokens("nothing relevant here"), known) == []
