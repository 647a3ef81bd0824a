"""The store: a pymongo async client + Beanie, and the operations the stages need.

Every method translates driver errors into `StoreUnavailable` (retryable: the API answers 503
so Alertmanager retries) or lets `DuplicateKey` through where a caller relies on a unique index.
No business rules here: what an episode or incident *means* lives in `receiver.ingest`.
"""

from __future__ import annotations

import functools
import logging
import time
from collections.abc import Awaitable, Callable, Mapping, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any, ParamSpec, TypeVar

from beanie import Document, init_beanie
from bson import ObjectId
from bson.errors import InvalidId
from pydantic import ValidationError
from pymongo import AsyncMongoClient, UpdateOne
from pymongo.asynchronous.collection import AsyncCollection
from pymongo.errors import (
    BulkWriteError,
    ConnectionFailure,
    DuplicateKeyError,
    ExecutionTimeout,
    OperationFailure,
    PyMongoError,
    WTimeoutError,
)

from receiver.domain import Episode, IncidentState
from receiver.records import IncidentRecord
from receiver.store.convert import episode_document, episode_of, incident_state
from receiver.store.documents import (
    DOCUMENT_MODELS,
    Anomaly,
    Delivery,
    Incident,
    document_of,
    inserted,
    utcnow,
)
from receiver.store.filters import EpisodeFilter, IncidentFilter, episode_query, incident_query
from receiver.store.valid import SetAside, first_error, valid
from receiver.timeutil import aware

log = logging.getLogger(__name__)

P = ParamSpec("P")
T = TypeVar("T")
D = TypeVar("D", bound=Document)


class StoreError(Exception):
    """A store operation failed. `retryable` tells the caller whether to try again later."""

    retryable = False


class StoreUnavailable(StoreError):
    """The store cannot be reached right now (connection refused, timeout, failover)."""

    retryable = True


class DuplicateKey(StoreError):
    """A unique index refused the write: the thing already exists."""


_UNAVAILABLE = (ConnectionFailure, ExecutionTimeout, WTimeoutError)


def translated(fn: Callable[P, Awaitable[T]]) -> Callable[P, Awaitable[T]]:
    """Map pymongo errors to the store's error tree, keeping the cause."""

    @functools.wraps(fn)
    async def wrapper(*args: P.args, **kwargs: P.kwargs) -> T:
        try:
            return await fn(*args, **kwargs)
        except DuplicateKeyError as err:
            raise DuplicateKey(str(err)) from err
        except _UNAVAILABLE as err:
            raise StoreUnavailable(f"store unavailable: {type(err).__name__}") from err
        except PyMongoError as err:
            raise StoreError(f"store error: {type(err).__name__}: {err}") from err

    return wrapper


def object_id(raw: str) -> ObjectId | None:
    try:
        return ObjectId(raw)
    except (InvalidId, TypeError):
        return None


async def _build_info(client: AsyncMongoClient[dict[str, Any]]) -> dict[str, Any]:
    """The server's buildInfo; {} when the user may not read it (the server is then MongoDB)."""
    try:
        info: dict[str, Any] = await client.admin.command("buildInfo")
    except OperationFailure:
        return {}
    return info


