"""The axes of a chart: the y unit read from the metric name's suffix (Prometheus naming:
`_seconds`, `_bytes`, `_ratio`, `percent`) and the functions around it, and its tick labels.

Only what the expression makes certain: one metric, no arithmetic, only functions that keep
the unit (`sum`, `max_over_time`, …), make it per second (`rate`, `irate`, `deriv`) or read a
histogram (`histogram_quantile` of `_bucket`); a recording rule (`level:metric:operations`) is read
by its metric part and its operations (`:p95` keeps, `:rate5m` is per second, `:ratio`). Anything
else has no unit, and plain numbers.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from datetime import UTC, datetime

# Functions and aggregations whose result has the unit of their argument.
_KEEP = frozenset(
    {
        "sum", "avg", "min", "max", "topk", "bottomk", "quantile", "stddev", "stdvar",
        "group", "abs", "ceil", "floor", "round", "clamp", "clamp_min", "clamp_max",
        "increase", "delta", "idelta", "predict_linear", "last_over_time",
        "avg_over_time", "min_over_time", "max_over_time", "sum_over_time",
        "quantile_over_time", "stddev_over_time", "stdvar_over_time", "sort", "sort_desc",
        "label_replace", "label_join", "holt_winters", "double_exponential_smoothing",
    }
)  # fmt: skip
_PER_SECOND = frozenset({"rate", "irate", "deriv"})
_KEYWORDS = frozenset(
    {"by", "without", "on", "ignoring", "group_left", "group_right", "bool", "offset",
     "and", "or", "unless", "inf", "nan"}
)  # fmt: skip
_STRING = re.compile(r'"(?:[^"\\]|\\.)*"|\'(?:[^\'\\]|\\.)*\'|`[^`]*`')
_BRACED = re.compile(r"\{[^{}]*\}|\[[^\[\]]*\]")
_GROUPING = re.compile(
    r"\b(?:by|without|on|ignoring|group_left|group_right)\s*\([^()]*\)", re.IGNORECASE
)
_WORD = re.compile(r"(?<![0-9.])[A-Za-z_:][A-Za-z0-9_:]*(?:\s*\()?")
_ARITHMETIC = re.compile(r"[-+*/%^]")
_NUMBER = re.compile(r"(?<![A-Za-z0-9_:.])[0-9]*\.?[0-9]+(?:[eE][-+]?[0-9]+)?")

_SECONDS = ((1e-6, "µs"), (1e-3, "ms"), (1.0, "s"), (60.0, "min"), (3600.0, "h"), (86400.0, "d"))
_BYTES = tuple((1024.0**i, name) for i, name in enumerate(("B", "KiB", "MiB", "GiB", "TiB")))

_TIME_STEPS = (
    1, 2, 5, 10, 15, 30, 60, 120, 300, 600, 900, 1800, 3600, 7200, 10800, 21600, 43200, 86400,
)  # fmt: skip


@dataclass(frozen=True)
class Unit:
    """What the values measure: `base` is seconds | bytes | ratio | percent; `per_second` for
    a rate of it (bytes/s)."""

    base: str
    per_second: bool = False

    @property
    def label(self) -> str:
        """The axis label, e.g. `bytes/s`."""
        return self.base + ("/s" if self.per_second else "")

    def scale(self, largest: float) -> tuple[float, str]:
        """(divisor, suffix) that print the axis' largest absolute value in a readable size,
        used for every tick of that axis so they compare at a glance."""
        per = "/s" if self.per_second else ""
        if self.base == "ratio":
            return 0.01, "%" + per
        if self.base == "percent":
            return 1.0, "%" + per
        steps = _SECONDS if self.base == "seconds" else _BYTES
        if self.base == "seconds" and self.per_second:
            steps = steps[:3]  # seconds per second is a share of one: "250 ms/s", not minutes
        divisor, suffix = steps[0]
        for size, name in steps:
            if largest >= size:
                divisor, suffix = size, name
        return divisor, suffix + per


def unit_of(expr: str) -> Unit | None:
    """The unit of a PromQL expression's values, or None when its name and shape do not say."""
    bare = _STRING.sub('""', expr)
    while (inner := _BRACED.sub("", bare)) != bare:
        bare = inner
    bare = _GROUPING.sub("", bare)
    functions: list[str] = []
    metrics: set[str] = set()
    for match in _WORD.finditer(bare):
        word = match.group(0)
        if word.endswith("("):
            functions.append(word[:-1].strip().lower())
        elif word.lower() not in _KEYWORDS:
            metrics.add(word)
    rest = _WORD.sub("", bare)
    rest = _NUMBER.sub("", rest.replace('""', ""))
    if len(metrics) != 1 or _ARITHMETIC.search(rest):
        return None
    (name,) = metrics
    allowed = _KEEP | _PER_SECOND | {"histogram_quantile"}
    if any(f not in allowed for f in functions):
        return None
    if name.endswith("_bucket"):
        if "histogram_quantile" not in functions:
            return None
        name = name.removesuffix("_bucket")
        functions = [f for f in functions if f not in _PER_SECOND]  # the quantile of a rate
    elif "histogram_quantile" in functions:
        return None
    per_second = any(f in _PER_SECOND for f in functions)
    parts = name.split(":")
    if len(parts) == 3:  # a recording rule, `level:metric:operations` (`job:x_seconds:p95`)
        name, operations = parts[1], parts[2].lower()
        per_second = per_second or operations.startswith(("rate", "irate", "deriv"))
        if _base(operations) in ("ratio", "percent"):
            return Unit(str(_base(operations)), per_second=False)
    base = _base(name.removesuffix("_total").removesuffix("_sum"))
    if base is None or name.endswith("_count"):
        return None
    return Unit(base, per_second=per_second)


