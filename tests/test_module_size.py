"""Every module under receiver/ stays at or under 450 lines: none grows back into a god module."""

from __future__ import annotations

from pathlib import Path

ROOT = Path(__file__).resolve().parents[1] / "receiver"
LIMIT = 450

# Files other helpers are splitting in parallel (issue #15); each entry leaves once it is split.
# The value is the size it may not grow past meanwhile.
BEING_SPLIT: dict[str, int] = {
}


def _sizes() -> dict[str, int]:
    return {
        str(path.relative_to(ROOT.parent)): len(path.read_text(encoding="utf-8").splitlines())
        for path in sorted(ROOT.rglob("*.py"))
    }


def test_every_module_is_at_most_450_lines() -> None:
    """A module over 450 lines fails unless it is on the allow-list, and then only past its cap."""
    over = [
        f"{source}: {lines} lines"
        for source, lines in _sizes().items()
        if lines > BEING_SPLIT.get(source, LIMIT)
    ]
    assert over == []


def test_the_allow_list_is_still_needed() -> None:
    """An allowed module that is split down to 450 lines leaves the allow-list."""
    sizes = _sizes()
    stale = [source for source in BEING_SPLIT if sizes.get(source, 0) <= LIMIT]
    assert stale == []