class Store:
    """Owns the client; build with `await Store.connect(...)`, close with `await store.close()`."""

    def __init__(
        self,
        client: AsyncMongoClient[dict[str, Any]],
        db_name: str,
        kind: str,
        nx_server: bool | None = None,
    ) -> None:
        self.client = client
        self.db_name = db_name
        self.kind = kind
        # The nx-27017 server answers some queries far slower than MongoDB (see `count`); its
        # workarounds apply whether we launched it or MONGO_URI points at one (replicas).
        self.nx_server = kind == "embedded" if nx_server is None else nx_server

    @classmethod
    async def connect(cls, uri: str, db_name: str, timeout_s: float, kind: str) -> Store:
        ms = int(timeout_s * 1000)
        client: AsyncMongoClient[dict[str, Any]] = AsyncMongoClient(
            uri,
            tz_aware=True,
            serverSelectionTimeoutMS=ms,
            connectTimeoutMS=ms,
            socketTimeoutMS=max(ms * 2, 10_000),
            appname="ai-devops-monitor",
        )
        try:
            await init_beanie(database=client[db_name], document_models=DOCUMENT_MODELS)
            info = await _build_info(client)
        except _UNAVAILABLE as err:
            await client.close()
            raise StoreUnavailable(f"store unavailable at start-up: {type(err).__name__}") from err
        nx_server = kind == "embedded" or info.get("process") == "nx_27017"
        return cls(client, db_name, kind, nx_server)

    async def close(self) -> None:
        await self.client.close()

    async def page(
        self,
        model: type[D],
        query: Mapping[str, Any],
        newest_first_by: str,
        skip: int,
        limit: int,
    ) -> tuple[list[D], int]:
        """One page of `model` matching `query`, newest first, and the total that matched.

        A document that does not validate is left out of the page (and logged), so one bad
        document cannot take a listing down; `total` still counts it.
        """
        total = await self.count(model, query)
        cursor = (
            model.get_pymongo_collection()
            .find(dict(query))
            .sort([(newest_first_by, -1), ("_id", -1)])
            .skip(skip)
            .limit(limit)
        )

        def left_out(raw: Mapping[str, Any], err: ValidationError) -> None:
            log.warning(
                "%s %s left out of a listing: %s",
                model.__name__,
                str(raw.get("_id"))[:40],
                first_error(err),
            )

        items = valid(model, await cursor.to_list(), left_out)
        return items, total

    async def count(self, model: type[Document], query: Mapping[str, Any]) -> int:
        """Count the documents of `model` matching `query` (see `count_in`)."""
        return await self.count_in(model.get_pymongo_collection(), query)

    async def count_in(self, collection: AsyncCollection[Any], query: Mapping[str, Any]) -> int:
        """Count matching documents of any collection.

        The embedded server runs `count_documents` as an aggregation that scans the whole
        collection (150 ms at 5k documents); fetching only `_id`s uses its indexes and is ~20x
        faster there. Real MongoDB counts natively.
        """
        if not self.nx_server:
            return await collection.count_documents(dict(query))
        if not query:
            return await collection.estimated_document_count()
        return len(await collection.find(dict(query), {"_id": 1}).to_list())

    @translated
    async def ping(self) -> None:
        await self.client[self.db_name].command("ping")

    # deliveries -----------------------------------------------------------------------------

    @translated
    async def insert_delivery(self, delivery: Delivery) -> bool:
        """Store a delivery; False when its key is already stored (a retry or HA duplicate)."""
        try:
            await delivery.insert()
        except DuplicateKeyError:
            return False
        return True

    @translated
    async def insert_deliveries(self, deliveries: Sequence[Delivery]) -> list[bool]:
        """Store several deliveries in one round trip; per item, False = already stored."""
        if not deliveries:
            return []
        docs = [d.model_dump(by_alias=True, exclude={"id"}) for d in deliveries]
        try:
            await Delivery.get_pymongo_collection().insert_many(docs, ordered=False)
        except BulkWriteError as err:
            errors = err.details.get("writeErrors", [])
            if any(w.get("code") != 11000 for w in errors):
                raise
            dup = {w["index"] for w in errors}
            return [i not in dup for i in range(len(docs))]
        return [True] * len(docs)

    @translated
    async def pending_deliveries(self, limit: int, now_ts: float | None = None) -> list[Delivery]:
        """Unprocessed deliveries in arrival order, leaving out those waiting for a retry.

        A document that is not a valid delivery (written by hand, by another version) is
        quarantined here instead of failing the read for every delivery behind it.
        """
        now_ts = time.time() if now_ts is None else now_ts
        collection = Delivery.get_pymongo_collection()
        # $exists for documents written before the field did (the embedded server has no $not)
        due = {
            "$or": [{"next_attempt_ts": {"$exists": False}}, {"next_attempt_ts": {"$lte": now_ts}}]
        }
        cursor = (
            collection.find({"$and": [{"processed": False}, due]})
            .sort("received_at", 1)
            .limit(limit)
        )
        bad = SetAside()
        found = valid(Delivery, await cursor.to_list(), bad)
        for raw, err in bad.found:
            error = f"not a valid delivery document: {first_error(err)}"
            await collection.update_one(
                {"_id": raw["_id"]},
                {"$set": {"processed": True, "failed": True, "last_error": error[:500]}},
            )
        return found

    @translated
    async def count_pending_deliveries(self) -> int:
        return await self.count(Delivery, {"processed": False})

    @translated
    async def count_failed_deliveries(self) -> int:
        return await self.count(Delivery, {"failed": True})

    @translated
    async def finish_delivery(self, delivery: Delivery, retention: timedelta) -> None:
        now = utcnow()
        await Delivery.get_pymongo_collection().update_one(
            {"_id": delivery.id},
            {"$set": {"processed": True, "processed_at": now, "expire_at": now + retention}},
        )

    @translated
    async def finish_deliveries(self, ids: Sequence[Any], retention: timedelta) -> None:
        """Mark several deliveries processed in one round trip."""
        now = utcnow()
        update = {"$set": {"processed": True, "processed_at": now, "expire_at": now + retention}}
        ops = [UpdateOne({"_id": i}, update) for i in ids if i is not None]
        if ops:
            await Delivery.get_pymongo_collection().bulk_write(ops, ordered=False)

    @translated
    async def fail_delivery(
        self, delivery: Delivery, error: str, quarantine: bool, next_attempt_ts: float
    ) -> None:
        """Record a failed attempt: retry at `next_attempt_ts`, or quarantine it."""
        fields: dict[str, Any] = {"last_error": error[:500], "next_attempt_ts": next_attempt_ts}
        if quarantine:
            fields.update(processed=True, failed=True, processed_at=utcnow())
        await Delivery.get_pymongo_collection().update_one(
            {"_id": delivery.id}, {"$inc": {"attempts": 1}, "$set": fields}
        )

    @translated
    async def retry_delivery(self, delivery_id: str) -> Delivery | None:
        """Put a delivery back in the queue with fresh attempts; None when it does not exist."""
        oid = object_id(delivery_id)
        if oid is None:
            return None
        res = await Delivery.get_pymongo_collection().update_one(
            {"_id": oid},
            {
                "$set": {
                    "processed": False,
                    "failed": False,
                    "attempts": 0,
                    "next_attempt_ts": 0.0,
                    "processed_at": None,
                }
            },
        )
        if res.matched_count == 0:
            return None
        return await Delivery.get(oid)

    @translated
    async def distinct_in_incident(self, incident_id: str, field: str) -> list[str]:
        """The distinct non-empty values of an episode field (`instance`, `alertname`)."""
        found = await Anomaly.get_pymongo_collection().distinct(field, {"incident_id": incident_id})
        return [v for v in found if isinstance(v, str) and v]

    @translated
    async def list_deliveries(
        self, skip: int, limit: int, status: str = ""
    ) -> tuple[list[Delivery], int]:
        """One page of deliveries, newest first, WITHOUT their bodies (`raw_json` is "").

        A body can be MAX_BODY_BYTES; a page of 500 must not pull them all into memory. Ask
        for a body with `delivery_raw`, one at a time. `status`: "", failed (quarantined),
        pending, processed.
        """
        queries: dict[str, dict[str, Any]] = {
            "": {},
            "failed": {"failed": True},
            "pending": {"processed": False},
            "processed": {"processed": True, "failed": {"$ne": True}},
        }
        query = queries[status]
        total = await self.count(Delivery, query)
        cursor = (
            Delivery.get_pymongo_collection()
            .find(query, {"raw_json": 0})
            .sort([("received_at", -1), ("_id", -1)])
            .skip(skip)
            .limit(limit)
        )
        # a document that is no delivery is quarantined when the worker reads it
        return valid(Delivery, await cursor.to_list()), total

    @translated
    async def delivery_raw(self, delivery: Delivery) -> str:
        """The body of one delivery as received ("" when it has gone meanwhile)."""
        doc = await Delivery.get_pymongo_collection().find_one(
            {"_id": delivery.id}, {"raw_json": 1}
        )
        raw = doc.get("raw_json") if doc else None
        return raw if isinstance(raw, str) else ""

    # heartbeats ---------------------------------------------------------------------------

    @translated
    async def set_heartbeat(self, name: str, at: datetime) -> None:
        # epoch seconds: the embedded server hands a datetime written by an upsert's $set back
        # as a string
        await self.client[self.db_name]["heartbeats"].update_one(
            {"_id": name}, {"$set": {"last_seen_ts": at.timestamp()}}, upsert=True
        )

    @translated
    async def get_heartbeat(self, name: str) -> datetime | None:
        doc = await self.client[self.db_name]["heartbeats"].find_one({"_id": name})
        if doc is None:
            return None
        return datetime.fromtimestamp(float(doc["last_seen_ts"]), UTC)

    # episodes -------------------------------------------------------------------------------

    @translated
    async def episodes_by_key(self, keys: Sequence[str]) -> dict[str, Episode]:
        if not keys:
            return {}
        found = await Anomaly.find({"episode_key": {"$in": list(keys)}}).to_list()
        return {a.episode_key: episode_of(a) for a in found}

    @translated
    async def insert_episodes(self, episodes: Sequence[Episode]) -> list[str]:
        """Insert new episodes; return the keys that already existed (lost a race)."""
        if not episodes:
            return []
        docs = [episode_document(e).model_dump(by_alias=True, exclude={"id"}) for e in episodes]
        try:
            await Anomaly.get_pymongo_collection().insert_many(docs, ordered=False)
        except BulkWriteError as err:
            failed = {
                w["index"] for w in err.details.get("writeErrors", []) if w.get("code") == 11000
            }
            others = [w for w in err.details.get("writeErrors", []) if w.get("code") != 11000]
            if others:
                raise
            return [episodes[i].episode_key for i in sorted(failed)]
        return []

    @translated
    async def resolve_episode(
        self,
        key: str,
        ends_at: datetime | None,
        annotations: Mapping[str, str],
        resolved_by: str,
    ) -> bool:
        """firing → resolved; False when it was not firing (already resolved)."""
        res = await Anomaly.get_pymongo_collection().update_one(
            {"episode_key": key, "status": "firing"},
            {
                "$set": {
                    "status": "resolved",
                    "ends_at": ends_at or utcnow(),
                    "annotations": dict(annotations),
                    "resolved_by": resolved_by,
                    "last_seen": utcnow(),
                }
            },
        )
        return res.modified_count == 1

    @translated
    async def supersede_episodes(
        self, source: str, group_id: str, newest: Mapping[str, datetime], keep: Sequence[str]
    ) -> list[str]:
        """Resolve the group's firing episodes older than the newest start seen for their
        fingerprint.

        Alertmanager holds one alert per fingerprint: a newer episode replaces an older one, whose
        resolve would otherwise never arrive. Only within `group_id`: the same alert in another
        group (another receiver or route) has its own notifications and resolves there. `newest`
        maps fingerprint → newest startsAt in the batch; `keep` are episode keys of the batch
        itself. Returns the incidents touched.
        """
        if not newest:
            return []
        query = {
            "source": source,
            "group_id": group_id,
            "fingerprint": {"$in": sorted(newest)},
            "status": "firing",
        }
        candidates = await Anomaly.find(query).to_list()
        skip = set(keep)
        stale = [
            a
            for a in candidates
            if a.episode_key not in skip and aware(a.starts_at) < newest[a.fingerprint]
        ]
        for episode in stale:
            await Anomaly.get_pymongo_collection().update_one(
                {"_id": episode.id, "status": "firing"},
                {
                    "$set": {
                        "status": "resolved",
                        "ends_at": newest[episode.fingerprint],
                        "resolved_by": "superseded",
                        "last_seen": utcnow(),
                    }
                },
            )
        return sorted({a.incident_id for a in stale})

    @translated
    async def firing_episodes(self, source: str, started_before: datetime) -> list[Episode]:
        found = await Anomaly.find(
            {"source": source, "status": "firing", "starts_at": {"$lt": started_before}}
        ).to_list()
        return [episode_of(a) for a in found]

    @translated
    async def touch_episode(self, key: str, fields: Mapping[str, Any]) -> None:
        await Anomaly.get_pymongo_collection().update_one(
            {"episode_key": key, "status": "firing"},
            {"$set": {**fields, "last_seen": utcnow()}},
        )

    @translated
    async def count_firing(self, incident_id: str) -> int:
        return await self.count(Anomaly, {"incident_id": incident_id, "status": "firing"})

    @translated
    async def episodes_of(self, incident_id: str, limit: int = 500) -> list[Anomaly]:
        return (
            await Anomaly.find({"incident_id": incident_id})
            .sort("-starts_at")
            .limit(limit)
            .to_list()
        )

    @translated
    async def list_episodes(
        self, filters: EpisodeFilter, skip: int, limit: int
    ) -> tuple[list[Anomaly], int]:
        return await self.page(Anomaly, episode_query(filters), "starts_at", skip, limit)

    # incidents ------------------------------------------------------------------------------

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
        self, incident: Incident, resolved_at: datetime, resolved_by: str
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
    ) -> None:
        """New episodes joined: count them, add names and instances (set semantics), raise the
        counts and the priority (never lower them), set severity and title."""
        fields: dict[str, Any] = {"updated_at": utcnow(), "severity": severity, "title": title}
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

    @translated
    async def counts(self) -> dict[str, int]:
        return {
            "deliveries": await self.count(Delivery, {}),
            "anomalies": await self.count(Anomaly, {}),
            "incidents": await self.count(Incident, {}),
            "incidents_open": await self.count(Incident, {"status": "firing"}),
        }
