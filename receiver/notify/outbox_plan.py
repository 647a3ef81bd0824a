"""Planning: turning flagged incidents into outbox rows, storm updates, releasing follow-ups."""

from __future__ import annotations

import logging
from datetime import UTC, datetime, timedelta
from typing import Any

from receiver.domain import Severity, Status
from receiver.notify.channels import Channel, Routing
from receiver.notify.outbox_rows import row_key
from receiver.notify.outbox_send import Sending
from receiver.notify.render import Event
from receiver.records import IncidentRecord, NotificationRecord
from receiver.store.storms import STORM_SOURCE
from receiver.timeutil import aware

log = logging.getLogger(__name__)


class Planning(Sending):
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
        now = self.clock.now()
        rows: list[NotificationRecord] = []
        unrouted: set[str] = set()
        planned: list[IncidentRecord] = []
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
        # one write for the batch; the rare unrouted ones alone, to count those it cleared
        await self.outbox.clear_many(
            [(i.id, i.status) for i in planned if str(i.id) not in unrouted]
        )
        for incident in planned:
            if str(incident.id) not in unrouted:
                continue
            if await self.outbox.clear_needs_notification(incident.id, incident.status):
                self.metrics.suppressed.labels("unrouted").inc()
        members = sum(1 for r in rows if r.reason == "storm")
        if members:
            self.metrics.suppressed.labels("storm").inc(members)
        return len(incidents)

    def _plan_incident(
        self, incident: IncidentRecord, channels: list[Channel], routing: Routing, now: datetime
    ) -> tuple[list[NotificationRecord], bool]:
        """The rows of one flagged incident, and whether a channel takes its current event."""
        iid = str(incident.id)
        wait = self.options.rca_wait
        if incident.source == STORM_SOURCE and wait > timedelta(0):
            wait += self.options.storm_settle  # its analysis waits for the burst to settle
        severity = Severity.parse(incident.severity)
        common = {"incident_id": iid, "group_key": incident.key, "severity": severity.value}
        rows: list[NotificationRecord] = []
        routed = True
        firing = routing.select(channels, severity, Event.FIRING)
        if not firing and incident.status == Status.FIRING.value:
            routed = False
        member = bool(incident.storm_id)
        for channel in firing:
            rows.append(
                NotificationRecord(
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
                NotificationRecord(
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
        storm: IncidentRecord,
        channels: list[Channel],
        now: datetime,
        common: dict[str, Any],
    ) -> list[NotificationRecord]:
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
            NotificationRecord(
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
        now = self.clock.now()
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
