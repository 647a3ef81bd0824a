"""The outbox's state and bookkeeping: recording sends, failures, poison rows and plan failures."""

from __future__ import annotations

import asyncio
import logging
import traceback
import uuid
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from receiver.domain import Status
from receiver.notify.channels import Channel, Routing
from receiver.notify.config import NotifyConfig
from receiver.notify.metrics import NotifyMetrics
from receiver.notify.outbox_rows import STAGE, ChartSource, Facts, OutboxOptions, row_key
from receiver.notify.render import Event, RenderOptions
from receiver.notify.send import ERROR_LIMIT, Notifier, SendResult
from receiver.records import NotificationRecord
from receiver.safety import one_line
from receiver.store.notify import OutboxStore, Unreadable, validation_summary
from receiver.store.storms import StormStore
from receiver.work import REAL_CLOCK, Clock

log = logging.getLogger(__name__)


class OutboxState:
    def __init__(
        self,
        outbox: OutboxStore,
        config: NotifyConfig,
        notifier: Notifier,
        metrics: NotifyMetrics,
        options: OutboxOptions,
        render_options: RenderOptions,
        owner: str = "",
        charts: ChartSource | None = None,
        clock: Clock = REAL_CLOCK,
    ) -> None:
        self.clock = clock
        self.outbox = outbox
        self.storms = StormStore(outbox.store)
        self.config = config
        self.notifier = notifier
        self.metrics = metrics
        self.options = options
        self.render_options = render_options
        self.charts = charts  # evidence charts for emails; None = emails without a chart
        self.owner = owner or f"outbox-{uuid.uuid4().hex[:12]}"
        self._wake = asyncio.Event()
        self._digests: set[str] = set()
        self._current: tuple[list[Channel], Routing] | None = None
        self._refresh_at = 0.0
        self._leases_at = 0.0  # when to look for rows whose lease expired next (monotonic)
        self._reload = False
        # channel → start of a window known to be full: it stays full until it ends, so rows
        # in a storm are suppressed without asking the store for a slot each time
        self._full: dict[str, datetime] = {}
        # what this cycle's rows render from, read for the whole batch at once (outbox_render)
        self._facts = Facts()
        # This cycle's outcomes, written in one bulk update when its sends are done (`_flush`)
        # rather than one round trip per row: claimed row id → (its claim's token, fields).
        # Fields written with a row's outcome (`_along`: the message rendered at its first
        # attempt, so a retry sends the same bytes; its rate-limit slot), and analysis
        # follow-ups to insert first.
        self._outcomes: dict[Any, tuple[str, dict[str, Any]]] = {}
        self._extra: dict[Any, dict[str, Any]] = {}
        self._followups: list[NotificationRecord] = []

    def wake(self) -> None:
        self._wake.set()

    def reload(self) -> None:
        """Configuration changed here: use it from the next cycle (other replicas within a
        second, when they next read it)."""
        self._reload = True
        self._wake.set()

    async def _read_config(self) -> tuple[list[Channel], Routing]:
        self._reload = False
        self._current = await self.config.current()
        return self._current


