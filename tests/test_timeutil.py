"""Naive datetimes from the store read as UTC (receiver/timeutil.py) and free ports."""

from __future__ import annotations

import socket
from datetime import UTC, datetime, timedelta, timezone

from receiver.ports import free_port
from receiver.timeutil import aware, iso_or_none


def test_aware_attaches_utc_only_to_naive_values() -> None:
    """A naive value gains UTC; an aware one (any zone) is returned unchanged."""
    naive = datetime(2024, 5, 1, 12, 30)
    assert aware(naive) == datetime(2024, 5, 1, 12, 30, tzinfo=UTC)
    plus2 = datetime(2024, 5, 1, 12, 30, tzinfo=timezone(timedelta(hours=2)))
    assert aware(plus2) is plus2


def test_iso_or_none_always_carries_an_offset() -> None:
    """The API's timestamps are RFC 3339 with an offset, and None stays None."""
    assert iso_or_none(datetime(2024, 5, 1, 12, 30)) == "2024-05-01T12:30:00+00:00"
    assert iso_or_none(None) is None


def test_free_port_can_be_bound_on_loopback() -> None:
    """The port handed out is free: a listener can bind it right away."""
    port = free_port()
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", port))
        assert sock.getsockname()[1] == port
