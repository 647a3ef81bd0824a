"""The outbox: incidents flagged `needs_notification` become rows, one per (incident, channel,
event), and a worker sends the rows that are due.

Row life (status):

    pending ──claim──▶ sending ──▶ sent
       ▲                  │ ├────▶ failed      (permanent refusal, attempts exhausted)
       └──── backoff ─────┘ └────▶ suppressed  (rate limit → digest; resolve of a suppressed page)
    waiting ──analysis lands──▶ pending         (analysis follow-up)

- Planning is idempotent: the row key is unique, so a replayed plan or a second replica adds
  nothing. The incident's flag is cleared only if its status did not change meanwhile.
- A cycle claims its due rows in one bulk write of atomic per-row updates on (_id, still due)
  that set a lease and a token new for that claim, then reads back the rows carrying its token:
  of two replicas racing for a row exactly one wins it, so two replicas never send the same
  row; a `sending` row whose lease expired (the worker died) is claimed again. Rows a cycle
  claimed but did not get to (their channel went down) are given back, due as before. A crash
  after the message left but before it was marked sent therefore sends it twice: the outbox is
  at-least-once across crashes and exactly-once otherwise.
- The first message of an incident waits for the analysis up to `rca_wait`; sent without it,
  an `analysis` follow-up row waits for the analysis and is sent when it lands.
- Resolved and follow-up messages wait until the first message of their channel is final, so
  a thread never starts with its end.
- Poison isolation: an exception while planning one incident or rendering/sending one row is
  caught there, masked and written to the row (`last_error`, `attempts`; the row is retried
  with exponential backoff and jitter and ends `failed`/`poison` after `max_attempts`),
  counted in `pipeline_item_errors_total{stage="outbox",outcome}`, and the worker goes on
  with the next row. A stored row or incident that does not fit its model is skipped by the
  read and set aside at once (`failed`/`unreadable`; an incident gets a failed `plan` row and
  its flag cleared): reading the same bytes again cannot succeed. Nothing in a webhook can
  stop the loop.
- Rate limit: `rate_limit` messages of high, medium and low incidents per channel per window
  (anchored at the first message of a burst); beyond it rows are `suppressed` and one digest
  row per (channel, window), due when the window ends, lists them. Nothing is dropped without a
  row and a counter saying so. Critical incidents have no budget: their messages are always
  sent on their own and take no slot, so a storm of lesser alerts never folds a page into a
  digest (and a critical storm does not use up the others' budget).
"""

from __future__ import annotations

import logging

from receiver.notify.channels import ChannelError
from receiver.notify.outbox_plan import Planning
from receiver.notify.outbox_rows import (
    CHART_TIMEOUT,
    DIGEST_GRACE,
    EPISODES_PER_INCIDENT,
    FOLLOWUPS,
    REFRESH_SECONDS,
    STAGE,
    UNFINISHED,
    ChartSource,
    OutboxOptions,
    digest_key,
    message_from_doc,
    message_to_doc,
    row_key,
)
from receiver.store.repo import StoreError
from receiver.work import Worker

# the names callers import from here; the row helpers live in outbox_rows
__all__ = [
    "CHART_TIMEOUT",
    "DIGEST_GRACE",
    "EPISODES_PER_INCIDENT",
    "FOLLOWUPS",
    "REFRESH_SECONDS",
    "STAGE",
    "UNFINISHED",
    "ChartSource",
    "OutboxOptions",
    "OutboxWorker",
    "digest_key",
    "message_from_doc",
    "message_to_doc",
    "row_key",
]

log = logging.getLogger(__name__)


class OutboxWorker(Planning):
    async def run(self) -> None:
        await Worker(
            "outbox",
            self.step,
            poll=self.options.poll,
            clock=self.clock,
            outages=(Exception,),  # a bug in one cycle must not stop notifications either
            event=self._wake,
        ).run()

    async def step(self) -> bool:
        try:
            return await self.cycle()
        except (StoreError, ChannelError):
            raise
        except Exception:
            log.exception("outbox: unexpected error")
            raise

    async def cycle(self) -> bool:
        """Plan, send what is due, and now and then reload the configuration and release
        follow-ups whose analysis landed; True when there may be more to do."""
        clock = self.clock.monotonic()
        if self._current is None or self._reload or clock >= self._refresh_at:
            # Once a second at most: the embedded store serialises every query, and a storm
            # is ingested faster when the outbox does not poll what rarely changes.
            await self._read_config()
            await self.release()
            self.metrics.active.set(await self.outbox.count_active())
            self._refresh_at = clock + max(self.options.poll, REFRESH_SECONDS)
        planned = await self.plan()
        assert self._current is not None
        handled = await self.send_due(self._current[0])
        aside = await self._set_aside(self.outbox.take_unreadable())
        return planned + handled + aside > 0