class Bookkeeping(OutboxState):
    def _along(self, row: NotificationRecord, fields: dict[str, Any]) -> None:
        """Fields of a claimed row written together with its outcome."""
        self._extra.setdefault(row.id, {}).update(fields)

    def _outcome(self, row: NotificationRecord, fields: dict[str, Any]) -> None:
        """Record what became of a claimed row; written by the cycle's `_flush`."""
        self._outcomes[row.id] = (row.lease_owner, {**self._extra.pop(row.id, {}), **fields})

    def _unclaim(self, row: NotificationRecord) -> None:
        """Give back a claimed row this cycle did not get to (its channel stopped taking
        rows): due again as it was, the attempt not counted."""
        self._outcome(row, {"status": "pending", "attempts": row.attempts - 1, "lease_until": None})

    async def _flush(self) -> None:
        """Write the cycle's follow-ups and outcomes: two commands for the whole batch.

        A crash before this leaves the rows `sending` until their lease expires, and then they
        are sent again: the same at-least-once edge as a crash between a send and its record.
        """
        followups, self._followups = self._followups, []
        outcomes, self._outcomes = self._outcomes, {}
        self._extra.clear()
        # follow-ups first: a row marked sent without its follow-up would lose it for good
        await self.outbox.insert_rows(followups)
        kept = await self.outbox.finish_claimed(outcomes)
        if kept < len(outcomes):
            log.warning(
                "outbox: %d rows were finished after their lease expired", len(outcomes) - kept
            )

    async def _sent(self, row: NotificationRecord, result: SendResult) -> None:
        if row.event == Event.FIRING.value and not row.with_analysis:
            self._followups.append(
                NotificationRecord(
                    key=row_key(row.incident_id, row.channel, Event.ANALYSIS),
                    incident_id=row.incident_id,
                    group_key=row.group_key,
                    channel=row.channel,
                    event=Event.ANALYSIS.value,
                    severity=row.severity,
                    status="waiting",
                )
            )
        self._outcome(
            row,
            {
                "status": "sent",
                "sent_at": self.clock.now(),
                "parts_sent": result.parts_sent,
                "last_error": "",
                "reason": "",
                "lease_until": None,
            },
        )
        if row.event == Event.DIGEST.value:
            self.metrics.digests.labels(row.channel).inc()
        else:
            self.metrics.sent.labels(row.channel).inc()

    async def _failed(self, row: NotificationRecord, result: SendResult) -> None:
        if not result.retryable:
            await self._finish(row, "failed", "permanent", result.error, result.parts_sent)
            self.metrics.failed.labels(row.channel, "permanent").inc()
            return
        if row.attempts >= self.options.retry.max_attempts:
            await self._finish(row, "failed", "exhausted", result.error, result.parts_sent)
            self.metrics.failed.labels(row.channel, "exhausted").inc()
            log.error("outbox: giving up on %s after %d attempts", row.key, row.attempts)
            return
        delay = self.options.backoff(row.attempts, result.retry_after)
        self._outcome(
            row,
            {
                "status": "pending",
                "next_attempt_at": self.clock.now() + timedelta(seconds=delay),
                "last_error": result.error,
                "parts_sent": result.parts_sent,
                "lease_until": None,
            },
        )
        self.metrics.failed.labels(row.channel, "transient").inc()

    async def _finish(
        self,
        row: NotificationRecord,
        status: str,
        reason: str,
        error: str = "",
        parts_sent: int = 0,
    ) -> None:
        fields: dict[str, Any] = {"status": status, "reason": reason, "lease_until": None}
        if error:
            fields["last_error"] = error
        if parts_sent:
            fields["parts_sent"] = parts_sent
        self._outcome(row, fields)

    def _masked(self, text: str) -> str:
        """`text` on one capped line with every configured channel's URL and secrets masked."""
        for channel in self._current[0] if self._current is not None else []:
            text = channel.redact(text)
        return one_line(text, ERROR_LIMIT)

    def _count_poison(
        self, what: str, step: str, err: BaseException, quarantined: bool = True
    ) -> str:
        """Count and log an exception that one item raised; its masked description."""
        frames = traceback.extract_tb(err.__traceback__)
        where = f" ({Path(frames[-1].filename).name}:{frames[-1].lineno})" if frames else ""
        detail = validation_summary(err) if isinstance(err, ValidationError) else str(err)
        error = self._masked(f"{step}: {type(err).__name__}: {detail}{where}")
        self.metrics.failures.failed(STAGE, quarantined)
        # no traceback: its last line repeats the message, which may hold what we just masked
        log.error("outbox: %s failed: %s", what, error)
        return error

    async def _poisoned(self, row: NotificationRecord, step: str, err: BaseException) -> SendResult:
        """Record an exception on the claimed row: retried with backoff, `failed` at the max."""
        last = row.attempts >= self.options.retry.max_attempts
        error = self._count_poison(row.key, step, err, quarantined=last)
        if last:
            await self._finish(row, "failed", "poison", error)
            self.metrics.failed.labels(row.channel, "poison").inc()
        else:
            delay = self.options.backoff(row.attempts, None)
            self._outcome(
                row,
                {
                    "status": "pending",
                    "next_attempt_at": self.clock.now() + timedelta(seconds=delay),
                    "last_error": error,
                    "lease_until": None,
                },
            )
        return SendResult(ok=False, error=error)

    async def _plan_failed(self, incident_id: Any, status: Any, err: BaseException) -> None:
        error = self._count_poison(f"planning incident {incident_id}", "plan", err)
        await self._record_plan_failure(incident_id, status, "poison", error)

    async def _record_plan_failure(
        self, incident_id: Any, status: Any, reason: str, error: str
    ) -> bool:
        """A failed `plan:` row says why an incident got no rows; its flag is cleared, so it is
        planned again only when its status changes (the same data would fail the same way)."""
        resolved = status == Status.RESOLVED.value
        iid = str(incident_id)
        recorded = await self.outbox.insert_row(
            NotificationRecord(
                key=f"plan:{iid}:{'resolved' if resolved else 'firing'}",
                incident_id=iid,
                channel="",
                event=(Event.RESOLVED if resolved else Event.FIRING).value,
                status="failed",
                reason=reason,
                attempts=1,
                last_error=error,
            )
        )
        await self.outbox.clear_needs_notification(incident_id, status)
        return recorded

    async def _set_aside(self, items: list[Unreadable]) -> int:
        """Fail unreadable rows and incidents at once; how many there were."""
        seen: set[tuple[str, str]] = set()
        for item in items:
            if (item.collection, str(item.id)) in seen:
                continue  # read twice in one cycle
            seen.add((item.collection, str(item.id)))
            error = self._masked(item.error)
            if item.incident:
                first = await self._record_plan_failure(
                    item.id, item.raw.get("status"), "unreadable", error
                )
            else:
                first = await self.outbox.set_aside(item, error)
                if first:
                    channel = item.raw.get("channel")
                    self.metrics.failed.labels(
                        channel if isinstance(channel, str) else "", "unreadable"
                    ).inc()
            if first:  # another cycle or replica may have set it aside already
                self.metrics.failures.failed(STAGE, quarantined=True)
                log.error("outbox: set aside %s %s: %s", item.collection, item.id, error)
        return len(seen)
