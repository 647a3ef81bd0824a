"""Documents → domain types: an incident with its episodes as `IncidentView`, an `Rca` as
`Analysis`. Pure conversions; the stages that render or analyse incidents start from these."""

from __future__ import annotations

import logging
from collections.abc import Sequence

from pydantic import ValidationError

from receiver.domain import (
    Analysis,
    DetectorInfo,
    Hypothesis,
    IncidentView,
    Severity,
    Signal,
    Source,
    Status,
)
from receiver.store.documents import Anomaly, Incident, Rca
from receiver.timeutil import aware

log = logging.getLogger(__name__)


def _source(raw: str) -> Source:
    try:
        return Source(raw)
    except ValueError:
        return Source.ALERTMANAGER


def _status(raw: str) -> Status:
    return Status.RESOLVED if raw == Status.RESOLVED.value else Status.FIRING


def episode_signal(episode: Anomaly) -> Signal:
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


def incident_view(incident: Incident, episodes: Sequence[Anomaly]) -> IncidentView:
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


def rca_analysis(rca: Rca) -> Analysis:
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
