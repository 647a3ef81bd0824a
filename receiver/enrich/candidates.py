"""Candidate discovery: from an alert's labels, the series that could explain it.

Where a cause hides (RCA.md): every metric of the alerting instance's host, the alerting job's
series on all its instances, the jobs its dependency labels name, build/info metrics, process
start times, request rates and saturation series. Found with `/api/v1/series` (one call per set
of scopes), then fetched raw in a few batched `query_range` calls (`{__name__=~"a|b", scope}`)
so one query covers a metric on every instance; counters become rates, `_sum`/`_count` pairs
become mean values, and per-CPU series are summed, all on the client. Bounded by a query
budget, a series cap and the client's per-query timeout. Label values from alerts enter PromQL
only as quoted strings (regexes are escaped first).
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np

from receiver.detect.prometheus import PrometheusAPI, PrometheusError, RangeResult, to_matrix
from receiver.detect.promql import promql_string
from receiver.enrich.families import (
    AGGREGATED_AWAY,
    SKIP_NAMES,
    Family,
    effect,
    families,
    host_matcher,
    query_of,
    rate,
    role_of,
    selector,
    series_key,
)
from receiver.enrich.timeline import Candidate, FloatArray, host_of

# Labels on a caller's series that name the callee (RCA.md "dependencies").
DEPENDENCY_LABELS = (
    "upstream",
    "peer",
    "target",
    "backend",
    "destination",
    "db",
    "database",
    "service",
    "dependency",
    "downstream",
    "remote",
    "callee",
)
MAX_SERIES = 2_500  # label sets fetched per incident
MAX_PER_QUERY = 600  # series per batched range query
MAX_REGEX = 2_500  # characters of one __name__ regex
MAX_DEPENDENCIES = 4

# Callers import these from here; they live in `families` since the split.
__all__ = [
    "AGGREGATED_AWAY",
    "MAX_PER_QUERY",
    "Discovery",
    "Family",
    "Finder",
    "build",
    "effect",
    "expression_metrics",
    "families",
    "query_of",
    "rate",
    "selector",
]


@dataclass
class Discovery:
    """What was looked at, for the evidence and the README's "what was not looked at"."""

    scopes: list[str] = field(default_factory=list)
    dependencies: list[str] = field(default_factory=list)
    series_found: int = 0
    series_fetched: int = 0
    metrics: int = 0
    capped: bool = False
    errors: list[str] = field(default_factory=list)


