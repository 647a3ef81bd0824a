"""What pairs and groups of candidates show that no single series does (RCA.md "saturation",
"load", "changes"). Pure numpy on candidates already timed; runs once before ranking.

- saturation: a gauge and its limit, found by name (`x` and `x_max`/`max_x`/`*_limit*`/
  `*_capacity*` with the same other words: `db_pool_connections` ↔ `db_pool_max_connections`,
  `process_open_fds` ↔ `process_max_fds`) or by a label value (`state="in_use"` ↔
  `state="max"`). The share of the limit approaching 1 makes the gauge a strong candidate.
- load share: an instance's request rate over its job's total; one instance taking much more
  than its normal share is an imbalance (a derived candidate). All instances rising together
  is a surge: the job's total becomes a candidate.
- rollout: the same new `*_info` label values on several instances of one job, one after the
  other, is one deploy; each of its changes ranks higher.

Boosts and notes are stored on the candidates; `timeline.rank` applies them every time it
scores, so ranking twice (after the recurrence check) gives the same result.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence
from datetime import UTC, datetime

import numpy as np

from receiver.detect.promql import label_matcher
from receiver.enrich.timeline import Candidate, FloatArray, departure, host_of

LIMIT_WORDS = frozenset({"max", "maximum", "limit", "limits", "capacity"})
LIMIT_VALUES = frozenset({"max", "maximum", "limit", "capacity"})
NEAR_LIMIT = 0.5  # from this share of the limit on, saturation raises the score
SATURATION_BOOST = 2.0  # at the limit
MIN_RISE = 0.2  # the share of the limit must have grown by this much since the baseline
MIN_STEM = 2  # words a limit's name shares with its gauge besides the limit word
IMBALANCE = 1.5  # an instance's share of the job's load, relative to its normal share
IMBALANCE_BOOST = 1.3
SURGE_SHARE = 2 / 3  # instances whose rate rose for the job's total to be a surge
ROLLOUT_BOOST = 1.3
_LOAD = re.compile(r"requests|http_server_requests|rpc_server|calls|messages_received", re.I)


def _clock(ts: float) -> str:
    return datetime.fromtimestamp(ts, UTC).strftime("%H:%M")


def _words(name: str) -> list[str]:
    return name.lower().split("_")


def _compatible(gauge: Mapping[str, str], limit: Mapping[str, str], skip: str = "") -> bool:
    """Labels both carry agree (except `skip`, the label telling use from limit apart)."""
    return all(gauge[k] == v for k, v in limit.items() if k in gauge and k != skip)


def limit_pairs(candidates: Sequence[Candidate]) -> list[tuple[Candidate, Candidate]]:
    """(gauge, its limit) pairs among the gauges."""
    gauges = [c for c in candidates if c.kind == "gauge"]
    limits = [c for c in gauges if LIMIT_WORDS & set(_words(c.metric))]
    pairs: list[tuple[Candidate, Candidate]] = []
    for lim in limits:
        stem = set(_words(lim.metric)) - LIMIT_WORDS
        if len(stem) < MIN_STEM:
            continue
        for c in gauges:
            words = set(_words(c.metric))
            if c is lim or LIMIT_WORDS & words or not stem <= words:
                continue
            if c.host == lim.host and _compatible(c.labels, lim.labels):
                pairs.append((c, lim))
    # the same metric with a label saying which is the limit: state="in_use" / state="max"
    for lim in gauges:
        for key, value in lim.labels.items():
            if value.lower() not in LIMIT_VALUES:
                continue
            for c in gauges:
                if (
                    c is not lim
                    and c.metric == lim.metric
                    and c.labels.get(key, "").lower() not in LIMIT_VALUES
                    and set(c.labels) == set(lim.labels)
                    and _compatible(c.labels, lim.labels, skip=key)
                ):
                    pairs.append((c, lim))
    return pairs


def _ratio(used: FloatArray, limit: FloatArray) -> FloatArray:
    with np.errstate(invalid="ignore", divide="ignore"):
        out: FloatArray = np.where(limit > 0, used / limit, np.nan)
    return out


def saturation(candidates: Sequence[Candidate], base_end: float, alert_at: float) -> None:
    """Raise gauges whose share of their limit rose towards 1 before the alert."""
    best: dict[int, tuple[float, str]] = {}
    for c, lim in limit_pairs(candidates):
        d = c.departure
        if d is None or d.onset is None or d.direction != "up":
            continue
        ratio = _ratio(c.values, lim.values)
        base = ratio[(c.timestamps < base_end) & np.isfinite(ratio)]
        now = ratio[(c.timestamps >= d.onset) & (c.timestamps <= alert_at) & np.isfinite(ratio)]
        if base.size == 0 or now.size == 0:
            continue
        level, normal = float(now.max()), float(np.median(base))
        if level < NEAR_LIMIT or level - normal < MIN_RISE:
            continue
        boost = 1.0 + (SATURATION_BOOST - 1.0) * min((level - NEAR_LIMIT) / (1 - NEAR_LIMIT), 1.0)
        note = (
            f"reached {level:.0%} of its limit {lim.metric} "
            f"({float(np.nanmax(lim.values)):.4g}); normally {normal:.0%}"
        )
        if boost > best.get(id(c), (0.0, ""))[0]:
            best[id(c)] = (boost, note)
    for c in candidates:
        if id(c) in best:
            boost, note = best[id(c)]
            c.boost *= boost
            c.role = "saturation"
            c.notes.append(note)


def _by_instance(members: Iterable[Candidate]) -> dict[str, FloatArray]:
    """Rate per instance, summed over the other labels (handler, code, …)."""
    out: dict[str, FloatArray] = {}
    for c in members:
        instance = c.labels.get("instance", "")
        if not instance:
            continue
        prev = out.get(instance)
        out[instance] = c.values if prev is None else np.nansum(np.vstack([prev, c.values]), 0)
    return out


def _selector(metric: str, labels: Mapping[str, str]) -> str:
    inner = ", ".join(label_matcher(k, v) for k, v in sorted(labels.items()))
    return f"{metric}{{{inner}}}"


def load(candidates: Sequence[Candidate], base_end: float, alert_at: float) -> list[Candidate]:
    """Derived candidates: an instance's share of its job's request rate, the job's total."""
    groups: dict[tuple[str, str], list[Candidate]] = {}
    for c in candidates:
        if c.kind == "counter" and _LOAD.search(c.metric) and c.labels.get("job"):
            groups.setdefault((c.metric, c.labels["job"]), []).append(c)
    derived: list[Candidate] = []
    for (metric, job), members in sorted(groups.items()):
        rates = _by_instance(members)
        if len(rates) < 2:
            continue
        ts = members[0].timestamps
        stack = np.vstack(list(rates.values()))
        # a missing instance (restarting) would look like a shift of load onto the others
        total = np.where(np.isfinite(stack).all(axis=0), stack.sum(axis=0), np.nan)
        job_sel = _selector(metric, {"job": job})
        risen = 0
        for instance, rate in sorted(rates.items()):
            moved = departure(ts, rate, base_end, alert_at)
            risen += moved.direction == "up"
            share = _ratio(rate, total)
            d = departure(ts, share, base_end, alert_at)
            if d.onset is None or d.direction != "up" or not d.baseline or d.value is None:
                continue
            if d.value < IMBALANCE * d.baseline:
                continue  # daily shapes that peak at different hours shift shares a little
            labels = {"instance": instance, "job": job}
            inst_sel = _selector(metric, labels)
            cand = Candidate(
                metric=metric,
                labels=labels,
                query=f"sum(rate({inst_sel}[5m])) / sum(rate({job_sel}[5m]))",
                role="imbalance",
                timestamps=ts,
                values=share,
                kind="share",
                host=host_of(instance),
                departure=d,
                boost=IMBALANCE_BOOST,
                notes=[
                    f"{instance} took {d.value:.0%} of {job}'s requests, normally "
                    f"{d.baseline:.0%} (1/{len(rates)} = {1 / len(rates):.0%})"
                ],
            )
            derived.append(cand)
        d = departure(ts, total, base_end, alert_at)
        if d.onset is not None and d.direction == "up" and risen >= SURGE_SHARE * len(rates):
            derived.append(
                Candidate(
                    metric=metric,
                    labels={"job": job},
                    query=f"sum(rate({job_sel}[5m]))",
                    role="load",
                    timestamps=ts,
                    values=total,
                    kind="total",
                    departure=d,
                    boost=IMBALANCE_BOOST,
                    notes=[f"{risen} of {len(rates)} instances of {job} rose together (a surge)"],
                )
            )
    return derived


