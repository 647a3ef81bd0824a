"""Similar past incidents: resolved incidents of the same alert whose significant labels agree,
with what their analysis said and how long they lasted."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta

from receiver.domain import IncidentView, Signal
from receiver.enrich.describe import minutes
from receiver.enrich.evidence import clean_text
from receiver.timeutil import aware

# Labels that make two incidents of the same alert "the same kind of trouble" when they agree.
SIGNIFICANT_LABELS = ("job", "service", "namespace", "cluster", "env", "environment", "app")


@dataclass(frozen=True)
class PastIncident:
    """A resolved incident of the same alert, with what its analysis said."""

    id: str
    key: str
    title: str
    started_at: datetime
    resolved_at: datetime | None
    labels: Mapping[str, str]  # group + common labels
    instances: Sequence[str] = ()
    summary: str = ""
    cause: str = ""
    offline: bool = True

    @property
    def duration(self) -> timedelta | None:
        if self.resolved_at is None:
            return None
        return aware(self.resolved_at) - aware(self.started_at)


HistoryLookup = Callable[[str, str], Awaitable[list[PastIncident]]]
"""(alertname, current incident id) → resolved incidents of that alert, newest first."""


def rank_similar(
    incident: IncidentView, primary: Signal, candidates: Sequence[PastIncident], limit: int
) -> list[PastIncident]:
    """Past incidents whose significant labels do not contradict the primary alert's, best first.

    Same group key weighs most, then a shared instance, then each agreeing significant label.
    """
    wanted = {k: primary.labels[k] for k in SIGNIFICANT_LABELS if primary.labels.get(k)}
    scored: list[tuple[int, float, PastIncident]] = []
    for past in candidates:
        if past.id == incident.id:
            continue
        if any(past.labels.get(k, v) != v for k, v in wanted.items()):
            continue
        score = 4 * (past.key == incident.key) + 2 * (primary.instance in past.instances)
        score += sum(past.labels.get(k) == v for k, v in wanted.items())
        scored.append((score, aware(past.started_at).timestamp(), past))
    scored.sort(key=lambda s: (-s[0], -s[1]))
    return [past for _, _, past in scored[:limit]]


def history_text(past: PastIncident) -> str:
    """When it started, how long it lasted, where, and what its analysis said."""
    duration = past.duration
    lasted = f"lasted {minutes(duration.total_seconds())}" if duration else "end unknown"
    lines = [
        f"started {aware(past.started_at):%Y-%m-%d %H:%M} UTC, {lasted}",
    ]
    if past.instances:
        lines.append("instances: " + ", ".join(clean_text(i, 80) for i in past.instances[:5]))
    if past.summary:
        source = "offline analysis" if past.offline else "analysis"
        lines.append(f"{source}: {clean_text(past.summary, 500)}")
    if past.cause and not past.offline:
        lines.append(f"cause given: {clean_text(past.cause, 500)}")
    return "\n".join(lines)
