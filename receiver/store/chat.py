"""Store operations for the chat: sessions (`chat_sessions`) and what grounds an answer.

A turn is appended by compare-and-set on the message count; the stored history is capped, the
message count and token totals are not.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Any

from pymongo.errors import DuplicateKeyError

from receiver.records import AnalysisRecord, ChatSessionRecord, IncidentRecord
from receiver.store.documents import ChatSession, Incident, Rca, document_of, inserted
from receiver.store.filters import IncidentFilter, SessionFilter, incident_query, session_query
from receiver.store.repo import Store, StoreError, object_id, translated
from receiver.timeutil import aware

MAX_STORED_MESSAGES = 400


CAS_ATTEMPTS = 8


class ChatStore:
    def __init__(self, store: Store) -> None:
        self.store = store

    @translated
    async def create_session(self, session: ChatSessionRecord) -> bool:
        """Insert a new session; False when one with that id already exists."""
        doc = document_of(ChatSession, session)
        try:
            await doc.insert()
        except DuplicateKeyError:
            return False
        inserted(session, doc)
        return True

    @translated
    async def get_session(self, session_id: str) -> ChatSession | None:
        return await ChatSession.find_one(ChatSession.session_id == session_id)

    @translated
    async def append_turn(
        self,
        session_id: str,
        messages: Sequence[Mapping[str, Any]],
        tokens_in: int,
        tokens_out: int,
        at: datetime,
    ) -> bool:
        """Add messages and their cost to a session; False when the session is gone.

        A compare-and-set replace on `message_count`: on the embedded server `$push` of
        sub-documents turns the array's elements into JSON strings, and `$set` of a datetime
        stores a string (so `last_activity` would stop comparing as a time).
        """
        collection = ChatSession.get_pymongo_collection()
        for _ in range(CAS_ATTEMPTS):
            current = await collection.find_one({"session_id": session_id})
            if current is None:
                return False
            count = current.get("message_count", 0)
            history = [m for m in current.get("messages") or [] if isinstance(m, dict)]
            history.extend(dict(m) for m in messages)
            replacement = {
                **current,
                "messages": history[-MAX_STORED_MESSAGES:],
                "message_count": count + len(messages),
                "tokens_in": current.get("tokens_in", 0) + tokens_in,
                "tokens_out": current.get("tokens_out", 0) + tokens_out,
                "last_activity": at,
            }
            result = await collection.replace_one(
                {"_id": current["_id"], "message_count": count}, replacement
            )
            if result.matched_count == 1:
                return True
        raise StoreError("chat session is being changed concurrently; try again")

    @translated
    async def tokens_since(self, since: datetime) -> int:
        """Model tokens (in + out) of the chat turns answered since `since`, all replicas.

        Read from the sessions active since then (a turn's tokens sit on its message); the
        sum runs here because the embedded server's `$unwind` of these messages is untested.
        """
        cursor = ChatSession.get_pymongo_collection().find(
            {"last_activity": {"$gte": since}}, {"messages": 1}
        )
        total = 0
        for doc in await cursor.to_list():
            for message in doc.get("messages") or []:
                if not isinstance(message, dict) or message.get("role") != "assistant":
                    continue
                at = message.get("at")
                if isinstance(at, datetime) and aware(at) < since:
                    continue
                total += int(message.get("tokens_in") or 0) + int(message.get("tokens_out") or 0)
        return total

    @translated
    async def list_sessions(
        self, filters: SessionFilter, skip: int, limit: int
    ) -> tuple[list[ChatSession], int]:
        query = session_query(filters)
        total = await self.store.count(ChatSession, query)
        items = (
            await ChatSession.find(query)
            .sort("-last_activity", "-_id")
            .skip(skip)
            .limit(limit)
            .to_list()
        )
        return items, total

    @translated
    async def delete_session(self, session_id: str) -> bool:
        result = await ChatSession.get_pymongo_collection().delete_one({"session_id": session_id})
        return result.deleted_count == 1

    # grounding ------------------------------------------------------------------------------

    @translated
    async def find_incidents(self, filters: IncidentFilter, limit: int) -> list[IncidentRecord]:
        query = incident_query(filters)
        found = await Incident.find(query).sort("-started_at", "-_id").limit(limit).to_list()
        return list(found)

    @translated
    async def latest_analyses(self, incident_ids: Sequence[str]) -> dict[str, AnalysisRecord]:
        """The newest analysis of each incident that has one."""
        if not incident_ids:
            return {}
        found = (
            await Rca.find({"incident_id": {"$in": list(incident_ids)}})
            .sort("-created_at", "-_id")
            .to_list()
        )
        newest: dict[str, AnalysisRecord] = {}
        for rca in found:
            newest.setdefault(rca.incident_id, rca)
        return newest

    @translated
    async def known_names(self) -> tuple[list[str], list[str]]:
        """Every instance and alertname incidents mention (matched in Python: the embedded
        server's `$regex` does not match inside arrays)."""
        instances = await Incident.get_pymongo_collection().distinct("instances")
        alertnames = await Incident.get_pymongo_collection().distinct("alertnames")
        return (
            [i for i in instances if isinstance(i, str)],
            [a for a in alertnames if isinstance(a, str)],
        )

    @translated
    async def get_incident(self, incident_id: str) -> Incident | None:
        oid = object_id(incident_id)
        return await Incident.get(oid) if oid is not None else None
