"""Text about one series around an alert's start: value at the start, threshold crossing,
baseline, range and trend, for evidence items."""

from __future__ import annotations

import math
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

import numpy as np

from receiver.detect.prometheus import Series
from receiver.detect.promql import label_matcher
from receiver.enrich.evidence import clean_text
from receiver.enrich.rules import FloatArray, Threshold


def _n(value: float) -> str:
    if math.isnan(value):
        return "NaN"
    return f"{value:.4g}"


def clock(ts: float) -> str:
    """HH:MM:SS (UTC)."""
    return datetime.fromtimestamp(ts, UTC).strftime("%H:%M:%S")


def minutes(seconds: float) -> str:
    """ "12 min" or "40 s"."""
    minutes = abs(seconds) / 60
    return f"{minutes:.0f} min" if minutes >= 1 else f"{abs(seconds):.0f} s"


def trend(values: FloatArray) -> str:
    """rising / falling / flat / spike, from the first and last quarter of the window."""
    finite = values[np.isfinite(values)]
    if finite.size < 4:
        return "too few points for a trend"
    quarter = max(1, finite.size // 4)
    first, last = float(np.median(finite[:quarter])), float(np.median(finite[-quarter:]))
    spread = float(finite.max() - finite.min())
    if spread == 0:
        return "flat"
    change = f"{last - first:+.4g} from the first to the last quarter of the window"
    relative = (last - first) / spread
    if relative > 0.3:
        return f"rising ({change})"
    if relative < -0.3:
        return f"falling ({change})"
    if float(finite.max()) - max(first, last) > 0.5 * spread:
        return f"spiked and came back ({change})"
    return f"roughly flat ({change})"


def describe(series: Series, at: float, threshold: Threshold | None) -> tuple[str, dict[str, Any]]:
    """Text about one series around the alert start (key fact first) and its numbers."""
    ts, values = series.timestamps, series.values
    finite = np.isfinite(values)
    if not finite.any():
        return "no numeric samples in the window", {}
    before_at = np.nonzero(finite & (ts <= at))[0]
    at_idx = int(before_at[-1]) if before_at.size else int(np.nonzero(finite)[0][0])
    value_at = float(values[at_idx])
    lo, hi = float(np.nanmin(values[finite])), float(np.nanmax(values[finite]))
    hi_ts = float(ts[finite][int(np.argmax(values[finite]))])
    last = float(values[np.nonzero(finite)[0][-1]])
    earlier = values[finite & (ts < at - 60)]
    baseline = float(np.median(earlier)) if earlier.size else math.nan

    first = f"at alert start {_n(value_at)}"
    if threshold is not None:
        first += f" (alert threshold {threshold})"
        breach = threshold.holds(values) & finite
        if breach.any():
            since = float(ts[int(np.argmax(breach))])
            when = "before" if since <= at else "after"
            first += f"; first past the threshold at {clock(since)} UTC, "
            first += f"{minutes(at - since)} {when} the alert start"
        else:
            first += "; not past the threshold anywhere in the window"
    if not math.isnan(baseline):
        first += f"; median before the alert {_n(baseline)}"
    direction = trend(values)
    step = float(ts[1] - ts[0]) if ts.size > 1 else 0.0
    lines = [
        first,
        f"min {_n(lo)}, max {_n(hi)} at {clock(hi_ts)} UTC, last {_n(last)}",
        f"trend: {direction}",
        f"window {clock(float(ts[0]))}-{clock(float(ts[-1]))} UTC, "
        f"{int(finite.sum())} points, step {step:g}s",
    ]
    data = {
        "at_start": value_at,
        "min": lo,
        "max": hi,
        "last": last,
        "baseline": None if math.isnan(baseline) else baseline,
        "trend": direction.split(" (")[0],
    }
    return "\n".join(lines), data


def series_name(series: Series) -> str:
    """`name{labels}`, cleaned for evidence text."""
    labels = {k: v for k, v in series.labels.items() if k != "__name__"}
    name = series.labels.get("__name__", "")
    inner = ",".join(label_matcher(k, v) for k, v in sorted(labels.items()))
    return clean_text(f"{name}{{{inner}}}", 300, multiline=False)


def matches(series: Series, labels: Mapping[str, str]) -> bool:
    """Do the labels the series and the alert share agree?"""
    return all(labels[k] == v for k, v in series.labels.items() if k in labels and k != "__name__")
