"""Domain types shared by every stage: pure pydantic, no I/O.

A *signal* is one alert episode as the pipeline sees it, whether it came from Alertmanager or
from the service's own outlier detector. An *incident* groups signals that get one analysis and
one notification thread. An *analysis* is what enrichment writes about an incident.
"""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum
from typing import Any

from pydantic import BaseModel, ConfigDict, Field


def shared(source: BaseModel, part: type[BaseModel]) -> dict[str, Any]:
    """`source`'s values of the fields `part` declares: a domain type and its stored record
    both extend `part`, so one turns into the other without the fields being listed again."""
    return {name: getattr(source, name) for name in part.model_fields}


class Source(StrEnum):
    ALERTMANAGER = "alertmanager"
    GRAFANA = "grafana"  # Grafana alerting's webhook contact point
    ONCALL = "oncall"  # a Grafana OnCall outgoing webhook (one alert per alert group)
    DETECTOR = "detector"
    RECEIVER = "receiver"  # the service's own signals (e.g. the alerting pipeline is down)


class Status(StrEnum):
    FIRING = "firing"
    RESOLVED = "resolved"


class Severity(StrEnum):
    """The seed's levels; Alertmanager's common names are mapped onto them."""

    CRITICAL = "critical"
    HIGH = "high"
    MEDIUM = "medium"
    LOW = "low"

    @property
    def rank(self) -> int:
        return _RANK[self]

    @classmethod
    def parse(cls, raw: str | None) -> Severity:
        """Map a free-text severity label to a level; unknown or missing → medium."""
        if not raw:
            return cls.MEDIUM
        return _ALIASES.get(raw.strip().lower(), cls.MEDIUM)


_RANK = {Severity.CRITICAL: 4, Severity.HIGH: 3, Severity.MEDIUM: 2, Severity.LOW: 1}
_ALIASES = {
    "critical": Severity.CRITICAL,
    "crit": Severity.CRITICAL,
    "page": Severity.CRITICAL,
    "emergency": Severity.CRITICAL,
    "high": Severity.HIGH,
    "error": Severity.HIGH,
    "major": Severity.HIGH,
    "medium": Severity.MEDIUM,
    "warning": Severity.MEDIUM,
    "warn": Severity.MEDIUM,
    "minor": Severity.MEDIUM,
    "low": Severity.LOW,
    "info": Severity.LOW,
    "informational": Severity.LOW,
    "none": Severity.LOW,
}


class DetectorInfo(BaseModel):
    """Why the outlier detector flagged a series: the score and the band it was judged against."""

    model_config = ConfigDict(frozen=True)

    method: str
    score: float
    threshold: float
    value: float
    baseline: float | None = None
    band_low: float | None = None
    band_high: float | None = None
    query: str | None = None
    target: str | None = None
    # the value expected at this time of day/week and that period (seasonal series only)
    expected: float | None = None
    period_seconds: float | None = None
    # first point of the flagged run (the episode's start)
    onset: str | None = None  # RFC 3339: stored detector evidence stays plain JSON
    # the seasonal profile judged against (value per phase bin of `season_step` seconds,
    # zero-mean): the evidence chart draws the expectation over time from it
    season_profile: list[float] | None = None
    season_step: float | None = None


class SignalFields(BaseModel):
    """What a signal says, typed alike in the pipeline (`Signal`) and in the store
    (`receiver.records.EpisodeRecord`): both take their fields from here."""

    fingerprint: str
    starts_at: datetime
    ends_at: datetime | None = None
    labels: dict[str, str] = Field(default_factory=dict)
    annotations: dict[str, str] = Field(default_factory=dict)
    generator_url: str = ""
    alertname: str = ""
    instance: str = ""
    metric: str = ""
    value: float | None = None
    reason: str = ""
    # links a sender adds besides generatorURL (Grafana: silence, dashboard, panel, image)
    links: dict[str, str] = Field(default_factory=dict)
    # the values a Grafana rule evaluated, by query refId ("B": 44.2, "C": 1)
    values: dict[str, float] = Field(default_factory=dict)


class Signal(SignalFields):
    """One alert episode, normalised. Identity: (source, fingerprint, starts_at)."""

    model_config = ConfigDict(frozen=True)

    source: Source
    status: Status
    severity: Severity = Severity.MEDIUM
    detector: DetectorInfo | None = None


class EpisodeKeys(BaseModel):
    """Where a stored episode belongs (shared by `Episode` and the store's record)."""

    episode_key: str
    incident_id: str = ""
    group_key: str = ""  # as the source shows it (Alertmanager's groupKey)
    group_id: str = ""  # the group it belongs to (`normalise.group_id`): source, receiver, groupKey
    resolved_by: str = ""  # alertmanager | detector | reconciler | superseded


class Episode(Signal, EpisodeKeys):
    """A stored episode: the signal it was made from, its identity and its incident."""

    id: str = ""
    incident_id: str  # required here: a stored episode always belongs to an incident

    def signal(self) -> Signal:
        """The signal alone (without the store's bookkeeping)."""
        return Signal.model_validate(self.model_dump(include=set(Signal.model_fields)))


# an incident keeps the first MAX_NAMES distinct alertnames and instances; its counts are exact
MAX_NAMES = 100


class IncidentState(BaseModel):
    """What ingest reads of an incident to grow or resolve it."""

    id: str
    key: str
    open_key: str
    status: Status
    severity: Severity
    alertnames: list[str] = Field(default_factory=list)
    instances: list[str] = Field(default_factory=list)
    alertname_count: int = 0
    instance_count: int = 0
    firing_count: int = 0


class IncidentView(BaseModel):
    """What enrichment and notification need to know about an incident."""

    id: str
    key: str
    source: Source
    status: Status
    severity: Severity
    title: str
    alertnames: list[str] = Field(default_factory=list)
    instances: list[str] = Field(default_factory=list)
    group_labels: dict[str, str] = Field(default_factory=dict)
    common_labels: dict[str, str] = Field(default_factory=dict)
    external_url: str = ""
    started_at: datetime
    resolved_at: datetime | None = None
    signals: list[Signal] = Field(default_factory=list)


class Hypothesis(BaseModel):
    claim: str
    evidence_ids: list[str] = Field(default_factory=list)
    confidence: float = Field(default=0.5, ge=0.0, le=1.0)


class AnalysisFields(BaseModel):
    """What an analysis says and what it cost, typed alike in the pipeline (`Analysis`) and in
    the store (`receiver.records.AnalysisRecord`): both take their fields from here."""

    summary: str
    cause: str
    fix: list[str] = Field(default_factory=list)
    simplified: str = ""
    unknowns: list[str] = Field(default_factory=list)
    provider: str = "offline"
    model: str = ""
    prompt_version: str = ""
    tokens_in: int = 0
    tokens_out: int = 0
    latency_ms: float = 0.0
    cost_estimate: float = 0.0
    quality: float = 0.0
    dropped_hypotheses: int = 0
    offline: bool = False


class Analysis(AnalysisFields):
    """A root-cause analysis of one incident (stored in the `rca` collection)."""

    confidence: float = Field(default=0.0, ge=0.0, le=1.0)
    hypotheses: list[Hypothesis] = Field(default_factory=list)
