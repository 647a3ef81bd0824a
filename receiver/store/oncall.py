"""Store operations of the on-call workflow: incident actions, their history, the audit log,
and the label/sort scan behind `GET /api/v1/incidents?filter=...&sort=...`.

Action updates are conditional single-document writes (`{_id, status: firing}` for a close), so
two operators racing get one winner and a clear "already closed". Filters never use `$or` in an
update (an embedded-server gap, README "Store notes").
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from typing import Any

from receiver.records import AuditRecord, IncidentEventRecord, IncidentRecord
from receiver.store.documents import (
    AuditEntry,
    Incident,
    IncidentEvent,
    document_of,
    inserted,
    utcnow,
)
from receiver.store.filters import AuditFilter, IncidentFilter, audit_query, incident_query
from receiver.store.repo import Store, object_id, translated

EVENTS_SHOWN = 500  # of one incident's history in the API answer
SCAN_FIELDS = {
    "_id": 1,
    "started_at": 1,
    "updated_at": 1,
    "severity": 1,
    "group_labels": 1,
    "common_labels": 1,
}


def as_time(value: Any) -> datetime:
    """A stored time as an aware datetime: the embedded server hands a `$set` datetime back as
    a naive string, an inserted one as a datetime."""
    if isinstance(value, datetime):
        return value if value.tzinfo else value.replace(tzinfo=UTC)
    if isinstance(value, str):
        try:
            parsed = datetime.fromisoformat(value)
        except ValueError:
            return datetime.min.replace(tzinfo=UTC)
        return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)
    return datetime.min.replace(tzinfo=UTC)


class OncallStore:
    def __init__(self, store: Store) -> None:
        self.store = store

    # incident actions -------------------------------------------------------------------------

    @translated
    async def set_fields(
        self, incident_id: str, fields: Mapping[str, Any], when: Mapping[str, Any] | None = None
    ) -> Incident | None:
        """`$set` `fields` (and `updated_at`) if the incident matches `when`; the incident after
        the write, or None when it does not exist or did not match."""
        oid = object_id(incident_id)
        if oid is None:
            return None
        res = await Incident.get_pymongo_collection().update_one(
            {"_id": oid, **(when or {})}, {"$set": {**fields, "updated_at": utcnow()}}
        )
        if res.matched_count == 0:
            return None
        return await Incident.get(oid)

    @translated
    async def close(self, incident: IncidentRecord, by: str, at: datetime) -> bool:
        """Resolved by hand: frees the group's open key, so its next firing opens a new
        incident; episodes stay as Alertmanager reports them. False if no longer firing."""
        res = await Incident.get_pymongo_collection().update_one(
            {"_id": incident.id, "status": "firing"},
            {
                "$set": {
                    "status": "resolved",
                    "resolved_at": at,
                    "resolved_by": "operator",
                    "closed_by": by,
                    "updated_at": utcnow(),
                    "open_key": f"{incident.open_key}#closed#{incident.id}",
                }
            },
        )
        return res.modified_count == 1

    @translated
    async def add_event(self, event: IncidentEventRecord) -> None:
        doc = document_of(IncidentEvent, event)
        await doc.insert()
        inserted(event, doc)

    @translated
    async def events_of(self, incident_id: str, limit: int = EVENTS_SHOWN) -> list[IncidentEvent]:
        """The incident's history, oldest first."""
        return (
            await IncidentEvent.find({"incident_id": incident_id})
            .sort("+at", "+_id")
            .limit(limit)
            .to_list()
        )

    # finding incidents ----------------------------------------------------------------------

    @translated
    async def scan(self, filters: IncidentFilter) -> list[dict[str, Any]]:
        """The sort and label fields of every incident matching `filters` (bounded by retention's
        MAX_DOCS): label matchers and the severity/updated orders are applied by the caller."""
        cursor = Incident.get_pymongo_collection().find(incident_query(filters), SCAN_FIELDS)
        return [doc async for doc in cursor]

    @translated
    async def by_ids(self, ids: Sequence[Any]) -> list[IncidentRecord]:
        """Incidents by `_id`, in the order given (ids that have gone meanwhile are left out)."""
        if not ids:
            return []
        found = await Incident.find({"_id": {"$in": list(ids)}}).to_list()
        by_id = {doc.id: doc for doc in found}
        return [by_id[i] for i in ids if i in by_id]

    # audit ----------------------------------------------------------------------------------

    @translated
    async def add_audit(self, entry: AuditRecord) -> None:
        doc = document_of(AuditEntry, entry)
        await doc.insert()
        inserted(entry, doc)

    @translated
    async def list_audit(
        self, filters: AuditFilter, skip: int, limit: int
    ) -> tuple[list[AuditEntry], int]:
        return await self.store.page(AuditEntry, audit_query(filters), "at", skip, limit)
