"""Leases and poll snapshots on the real embedded store."""

from __future__ import annotations

import asyncio
from datetime import timedelta

from receiver.store.detect import DetectStore
from receiver.store.documents import PollSnapshot
from receiver.store.repo import Store


async def test_lease_is_exclusive_renewable_and_expires(store: Store) -> None:
    """One holder at a time; the holder renews; another takes over only after expiry."""
    leases = DetectStore(store)
    ttl = timedelta(seconds=0.5)
    assert await leases.acquire_lease("poll:a", "r1", ttl)
    assert not await leases.acquire_lease("poll:a", "r2", ttl)
    assert await leases.acquire_lease("poll:a", "r1", ttl)  # renewal
    assert await leases.acquire_lease("poll:b", "r2", ttl)  # other names are independent
    # r1 "died": no renewal. The embedded server compares datetimes to the second, so wait
    # until the expiry lies in an earlier second than now.
    await asyncio.sleep(1.6)
    assert await leases.acquire_lease("poll:a", "r2", ttl)
    assert not await leases.acquire_lease("poll:a", "r1", ttl)
    held = await leases.leases(["poll:a", "poll:b", "poll:c"])
    assert {n: lease.holder for n, lease in held.items()} == {"poll:a": "r2", "poll:b": "r2"}


async def test_concurrent_acquires_have_one_winner(store: Store) -> None:
    """Ten replicas racing for a fresh lease: exactly one gets it."""
    leases = DetectStore(store)
    won = await asyncio.gather(
        *(leases.acquire_lease("poll:x", f"r{i}", timedelta(seconds=30)) for i in range(10))
    )
    assert sum(won) == 1


async def test_release_lets_another_replica_in_at_once(store: Store) -> None:
    """Releasing frees the lease before its expiry; only the holder can release it."""
    leases = DetectStore(store)
    ttl = timedelta(seconds=60)
    assert await leases.acquire_lease("poll:a", "r1", ttl)
    assert not await leases.release_lease("poll:a", "r2")
    assert not await leases.acquire_lease("poll:a", "r2", ttl)
    assert await leases.release_lease("poll:a", "r1")
    assert await leases.acquire_lease("poll:a", "r2", ttl)


async def test_snapshots_are_capped_oldest_first(store: Store) -> None:
    """Beyond max_docs, the oldest snapshots are deleted; the newest stay, newest first."""
    snaps = DetectStore(store)
    for i in range(8):
        await snaps.insert_snapshot(PollSnapshot(target="t", series=i), max_docs=5)
    items, total = await snaps.snapshots("t", skip=0, limit=50)
    assert total == 5
    assert [s.series for s in items] == [7, 6, 5, 4, 3]
    assert (await snaps.snapshots("other", skip=0, limit=50))[1] == 0
