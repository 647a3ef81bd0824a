"""Prometheus duration strings (`5m`, `1h30m`, `1w`) parsed to and formatted from milliseconds."""

from __future__ import annotations

import re

# Same grammar as Prometheus' model.ParseDuration: units largest first, each at most once.
_DURATION = re.compile(
    r"^(?:(\d+)y)?(?:(\d+)w)?(?:(\d+)d)?(?:(\d+)h)?(?:(\d+)m)?(?:(\d+)s)?(?:(\d+)ms)?$"
)
_UNITS_MS: tuple[tuple[str, int], ...] = (
    ("y", 365 * 86_400_000),
    ("w", 7 * 86_400_000),
    ("d", 86_400_000),
    ("h", 3_600_000),
    ("m", 60_000),
    ("s", 1_000),
    ("ms", 1),
)


def parse_duration(text: str) -> int:
    """Milliseconds in a Prometheus duration; `ValueError` naming the accepted form otherwise."""
    match = _DURATION.match(text)
    if text == "0":
        return 0
    if not text or match is None:
        raise ValueError(
            f"invalid Prometheus duration {text!r} (e.g. 30s, 5m, 1h30m, 1w; units y w d h m s ms)"
        )
    return sum(
        int(group) * unit_ms
        for group, (_, unit_ms) in zip(match.groups(), _UNITS_MS, strict=True)
        if group is not None
    )


def format_duration(ms: int) -> str:
    """The canonical Prometheus spelling of `ms` milliseconds (`90000` → `1m30s`, `0` → `0s`)."""
    if ms < 0:
        raise ValueError(f"negative duration: {ms} ms")
    if ms == 0:
        return "0s"
    parts: list[str] = []
    rest = ms
    for unit, unit_ms in _UNITS_MS:
        count, rest = divmod(rest, unit_ms)
        if count:
            parts.append(f"{count}{unit}")
    return "".join(parts)
