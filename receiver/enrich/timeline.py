"""When did each candidate series leave its normal, and which departure most plausibly caused
the alert? Pure numpy on series aligned to one step grid; no I/O.

Per series: a robust baseline (median and MAD of the first part of the window, a floor on the
scale so flat series do not explode, a linear trend only when the baseline itself clearly
slopes), then the departure that is still under way at the alert: walk back from the alert's
time while the series stays out of the band (short gaps allowed), require a few consecutive
points, and move the onset back to where the excursion began. Size is in baseline-noise units.

Ranking (RCA.md): before or at the alert's own onset, strong, persistent, scope match (one
instance alerting → a cause on that host; the whole job → a shared cause), changes, restarts
and dependencies high, recurring patterns and the alert's own symptoms low, and the earliest
element of a chain (a leak before the restart it causes) first.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass

import numpy as np

from receiver.enrich.departures import (
    CHANGE_SIZE,
    MAX_SIZE,
    SUSTAIN,
    Candidate,
    Departure,
    FloatArray,
    K,
    departure,
    event_departure,
    host_of,
    restart_departure,
)

STRONG_SIZE = 4 * K  # an earlier departure this large on the same host is upstream of later ones
LEAD_BONUS = 0.2  # up to this much more for a departure 30 min before the alert's own
CENSORED = 600.0  # a departure seen within this of the baseline's end began at an unknown time
CHAIN_WINDOW = 1800.0  # seconds after a change, restart or earlier rise that its effects follow
STRONG = 1.0  # a ranked score at or above this is a candidate worth naming

_SHARED_ROLE = {
    "change": 1.6,
    "dependency": 1.5,
    "load": 1.4,
    "imbalance": 0.8,
    "restart": 1.1,
    "saturation": 1.0,
    "resource": 0.9,
    "other": 0.8,
    "symptom": 0.3,
}
_SINGLE_ROLE = {
    "change": 1.5,
    "restart": 1.3,
    "imbalance": 1.3,
    "resource": 1.2,
    "saturation": 1.2,
    "dependency": 1.2,
    "load": 0.8,
    "other": 0.8,
    "symptom": 0.3,
}

# Callers import these from here; they live in `departures` since the split.
__all__ = [
    "CHANGE_SIZE",
    "Candidate",
    "Departure",
    "FloatArray",
    "Scope",
    "as_data",
    "departure",
    "event_departure",
    "host_of",
    "hosts_of",
    "rank",
    "recurring",
    "restart_departure",
    "symptom_onset",
]


@dataclass(frozen=True)
class Scope:
    """What is alerting: hosts and jobs, and whether the whole job alerts (shared cause)."""

    alert_at: float
    step: float
    hosts: frozenset[str]
    jobs: frozenset[str]
    shared: bool
    symptoms: frozenset[str]  # base metric names of the alert's expression
    search_start: float = 0.0  # where departures can first be seen (the baseline's end)


def symptom_onset(candidates: Iterable[Candidate], scope: Scope) -> float:
    """The alert's own onset: its symptom series' earliest recent strong departure, else
    startsAt (a denominator drifting with the time of day is not the alert moving)."""
    onsets = [
        c.departure.onset
        for c in candidates
        if c.role == "symptom"
        and c.departure is not None
        and c.departure.onset is not None
        and c.departure.size >= 2 * K
        and c.departure.onset >= scope.alert_at - 1800
    ]
    return min([*onsets, scope.alert_at])


def _spread(candidates: Sequence[Candidate]) -> dict[tuple[str, str], set[str]]:
    """(metric, direction) → hosts on which it departed: a shared move shows on several."""
    moved: dict[tuple[str, str], set[str]] = {}
    for c in candidates:
        d = c.departure
        if d is not None and d.onset is not None and c.host:
            moved.setdefault((c.metric, d.direction), set()).add(c.host)
    return moved


def _is_event(c: Candidate) -> bool:
    """A change or a restart: one moment, not a level in noise units."""
    return (
        c.role in ("change", "restart")
        and c.departure is not None
        and (c.departure.direction in ("changed", "step"))
    )


def rank(candidates: list[Candidate], scope: Scope, job_hosts: set[str]) -> list[Candidate]:
    """Score every candidate with an onset, best first (rank 1…); the rest are dropped."""
    live = [c for c in candidates if c.departure is not None and c.departure.onset is not None]
    alert_onset = symptom_onset(live, scope)
    moved = _spread(live)
    weights = _SHARED_ROLE if scope.shared else _SINGLE_ROLE
    for c in live:
        d = c.departure
        assert d is not None
        assert d.onset is not None
        why: list[str] = []
        # a new version or a restart explains much and is cheap to verify: as strong as the
        # strongest departure (RCA.md "changes and restarts high")
        size = MAX_SIZE if _is_event(c) else min(d.size, MAX_SIZE)
        score = math.log1p(size) * max(d.persistence, 0.1)
        score *= weights.get(c.role, 0.8)
        # a change is seen at the first scrape after its restart: allow for the gap
        slack = (8 if _is_event(c) else 2) * scope.step
        if d.onset <= scope.search_start + CENSORED:
            score *= 0.6
            why.append("already out of its band when the search began (a drift, or older)")
        if d.onset > scope.alert_at + scope.step:
            score *= 0.1
            why.append("began after the alert fired")
        elif d.onset > alert_onset + slack:
            score *= 0.5
            why.append("began after the alert's own series moved")
        else:
            lead = alert_onset - d.onset
            score *= 1.0 + LEAD_BONUS * min(max(lead, 0.0) / 1800.0, 1.0)
        if c.dependency:
            why.append("a dependency of the alerting job")
        elif scope.shared:
            hosts = moved.get((c.metric, d.direction), set())
            if job_hosts and len(hosts & job_hosts) >= max(2, math.ceil(2 * len(job_hosts) / 3)):
                score *= 1.3
                why.append(f"moved on {len(hosts & job_hosts)} of {len(job_hosts)} instances")
            elif c.host and c.role not in ("change", "load"):
                score *= 0.6
                why.append("only one instance moved while the whole job alerts")
        elif c.host:
            if c.host in scope.hosts:
                score *= 1.3
                why.append("on the alerting instance")
            else:
                score *= 0.4
                why.append("on another instance than the alerting one")
        score *= c.boost
        why.extend(c.notes)
        if c.recurring:
            score *= 0.2
            why.append("the same departure happened at this time on an earlier day")
        if c.role == "symptom":
            why.append("part of the alert's own expression (a symptom)")
        c.score, c.why = score, why
    _chain(live, scope)
    live.sort(key=lambda c: (-c.score, c.departure.onset if c.departure else 0.0, c.query))
    for i, c in enumerate(live, 1):
        c.rank = i
    return live


def _upstream(c: Candidate, earlier: Candidate, scope: Scope) -> bool:
    """Is `earlier` an element before `c` in a chain (same host, or one dependency)?"""
    d, e = c.departure, earlier.departure
    if earlier is c or d is None or e is None or d.onset is None or e.onset is None:
        return False
    if earlier.recurring:
        return False
    if (earlier.host != c.host or not c.host) and not (c.dependency and earlier.dependency):
        return False
    if _is_event(earlier):
        # what moves on a host after its version changed or its process restarted follows it
        return (
            not _is_event(c)
            and e.onset <= d.onset + 2 * scope.step
            and d.onset - e.onset <= CHAIN_WINDOW
        )
    if c.dependency and earlier.dependency and not _is_event(c):
        # the trouble of a dependency is one chain whatever host shows it (lock waits in the
        # callee → its latency → the callers' timeouts): its earliest strong element leads
        return (
            e.onset <= d.onset - 3 * scope.step
            and d.onset - e.onset <= CHAIN_WINDOW
            and e.size >= STRONG_SIZE
            and e.persistence >= 0.8
        )
    if earlier.role not in ("resource", "saturation", "dependency"):
        return False
    if e.onset > d.onset - 3 * scope.step:
        return False
    if c.role in ("restart", "symptom"):
        return e.size >= K  # leak → memory at limit → restart → instance down, however slow
    if d.onset - e.onset > CHAIN_WINDOW:
        return False
    # two departures of one host: the one that began clearly earlier, strongly and steadily,
    # is upstream (heap growth → GC time → latency)
    return (
        c.role in ("resource", "saturation", "other")
        and e.size >= STRONG_SIZE
        and e.persistence >= 0.8
        and earlier.score >= 0.5 * c.score
    )


def _chain(live: Sequence[Candidate], scope: Scope) -> None:
    """A departure that follows an earlier element on the same host is its consequence: the
    earlier element ranks first (RCA.md "prefer the earliest upstream element of a chain")."""
    before = {id(c): c.score for c in live}
    for c in live:
        for earlier in live:
            if not _upstream(c, earlier, scope):
                continue
            # below the element it follows, whatever their sizes say
            c.score = min(before[id(c)] * 0.5, before[id(earlier)] * 0.95)
            c.why.append(f"follows {earlier.metric}, which moved first")
            break


def recurring(
    today: Departure,
    ts_before: FloatArray,
    values_before: FloatArray,
    tolerance: float,
) -> bool:
    """Did the series, on an earlier day, leave today's band the same way at the same clock
    time (`ts_before` already shifted to today's clock), while being normal just before?"""
    if today.onset is None or today.baseline is None or today.scale is None:
        return False
    sign = 1.0 if today.direction in ("up", "step", "changed") else -1.0
    z = (values_before - today.baseline) / today.scale * sign
    around = (ts_before >= today.onset - tolerance) & (ts_before <= today.onset + 3 * tolerance)
    before = (ts_before < today.onset - tolerance) & (ts_before >= today.onset - 6 * tolerance)
    near, prior = z[around & np.isfinite(z)], z[before & np.isfinite(z)]
    if near.size < SUSTAIN or prior.size < SUSTAIN:
        return False
    return bool((near > K).mean() >= 0.5 and (prior > K).mean() < 0.5)


def as_data(c: Candidate) -> dict[str, object]:
    """The evidence `data` of a candidate (the convention the scenario suite reads)."""
    d = c.departure or Departure(None, "", 0.0, 0.0, None, None, None)
    return {
        "metric": c.metric,
        "labels": dict(c.labels),
        "query": c.query,
        "onset": d.onset,
        "direction": d.direction,
        "size": round(d.size, 2),
        "recurring": c.recurring,
        "score": round(c.score, 3),
        "rank": c.rank,
        "role": c.role,
        "strong": c.score >= STRONG,
        "baseline": d.baseline,
        "value": d.value,
        "persistence": round(d.persistence, 2),
        "host": c.host,
        "dependency": c.dependency,
        "change": dict(c.change),
        "why": list(c.why),
    }


def hosts_of(labels: Iterable[Mapping[str, str]]) -> set[str]:
    return {host_of(lab["instance"]) for lab in labels if lab.get("instance")}