class Finder:
    """Discovers and fetches the candidate series of one incident within a query budget."""

    def __init__(
        self,
        prometheus: PrometheusAPI,
        *,
        query_timeout: float,
        budget: int,
        max_series: int = MAX_SERIES,
    ) -> None:
        self.prometheus = prometheus
        self.query_timeout = query_timeout
        self.budget = budget
        self.max_series = max_series
        self.queries = 0
        self.info = Discovery()
        self.wide_jobs: set[str] = set()

    def _spend(self, n: int = 1) -> bool:
        if self.queries + n > self.budget:
            return False
        self.queries += n
        return True

    async def _series(
        self, matchers: Sequence[str], start: float, end: float
    ) -> list[dict[str, str]]:
        if not matchers or not self._spend():
            return []
        try:
            return await asyncio.wait_for(
                self.prometheus.series(list(matchers), start, end), self.query_timeout + 1
            )
        except (PrometheusError, TimeoutError) as err:
            self.info.errors.append(f"series: {type(err).__name__}")
            return []

    async def discover(
        self,
        alert_labels: Sequence[Mapping[str, str]],
        start: float,
        end: float,
    ) -> tuple[list[dict[str, str]], set[str], set[str]]:
        """Label sets to fetch, the job's hosts, and which label sets belong to a dependency."""
        own: list[str] = []
        jobs = sorted({lab["job"] for lab in alert_labels if lab.get("job")})
        instances = sorted({lab["instance"] for lab in alert_labels if lab.get("instance")})
        for instance in instances[:3]:
            own.append(selector([host_matcher(instance)]))
        for job in jobs[:2]:
            own.append(selector([f"job={promql_string(job)}"]))
        self.info.scopes = own
        found = await self._series(own, start, end)
        job_hosts = {
            host_of(s["instance"]) for s in found if s.get("job") in jobs and s.get("instance")
        }
        names_self = set(jobs) | {lab.get("service", "") for lab in alert_labels} - {""}
        deps: list[str] = []
        for labels in [*alert_labels, *found]:
            for key in DEPENDENCY_LABELS:
                value = labels.get(key, "")
                if key == "service" and labels in alert_labels:
                    continue  # the alert's own service label names itself
                if value and value not in names_self and value not in deps:
                    deps.append(value)
        deps = deps[:MAX_DEPENDENCIES]
        self.info.dependencies = deps
        dep_matchers = [selector([f"job={promql_string(d)}"]) for d in deps]
        dep_matchers += [selector([host_matcher(d)]) for d in deps if re.search(r"[a-z]", d)]
        dep_found = await self._series(dep_matchers, start, end) if deps else []
        dep_keys = {series_key(s) for s in dep_found}
        # the caller's own series naming a dependency are dependency evidence too
        dep_keys |= {
            series_key(s) for s in found if any(s.get(k) in deps for k in DEPENDENCY_LABELS)
        }
        merged: dict[tuple[tuple[str, str], ...], dict[str, str]] = {}
        for s in [*found, *dep_found]:
            name = s.get("__name__", "")
            if not name or SKIP_NAMES.search(name):
                continue
            merged.setdefault((*series_key(s), ("__name__", name)), s)
        self.info.series_found = len(merged)
        chosen = list(merged.values())
        if len(chosen) > self.max_series:
            self.info.capped = True
            chosen = _cap(chosen, self.max_series, {host_of(i) for i in instances})
        self.info.series_fetched = len(chosen)
        self.wide_jobs = set(jobs) | {s["job"] for s in dep_found if s.get("job") in deps}
        return chosen, job_hosts, {repr(series_key(s)) for s in chosen if series_key(s) in dep_keys}

    async def fetch(
        self, chosen: Sequence[Mapping[str, str]], start: float, end: float, step: float
    ) -> list[RangeResult]:
        """Batched raw range queries: one per (scope, chunk of metric names)."""
        # one query per job of the alert or a dependency covers every instance of it; other
        # jobs (an exporter on the alerting host) are asked for that instance only
        by_job: dict[str, dict[str, int]] = {}
        for s in chosen:
            matchers = [f"job={promql_string(s.get('job', ''))}"]
            if s.get("job") not in self.wide_jobs:
                matchers.append(f"instance={promql_string(s.get('instance', ''))}")
            names = by_job.setdefault(selector(matchers), {})
            names[s["__name__"]] = names.get(s["__name__"], 0) + 1
        queries: list[str] = []
        for job, names in sorted(by_job.items()):
            chunk: list[str] = []
            count = 0
            for name, n in sorted(names.items()):
                if chunk and (
                    count + n > MAX_PER_QUERY or sum(len(c) + 1 for c in chunk) > MAX_REGEX
                ):
                    queries.append(_batch(chunk, job))
                    chunk, count = [], 0
                chunk.append(name)
                count += n
            if chunk:
                queries.append(_batch(chunk, job))
        allowed = max(0, self.budget - self.queries)
        if len(queries) > allowed:
            self.info.capped = True
            queries = queries[:allowed]
        self.queries += len(queries)
        answers = await asyncio.gather(
            *(
                self.prometheus.query_range(q, start, end, step, query_timeout=self.query_timeout)
                for q in queries
            ),
            return_exceptions=True,
        )
        results: list[RangeResult] = []
        for answer in answers:
            if isinstance(answer, RangeResult):
                results.append(answer)
            elif isinstance(answer, PrometheusError | TimeoutError):
                self.info.errors.append(f"range: {type(answer).__name__}")
            else:
                raise answer
        return results


def _batch(names: Sequence[str], job_scope: str) -> str:
    inner = job_scope[1:-1]
    pattern = "|".join(names)  # metric names are [a-zA-Z0-9_:], nothing to escape
    return "{" + f"__name__=~{promql_string(pattern)}, {inner}" + "}"


def _cap(chosen: list[dict[str, str]], limit: int, alert_hosts: set[str]) -> list[dict[str, str]]:
    """Keep the alerting hosts' series first, then the metrics with the fewest series."""
    per_name: dict[str, int] = {}
    for s in chosen:
        per_name[s["__name__"]] = per_name.get(s["__name__"], 0) + 1
    chosen.sort(
        key=lambda s: (
            host_of(s.get("instance", "")) not in alert_hosts,
            per_name[s["__name__"]],
            s["__name__"],
        )
    )
    return chosen[:limit]


