"""The store: a pymongo async client + Beanie, and the operations the stages need.

Every method translates driver errors into `StoreUnavailable` (retryable: the API answers 503
so Alertmanager retries) or lets `DuplicateKey` through where a caller relies on a unique index.
No business rules here: what an episode or incident *means* lives in `receiver.ingest`.
`Store` combines the repositories of deliveries, episodes and incidents (one module each); the
error tree, `translated` and `object_id` live in `receiver.store.base` and are importable here.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from beanie import init_beanie
from pymongo import AsyncMongoClient
from pymongo.errors import OperationFailure

from receiver.store.base import (
    UNAVAILABLE,
    DuplicateKey,
    StoreError,
    StoreUnavailable,
    object_id,
    translated,
)
from receiver.store.deliveries import DeliveryStore
from receiver.store.documents import DOCUMENT_MODELS
from receiver.store.episodes import EpisodeStore
from receiver.store.incidents import IncidentStore

DRIVER_POOL = 100  # pymongo's default maxPoolSize
INGRESS_POOL = 4  # the webhook's inserts: one group commit at a time, a few while one fails

__all__ = ["DuplicateKey", "Store", "StoreError", "StoreUnavailable", "object_id", "translated"]


async def _build_info(client: AsyncMongoClient[dict[str, Any]]) -> dict[str, Any]:
    """The server's buildInfo; {} when the user may not read it (the server is then MongoDB)."""
    try:
        info: dict[str, Any] = await client.admin.command("buildInfo")
    except OperationFailure:
        return {}
    return info


class Store(DeliveryStore, EpisodeStore, IncidentStore):
    """Owns the client; build with `await Store.connect(...)`, close with `await store.close()`."""

    @classmethod
    async def connect(
        cls, uri: str, db_name: str, timeout_s: float, kind: str, pool_size: int = 0
    ) -> Store:
        """`pool_size` > 0 caps the connections (so the commands in flight) of everything but
        the webhook's inserts, which get a client of their own: on a server that runs one
        command at a time (the embedded one) a webhook then waits behind at most `pool_size`
        background commands instead of every one the stages have queued."""
        ms = int(timeout_s * 1000)

        def client_of(pool: int) -> AsyncMongoClient[dict[str, Any]]:
            return AsyncMongoClient(
                uri,
                tz_aware=True,
                serverSelectionTimeoutMS=ms,
                connectTimeoutMS=ms,
                socketTimeoutMS=max(ms * 2, 10_000),
                appname="ai-devops-monitor",
                maxPoolSize=pool,
            )

        client = client_of(pool_size if pool_size > 0 else DRIVER_POOL)
        ingress = client_of(INGRESS_POOL) if pool_size > 0 else client
        try:
            await init_beanie(database=client[db_name], document_models=DOCUMENT_MODELS)
            info = await _build_info(client)
        except UNAVAILABLE as err:
            await client.close()
            if ingress is not client:
                await ingress.close()
            raise StoreUnavailable(f"store unavailable at start-up: {type(err).__name__}") from err
        nx_server = kind == "embedded" or info.get("process") == "nx_27017"
        store = cls(client, db_name, kind, nx_server)
        store.ingress = ingress
        return store

    async def close(self) -> None:
        await self.client.close()
        if self.ingress is not self.client:
            await self.ingress.close()

    @translated
    async def ping(self) -> None:
        await self.client[self.db_name].command("ping")

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
