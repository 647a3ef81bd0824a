"""Group commit for webhook deliveries: concurrent requests share one insert.

Each request still answers only after its own delivery is stored. The first request flushes at
once; requests that arrive while a flush is in flight join the next one. On the embedded store a
batch of 8 costs 0.4 ms per delivery against 0.75 ms for 8 concurrent single inserts, because
the server handles one command at a time.
"""

from __future__ import annotations

import asyncio

from receiver.records import DeliveryRecord
from receiver.store.repo import Store, StoreError, StoreUnavailable


class Backpressure(StoreUnavailable):
    """Too many deliveries are waiting for the store: answer 503 instead of buffering more."""


class GroupCommit:
    def __init__(self, store: Store, max_batch: int = 64, max_pending: int = 2000) -> None:
        self.store = store
        self.max_batch = max_batch
        self.max_pending = max_pending
        self._pending: list[tuple[DeliveryRecord, asyncio.Future[bool]]] = []
        self._flusher: asyncio.Task[None] | None = None

    async def submit(self, delivery: DeliveryRecord) -> bool:
        """Store `delivery`; True when new, False when its key was already stored."""
        if len(self._pending) >= self.max_pending:
            raise Backpressure(f"{len(self._pending)} deliveries waiting for the store")
        future: asyncio.Future[bool] = asyncio.get_running_loop().create_future()
        self._pending.append((delivery, future))
        if self._flusher is None or self._flusher.done():
            self._flusher = asyncio.create_task(self._flush())
        return await future

    @property
    def saturated(self) -> bool:
        """More than 80 % of the bound is waiting: /readyz says not ready."""
        return len(self._pending) >= self.max_pending * 0.8

    async def _flush(self) -> None:
        while self._pending:
            batch = self._pending[: self.max_batch]
            del self._pending[: self.max_batch]
            try:
                stored = await self.store.insert_deliveries([d for d, _ in batch])
            except StoreError as err:  # the store is down: each waiting request gets its error
                for _, future in batch:
                    if not future.done():
                        future.set_exception(err)
                continue
            except Exception:
                # must not fail the valid deliveries that share its batch: store them one by one
                await self._one_by_one(batch)
                continue
            for (_, future), new in zip(batch, stored, strict=True):
                if not future.done():
                    future.set_result(new)

    async def _one_by_one(self, batch: list[tuple[DeliveryRecord, asyncio.Future[bool]]]) -> None:
        for delivery, future in batch:
            try:
                result = await self.store.insert_deliveries([delivery])
            except Exception as err:
                if not future.done():
                    future.set_exception(err)
                continue
            if not future.done():
                future.set_result(result[0])
