"""Capacity of the enrichment worker (receiver/enrich/worker.py).

Two kinds of claims, each with its own capacity: work that surely makes no model call (a storm
member takes its storm's analysis, no model is configured, the hourly budget is spent, nothing
changed since the last analysis) runs in up to ENRICH_OFFLINE_CONCURRENCY claims; an incident
that may call the model is claimed only while fewer than ENRICH_CONCURRENCY + max(2,
ENRICH_CONCURRENCY) such claims are held (some calling, the rest gathering evidence or waiting
for a slot), so model-bound work never sits claimed by the hundred. One that turns out not to
need the model (over the per-incident cap, cached, over budget) gives its place back at once.

`ModelSlots` allows N model calls at once. An `asyncio.Semaphore` serves its waiters in arrival
order; here a storm or a critical incident claimed after a low-priority one still gets the next
free slot (storms and the most severe incidents spend the model budget first). Equal
priorities keep arrival order.
"""

from __future__ import annotations

import asyncio
import heapq
import itertools
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager


class ModelSlots:
    def __init__(self, slots: int) -> None:
        self.slots = slots
        self._free = slots
        self._order = itertools.count()
        self._waiters: list[tuple[int, int, asyncio.Future[None]]] = []

    @property
    def waiting(self) -> int:
        return sum(1 for _, _, f in self._waiters if not f.done())

    @asynccontextmanager
    async def slot(self, priority: int) -> AsyncIterator[bool]:
        """Hold one slot for the block, which gets whether it had to wait for it; higher
        `priority` is served first."""
        waited = await self._acquire(priority)
        try:
            yield waited
        finally:
            self._release()

    async def _acquire(self, priority: int) -> bool:
        if self._free > 0 and not self.waiting:
            self._free -= 1
            return False
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        heapq.heappush(self._waiters, (-priority, next(self._order), future))
        try:
            await future
        except asyncio.CancelledError:
            if future.done() and not future.cancelled():
                self._release()  # handed a slot as it was cancelled: pass it on
            raise
        return True

    def _release(self) -> None:
        while self._waiters:
            _, _, future = heapq.heappop(self._waiters)
            if not future.done():
                future.set_result(None)  # the slot passes straight to the next waiter
                return
        self._free += 1
