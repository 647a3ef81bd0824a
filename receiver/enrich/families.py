"""Metric families of candidate series: which base metric a name belongs to, how to read it
(gauge, counter rate, `_sum`/`_count` mean, info, start or event time), what role it plays in
a root cause, and the PromQL selectors that fetch it (label values enter only as quoted
strings; regexes are escaped first). Pure; no I/O. Used by `candidates`."""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

import numpy as np

from receiver.detect.promql import label_matcher, promql_string
from receiver.enrich.timeline import FloatArray, host_of

AGGREGATED_AWAY = ("cpu",)  # per-CPU series are summed: the host's total is what moves
RATE_WINDOW = 120.0  # seconds a client-side rate averages over


SKIP_NAMES = re.compile(r"(_bucket|_created)$|^(ALERTS|ALERTS_FOR_STATE|scrape_\w+)$|:")
_RE2_SPECIAL = re.compile(r"([\\.+*?()|\[\]{}^$])")
_SATURATION = re.compile(
    r"pool|connections|conns|queue|backlog|threads|in_?use|in_?flight|waiting|saturat|"
    r"pending|active_requests",
    re.IGNORECASE,
)
_RESOURCE = re.compile(
    r"^(node_|process_|go_|jvm_|container_|python_|nodejs_|dotnet_|runtime_)|memory|heap|"
    r"cpu|disk|filesystem|fds|gc_",
    re.IGNORECASE,
)
# gauges holding the unix time of the last time something happened (a config reload, a boot)
_EVENT_TIME = re.compile(r"_(timestamp|time)_seconds$")
_LOAD = re.compile(r"requests|http_server_requests|rpc_server|calls|messages_received", re.I)


def escape_regex(value: str) -> str:
    """A literal for a PromQL (RE2) regex."""
    return _RE2_SPECIAL.sub(r"\\\1", value)


def host_matcher(instance: str) -> str:
    """`instance=~"<host>(:port)?"`: the host's exporters (node, process, app) all match."""
    pattern = escape_regex(host_of(instance)) + "(:[0-9]+)?"
    return f"instance=~{promql_string(pattern)}"


def selector(matchers: Iterable[str]) -> str:
    return "{" + ", ".join(matchers) + "}"


@dataclass(frozen=True)
class Family:
    """One base metric to turn into candidates: how to read it and which role it plays."""

    name: str  # base name (`x` for `x_sum`/`x_count`)
    kind: str  # gauge | counter | mean | info | start | event
    raw: tuple[str, ...]  # the metric names to fetch


def families(names: Iterable[str]) -> list[Family]:
    """Group raw metric names: `_sum`+`_count` → mean, `*_total` → counter, `*_info` → info."""
    names = set(names)
    out: list[Family] = []
    used: set[str] = set()
    for name in sorted(names):
        if name.endswith("_sum") and name[:-4] + "_count" in names:
            base = name[:-4]
            out.append(Family(base, "mean", (name, base + "_count")))
            used |= {name, base + "_count"}
    for name in sorted(names - used):
        if name == "process_start_time_seconds":
            out.append(Family(name, "start", (name,)))
        elif _EVENT_TIME.search(name):
            out.append(Family(name, "event", (name,)))
        elif name.endswith("_info"):
            out.append(Family(name, "info", (name,)))
        elif name.endswith(("_total", "_count")):
            out.append(Family(name, "counter", (name,)))
        else:
            out.append(Family(name, "gauge", (name,)))
    return out


def role_of(family: Family, labels: Mapping[str, str], dependency: bool, symptom: bool) -> str:
    if family.kind == "info":
        return "change"
    if family.kind == "start" or family.name == "up":
        return "restart"
    if family.kind == "event":
        return "restart" if re.search(r"start|boot", family.name) else "change"
    if symptom:
        return "symptom"
    if dependency:
        return "dependency"
    mode = labels.get("mode", "")
    if _SATURATION.search(family.name) or mode in ("steal", "iowait"):
        return "saturation"
    if family.kind == "counter" and _LOAD.search(family.name):
        return "load"
    if _RESOURCE.search(family.name):
        return "resource"
    return "other"


_EFFECT_NAME = re.compile(
    r"(^|_)(errors?|failures?|failed|exceptions?|panics?)(_|$)|"
    r"(request|response|http|rpc|grpc|handler|server)\w*_(duration|latency)",
    re.IGNORECASE,
)
_EFFECT_LEVEL = frozenset({"error", "fatal", "critical", "crit", "err"})


def effect(name: str, labels: Mapping[str, str]) -> bool:
    """Errors or request latency: in the alerting job these are the alert's own kind of
    trouble (symptoms), not its cause (RCA.md "symptoms rank low")."""
    if _EFFECT_NAME.search(name):
        return True
    if labels.get("level", labels.get("severity", "")).lower() in _EFFECT_LEVEL:
        return True
    code = labels.get("code", labels.get("status", labels.get("status_code", "")))
    return len(code) == 3 and code.startswith("5") and code.isdigit()


def _label_text(labels: Mapping[str, str]) -> str:
    return ", ".join(label_matcher(k, v) for k, v in sorted(labels.items()))


def query_of(family: Family, labels: Mapping[str, str], summed: bool) -> str:
    """The PromQL that draws one candidate, as the client computed it."""
    inner = _label_text(labels)
    if family.kind == "counter":
        expr = f"rate({family.name}{{{inner}}}[5m])"
        return f"sum without ({', '.join(AGGREGATED_AWAY)}) ({expr})" if summed else expr
    if family.kind == "mean":
        return f"rate({family.name}_sum{{{inner}}}[5m]) / rate({family.name}_count{{{inner}}}[5m])"
    return f"{family.name}{{{inner}}}"


def _increments(values: FloatArray) -> FloatArray:
    """Per-step counter increase, a reset counting as the new value."""
    diff = np.diff(values, axis=-1, prepend=np.nan)
    prev_ok = np.isfinite(diff)
    reset = prev_ok & (diff < 0)
    out: FloatArray = np.where(reset, values, diff)
    return out


def _trailing(csum: FloatArray, k: int) -> FloatArray:
    """Sums over the last k points from a cumulative sum."""
    shifted = np.zeros_like(csum)
    if k < csum.shape[-1]:
        shifted[..., k:] = csum[..., :-k]
    out: FloatArray = csum - shifted
    return out


def rate(values: FloatArray, step: float) -> FloatArray:
    """Per-second rate over RATE_WINDOW (trailing), NaN where samples are missing."""
    inc = _increments(values)
    k = max(1, round(RATE_WINDOW / step))
    filled = np.where(np.isfinite(inc), inc, 0.0)
    counts = np.isfinite(inc).astype(np.float64)
    window_sum = _trailing(np.cumsum(filled, axis=-1), k)
    window_count = _trailing(np.cumsum(counts, axis=-1), k)
    with np.errstate(invalid="ignore", divide="ignore"):
        result: FloatArray = np.where(
            window_count >= max(1, k // 2), window_sum / (window_count * step), np.nan
        )
    return result


def series_key(labels: Mapping[str, str]) -> tuple[tuple[str, str], ...]:
    return tuple(sorted((k, v) for k, v in labels.items() if k != "__name__"))
