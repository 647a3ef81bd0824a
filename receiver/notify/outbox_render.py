"""Rendering an outbox row into its message: incident, storm and digest messages, charts."""

from __future__ import annotations

import asyncio
import dataclasses
import logging
from collections.abc import Sequence
from typing import Any

from receiver.domain import IncidentView, Severity, Signal, Status
from receiver.notify.channels import Channel, ChannelKind
from receiver.notify.outbox_book import Bookkeeping
from receiver.notify.outbox_rows import (
    CHART_TIMEOUT,
    EPISODES_PER_INCIDENT,
    Facts,
    _common_labels,
    message_from_doc,
    message_to_doc,
)
from receiver.notify.render import Event, Message, render
from receiver.notify.storm_render import StormFacts, StormMember, render_storm
from receiver.records import AnalysisRecord, EpisodeRecord, IncidentRecord, NotificationRecord
from receiver.store.convert import episode_signal, incident_view, rca_analysis
from receiver.store.repo import StoreError
from receiver.store.storms import STORM_SOURCE
from receiver.timeutil import aware

log = logging.getLogger(__name__)


class Rendering(Bookkeeping):
    async def _message(self, row: NotificationRecord, channel: Channel) -> Message | None:
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
        self._along(row, fields)
        row.with_analysis = with_analysis
        return message

    async def _prefetch(self, rows: Sequence[NotificationRecord]) -> None:
        """Read what the rows to render need for the whole batch (see `Facts`)."""
        ids = {
            r.incident_id
            for r in rows
            if r.message is None and r.incident_id and r.event != Event.DIGEST.value
        }
        if not ids:
            self._facts = Facts()
            return
        self._facts = Facts()
        try:
            incidents = await self.outbox.incidents(ids)
            plain = {i for i, doc in incidents.items() if doc.source != STORM_SOURCE}
            facts = Facts(
                incidents=incidents,
                episodes=await self.outbox.episodes(plain, EPISODES_PER_INCIDENT),
                analyses=await self.outbox.latest_analyses(plain),
            )
        except StoreError:
            raise
        except Exception as err:
            # one unreadable document fails the batch read: every row then reads its own, so
            # only the row it belongs to fails (as poison) and the others are sent
            log.info("outbox: batch read failed (%r); rendering row by row", err)
            return
        self._facts = facts

    async def _render(
        self, row: NotificationRecord, email: bool
    ) -> tuple[Message, bool, int] | None:
        if row.event == Event.DIGEST.value:
            return await self._render_digest(row)
        event = Event(row.event)
        facts = self._facts
        incident = facts.incidents.get(row.incident_id)
        batched = incident is not None
        if incident is None:  # not in this cycle's batch read (or gone since)
            incident = (await self.outbox.incidents([row.incident_id])).get(row.incident_id)
        if incident is None:
            return None
        if incident.source == STORM_SOURCE:
            return await self._render_storm(incident, event)
        if batched:
            episodes = facts.episodes.get(row.incident_id, [])
        else:
            episodes = (await self.outbox.episodes([row.incident_id], EPISODES_PER_INCIDENT)).get(
                row.incident_id, []
            )
        view = incident_view(incident, episodes)
        analysis = None
        rca = None
        if event in (Event.FIRING, Event.ANALYSIS):
            rca = facts.analyses.get(row.incident_id) if batched else None
            if rca is None and (event is Event.ANALYSIS or not batched):
                # the analysis an ANALYSIS row is for may have landed after the batch read; a
                # first page without it gets the analysis as a follow-up
                rca = await self.outbox.latest_analysis(row.incident_id)
            analysis = rca_analysis(rca) if rca is not None else None
            if analysis is None and event is Event.ANALYSIS:
                return None
        chart = await self._chart(incident, episodes, rca) if email else None
        message = render(view, event, analysis, self.render_options, chart=chart)
        return message, analysis is not None, len(view.signals)

    async def _chart(
        self,
        incident: IncidentRecord,
        episodes: Sequence[EpisodeRecord],
        rca: AnalysisRecord | None,
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
        self, storm: IncidentRecord, event: Event
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

    async def _render_digest(self, row: NotificationRecord) -> tuple[Message, bool, int] | None:
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
