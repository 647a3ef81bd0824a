"""What one analysis run is kept as: the signature that decides when an incident is analysed
again, the hash that lets an unchanged evidence bundle reuse a stored answer, the stored analysis
record built from a result, and a resolved incident as a past one for the prompt. Used by
the enrichment `worker`."""

from __future__ import annotations

import contextlib
import hashlib
import json
from collections.abc import Iterator, Sequence
from dataclasses import dataclass

from receiver.domain import Analysis, AnalysisFields, IncidentView, shared
from receiver.enrich.context import PastIncident
from receiver.enrich.evidence import EvidenceBundle, primary_signal
from receiver.enrich.llm import LLMProvider
from receiver.enrich.prompt import PROMPT_VERSION
from receiver.enrich.tracing import AnalysisTrace, Tracer
from receiver.records import AnalysisRecord, EpisodeRecord, IncidentRecord


def signature(incident: IncidentRecord) -> str:
    """What an analysis covers: a digest of the sorted alertnames and instances.

    The incident is analysed again only when this changes (the processor sets
    `needs_analysis` when either list grows), never for Alertmanager's repeat notifications.
    """
    text = "\n".join(sorted(incident.alertnames)) + "\n--\n" + "\n".join(sorted(incident.instances))
    if incident.alertname_count > len(incident.alertnames) or incident.instance_count > len(
        incident.instances
    ):  # the lists are capped: growth past the cap shows only in the counts
        text += f"\n--\n{incident.alertname_count}/{incident.instance_count}"
    return hashlib.sha256(text.encode()).hexdigest()[:24]


def evidence_hash(evidence: EvidenceBundle, provider: LLMProvider) -> str:
    payload = json.dumps(
        [PROMPT_VERSION, provider.name, provider.model, evidence.for_prompt()], sort_keys=True
    )
    return hashlib.sha256(payload.encode()).hexdigest()


class RecordingTracer:
    """Wraps the app's tracer for one analysis to learn the trace id it got."""

    def __init__(self, inner: Tracer) -> None:
        self.inner = inner
        self.trace_id = ""

    @contextlib.contextmanager
    def analysis(
        self, incident: IncidentView, *, prompt_version: str, evidence_ids: list[str]
    ) -> Iterator[AnalysisTrace]:
        with self.inner.analysis(
            incident, prompt_version=prompt_version, evidence_ids=evidence_ids
        ) as trace:
            self.trace_id = trace.trace_id
            yield trace

    def flush(self) -> None:
        self.inner.flush()

    def shutdown(self) -> None:
        self.inner.shutdown()


@dataclass
class AnalysisResult:
    analysis: Analysis
    outcome: str  # model | fallback | offline | budget | cached | timeout
    trace_id: str = ""
    evidence_hash: str = ""
    cached: AnalysisRecord | None = None


def primary_episode(view: IncidentView, episodes: Sequence[EpisodeRecord]) -> EpisodeRecord | None:
    primary = primary_signal(view)
    if primary is None:
        return None
    return next(
        (
            e
            for e in episodes
            if e.fingerprint == primary.fingerprint and e.source == primary.source.value
        ),
        None,
    )


def analysis_record(
    incident: IncidentRecord,
    view: IncidentView,
    sig: str,
    evidence: EvidenceBundle,
    result: AnalysisResult,
    episode: EpisodeRecord | None = None,
    seconds: float = 0.0,
) -> AnalysisRecord:
    analysis = result.analysis
    primary = primary_signal(view)
    return AnalysisRecord(
        incident_id=str(incident.id),
        incident_key=incident.key,
        signature=sig,
        alertname=primary.alertname if primary else "",
        instance=primary.instance if primary else "",
        severity=incident.severity,
        **shared(analysis, AnalysisFields),
        confidence=analysis.confidence,
        hypotheses=[h.model_dump(mode="json") for h in analysis.hypotheses],
        evidence=[item.model_dump(mode="json") for item in evidence.items],
        trace_id=result.trace_id,
        evidence_hash=result.evidence_hash,
        evidence_queries=evidence.queries,
        evidence_seconds=evidence.seconds,
        anomaly_id=str(episode.id) if episode is not None else "",
        metric=primary.metric if primary else "",
        processing_seconds=round(seconds, 3),
    )


def past_incident(incident: IncidentRecord, rca: AnalysisRecord | None) -> PastIncident:
    labels = {**incident.common_labels, **incident.group_labels}
    return PastIncident(
        id=str(incident.id),
        key=incident.key,
        title=incident.title,
        started_at=incident.started_at,
        resolved_at=incident.resolved_at,
        labels=labels,
        instances=list(incident.instances),
        summary=rca.summary if rca else "",
        cause=rca.cause if rca else "",
        offline=rca.offline if rca else True,
    )