def build(
    results: Sequence[RangeResult],
    dependency_keys: set[str],
    symptoms: set[str],
    alert_scope_jobs: set[str],
    alert_hosts: set[str],
) -> tuple[FloatArray, list[Candidate]]:
    """Aligned candidates (one per series, counters as rates, per-CPU series summed)."""
    if not results:
        return np.zeros(0), []
    grid_source = max(results, key=lambda r: r.end - r.start)
    step = grid_source.step
    grid = to_matrix(RangeResult((), grid_source.start, grid_source.end, step)).timestamps
    rows: dict[str, list[tuple[dict[str, str], FloatArray]]] = {}
    for result in results:
        matrix = to_matrix(RangeResult(result.series, grid_source.start, grid_source.end, step))
        for labels, values in zip(matrix.labels, matrix.values, strict=True):
            name = labels.get("__name__", "")
            rows.setdefault(name, []).append(({k: v for k, v in labels.items()}, values))
    candidates: list[Candidate] = []
    for family in families(rows):
        series = [(lab, vals) for raw in family.raw for lab, vals in rows.get(raw, [])]
        if family.kind == "mean":
            candidates += _means(
                family, rows, step, grid, dependency_keys, symptoms, alert_scope_jobs, alert_hosts
            )
            continue
        groups: dict[tuple[tuple[str, str], ...], list[tuple[dict[str, str], FloatArray]]] = {}
        for lab, vals in series:
            if family.kind == "counter":
                vals = rate(vals, step)
            kept = {k: v for k, v in lab.items() if k != "__name__" and k not in AGGREGATED_AWAY}
            groups.setdefault(tuple(sorted(kept.items())), []).append((lab, vals))
        for key, members in groups.items():
            labels = dict(key)
            summed = len(members) > 1 or any(a in members[0][0] for a in AGGREGATED_AWAY)
            stack = np.vstack([m[1] for m in members])
            all_nan = ~np.isfinite(stack).any(axis=0)
            values = np.where(all_nan, np.nan, np.nansum(stack, axis=0)) if summed else stack[0]
            candidates.append(
                _candidate(
                    family,
                    labels,
                    values,
                    grid,
                    summed,
                    dependency_keys,
                    symptoms,
                    alert_scope_jobs,
                    alert_hosts,
                    members[0][0],
                )
            )
    return grid, candidates


def _means(
    family: Family,
    rows: Mapping[str, list[tuple[dict[str, str], FloatArray]]],
    step: float,
    grid: FloatArray,
    dependency_keys: set[str],
    symptoms: set[str],
    alert_scope_jobs: set[str],
    alert_hosts: set[str],
) -> list[Candidate]:
    sums = {series_key(lab): vals for lab, vals in rows.get(family.name + "_sum", [])}
    out: list[Candidate] = []
    for lab, count in rows.get(family.name + "_count", []):
        total = sums.get(series_key(lab))
        if total is None:
            continue
        dsum, dcount = rate(total, step), rate(count, step)
        with np.errstate(invalid="ignore", divide="ignore"):
            mean = np.where(dcount > 0, dsum / dcount, np.nan)
        labels = {k: v for k, v in lab.items() if k != "__name__"}
        out.append(
            _candidate(
                family,
                labels,
                mean,
                grid,
                False,
                dependency_keys,
                symptoms,
                alert_scope_jobs,
                alert_hosts,
                lab,
            )
        )
    return out


def _candidate(
    family: Family,
    labels: dict[str, str],
    values: FloatArray,
    grid: FloatArray,
    summed: bool,
    dependency_keys: set[str],
    symptoms: set[str],
    alert_scope_jobs: set[str],
    alert_hosts: set[str],
    raw_labels: Mapping[str, str],
) -> Candidate:
    dependency = repr(series_key(raw_labels)) in dependency_keys
    host = host_of(labels.get("instance", ""))
    in_alert_scope = labels.get("job") in alert_scope_jobs or (host and host in alert_hosts)
    base = re.sub(r"_(bucket|sum|count)$", "", family.name)
    symptom = (
        bool(in_alert_scope)
        and not dependency
        and (family.name in symptoms or base in symptoms or effect(family.name, labels))
    )
    return Candidate(
        metric=family.name,
        labels=labels,
        query=query_of(family, labels, summed),
        role=role_of(family, labels, dependency, symptom),
        timestamps=grid,
        values=np.asarray(values, dtype=np.float64),
        kind=family.kind,
        host=host,
        dependency=dependency,
    )


_IDENT = re.compile(r"[a-zA-Z_:][a-zA-Z0-9_:]*")
_NOT_METRICS = {
    "by", "without", "on", "ignoring", "group_left", "group_right", "and", "or", "unless",
    "bool", "offset", "inf", "nan",
}  # fmt: skip


def expression_metrics(expr: str) -> set[str]:
    """Base metric names an alert expression reads (its symptoms): `x_bucket` → `x` too."""
    text = re.sub(r'"(?:[^"\\]|\\.)*"|\'(?:[^\'\\]|\\.)*\'', '""', expr)
    text = re.sub(r"\{[^{}]*\}|\[[^\]]*\]", " ", text)
    text = re.sub(r"\b(by|without|on|ignoring|group_left|group_right)\s*\([^()]*\)", " ", text)
    names: set[str] = set()
    for match in _IDENT.finditer(text):
        word = match.group(0)
        rest = text[match.end() :].lstrip()
        if rest.startswith("(") or word.lower() in _NOT_METRICS or word[0].isdigit():
            continue
        names.add(word)
        names.add(re.sub(r"_(bucket|sum|count)$", "", word))
    return names
