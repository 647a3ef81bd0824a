"""The store recognises the nx-27017 server even when MONGO_URI points at it (replicas sharing
one embedded store), so its query workarounds apply there too."""

from __future__ import annotations

import uuid

from receiver.store.documents import Anomaly
from receiver.store.embedded import EmbeddedStore
from receiver.store.repo import Store


async def test_an_nx_server_behind_mongo_uri_is_recognised(embedded_store: EmbeddedStore) -> None:
    store = await Store.connect(embedded_store.uri, f"s_{uuid.uuid4().hex[:10]}", 5, "mongodb")
    try:
        assert store.kind == "mongodb"
        assert store.nx_server
        docs = [
            {"incident_id": "i1", "status": status, "episode_key": f"k{n}"}
            for n, status in enumerate(["firing", "firing", "resolved"])
        ]
        await Anomaly.get_pymongo_collection().insert_many(docs)
        assert await store.count_firing("i1") == 2
        assert await store.count_firing("i2") == 0
    finally:
        await store.close()