def rollouts(candidates: Sequence[Candidate], alert_at: float) -> None:
    """Changes to the same new label values on several instances of one job are one rollout."""
    groups: dict[tuple[str, str, tuple[tuple[str, str], ...]], list[Candidate]] = {}
    for c in candidates:
        if not c.change:
            continue
        new = tuple(sorted((k, v) for k, v in c.labels.items() if k != "instance"))
        groups.setdefault((c.metric, c.labels.get("job", ""), new), []).append(c)
    for (_, job, _), members in groups.items():
        firsts = sorted(_first_seen(c) for c in members)
        if len(members) < 2:
            continue
        note = (
            f"rolled out to {len(members)} instances of {job or 'the job'} one after the other "
            f"from {_clock(firsts[0])} to {_clock(firsts[-1])} UTC"
        )
        for c in members:
            if c.departure is not None and c.departure.onset is not None:
                c.boost *= ROLLOUT_BOOST
                c.notes.append(note)


def _first_seen(c: Candidate) -> float:
    idx = np.nonzero(np.isfinite(c.values))[0]
    return float(c.timestamps[idx[0]]) if idx.size else float("inf")


def relate(candidates: list[Candidate], base_end: float, alert_at: float) -> list[Candidate]:
    """Apply the pair and group rules; returns the candidates plus the derived ones."""
    saturation(candidates, base_end, alert_at)
    rollouts(candidates, alert_at)
    return [*candidates, *load(candidates, base_end, alert_at)]
