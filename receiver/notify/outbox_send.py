"""Sending due rows: per channel and thread, rate limiting, digests and storm suppression."""

from __future__ import annotations

import asyncio
import logging
import uuid
from datetime import datetime, timedelta
from typing import Any

from receiver.notify.channels import Channel
from receiver.notify.outbox_render import Rendering
from receiver.notify.outbox_rows import (
    DIGEST_GRACE,
    FOLLOWUPS,
    REFRESH_SECONDS,
    UNFINISHED,
    _rate_limited,
    _suppressible,
    digest_key,
    row_key,
)
from receiver.notify.render import Event
from receiver.notify.send import SendResult
from receiver.records import NotificationRecord
from receiver.store.repo import StoreError
from receiver.timeutil import aware

log = logging.getLogger(__name__)


class Sending(Rendering):
    async def send_due(self, channels: list[Channel]) -> int:
        """Send due rows, channels in parallel, rows of one channel in order.

        The batch is claimed at once (`claim_many`: two store commands, not one per row) after
        the rows that are not to be sent now are set apart: first messages suppressed into a
        digest because their channel's window is known to be full, follow-ups deferred until
        their first message is final."""
        now = self.clock.now()
        rows = await self.outbox.due(now, self.options.batch)
        if self.clock.monotonic() >= self._leases_at:
            # a dead worker's rows wait out a lease of minutes: looking once a second is enough
            self._leases_at = self.clock.monotonic() + REFRESH_SECONDS
            rows += await self.outbox.expired(now, self.options.batch)
        if not rows:
            return 0
        parent_keys = {
            row_key(r.incident_id, r.channel, Event.FIRING) for r in rows if r.event in FOLLOWUPS
        }
        parents = await self.outbox.statuses(parent_keys)
        by_name = {c.name: c for c in channels}
        handled, rows = await self._suppress_full(rows, by_name)
        rows = await self._schedule(rows, parents, now)
        # a token of its own per claim: the rows this claim won are read back by it
        token = f"{self.owner}:{uuid.uuid4().hex[:12]}"
        claimed = await self.outbox.claim_many(rows, now, token, self.options.lease)
        if not claimed:
            return handled
        await self._prefetch(claimed)
        groups: dict[str, list[NotificationRecord]] = {}
        for row in claimed:
            groups.setdefault(row.channel, []).append(row)
        try:
            counts = await asyncio.gather(
                *(self._send_channel(by_name.get(n), items, parents) for n, items in groups.items())
            )
        finally:
            await self._flush()
        return handled + sum(counts)

    async def _suppress_full(
        self, rows: list[NotificationRecord], channels: dict[str, Channel]
    ) -> tuple[int, list[NotificationRecord]]:
        """Suppress the first messages of channels whose window is known to be full, in one
        write per channel instead of claiming each (a storm's rows would otherwise each be
        claimed only to be suppressed); (how many, the rows left to send)."""
        handled = 0
        skipped: set[str] = set()
        now = self.clock.now()
        for name in dict.fromkeys(r.channel for r in rows):
            channel = channels.get(name)
            start = self._full_window(name, now) if channel is not None else None
            if channel is None or start is None:
                continue
            bulk = [r for r in rows if r.channel == name and _suppressible(r)]
            if not bulk:
                continue
            try:
                handled += await self._suppress_many(channel, bulk, start)
            except StoreError as err:
                log.warning("outbox: %s while suppressing on %s", err, name)
                skipped.add(name)  # as before: the channel's rows wait for the next cycle
                continue
            done = {r.id for r in bulk}
            rows = [r for r in rows if r.id not in done]
        return handled, [r for r in rows if r.channel not in skipped]

    async def _schedule(
        self, rows: list[NotificationRecord], parents: dict[str, NotificationRecord], now: datetime
    ) -> list[NotificationRecord]:
        """The rows to claim now. Follow-ups whose first message on the channel is not final
        yet are pushed back instead (one write for all), so a thread never starts with its end."""
        ready: list[NotificationRecord] = []
        later: dict[Any, datetime] = {}
        for row in rows:
            try:
                until = self._after_parent(row, parents, now)
            except Exception as err:
                # not claimed: the row stays due and is looked at again next cycle
                self._count_poison(row.key, "schedule", err)
                continue
            if until is None:
                ready.append(row)
            else:
                later[row.id] = until
        await self.outbox.defer_many(later)
        return ready

    def _after_parent(
        self, row: NotificationRecord, parents: dict[str, NotificationRecord], now: datetime
    ) -> datetime | None:
        """When to look at a follow-up again whose first message is unfinished; None to send."""
        parent = _parent(row, parents)
        if parent is None or parent.status not in UNFINISHED:
            return None
        later = now + timedelta(seconds=self.options.poll)
        if parent.hold_until is None:
            # a parent held for its analysis is released as soon as it lands (before its
            # deadline), so its follow-ups look again every poll instead of waiting that out
            later = max(later, aware(parent.next_attempt_at))
        return later

    async def _send_channel(
        self,
        channel: Channel | None,
        rows: list[NotificationRecord],
        parents: dict[str, NotificationRecord],
    ) -> int:
        """Send one channel's claimed rows: up to `channel_concurrency` at once, the rows of one
        incident in order. A channel that fails with a retryable error stops taking rows this
        cycle (no timeout per row on a channel that is down); the rows it did not get to are
        given back."""
        threads: dict[str, list[NotificationRecord]] = {}
        for row in rows:
            threads.setdefault(row.incident_id or row.key, []).append(row)
        slots = asyncio.Semaphore(self.options.channel_concurrency)
        stopped = False
        sent = 0
        started: set[Any] = set()

        async def send_thread(items: list[NotificationRecord]) -> None:
            nonlocal stopped, sent
            async with slots:
                for row in items:
                    if stopped:
                        return
                    started.add(row.id)
                    try:
                        outcome = await self._deliver(row, channel, parents)
                    except StoreError as err:
                        log.warning("outbox: %s while handling %s", err, row.key)
                        stopped = True
                        # the store fails only before the send: nothing left for this row
                        self._unclaim(row)
                        return
                    except Exception as err:
                        await self._poisoned(row, "deliver", err)
                        continue
                    sent += 1
                    if outcome.retryable and not outcome.ok:
                        stopped = True
                        return

        await asyncio.gather(*(send_thread(items) for items in threads.values()))
        for row in rows:
            if row.id not in started:
                self._unclaim(row)
        return sent

    async def _deliver(
        self,
        row: NotificationRecord,
        channel: Channel | None,
        parents: dict[str, NotificationRecord],
    ) -> SendResult:
        """Handle one claimed row: send it, or record why not."""
        now = self.clock.now()
        if channel is None:
            error = f"channel {row.channel!r} is no longer configured"
            await self._finish(row, "failed", "unconfigured", error)
            self.metrics.failed.labels(row.channel, "unconfigured").inc()
            return SendResult(ok=False, error=error)
        parent = _parent(row, parents)
        if parent is not None and parent.status == "suppressed" and row.event == "resolved":
            await self._finish(row, "suppressed", "parent_suppressed")
            self.metrics.suppressed.labels("parent_suppressed").inc()
            return SendResult(ok=True)
        if not await self._admit(row, channel, now):
            return SendResult(ok=True)
        # Whatever a row carries (a stored message of the wrong shape, fields that break the
        # renderer, text the notifier chokes on) fails this row only.
        try:
            message = await self._message(row, channel)
        except StoreError:
            raise
        except Exception as err:
            return await self._poisoned(row, "render", err)
        if message is None:
            await self._finish(row, "failed", "missing", "incident or analysis not found")
            self.metrics.failed.labels(row.channel, "missing").inc()
            return SendResult(ok=False, error="missing")
        try:
            result = await self.notifier.send(channel, message, first_part=row.parts_sent)
        except Exception as err:
            return await self._poisoned(row, "send", err)
        if result.ok:
            await self._sent(row, result)
        else:
            await self._failed(row, result)
        return result

    def _full_window(self, channel: str, now: datetime) -> datetime | None:
        """Start of the channel's current window if it is known to be full."""
        start = self._full.get(channel)
        if start is not None and now < start + self.options.rate_window:
            return start
        return None

    async def _digest_for(self, channel: Channel, start: datetime, severity: str) -> str:
        """The digest row of (channel, window), created once; its key."""
        key = digest_key(channel.name, start)
        if key not in self._digests:
            await self.outbox.insert_row(
                NotificationRecord(
                    key=key,
                    channel=channel.name,
                    event=Event.DIGEST.value,
                    severity=severity,
                    next_attempt_at=start + self.options.rate_window + DIGEST_GRACE,
                    window_start=start,
                    admitted=True,
                )
            )
            self._digests.add(key)
        return key

    async def _suppress_many(
        self, channel: Channel, rows: list[NotificationRecord], start: datetime
    ) -> int:
        key = await self._digest_for(channel, start, rows[0].severity)
        count = await self.outbox.suppress_due(
            [r.id for r in rows],
            self.clock.now(),
            {
                "status": "suppressed",
                "reason": "rate_limit",
                "window_start": start,
                "digest_key": key,
                "attempts": 1,
            },
        )
        self.metrics.suppressed.labels("rate_limit").inc(count)
        return count

    async def _admit(self, row: NotificationRecord, channel: Channel, now: datetime) -> bool:
        """Take a rate-limit slot once per row; beyond the limit, suppress it into a digest."""
        limit = self.options.rate_limit
        if not _rate_limited(row) or row.admitted or limit <= 0:
            return True
        window = self.options.rate_window
        full = self._full_window(channel.name, now)
        if full is not None:
            admitted, start = False, full
        else:
            admitted, start = await self.outbox.take_slot(channel.name, now, limit, window)
            if not admitted:
                self._full[channel.name] = start
        if admitted:
            # written with the row's outcome: a crash before that may take a second slot
            self._along(row, {"admitted": True, "window_start": start})
            return True
        key = await self._digest_for(channel, start, row.severity)
        self._outcome(
            row,
            {
                "status": "suppressed",
                "reason": "rate_limit",
                "window_start": start,
                "digest_key": key,
                "lease_until": None,
            },
        )
        self.metrics.suppressed.labels("rate_limit").inc()
        return False


def _parent(
    row: NotificationRecord, parents: dict[str, NotificationRecord]
) -> NotificationRecord | None:
    """A follow-up's first message on the same channel (None for a first message)."""
    if row.event not in FOLLOWUPS:
        return None
    return parents.get(row_key(row.incident_id, row.channel, Event.FIRING))