def _base(name: str) -> str | None:
    if name in ("ratio", "percent"):
        return name
    if name.endswith("_seconds"):
        return "seconds"
    if name.endswith("_bytes"):
        return "bytes"
    if name.endswith("_ratio"):
        return "ratio"
    if name.endswith(("_percent", "_pct")) or "percent" in name.lower():
        return "percent"
    return None


def tick_text(value: float, scale: tuple[float, str] | None) -> str:
    """A short tick label: `0.25`, `80`, `1.5K`; with a unit's scale `250 ms`, `1.5 GiB`, `80%`."""
    if scale is not None:
        divisor, suffix = scale
        shown = value / divisor
        text = "0" if abs(shown) < 1e-12 else f"{shown:.3g}"
        return text + suffix if suffix.startswith("%") else f"{text} {suffix}"
    size = abs(value)
    for limit, suffix in ((1e12, "T"), (1e9, "G"), (1e6, "M"), (1e3, "K")):
        if size >= limit:
            return f"{value / limit:.3g}{suffix}"
    if size == 0 or not math.isfinite(value):
        return "0" if size == 0 else str(value)
    if size < 0.001:
        return f"{value:.1e}"
    return f"{value:.3g}"


# --- ticks ----------------------------------------------------------------------------------


def _nice_step(span: float, target: int) -> float:
    raw = span / max(target, 1)
    magnitude = 10.0 ** math.floor(math.log10(raw))
    for factor in (1, 2, 2.5, 5, 10):
        if raw <= factor * magnitude:
            return factor * magnitude
    return 10 * magnitude


def y_ticks(lo: float, hi: float) -> list[float]:
    """About four round values between lo and hi."""
    step = _nice_step(hi - lo, 4)
    first = math.ceil(lo / step) * step
    ticks: list[float] = []
    value = first
    while value <= hi + step * 1e-9 and len(ticks) < 12:
        ticks.append(0.0 if abs(value) < step * 1e-9 else value)
        value += step
    return ticks


def time_step(span: float, plot_w: int) -> float:
    """Seconds between time ticks: a round step giving 2..8 ticks over the plot's width."""
    want = max(2, min(8, plot_w // 90))
    for step in _TIME_STEPS:
        if span / step <= want:
            return float(step)
    return float(_TIME_STEPS[-1] * math.ceil(span / (_TIME_STEPS[-1] * want)))


def clock(ts: float, step: float) -> str:
    """A time tick in UTC, as precise as the step needs."""
    moment = datetime.fromtimestamp(ts, UTC)
    if step >= 86400:
        return moment.strftime("%m-%d")
    return moment.strftime("%H:%M:%S" if step < 60 else "%H:%M")
