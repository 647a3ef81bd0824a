"""Store operations of the enrichment stage: the analysis lease on incidents and the `rca` rows.

The lease is two fields on the incident (`analysis_claim_token`, `analysis_claim_until` in unix
seconds; a number because the embedded server stores `$set` datetimes as strings). Claiming is
one conditional `find_one_and_update`, so two replicas never hold the same incident; a holder
that dies loses the lease when it expires. Completion clears `needs_analysis` only if the incident's
alertnames/instances did not grow meanwhile (they only grow, so equal sizes = unchanged).
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any

from pymongo import ReturnDocument

from receiver.records import AnalysisRecord, EpisodeRecord, FeedbackRecord, IncidentRecord
from receiver.store.documents import Anomaly, Feedback, Incident, Rca, document_of, inserted
from receiver.store.filters import AnalysisFilter, analysis_query
from receiver.store.repo import Store, object_id, translated
from receiver.store.valid import SetAside, first_error, valid


def _claimable(incident_id: Any, now: float) -> dict[str, Any]:
    """Pending and not leased (or the lease expired).

    Spelled as one `$and`: the embedded server's update path joins `{field: x, "$or": [...]}`
    without brackets (`field = x AND a OR b`), so an update could hit ANY document matching
    `b` (README "Store notes"). Inside `$and` it is evaluated correctly.
    """
    return {
        "$and": [
            {"_id": incident_id},
            {"needs_analysis": True},
            {"correlating": {"$ne": True}},
            {
                "$or": [
                    {"analysis_claim_until": {"$exists": False}},
                    {"analysis_claim_until": {"$lt": now}},
                ]
            },
        ]
    }


class AnalysisStore:
    """What the enrichment worker and the analysis API read and write."""

    def __init__(self, store: Store) -> None:
        self.store = store

    # -- the queue ------------------------------------------------------------------------------

    @translated
    async def pending(self, now: float, limit: int) -> Sequence[IncidentRecord]:
        """Incidents waiting for an analysis that nobody holds: storms, then the most severe,
        newest first within a level (on-call cares about what is happening now; a backlog
        drains behind it). Incidents the storm correlator still holds wait."""
        query = {
            "$and": [
                {"needs_analysis": True},
                {"correlating": {"$ne": True}},
                {
                    "$or": [
                        {"analysis_claim_until": {"$exists": False}},
                        {"analysis_claim_until": {"$lt": now}},
                    ]
                },
            ]
        }
        collection = Incident.get_pymongo_collection()
        cursor = (
            collection.find(query)
            .sort([("priority", -1), ("started_at", -1), ("_id", -1)])
            .limit(limit)
        )
        bad = SetAside()  # quarantined, so they cannot block the others
        found = valid(Incident, await cursor.to_list(), bad)
        for raw, err in bad.found:
            error = f"not a valid incident: {first_error(err)}"
            await collection.update_one(
                {"_id": raw["_id"]},
                {
                    "$set": {
                        "needs_analysis": False,
                        "analysis_failed": True,
                        "analysis_error": error[:500],
                    }
                },
            )
        return found

    @translated
    async def count_pending(self) -> int:
        return await self.store.count(Incident, {"needs_analysis": True})

    @translated
    async def claim(
        self, incident_id: Any, token: str, now: float, until: float
    ) -> IncidentRecord | None:
        """Take the lease on a pending incident; None if it is not pending or someone holds it.

        One command that updates and returns the incident (not an update and a read)."""
        doc = await Incident.get_pymongo_collection().find_one_and_update(
            _claimable(incident_id, now),
            {"$set": {"analysis_claim_token": token, "analysis_claim_until": until}},
            return_document=ReturnDocument.AFTER,
        )
        if doc is None or doc.get("_id") != incident_id:
            return None
        incident = Incident.model_validate(doc)
        return incident if incident.analysis_claim_token == token else None

    @translated
    async def fail(
        self, incident_id: Any, token: str, error: str, quarantine: bool, retry_at: float
    ) -> None:
        """Record a failed analysis: retry after `retry_at` (the lease time is reused as the
        retry time, so `pending` skips it until then), or quarantine it."""
        fields: dict[str, Any] = {
            "analysis_claim_token": "",
            "analysis_claim_until": retry_at,
            "analysis_error": error[:500],
        }
        if quarantine:
            fields.update(needs_analysis=False, analysis_failed=True)
        await Incident.get_pymongo_collection().update_one(
            {"_id": incident_id, "analysis_claim_token": token},
            {"$set": fields, "$inc": {"analysis_attempts": 1}},
        )

    @translated
    async def release(self, incident_id: Any, token: str) -> None:
        """Give the lease back without finishing (shutdown): the next worker starts at once."""
        await Incident.get_pymongo_collection().update_one(
            {"_id": incident_id, "analysis_claim_token": token},
            {"$set": {"analysis_claim_token": "", "analysis_claim_until": 0.0}},
        )

    @translated
    async def complete(
        self,
        incident: IncidentRecord,
        token: str,
        analysis_id: str,
        signature: str,
        outcome: str = "",
    ) -> bool:
        """Record the analysis and free the lease; True if `needs_analysis` was cleared.

        When alertnames or instances grew while the analysis ran, `needs_analysis` stays set
        (the processor set it again) and the next round analyses the new signature.
        """
        collection = Incident.get_pymongo_collection()
        done = {
            "analysis_id": analysis_id,
            "analysis_outcome": outcome,
            "analysis_signature": signature,
            "analysis_claim_token": "",
            "analysis_claim_until": 0.0,
        }
        unchanged = {
            "_id": incident.id,
            "analysis_claim_token": token,
            "alertnames": {"$size": len(incident.alertnames)},
            "instances": {"$size": len(incident.instances)},
        }
        result = await collection.update_one(unchanged, {"$set": {**done, "needs_analysis": False}})
        if result.modified_count == 1:
            return True
        await collection.update_one(
            {"_id": incident.id, "analysis_claim_token": token}, {"$set": done}
        )
        return False

    @translated
    async def budget_fallbacks(self, limit: int) -> Sequence[IncidentRecord]:
        """Open incidents whose last analysis was the offline analyst for lack of budget,
        storms and the most severe first."""
        docs = (
            await Incident.get_pymongo_collection()
            .find({"analysis_outcome": "budget", "status": "firing", "needs_analysis": False})
            .sort([("priority", -1), ("started_at", -1)])
            .limit(limit)
            .to_list()
        )
        return valid(Incident, docs)  # `pending` sets invalid documents aside

    @translated
    async def request(self, incident_id: str) -> IncidentRecord | None:
        """Ask for a fresh analysis (API): forget the analysed signature, set the flag."""
        oid = object_id(incident_id)
        if oid is None:
            return None
        result = await Incident.get_pymongo_collection().update_one(
            {"_id": oid},
            {
                "$set": {
                    "needs_analysis": True,
                    "analysis_signature": "",
                    "analysis_failed": False,
                    "analysis_attempts": 0,
                    "analysis_claim_until": 0.0,
                }
            },
        )
        if result.matched_count != 1:
            return None
        return await Incident.get(oid)

    # -- episodes -------------------------------------------------------------------------------

    @translated
    async def episodes(self, incident_id: str, limit: int) -> Sequence[EpisodeRecord]:
        return (
            await Anomaly.find({"incident_id": incident_id})
            .sort("-starts_at", "-_id")
            .limit(limit)
            .to_list()
        )

    @translated
    async def mark_analyzed(self, episode_ids: Sequence[Any]) -> None:
        if episode_ids:
            await Anomaly.get_pymongo_collection().update_many(
                {"_id": {"$in": list(episode_ids)}}, {"$set": {"analyzed": True}}
            )

    # -- rca rows -------------------------------------------------------------------------------

    @translated
    async def insert(self, rca: AnalysisRecord) -> AnalysisRecord:
        doc = document_of(Rca, rca)
        await doc.insert()
        inserted(rca, doc)
        return rca

    @translated
    async def get(self, rca_id: str) -> AnalysisRecord | None:
        oid = object_id(rca_id)
        return await Rca.get(oid) if oid is not None else None

    @translated
    async def latest(self, incident_id: str) -> AnalysisRecord | None:
        found = (
            await Rca.find({"incident_id": incident_id})
            .sort("-created_at", "-_id")
            .limit(1)
            .to_list()
        )
        return found[0] if found else None

    @translated
    async def cached(
        self, incident_id: str, signature: str, evidence_hash: str
    ) -> AnalysisRecord | None:
        """A model (not offline) analysis of the same incident, signature and evidence."""
        found = (
            await Rca.find(
                {
                    "incident_id": incident_id,
                    "signature": signature,
                    "evidence_hash": evidence_hash,
                    "offline": False,
                }
            )
            .sort("-created_at")
            .limit(1)
            .to_list()
        )
        return found[0] if found else None

    @translated
    async def list_rca(
        self, filters: AnalysisFilter, skip: int, limit: int
    ) -> tuple[Sequence[AnalysisRecord], int]:
        return await self.store.page(Rca, analysis_query(filters), "created_at", skip, limit)

    @translated
    async def tokens_since(self, since: datetime) -> int:
        """Model tokens (in + out) spent by every replica since `since`."""
        pipeline: list[dict[str, Any]] = [
            {"$match": {"created_at": {"$gte": since}, "offline": False}},
            {
                "$group": {
                    "_id": None,
                    "tokens_in": {"$sum": "$tokens_in"},
                    "tokens_out": {"$sum": "$tokens_out"},
                }
            },
        ]
        cursor = await Rca.get_pymongo_collection().aggregate(pipeline)
        rows = await cursor.to_list()
        if not rows:
            return 0
        return int(rows[0].get("tokens_in") or 0) + int(rows[0].get("tokens_out") or 0)

    @translated
    async def add_feedback(self, feedback: FeedbackRecord) -> FeedbackRecord:
        doc = document_of(Feedback, feedback)
        await doc.insert()
        inserted(feedback, doc)
        return feedback

    # -- history --------------------------------------------------------------------------------

    @translated
    async def resolved_with(
        self, alertname: str, exclude_id: str, limit: int
    ) -> list[tuple[IncidentRecord, AnalysisRecord | None]]:
        """Resolved incidents that had `alertname`, newest first, with their current analysis."""
        query: dict[str, Any] = {"alertnames": alertname, "status": "resolved"}
        oid = object_id(exclude_id)
        if oid is not None:
            query["_id"] = {"$ne": oid}
        incidents = await Incident.find(query).sort("-started_at").limit(limit).to_list()
        ids = [object_id(i.analysis_id) for i in incidents if i.analysis_id]
        wanted = [i for i in ids if i is not None]
        analyses = await Rca.find({"_id": {"$in": wanted}}).to_list() if wanted else []
        by_id = {str(a.id): a for a in analyses}
        return [(i, by_id.get(i.analysis_id)) for i in incidents]
