"""Query-parameter parsing shared by the list endpoints; errors name the parameter."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from starlette.requests import Request

from receiver.domain import Severity, Status
from receiver.store.filters import EpisodeFilter, IncidentFilter
from receiver.timeutil import aware

MAX_LIMIT = 500


class BadParam(ValueError):
    def __init__(self, name: str, message: str) -> None:
        super().__init__(f"{name}: {message}")
        self.name = name


@dataclass(frozen=True)
class Page:
    limit: int
    offset: int


def page(request: Request, default: int = 50) -> Page:
    return Page(
        limit=_int(request, "limit", default, 1, MAX_LIMIT),
        offset=_int(request, "offset", 0, 0, 10_000_000),
    )


def _int(request: Request, name: str, default: int, low: int, high: int) -> int:
    raw = request.query_params.get(name)
    if raw is None or raw == "":
        return default
    try:
        value = int(raw)
    except ValueError as err:
        raise BadParam(name, f"not an integer: {raw[:40]!r}") from err
    if not low <= value <= high:
        raise BadParam(name, f"must be between {low} and {high}")
    return value


def since(request: Request) -> datetime | None:
    """`since` as RFC3339, unix seconds, or a duration back from now (`15m`, `2h`, `7d`)."""
    raw = request.query_params.get("since")
    if not raw:
        return None
    units = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}
    if raw[-1] in units and raw[:-1].isascii() and raw[:-1].isdigit():
        try:
            return datetime.now(UTC) - timedelta(seconds=int(raw[:-1]) * units[raw[-1]])
        except OverflowError as err:  # "99999999999d" reaches before year 1
            raise BadParam("since", "duration too long") from err
    try:
        return datetime.fromtimestamp(float(raw), UTC)
    except (ValueError, OverflowError, OSError):
        pass
    try:
        parsed = datetime.fromisoformat(raw.replace("Z", "+00:00"))
    except ValueError as err:
        raise BadParam("since", "use RFC3339, unix seconds or a duration like 2h") from err
    return aware(parsed)


def choice(request: Request, name: str, allowed: set[str]) -> str | None:
    raw = request.query_params.get(name)
    if not raw:
        return None
    value = raw.lower()
    if value not in allowed:
        raise BadParam(name, f"one of {', '.join(sorted(allowed))}")
    return value


def severity(request: Request) -> str | None:
    return choice(request, "severity", {s.value for s in Severity})


def status(request: Request) -> str | None:
    raw = request.query_params.get("status")
    if raw and raw.lower() == "open":
        return Status.FIRING.value
    return choice(request, "status", {s.value for s in Status} | {"open"})


def text(request: Request, name: str, max_len: int = 512) -> str | None:
    raw = request.query_params.get(name)
    if raw is None or raw == "":
        return None
    if len(raw) > max_len:
        raise BadParam(name, f"longer than {max_len} characters")
    return raw


def episode_filter(request: Request) -> EpisodeFilter:
    """`status`, `severity`, `alertname`, `instance`, `source` and `since` of a listing."""
    return EpisodeFilter(
        status=status(request),
        severity=severity(request),
        alertname=text(request, "alertname"),
        instance=text(request, "instance"),
        source=text(request, "source"),
        since=since(request),
    )


def incident_filter(request: Request, state: str | None = None) -> IncidentFilter:
    """The episode filters over an incident's names, and the on-call `state` given."""
    f = episode_filter(request)
    return IncidentFilter(
        status=f.status,
        severity=f.severity,
        alertname=f.alertname,
        instance=f.instance,
        source=f.source,
        since=f.since,
        state=state,
    )
