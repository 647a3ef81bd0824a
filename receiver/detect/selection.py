"""What the poller watches: the configured selectors, or the default enumeration.

Default (`auto`): every metric name with samples in the window, read from the label values of
`__name__` (one cheap request): the recording-rule series of `rules/specs` first, then the
rest. Prometheus' and client libraries' own series (`prometheus_*`, `go_*`, `scrape_*`,
`process_*`, `promhttp_*`, `ALERTS`) are left out unless asked for; counters (`*_total`,
`*_count`, `*_sum`) are watched as `rate(...)`, since a raw counter always exceeds its past;
histogram buckets and `*_created` timestamps are skipped; the z-score baselines the rule
generator records are derived series and skipped too.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path

from receiver.detect.promql import label_matcher, promql_string
from receiver.durations import format_duration
from receiver.rulegen.load import SpecError, load_specs

log = logging.getLogger(__name__)

AUTO = "auto"
INTERNAL_PREFIXES = ("prometheus_", "go_", "scrape_", "process_", "promhttp_")
INTERNAL_NAMES = frozenset({"ALERTS", "ALERTS_FOR_STATE"})
SKIPPED_SUFFIXES = ("_bucket", "_created")
COUNTER_SUFFIXES = ("_total", "_count", "_sum")


def matchers(labels: Mapping[str, str]) -> str:
    """`{a="x",b="y"}` for a label set (without `__name__`)."""
    pairs = sorted((k, v) for k, v in labels.items() if k != "__name__")
    inner = ",".join(label_matcher(k, v) for k, v in pairs)
    return "{" + inner + "}"


def duration(seconds: float) -> str:
    """A PromQL duration (whole milliseconds, at least 1 ms)."""
    return format_duration(max(1, round(seconds * 1000)))


@dataclass(frozen=True)
class Selector:
    """One PromQL expression fetched with ONE query_range per cycle."""

    expr: str
    metric: str = ""  # known metric name; "" = each series' __name__ (or the expression)
    rate_window: float = 0.0  # > 0: `expr` is rate(metric[rate_window]) of a counter
    recorded: bool = False  # a recording-rule series from rules/specs
    custom: bool = False  # written by the operator (DETECT_SELECTORS)

    def metric_of(self, labels: Mapping[str, str]) -> str:
        return labels.get("__name__") or self.metric or self.expr[:200]

    def series_expr(self, labels: Mapping[str, str]) -> str:
        """The PromQL of one series of this selector (shown as the episode's query)."""
        if self.custom:
            return self.expr
        inner = self.metric + matchers(labels)
        return f"rate({inner}[{duration(self.rate_window)}])" if self.rate_window else inner


def parse_selectors(raw: str) -> tuple[list[str], bool]:
    """`;`-separated selectors → (custom expressions, whether `auto` is included)."""
    parts = [p.strip() for p in raw.split(";")]
    custom = [p for p in parts if p and p.lower() != AUTO]
    auto = not custom or any(p.lower() == AUTO for p in parts)
    return custom, auto


def custom_selectors(exprs: Iterable[str]) -> list[Selector]:
    return [Selector(expr=e, custom=True) for e in exprs]


def _plain(name: str, job: str) -> str:
    return f"{name}{{job={promql_string(job)}}}" if job else name


def is_internal(name: str) -> bool:
    return name.startswith(INTERNAL_PREFIXES) or name in INTERNAL_NAMES


def auto_selectors(
    names: Iterable[str],
    *,
    recorded: frozenset[str] = frozenset(),
    derived: frozenset[str] = frozenset(),
    job: str = "",
    include_internal: bool = False,
    rate_window: float = 300.0,
) -> list[Selector]:
    """Selectors for metric names present in Prometheus: recorded series first, then the rest."""
    first: list[Selector] = []
    rest: list[Selector] = []
    for name in sorted(set(names)):
        if name in derived:
            continue
        if name in recorded:
            first.append(Selector(_plain(name, job), metric=name, recorded=True))
        elif (not include_internal and is_internal(name)) or name.endswith(SKIPPED_SUFFIXES):
            continue
        elif name.endswith(COUNTER_SUFFIXES):
            expr = f"rate({_plain(name, job)}[{duration(rate_window)}])"
            rest.append(Selector(expr, metric=name, rate_window=rate_window))
        else:
            rest.append(Selector(_plain(name, job), metric=name))
    return first + rest


def job_matcher(job: str) -> list[str]:
    """`match[]` for label-value enumeration scoped to one job (none = every series)."""
    return [f"{{job={promql_string(job)}}}"] if job else []


def load_recorded(spec_dir: Path) -> tuple[frozenset[str], frozenset[str]]:
    """(recording-rule series, derived z-score series) named in rules/specs; empty if absent."""
    if not spec_dir.is_dir():
        return frozenset(), frozenset()
    try:
        rule_set = load_specs(spec_dir)
    except (SpecError, OSError) as err:
        log.warning("outlier poller: cannot read rule specs in %s: %s", spec_dir, err)
        return frozenset(), frozenset()
    derived = {
        name
        for spec in rule_set.specs
        for z in spec.model.zscore
        for name in (z.avg_record, z.stddev_record, z.zscore_record)
    }
    return frozenset(rule_set.recorded), frozenset(derived)
