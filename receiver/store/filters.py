"""Keyword filters for the listings, and the one place they become database queries.

Callers outside the store say what they want (`IncidentFilter(status="firing", since=t)`); the
repository methods turn that into a query with the `*_query` functions here. A field left at
None (or empty) does not filter.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

# a field that is "" or missing (incidents stored before it existed)
_EMPTY = ["", None]

# on-call states (`receiver.oncall.actions.STATE_FILTERS`) as queries: `open` is every firing
# incident, `unacknowledged` the firing ones nobody holds
_STATES: dict[str, dict[str, Any]] = {
    "open": {"status": "firing"},
    "unacknowledged": {"status": "firing", "acked_by": {"$in": _EMPTY}},
    "acknowledged": {"status": "firing", "acked_by": {"$nin": _EMPTY}},
    "closed": {"closed_by": {"$nin": _EMPTY}},
    "resolved": {"status": "resolved", "closed_by": {"$in": _EMPTY}},
}
STATES = tuple(_STATES)


@dataclass(frozen=True)
class IncidentFilter:
    """Incidents to list; `alertname`/`instance` match one of the incident's names."""

    status: str | None = None
    severity: str | None = None
    source: str | None = None
    alertname: str | None = None
    instance: str | None = None
    since: datetime | None = None  # started at or after
    state: str | None = None  # an on-call state (STATES)
    # incidents naming any of these alertnames or instances (either list)
    any_alertnames: Sequence[str] = ()
    any_instances: Sequence[str] = ()
    started_by: datetime | None = None  # started at or before


@dataclass(frozen=True)
class EpisodeFilter:
    status: str | None = None
    severity: str | None = None
    source: str | None = None
    alertname: str | None = None
    instance: str | None = None
    since: datetime | None = None  # started at or after


@dataclass(frozen=True)
class AnalysisFilter:
    severity: str | None = None
    incident_id: str | None = None
    alertname: str | None = None
    since: datetime | None = None  # created at or after


@dataclass(frozen=True)
class SessionFilter:
    owner: str | None = None
    since: datetime | None = None  # active at or after


@dataclass(frozen=True)
class AuditFilter:
    actor: str | None = None
    action: str | None = None
    target: str | None = None
    since: datetime | None = None  # at or after


def _equal(**fields: Any) -> dict[str, Any]:
    return {name: value for name, value in fields.items() if value is not None}


def _at_least(query: dict[str, Any], field: str, when: datetime | None) -> dict[str, Any]:
    if when is not None:
        query[field] = {"$gte": when}
    return query


def incident_query(f: IncidentFilter) -> dict[str, Any]:
    query = _equal(
        status=f.status,
        severity=f.severity,
        source=f.source,
        alertnames=f.alertname,
        instances=f.instance,
    )
    _at_least(query, "started_at", f.since)
    either: list[dict[str, Any]] = []
    if f.any_instances:
        either.append({"instances": {"$in": list(f.any_instances)}})
    if f.any_alertnames:
        either.append({"alertnames": {"$in": list(f.any_alertnames)}})
    if either:
        query["$or"] = either
    if f.started_by is not None:
        query["started_at"] = {**query.get("started_at", {}), "$lte": f.started_by}
    if f.state is None:
        return query
    state = _STATES[f.state]
    # both may name `status` (status=resolved&state=open matches nothing), so keep both whole
    return {"$and": [query, state]} if query else dict(state)


def episode_query(f: EpisodeFilter) -> dict[str, Any]:
    query = _equal(
        status=f.status,
        severity=f.severity,
        source=f.source,
        alertname=f.alertname,
        instance=f.instance,
    )
    return _at_least(query, "starts_at", f.since)


def analysis_query(f: AnalysisFilter) -> dict[str, Any]:
    query = _equal(severity=f.severity, incident_id=f.incident_id, alertname=f.alertname)
    return _at_least(query, "created_at", f.since)


def session_query(f: SessionFilter) -> dict[str, Any]:
    return _at_least(_equal(owner=f.owner), "last_activity", f.since)


def audit_query(f: AuditFilter) -> dict[str, Any]:
    query = _equal(actor=f.actor, action=f.action, target=f.target)
    return _at_least(query, "at", f.since)
