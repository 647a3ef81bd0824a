"""Documents ↔ domain types: an episode as `Episode`/`Signal` and back, an incident with its
episodes as `IncidentView`, an `Rca` as `Analysis`. Pure conversions, and the only ones: the
stages get and give domain objects, the store turns them into documents here."""

from __future__ import annotations

import logging
from collections.abc import Sequence

from pydantic import ValidationError

from receiver.domain import (
    Analysis,
    DetectorInfo,
    Episode,
    Hypothesis,
    IncidentState,
    IncidentView,
    Severity,
    Signal,
    Source,
    Status,
)
from receiver.records import AnalysisRecord, EpisodeRecord, IncidentRecord
from receiver.store.documents import Anomaly
from receiver.timeutil import aware

log = logging.getLogger(__name__)


def _source(raw: str) -> Source:
    try:
        return Source(raw)
    except ValueError:
        return Source.ALERTMANAGER


def _status(raw: str) -> Status:
    return Status.RESOLVED if raw == Status.RESOLVED.value else Status.FIRING


def episode_signal(episode: EpisodeRecord) -> Signal:
    """One stored episode as the signal it was made from."""
    detector = None
    if episode.detector:
        try:
            detector = DetectorInfo.model_validate(episode.detector)
        except ValidationError:
            log.debug("episode %s: unreadable detector info", episode.id)
    return Signal(
        source=_source(episode.source),
        fingerprint=episode.fingerprint,
        status=_status(episode.status),
        starts_at=aware(episode.starts_at),
        ends_at=aware(episode.ends_at) if episode.ends_at else None,
        labels=episode.labels,
        annotations=episode.annotations,
        generator_url=episode.generator_url,
        alertname=episode.alertname,
        instance=episode.instance,
        severity=Severity.parse(episode.severity),
        metric=episode.metric,
        value=episode.value,
        reason=episode.reason,
        detector=detector,
        links=episode.links,
        values=episode.values,
    )


def episode_of(episode: EpisodeRecord) -> Episode:
    """One stored episode with its identity and incident."""
    return Episode(
        **dict(episode_signal(episode)),
        id=str(episode.id) if episode.id is not None else "",
        episode_key=episode.episode_key,
        incident_id=episode.incident_id,
        group_key=episode.group_key,
        group_id=episode.group_id,
        resolved_by=episode.resolved_by,
    )


def episode_document(signal: Episode) -> Anomaly:
    """A new episode as the document to insert."""
    return Anomaly(
        episode_key=signal.episode_key,
        source=signal.source.value,
        fingerprint=signal.fingerprint,
        status=signal.status.value,
        starts_at=signal.starts_at,
        ends_at=signal.ends_at,
        alertname=signal.alertname,
        metric=signal.metric,
        value=signal.value,
        instance=signal.instance,
        severity=signal.severity.value,
        reason=signal.reason,
        labels=signal.labels,
        annotations=signal.annotations,
        generator_url=signal.generator_url,
        links=signal.links,
        values=signal.values,
        detector=signal.detector.model_dump() if signal.detector else None,
        incident_id=signal.incident_id,
        group_key=signal.group_key,
        group_id=signal.group_id,
        resolved_by=signal.resolved_by,
    )


def incident_state(incident: IncidentRecord) -> IncidentState:
    """What ingest needs of a stored incident to grow or resolve it."""
    return IncidentState(
        id=str(incident.id),
        key=incident.key,
        open_key=incident.open_key,
        status=_status(incident.status),
        severity=Severity.parse(incident.severity),
        alertnames=list(incident.alertnames),
        instances=list(incident.instances),
        alertname_count=incident.alertname_count,
        instance_count=incident.instance_count,
        firing_count=incident.firing_count,
    )


def incident_view(incident: IncidentRecord, episodes: Sequence[EpisodeRecord]) -> IncidentView:
    """An incident with its episodes (the caller decides how many to load)."""
    return IncidentView(
        id=str(incident.id),
        key=incident.key,
        source=_source(incident.source),
        status=_status(incident.status),
        severity=Severity.parse(incident.severity),
        title=incident.title,
        alertnames=list(incident.alertnames),
        instances=list(incident.instances),
        group_labels=dict(incident.group_labels),
        common_labels=dict(incident.common_labels),
        external_url=incident.external_url,
        started_at=aware(incident.started_at),
        resolved_at=aware(incident.resolved_at) if incident.resolved_at else None,
        signals=[episode_signal(e) for e in episodes],
    )


def _unit(value: float) -> float:
    return min(1.0, max(0.0, value))


def rca_analysis(rca: AnalysisRecord) -> Analysis:
    """A stored analysis as the domain type (confidences clamped to [0, 1])."""
    hypotheses = []
    for raw in rca.hypotheses:
        try:
            hypothesis = Hypothesis.model_validate(
                {**raw, "confidence": _unit(float(raw.get("confidence", 0.5)))}
            )
        except (ValidationError, TypeError, ValueError):
            continue
        hypotheses.append(hypothesis)
    return Analysis(
        summary=rca.summary,
        cause=rca.cause,
        fix=list(rca.fix),
        simplified=rca.simplified,
        confidence=_unit(rca.confidence),
        hypotheses=hypotheses,
        unknowns=list(rca.unknowns),
        provider=rca.provider,
        model=rca.model,
        prompt_version=rca.prompt_version,
        tokens_in=rca.tokens_in,
        tokens_out=rca.tokens_out,
        latency_ms=rca.latency_ms,
        cost_estimate=rca.cost_estimate,
        quality=rca.quality,
        dropped_hypotheses=rca.dropped_hypotheses,
        offline=rca.offline,
    )
