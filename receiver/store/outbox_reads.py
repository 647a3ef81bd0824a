"""The reads the outbox needs from incidents, episodes and analyses, and how a stored document
that does not fit its model is reported (`Unreadable`) instead of failing a whole read."""

from __future__ import annotations

from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar

from beanie import Document
from pydantic import ValidationError
from pymongo import UpdateOne

from receiver.records import AnalysisRecord, EpisodeRecord, IncidentRecord
from receiver.store.documents import Anomaly, Incident, Rca
from receiver.store.rca import AnalysisStore
from receiver.store.repo import Store, object_id, translated
from receiver.store.valid import valid

D = TypeVar("D", bound=Document)


@dataclass(frozen=True)
class Unreadable:
    """A stored document that does not fit its model: which fields, and why (values left out:
    they may be huge or carry secrets)."""

    collection: str
    id: Any
    fields: tuple[str, ...]
    error: str
    raw: Mapping[str, Any]

    @property
    def incident(self) -> bool:
        """An incident (not an outbox row): set aside with a failed `plan` row."""
        return self.collection == Incident.Settings.name


def validation_summary(err: ValidationError) -> str:
    """`field: problem; ...` without the offending values (huge, or secrets) or doc links."""
    problems = err.errors(include_url=False, include_input=False, include_context=False)
    return "; ".join(f"{'.'.join(map(str, p['loc']))}: {p['msg']}" for p in problems[:5])


def _unreadable(collection: str, doc: Mapping[str, Any], err: ValidationError) -> Unreadable:
    problems = err.errors(include_url=False, include_input=False, include_context=False)
    fields = tuple(dict.fromkeys(str(p["loc"][0]) for p in problems if p["loc"]))
    error = f"unreadable {collection}: {validation_summary(err)}"
    return Unreadable(collection, doc.get("_id"), fields, error, doc)


class OutboxReads:
    def __init__(self, store: Store) -> None:
        self.store = store
        # documents the worker's reads skipped because they do not fit their model; the worker
        # takes them (`take_unreadable`) and sets them aside, so one bad document never fails
        # a whole read
        self._unreadable: list[Unreadable] = []

    def take_unreadable(self) -> list[Unreadable]:
        found, self._unreadable = self._unreadable, []
        return found

    def _valid(self, model: type[D], docs: Sequence[Mapping[str, Any]]) -> list[D]:
        name = model.get_pymongo_collection().name

        def unreadable(doc: Mapping[str, Any], err: ValidationError) -> None:
            self._unreadable.append(_unreadable(name, doc, err))

        return valid(model, docs, unreadable)

    # incidents, episodes, analyses ----------------------------------------------------------

    @translated
    async def incidents_to_notify(self, limit: int) -> list[IncidentRecord]:
        # no `$and`: the embedded server filters that in Python over the whole collection,
        # while this form narrows by the `needs_notification` index first (25 ms → 2 ms at 3k
        # incidents); `$ne` also matches an incident stored without `correlating`
        docs = (
            await Incident.get_pymongo_collection()
            .find({"needs_notification": True, "correlating": {"$ne": True}})
            .sort([("updated_at", 1)])
            .limit(limit)
            .to_list()
        )
        found: list[IncidentRecord] = list(self._valid(Incident, docs))
        return found

    @translated
    async def clear_needs_notification(self, incident_id: Any, status: str) -> bool:
        """Clear the flag unless the incident changed status since it was read (a resolve
        that landed meanwhile sets the flag again and must be planned too)."""
        res = await Incident.get_pymongo_collection().update_one(
            {"_id": incident_id, "needs_notification": True, "status": status},
            {"$set": {"needs_notification": False}},
        )
        return res.modified_count == 1

    @translated
    async def clear_many(self, incidents: Sequence[tuple[Any, str]]) -> int:
        """`clear_needs_notification` of (id, status) pairs in one bulk write; how many."""
        ops = [
            UpdateOne(
                {"_id": i, "needs_notification": True, "status": status},
                {"$set": {"needs_notification": False}},
            )
            for i, status in incidents
        ]
        if not ops:
            return 0
        result = await Incident.get_pymongo_collection().bulk_write(ops, ordered=False)
        return result.modified_count

    @translated
    async def incidents(self, ids: Collection[str]) -> dict[str, IncidentRecord]:
        oids = [oid for oid in (object_id(i) for i in ids) if oid is not None]
        if not oids:
            return {}
        found = await Incident.find({"_id": {"$in": oids}}).to_list()
        return {str(i.id): i for i in found}

    @translated
    async def episodes(
        self, ids: Collection[str], per_incident: int
    ) -> dict[str, list[EpisodeRecord]]:
        """Episodes of each incident, newest first, at most `per_incident` each."""
        if not ids:
            return {}
        found = (
            await Anomaly.find({"incident_id": {"$in": sorted(ids)}}).sort("-starts_at").to_list()
        )
        out: dict[str, list[EpisodeRecord]] = {}
        for episode in found:
            bucket = out.setdefault(episode.incident_id, [])
            if len(bucket) < per_incident:
                bucket.append(episode)
        return out

    @translated
    async def analysed(self, incident_ids: Collection[str]) -> set[str]:
        """The incidents among `incident_ids` that have at least one stored analysis."""
        if not incident_ids:
            return set()
        found = await Rca.get_pymongo_collection().distinct(
            "incident_id", {"incident_id": {"$in": sorted(incident_ids)}}
        )
        return {str(i) for i in found}

    async def latest_analysis(self, incident_id: str) -> AnalysisRecord | None:
        """The current analysis: the newest `rca` document of the incident."""
        return await AnalysisStore(self.store).latest(incident_id)

    @translated
    async def latest_analyses(self, incident_ids: Collection[str]) -> dict[str, AnalysisRecord]:
        """`latest_analysis` of many incidents in one query (those without one are absent)."""
        if not incident_ids:
            return {}
        found = (
            await Rca.find({"incident_id": {"$in": sorted(incident_ids)}})
            .sort("-created_at", "-_id")
            .to_list()
        )
        out: dict[str, AnalysisRecord] = {}
        for rca in found:
            out.setdefault(rca.incident_id, rca)
        return out
