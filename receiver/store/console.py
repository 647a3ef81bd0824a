"""What the incident console reads: analyses for a page of incidents, feedback counts, and
similar past incidents, each in one or two queries."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from receiver.records import AnalysisRecord, IncidentRecord
from receiver.store.documents import Feedback, Incident, Rca
from receiver.store.rca import AnalysisStore
from receiver.store.repo import Store, object_id, translated


class ConsoleStore:
    def __init__(self, store: Store) -> None:
        self.store = store
        self.analyses = AnalysisStore(store)

    @translated
    async def analyses_for(self, incidents: Sequence[IncidentRecord]) -> dict[str, AnalysisRecord]:
        """The current analysis of each incident that has one, by incident id."""
        wanted = [oid for i in incidents if i.analysis_id and (oid := object_id(i.analysis_id))]
        if not wanted:
            return {}
        found = await Rca.find({"_id": {"$in": wanted}}).to_list()
        return {rca.incident_id: rca for rca in found}

    @translated
    async def analysis_of(self, incident: IncidentRecord) -> AnalysisRecord | None:
        """The incident's current analysis, else its newest one."""
        rca = await self.analyses.get(incident.analysis_id) if incident.analysis_id else None
        return rca if rca is not None else await self.analyses.latest(str(incident.id))

    @translated
    async def feedback_counts(self, incident_id: str) -> dict[str, int]:
        """{"helpful": n, "not_helpful": m} over the incident's feedback rows."""
        rows = (
            await Feedback.get_pymongo_collection()
            .find({"incident_id": incident_id}, {"helpful": 1})
            .to_list(length=10_000)
        )
        helpful = sum(1 for r in rows if r.get("helpful") is True)
        unhelpful = sum(1 for r in rows if r.get("helpful") is False)
        return {"helpful": helpful, "not_helpful": unhelpful}

    @translated
    async def similar(
        self, incident: IncidentRecord, limit: int = 5
    ) -> list[tuple[IncidentRecord, AnalysisRecord | None]]:
        """Other incidents with one of this incident's alertnames, newest first, any status."""
        if not incident.alertnames:
            return []
        query: dict[str, Any] = {
            "alertnames": {"$in": list(incident.alertnames)},
            "_id": {"$ne": incident.id},
        }
        found = await Incident.find(query).sort("-started_at", "-_id").limit(limit).to_list()
        analyses = await self.analyses_for(found)
        return [(i, analyses.get(str(i.id))) for i in found]
