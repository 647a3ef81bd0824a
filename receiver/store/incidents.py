"""Incidents in the store: as records for the API and the stages that list them, and as
`IncidentState` with keyword updates for ingest, which opens, grows and resolves them."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Any

from receiver.domain import IncidentState
from receiver.records import IncidentRecord
from receiver.store.base import StoreBase, object_id, translated
from receiver.store.convert import incident_state
from receiver.store.documents import Incident, document_of, inserted, utcnow
from receiver.store.filters import IncidentFilter, incident_query


class IncidentStore(StoreBase):
    @translated
    async def open_incident(self, key: str) -> Incident | None:
        return await Incident.find_one(Incident.open_key == key)

    @translated
    async def insert_incident(self, incident: IncidentRecord) -> None:
        doc = document_of(Incident, incident)
        await doc.insert()
        inserted(incident, doc)

    @translated
    async def get_incident(self, incident_id: str) -> Incident | None:
        oid = object_id(incident_id)
        if oid is None:
            return None
        return await Incident.get(oid)

    @translated
    async def update_incident(self, incident_id: Any, update: Mapping[str, Any]) -> None:
        await Incident.get_pymongo_collection().update_one({"_id": incident_id}, dict(update))

    @translated
    async def resolve_incident(
        self, incident: IncidentRecord, resolved_at: datetime, resolved_by: str
    ) -> bool:
        """Close an open incident and free its key for the next one; False if already closed."""
        return await self._resolve(incident.id, incident.open_key, resolved_at, resolved_by)

    async def _resolve(
        self, oid: Any, open_key: str, resolved_at: datetime, resolved_by: str
    ) -> bool:
        res = await Incident.get_pymongo_collection().update_one(
            {"_id": oid, "status": "firing"},
            {
                "$set": {
                    "status": "resolved",
                    "resolved_at": resolved_at,
                    "resolved_by": resolved_by,
                    "updated_at": utcnow(),
                    "firing_count": 0,
                    "open_key": f"{open_key}#closed#{oid}",
                    "needs_notification": True,
                }
            },
        )
        return res.modified_count == 1

    # incidents as ingest sees them (domain objects, keyword updates) -------------------------

    @translated
    async def open_incident_state(self, open_key: str) -> IncidentState | None:
        """The open incident of a group (`normalise.group_id`), if any."""
        found = await Incident.find_one(Incident.open_key == open_key)
        return incident_state(found) if found is not None else None

    @translated
    async def incident_state(self, incident_id: str) -> IncidentState | None:
        oid = object_id(incident_id)
        found = await Incident.get(oid) if oid is not None else None
        return incident_state(found) if found is not None else None

    @translated
    async def create_incident(
        self,
        *,
        key: str,
        open_key: str,
        source: str,
        severity: str,
        title: str,
        receiver: str,
        group_labels: Mapping[str, str],
        common_labels: Mapping[str, str],
        external_url: str,
        started_at: datetime,
        priority: int,
        correlating: bool,
    ) -> IncidentState:
        """Open a firing incident that needs analysis and a notification; `DuplicateKey` when
        the group already has an open one."""
        now = utcnow()
        incident = Incident(
            key=key,
            open_key=open_key,
            source=source,
            status="firing",
            severity=severity,
            title=title,
            receiver=receiver,
            alertnames=[],
            instances=[],
            group_labels=dict(group_labels),
            common_labels=dict(common_labels),
            external_url=external_url,
            started_at=started_at,
            updated_at=now,
            needs_analysis=True,
            needs_notification=True,
            priority=priority,
            opened_ts=now.timestamp(),
            correlating=correlating,
        )
        await incident.insert()
        return incident_state(incident)

    @translated
    async def grow_incident(
        self,
        incident_id: str,
        *,
        added: int,
        severity: str,
        title: str,
        names: Sequence[str],
        name_count: int,
        instances: Sequence[str],
        instance_count: int,
        priority: int,
        needs_analysis: bool,
        firing: int | None = None,
    ) -> None:
        """New episodes joined: count them, add names and instances (set semantics), raise the
        counts and the priority (never lower them), set severity and title; `firing` is the
        firing count when the caller knows it (one write instead of two)."""
        fields: dict[str, Any] = {"updated_at": utcnow(), "severity": severity, "title": title}
        if firing is not None:
            fields["firing_count"] = firing
        if needs_analysis:
            fields["needs_analysis"] = True
        update: dict[str, Any] = {
            "$set": fields,
            "$inc": {"episode_count": added},
            "$max": {
                "alertname_count": name_count,
                "instance_count": instance_count,
                "priority": priority,
            },
        }
        if names or instances:
            update["$addToSet"] = {
                "alertnames": {"$each": list(names)},
                "instances": {"$each": list(instances)},
            }
        await self._update_incident_by_id(incident_id, update)

    @translated
    async def raise_incident_severity(self, incident_id: str, severity: str) -> None:
        """A higher level for the incident, to be notified."""
        fields = {"severity": severity, "updated_at": utcnow(), "needs_notification": True}
        await self._update_incident_by_id(incident_id, {"$set": fields})

    @translated
    async def set_firing_count(self, incident_id: str, firing: int) -> None:
        fields = {"firing_count": firing, "updated_at": utcnow()}
        await self._update_incident_by_id(incident_id, {"$set": fields})

    @translated
    async def resolve_incident_state(
        self, incident: IncidentState, resolved_at: datetime, resolved_by: str
    ) -> bool:
        """`resolve_incident` for the domain view; False if already closed."""
        oid = object_id(incident.id)
        if oid is None:
            return False
        return await self._resolve(oid, incident.open_key, resolved_at, resolved_by)

    async def _update_incident_by_id(self, incident_id: str, update: Mapping[str, Any]) -> None:
        oid = object_id(incident_id)
        if oid is not None:
            await Incident.get_pymongo_collection().update_one({"_id": oid}, dict(update))

    @translated
    async def list_incidents(
        self, filters: IncidentFilter, skip: int, limit: int
    ) -> tuple[list[IncidentRecord], int]:
        found, total = await self.page(Incident, incident_query(filters), "started_at", skip, limit)
        return list(found), total
