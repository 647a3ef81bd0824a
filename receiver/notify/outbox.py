"""The outbox: incidents flagged `needs_notification` become rows, one per (incident, channel,
event), and a worker sends the rows that are due.

Row life (status):

    pending ──claim──▶ sending ──▶ sent
       ▲                  │ ├────▶ failed      (permanent refusal, attempts exhausted)
       └──── backoff ─────┘ └────▶ suppressed  (rate limit → digest; resolve of a suppressed page)
    waiting ──analysis lands──▶ pending         (analysis follow-up)

- Planning is idempotent: the row key is unique, so a replayed plan or a second replica adds
  nothing. The incident's flag is cleared only if its status did not change meanwhile.
- A claim is one atomic update on (_id, due) that sets a lease, so two replicas never send the
  same row; a `sending` row whose lease expired (the worker died) is claimed again. A crash
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

import asyncio
import base64
import contextlib
import dataclasses
import logging
import random
import time
import traceback
import uuid
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from receiver.domain import IncidentView, Severity, Signal, Status
from receiver.notify.channels import Channel, ChannelError, ChannelKind, Routing
from receiver.notify.config import NotifyConfig
from receiver.notify.metrics import NotifyMetrics
from receiver.notify.render import Attachment, Event, Message, RenderOptions, render
from receiver.notify.send import ERROR_LIMIT, Notifier, SendResult
from receiver.notify.storm_render import StormFacts, StormMember, render_storm
from receiver.safety import one_line
from receiver.settings import Settings
from receiver.store.convert import episode_signal, incident_view, rca_analysis
from receiver.store.documents import Anomaly, Incident, Notification, Rca, utcnow
from receiver.store.notify import OutboxStore, Unreadable, validation_summary
from receiver.store.repo import StoreError
from receiver.store.storms import STORM_SOURCE, StormStore
from receiver.timeutil import aware

log = logging.getLogger(__name__)

UNFINISHED = frozenset({"pending", "sending", "waiting"})
# messages that wait until their incident's first message on the channel is final
FOLLOWUPS = frozenset({Event.RESOLVED.value, Event.ANALYSIS.value, Event.UPDATE.value})
EPISODES_PER_INCIDENT = 500
DIGEST_GRACE = timedelta(seconds=1)
REFRESH_SECONDS = 1.0
CHART_TIMEOUT = 10.0  # a chart that takes longer is left out; the email goes without it
STAGE = "outbox"  # label of pipeline_item_errors_total

# The main evidence chart of an incident as PNG, None when there is nothing to draw.
ChartSource = Callable[[Incident, Sequence[Anomaly], Rca | None], Awaitable[bytes | None]]


def row_key(incident_id: str, channel: str, event: Event) -> str:
    return f"{incident_id}:{channel}:{event.value}"


def digest_key(channel: str, window_start: datetime) -> str:
    return f"digest:{channel}:{int(window_start.timestamp() * 1000)}"


@dataclass(frozen=True)
class OutboxOptions:
    rca_wait: timedelta = timedelta(seconds=30)
    rate_limit: int = 20  # per channel per window; 0 = no limit
    rate_window: timedelta = timedelta(seconds=60)
    max_attempts: int = 8
    retry_base: float = 5.0
    retry_max: float = 600.0
    lease: timedelta = timedelta(seconds=300)
    poll: float = 1.0
    followup_max: timedelta = timedelta(hours=1)
    batch: int = 200
    jitter: float = 0.5  # a retry waits between (1 - jitter) and 1 x the backoff
    channel_concurrency: int = 8  # rows of one channel sent at once (one incident's in order)
    storm_followup: timedelta = timedelta(seconds=60)  # at most one storm update per interval

    @classmethod
    def from_settings(cls, settings: Settings) -> OutboxOptions:
        return cls(
            rca_wait=timedelta(seconds=settings.notify_rca_wait_seconds),
            rate_limit=settings.notify_rate_limit,
            rate_window=timedelta(seconds=settings.notify_rate_window_seconds),
            max_attempts=settings.notify_max_attempts,
            retry_base=settings.notify_retry_base_seconds,
            retry_max=settings.notify_retry_max_seconds,
            lease=timedelta(seconds=settings.notify_lease_seconds),
            poll=settings.notify_poll_seconds,
            followup_max=timedelta(seconds=settings.notify_followup_max_seconds),
            channel_concurrency=settings.notify_channel_concurrency,
            storm_followup=timedelta(seconds=settings.storm_followup_seconds),
        )

    def backoff(
        self,
        attempts: int,
        retry_after: float | None,
        rand: Callable[[], float] = random.random,
    ) -> float:
        """Seconds before attempt `attempts + 1`: base x 2^(n-1), capped, minus up to `jitter`
        of it at random (replicas and rows that failed together do not retry together);
        Retry-After is a floor."""
        delay: float = min(self.retry_max, self.retry_base * 2.0 ** max(0, attempts - 1))
        delay *= 1.0 - self.jitter * rand()
        if retry_after is not None:
            delay = max(delay, min(retry_after, self.retry_max))
        return delay


def _rate_limited(row: Notification) -> bool:
    """Messages below critical count against the budget (and may be digested); digests and
    every message of a critical incident do not."""
    return row.event != Event.DIGEST.value and row.severity != Severity.CRITICAL.value


def _suppressible(row: Notification) -> bool:
    """A rate-limited first message that has not taken a rate-limit slot yet."""
    return (
        _rate_limited(row)
        and row.event == Event.FIRING.value
        and row.status == "pending"
        and not row.admitted
    )


def _common_labels(label_sets: list[dict[str, str]]) -> dict[str, str]:
    if not label_sets:
        return {}
    common = dict(label_sets[0])
    for labels in label_sets[1:]:
        common = {k: v for k, v in common.items() if labels.get(k) == v}
    return common


def message_to_doc(message: Message) -> dict[str, Any]:
    return {
        "incident_id": message.incident_id,
        "event": message.event.value,
        "severity": message.severity.value,
        "title": message.title,
        "text": message.text,
        "html": message.html,
        "slack": list(message.slack),
        "thread_id": message.thread_id,
        "colour": message.colour,
        # a retry sends the same bytes, so the chart is stored with the message
        "attachments": [
            {"name": a.name, "mimetype": a.mimetype, "data": base64.b64encode(a.data).decode()}
            for a in message.attachments
        ],
    }


def message_from_doc(doc: dict[str, Any]) -> Message:
    return Message(
        incident_id=str(doc["incident_id"]),
        event=Event(doc["event"]),
        severity=Severity(doc["severity"]),
        title=str(doc["title"]),
        text=str(doc["text"]),
        html=str(doc["html"]),
        slack=tuple(doc["slack"]),
        thread_id=str(doc["thread_id"]),
        colour=str(doc["colour"]),
        attachments=tuple(
            Attachment(str(a["name"]), str(a["mimetype"]), base64.b64decode(a["data"]))
            for a in doc.get("attachments") or []
        ),
    )


class OutboxWorker:
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
    ) -> None:
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
        self._reload = False
        # channel → start of a window known to be full: it stays full until it ends, so rows
        # in a storm are suppressed without asking the store for a slot each time
        self._full: dict[str, datetime] = {}

    def wake(self) -> None:
        self._wake.set()

    def reload(self) -> None:
        """Configuration changed here: use it from the next cycle (other replicas within a
        second, when they next read it)."""
        self._reload = True
        self._wake.set()

    async def run(self) -> None:
        backoff = self.options.poll
        task = asyncio.current_task()
        while True:
            if task is not None and task.cancelling():
                # On 3.11 a cancellation landing in asyncio.wait_for (pymongo's socket send
                # uses it) can be swallowed; the request is still recorded, so honour it here.
                raise asyncio.CancelledError
            try:
                busy = await self.cycle()
                backoff = self.options.poll
            except (StoreError, ChannelError) as err:
                log.warning("outbox: %s; retrying in %.1fs", err, backoff)
                await asyncio.sleep(backoff)
                backoff = min(backoff * 2, 30.0)
                continue
            except Exception:
                log.exception("outbox: unexpected error; retrying in %.1fs", backoff)
                await asyncio.sleep(backoff)
                backoff = min(backoff * 2, 30.0)
                continue
            if not busy:
                # asyncio.timeout, not wait_for: on 3.11 wait_for swallows a cancellation that
                # arrives as its timeout fires, and shutdown then waits on a loop that goes on.
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(self.options.poll):
                        await self._wake.wait()
                self._wake.clear()

    async def cycle(self) -> bool:
        """Plan, send what is due, and now and then reload the configuration and release
        follow-ups whose analysis landed; True when there may be more to do."""
        clock = time.monotonic()
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

    async def _read_config(self) -> tuple[list[Channel], Routing]:
        self._reload = False
        self._current = await self.config.current()
        return self._current

    # planning -------------------------------------------------------------------------------

    async def plan(self) -> int:
        """Turn flagged incidents into rows; return how many incidents were handled."""
        incidents = await self.outbox.incidents_to_notify(self.options.batch)
        if not incidents:
            return 0
        if self._current is None or self._reload:
            # A change made through the API before these incidents arrived applies to them.
            await self._read_config()
        assert self._current is not None
        channels, routing = self._current
        now = utcnow()
        rows: list[Notification] = []
        unrouted: set[str] = set()
        planned: list[Incident] = []
        for incident in incidents:
            try:
                mine, routed = self._plan_incident(incident, channels, routing, now)
            except Exception as err:
                # Nothing stored for this incident yet: record why, and plan the others.
                await self._plan_failed(incident.id, incident.status, err)
                continue
            rows += mine
            planned.append(incident)
            if not routed:
                unrouted.add(str(incident.id))
        await self.outbox.insert_rows(rows)
        for incident in planned:
            cleared = await self.outbox.clear_needs_notification(incident.id, incident.status)
            if cleared and str(incident.id) in unrouted:
                self.metrics.suppressed.labels("unrouted").inc()
        members = sum(1 for r in rows if r.reason == "storm")
        if members:
            self.metrics.suppressed.labels("storm").inc(members)
        return len(incidents)

    def _plan_incident(
        self, incident: Incident, channels: list[Channel], routing: Routing, now: datetime
    ) -> tuple[list[Notification], bool]:
        """The rows of one flagged incident, and whether a channel takes its current event."""
        iid = str(incident.id)
        wait = self.options.rca_wait
        severity = Severity.parse(incident.severity)
        common = {"incident_id": iid, "group_key": incident.key, "severity": severity.value}
        rows: list[Notification] = []
        routed = True
        firing = routing.select(channels, severity, Event.FIRING)
        if not firing and incident.status == Status.FIRING.value:
            routed = False
        member = bool(incident.storm_id)
        for channel in firing:
            rows.append(
                Notification(
                    key=row_key(iid, channel.name, Event.FIRING),
                    channel=channel.name,
                    event=Event.FIRING.value,
                    next_attempt_at=now + wait,
                    hold_until=now + wait if wait > timedelta(0) and not member else None,
                    # a storm member is listed on the storm's page instead of its own
                    status="suppressed" if member else "pending",
                    reason="storm" if member else "",
                    digest_key=f"storm:{incident.storm_id}" if member else "",
                    **common,
                )
            )
        if incident.source == STORM_SOURCE and incident.status == Status.FIRING.value:
            rows += self._storm_update(incident, firing, now, common)
        if incident.status != Status.RESOLVED.value:
            return rows, routed
        resolved = routing.select(channels, severity, Event.RESOLVED)
        if not resolved and routing.resolved:
            routed = False
        for channel in resolved:
            rows.append(
                Notification(
                    key=row_key(iid, channel.name, Event.RESOLVED),
                    channel=channel.name,
                    event=Event.RESOLVED.value,
                    next_attempt_at=now,
                    **common,
                )
            )
        return rows, routed

    def _storm_update(
        self,
        storm: Incident,
        channels: list[Channel],
        now: datetime,
        common: dict[str, Any],
    ) -> list[Notification]:
        """An update row per channel when members joined after the storm's last message.

        Keyed by the follow-up interval it is due at the end of, so however many members
        join, a channel gets at most one update per interval, listing everyone who joined
        before it went out.
        """
        if not storm.storm_paged_members or storm.storm_members <= storm.storm_paged_members:
            return []
        step = self.options.storm_followup.total_seconds()
        bucket = int(now.timestamp() // step)
        due = datetime.fromtimestamp((bucket + 1) * step, UTC)
        return [
            Notification(
                key=f"{storm.id}:{channel.name}:{Event.UPDATE.value}:{bucket}",
                channel=channel.name,
                event=Event.UPDATE.value,
                next_attempt_at=due,
                **common,
            )
            for channel in channels
        ]

    async def release(self) -> int:
        """Held first messages and waiting follow-ups whose analysis has landed become due."""
        now = utcnow()
        held = await self.outbox.held(now, self.options.batch)
        waiting = await self.outbox.waiting(self.options.batch)
        rows = held + waiting
        if not rows:
            return 0
        ready = await self.outbox.analysed({r.incident_id for r in rows})
        released = await self.outbox.release([r.id for r in rows if r.incident_id in ready], now)
        expired = [
            r.id
            for r in waiting
            if r.incident_id not in ready and aware(r.created_at) + self.options.followup_max < now
        ]
        if expired:
            gone = await self.outbox.suppress_waiting(expired, "no_analysis")
            self.metrics.suppressed.labels("no_analysis").inc(gone)
        return released

    # sending --------------------------------------------------------------------------------

    async def send_due(self, channels: list[Channel]) -> int:
        """Send due rows, channels in parallel, rows of one channel in order."""
        rows = await self.outbox.due(utcnow(), self.options.batch)
        if not rows:
            return 0
        parent_keys = {
            row_key(r.incident_id, r.channel, Event.FIRING) for r in rows if r.event in FOLLOWUPS
        }
        parents = await self.outbox.statuses(parent_keys)
        by_name = {c.name: c for c in channels}
        groups: dict[str, list[Notification]] = {}
        for row in rows:
            groups.setdefault(row.channel, []).append(row)
        counts = await asyncio.gather(
            *(self._send_channel(by_name.get(n), items, parents) for n, items in groups.items())
        )
        return sum(counts)

    async def _send_channel(
        self, channel: Channel | None, rows: list[Notification], parents: dict[str, Notification]
    ) -> int:
        """Send one channel's due rows: up to `channel_concurrency` at once, the rows of one
        incident in order. A channel that fails with a retryable error stops taking rows this
        cycle (no timeout per row on a channel that is down)."""
        handled = 0
        done: set[Any] = set()
        start = self._full_window(channel.name, utcnow()) if channel is not None else None
        if channel is not None and start is not None:
            # The window is full: suppress this channel's waiting first messages in one
            # write instead of claiming each (a storm's rows would otherwise cost two
            # round trips apiece on a store that serialises every query).
            bulk = [r for r in rows if _suppressible(r)]
            if bulk:
                try:
                    handled += await self._suppress_many(channel, bulk, start)
                except StoreError as err:
                    log.warning("outbox: %s while suppressing on %s", err, channel.name)
                    return handled
                done.update(r.id for r in bulk)
        threads: dict[str, list[Notification]] = {}
        for row in rows:
            if row.id not in done:
                threads.setdefault(row.incident_id or row.key, []).append(row)
        slots = asyncio.Semaphore(self.options.channel_concurrency)
        stopped = False
        sent = 0

        async def send_thread(items: list[Notification]) -> None:
            nonlocal stopped, sent
            async with slots:
                for row in items:
                    if stopped:
                        return
                    try:
                        outcome = await self._deliver(row, channel, parents)
                    except StoreError as err:
                        log.warning("outbox: %s while handling %s", err, row.key)
                        stopped = True
                        return
                    except Exception as err:
                        # Before the claim (after it `_deliver` records the error on the row):
                        # the row stays due and is looked at again next cycle.
                        self._count_poison(row.key, "schedule", err)
                        continue
                    if outcome is None:
                        continue
                    sent += 1
                    if outcome.retryable and not outcome.ok:
                        stopped = True
                        return

        await asyncio.gather(*(send_thread(items) for items in threads.values()))
        return handled + sent

    async def _deliver(
        self, row: Notification, channel: Channel | None, parents: dict[str, Notification]
    ) -> SendResult | None:
        """Handle one due row; None when it was not ours to handle (yet)."""
        now = utcnow()
        parent = None
        if row.event in FOLLOWUPS:
            parent = parents.get(row_key(row.incident_id, row.channel, Event.FIRING))
        if parent is not None and parent.status in UNFINISHED:
            later = now + timedelta(seconds=self.options.poll)
            if parent.hold_until is None:
                # a parent held for its analysis is released as soon as it lands (before its
                # deadline), so its follow-ups look again every poll instead of waiting that out
                later = max(later, aware(parent.next_attempt_at))
            await self.outbox.defer(row.id, later)
            return None
        claimed = await self.outbox.claim(row.id, now, self.owner, self.options.lease)
        if claimed is None:
            return None  # another worker took it (or it is unreadable: set aside this cycle)
        row = claimed
        if channel is None:
            error = f"channel {row.channel!r} is no longer configured"
            await self._finish(row, "failed", "unconfigured", error)
            self.metrics.failed.labels(row.channel, "unconfigured").inc()
            return SendResult(ok=False, error=error)
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
                Notification(
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
        self, channel: Channel, rows: list[Notification], start: datetime
    ) -> int:
        key = await self._digest_for(channel, start, rows[0].severity)
        count = await self.outbox.suppress_due(
            [r.id for r in rows],
            utcnow(),
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

    async def _admit(self, row: Notification, channel: Channel, now: datetime) -> bool:
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
            await self.outbox.update_claimed(
                row.id, self.owner, {"admitted": True, "window_start": start}
            )
            return True
        key = await self._digest_for(channel, start, row.severity)
        await self.outbox.update_claimed(
            row.id,
            self.owner,
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

    async def _message(self, row: Notification, channel: Channel) -> Message | None:
        """The row's message: rendered at the first attempt, the stored copy afterwards."""
        if row.message is not None:
            return message_from_doc(row.message)
        rendered = await self._render(row, channel.kind is ChannelKind.EMAIL)
        if rendered is None:
            return None
        message, with_analysis, count = rendered
        fields: dict[str, Any] = {
            "message": message_to_doc(message),
            "with_analysis": with_analysis,
        }
        if row.event == Event.DIGEST.value:
            fields["digest_count"] = count
        await self.outbox.update_claimed(row.id, self.owner, fields)
        row.with_analysis = with_analysis
        return message

    async def _render(self, row: Notification, email: bool) -> tuple[Message, bool, int] | None:
        if row.event == Event.DIGEST.value:
            return await self._render_digest(row)
        event = Event(row.event)
        incident = (await self.outbox.incidents([row.incident_id])).get(row.incident_id)
        if incident is None:
            return None
        if incident.source == STORM_SOURCE:
            return await self._render_storm(incident, event)
        episodes = (await self.outbox.episodes([row.incident_id], EPISODES_PER_INCIDENT)).get(
            row.incident_id, []
        )
        view = incident_view(incident, episodes)
        analysis = None
        rca = None
        if event in (Event.FIRING, Event.ANALYSIS):
            rca = await self.outbox.latest_analysis(row.incident_id)
            analysis = rca_analysis(rca) if rca is not None else None
            if analysis is None and event is Event.ANALYSIS:
                return None
        chart = await self._chart(incident, episodes, rca) if email else None
        message = render(view, event, analysis, self.render_options, chart=chart)
        return message, analysis is not None, len(view.signals)

    async def _chart(
        self, incident: Incident, episodes: Sequence[Anomaly], rca: Rca | None
    ) -> bytes | None:
        """The email's evidence chart; any failure leaves it out rather than delay the page."""
        if self.charts is None or not episodes:
            return None
        try:
            async with asyncio.timeout(CHART_TIMEOUT):
                return await self.charts(incident, episodes, rca)
        except Exception as err:
            log.warning("outbox: no evidence chart for %s: %r", incident.id, err)
            return None

    async def _render_storm(
        self, storm: Incident, event: Event
    ) -> tuple[Message, bool, int] | None:
        members = await self.storms.members(str(storm.id))
        rca = await self.outbox.latest_analysis(str(storm.id))
        analysis = rca_analysis(rca) if rca is not None else None
        if analysis is None and event is Event.ANALYSIS:
            return None
        facts = StormFacts(
            id=str(storm.id),
            key=storm.storm_key,
            severity=Severity.parse(storm.severity),
            resolved=storm.status == Status.RESOLVED.value,
            started=aware(storm.started_at).isoformat(timespec="seconds"),
            labels=dict(storm.storm_labels),
            members=[StormMember(str(m.id), m.title, m.severity, m.status) for m in members],
            previously_paged=storm.storm_paged_members,
        )
        if event in (Event.FIRING, Event.UPDATE):
            await self.storms.paged(storm.id, len(members))
        message = render_storm(facts, event, analysis, self.render_options)
        return message, analysis is not None, len(members)

    async def _render_digest(self, row: Notification) -> tuple[Message, bool, int] | None:
        members = await self.outbox.digest_members(row.key)
        ids = {m.incident_id for m in members}
        if not ids:
            return None
        incidents = await self.outbox.incidents(ids)
        episodes = await self.outbox.episodes(ids, EPISODES_PER_INCIDENT)
        signals: list[Signal] = [
            episode_signal(e) for iid in sorted(ids) for e in episodes.get(iid, [])
        ]
        if not signals:
            return None
        common = _common_labels([i.group_labels for i in incidents.values()])
        start = aware(row.window_start or row.created_at)
        title = next(iter(incidents.values())).title if len(incidents) == 1 else ""
        view = IncidentView(
            id=f"digest-{row.channel}-{int(start.timestamp() * 1000)}",
            key=row.key,
            source=signals[0].source,
            status=Status.FIRING,
            severity=max((s.severity for s in signals), key=lambda s: s.rank),
            title=title or f"{len(ids)} groups",
            group_labels=common,
            started_at=start,
            signals=signals,
        )
        options = self.render_options
        if options.public_url:
            link = (
                f"{options.public_url.rstrip('/')}/api/v1/incidents?since={int(start.timestamp())}"
            )
            options = dataclasses.replace(options, link=link)
        return render(view, Event.DIGEST, None, options), False, len(signals)

    async def _sent(self, row: Notification, result: SendResult) -> None:
        if row.event == Event.FIRING.value and not row.with_analysis:
            await self.outbox.insert_row(
                Notification(
                    key=row_key(row.incident_id, row.channel, Event.ANALYSIS),
                    incident_id=row.incident_id,
                    group_key=row.group_key,
                    channel=row.channel,
                    event=Event.ANALYSIS.value,
                    severity=row.severity,
                    status="waiting",
                )
            )
        kept = await self.outbox.update_claimed(
            row.id,
            self.owner,
            {
                "status": "sent",
                "sent_at": utcnow(),
                "parts_sent": result.parts_sent,
                "last_error": "",
                "reason": "",
                "lease_until": None,
            },
        )
        if not kept:
            log.warning("outbox: %s was sent after its lease expired", row.key)
        if row.event == Event.DIGEST.value:
            self.metrics.digests.labels(row.channel).inc()
        else:
            self.metrics.sent.labels(row.channel).inc()

    async def _failed(self, row: Notification, result: SendResult) -> None:
        if not result.retryable:
            await self._finish(row, "failed", "permanent", result.error, result.parts_sent)
            self.metrics.failed.labels(row.channel, "permanent").inc()
            return
        if row.attempts >= self.options.max_attempts:
            await self._finish(row, "failed", "exhausted", result.error, result.parts_sent)
            self.metrics.failed.labels(row.channel, "exhausted").inc()
            log.error("outbox: giving up on %s after %d attempts", row.key, row.attempts)
            return
        delay = self.options.backoff(row.attempts, result.retry_after)
        await self.outbox.update_claimed(
            row.id,
            self.owner,
            {
                "status": "pending",
                "next_attempt_at": utcnow() + timedelta(seconds=delay),
                "last_error": result.error,
                "parts_sent": result.parts_sent,
                "lease_until": None,
            },
        )
        self.metrics.failed.labels(row.channel, "transient").inc()

    async def _finish(
        self, row: Notification, status: str, reason: str, error: str = "", parts_sent: int = 0
    ) -> None:
        fields: dict[str, Any] = {"status": status, "reason": reason, "lease_until": None}
        if error:
            fields["last_error"] = error
        if parts_sent:
            fields["parts_sent"] = parts_sent
        await self.outbox.update_claimed(row.id, self.owner, fields)

    # poison isolation -------------------------------------------------------------------------

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

    async def _poisoned(self, row: Notification, step: str, err: BaseException) -> SendResult:
        """Record an exception on the claimed row: retried with backoff, `failed` at the max."""
        last = row.attempts >= self.options.max_attempts
        error = self._count_poison(row.key, step, err, quarantined=last)
        if last:
            await self._finish(row, "failed", "poison", error)
            self.metrics.failed.labels(row.channel, "poison").inc()
        else:
            delay = self.options.backoff(row.attempts, None)
            await self.outbox.update_claimed(
                row.id,
                self.owner,
                {
                    "status": "pending",
                    "next_attempt_at": utcnow() + timedelta(seconds=delay),
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
    ) -> None:
        """A failed `plan:` row says why an incident got no rows; its flag is cleared, so it is
        planned again only when its status changes (the same data would fail the same way)."""
        resolved = status == Status.RESOLVED.value
        iid = str(incident_id)
        await self.outbox.insert_row(
            Notification(
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

    async def _set_aside(self, items: list[Unreadable]) -> int:
        """Fail unreadable rows and incidents at once; how many there were."""
        seen: set[tuple[str, str]] = set()
        for item in items:
            if (item.collection, str(item.id)) in seen:
                continue  # read twice in one cycle
            seen.add((item.collection, str(item.id)))
            error = self._masked(item.error)
            self.metrics.failures.failed(STAGE, quarantined=True)
            log.error("outbox: set aside %s %s: %s", item.collection, item.id, error)
            if item.collection == Incident.get_pymongo_collection().name:
                await self._record_plan_failure(
                    item.id, item.raw.get("status"), "unreadable", error
                )
                continue
            await self.outbox.set_aside(item, error)
            channel = item.raw.get("channel")
            self.metrics.failed.labels(
                channel if isinstance(channel, str) else "", "unreadable"
            ).inc()
        return len(seen)
