"""Datetimes as the store hands them back, made safe to compare and print.

The embedded store (like MongoDB) keeps UTC but returns naive datetimes on some paths, so every
value read back is made aware before it meets an aware one or is written out as RFC 3339.
"""

from __future__ import annotations

from datetime import UTC, datetime


def utcnow() -> datetime:
    return datetime.now(UTC)


def aware(value: datetime) -> datetime:
    """`value` with UTC attached when it has no zone (an aware value is returned as it is)."""
    return value if value.tzinfo is not None else value.replace(tzinfo=UTC)


def iso_or_none(value: datetime | None) -> str | None:
    """RFC 3339 with an explicit offset for the API's JSON, or None."""
    return None if value is None else aware(value).isoformat()
