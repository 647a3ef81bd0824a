"""MONGO_POOL_SIZE: the stages share a capped connection pool while the webhook's inserts have a
client of their own, so on the embedded server (one command at a time) a webhook waits behind at
most that many background commands. Real embedded server, real driver."""

from __future__ import annotations

import asyncio
import uuid

from receiver.records import DeliveryRecord
from receiver.store.embedded import EmbeddedStore
from receiver.store.repo import DRIVER_POOL, INGRESS_POOL, Store


async def test_a_capped_pool_gives_the_webhook_inserts_their_own_client(
    embedded_store: EmbeddedStore,
) -> None:
    """pool_size=1: background reads share one connection, inserts use the ingress client, and
    40 reads racing 10 inserts all finish with every delivery stored."""
    store = await Store.connect(embedded_store.uri, f"p_{uuid.uuid4().hex[:10]}", 5, "embedded", 1)
    try:
        assert store.ingress is not store.client
        assert store.client.options.pool_options.max_pool_size == 1
        assert store.ingress.options.pool_options.max_pool_size == INGRESS_POOL
        reads = [store.pending_deliveries(100) for _ in range(40)]
        inserts = [
            store.insert_deliveries([DeliveryRecord(delivery_key=f"k{n}", raw_json="{}")])
            for n in range(10)
        ]
        results = await asyncio.wait_for(asyncio.gather(*reads, *inserts), timeout=60)
        assert results[40:] == [[True]] * 10
        pending = await store.pending_deliveries(100)
        assert sorted(d.delivery_key for d in pending) == [f"k{n}" for n in range(10)]
        assert await store.insert_deliveries([DeliveryRecord(delivery_key="k0")]) == [False]
    finally:
        await store.close()


async def test_pool_size_zero_keeps_one_client_with_the_driver_default(
    embedded_store: EmbeddedStore,
) -> None:
    """0 = no cap: one client for everything, the driver's own pool size."""
    store = await Store.connect(embedded_store.uri, f"p_{uuid.uuid4().hex[:10]}", 5, "embedded", 0)
    try:
        assert store.ingress is store.client
        assert store.client.options.pool_options.max_pool_size == DRIVER_POOL
    finally:
        await store.close()
