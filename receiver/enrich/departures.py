"""When did one candidate series leave its normal? Per series: a robust baseline (median and MAD
of the first part of the window, a floor on the scale so flat series do not explode, a linear
trend only when the baseline itself clearly slopes), then the departure still under way at the
alert (see `timeline` for the whole method and the ranking). Pure numpy; no I/O."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import numpy.typing as npt

FloatArray = npt.NDArray[np.float64]

K = 4.0  # band half-width in noise units
SUSTAIN = 4  # consecutive out-of-band points that make an onset
GAP = 2  # in-band points tolerated inside a departure
BACK = 1.5  # the onset moves back while the series is still this far out
MIN_BASELINE = 8  # finite baseline points needed
MAX_SIZE = 200.0  # a departure from a flat zero series is "huge", not infinite
REL_FLOOR = 0.02  # scale floor relative to the baseline level
CHANGE_SIZE = 20.0  # a new version or a restart counts as this many noise units
MAX_EVENTS = 2  # jumps of a "time of the last X" gauge that are still events, not a heartbeat

Role = str  # resource | saturation | change | restart | load | dependency | symptom | other


@dataclass
class Departure:
    """How one series left its normal (or None fields when it did not)."""

    onset: float | None
    direction: str  # up | down | step | changed | ""
    size: float  # noise units at the alert
    persistence: float  # share of points out of band from onset to the alert
    baseline: float | None
    scale: float | None
    value: float | None  # at the alert (last finite point at or before it)


@dataclass
class Candidate:
    """A series that could explain the alert, its departure and its rank."""

    metric: str  # base metric name as in Prometheus
    labels: dict[str, str]  # without __name__
    query: str  # PromQL that draws it
    role: Role
    timestamps: FloatArray
    values: FloatArray
    kind: str = "gauge"  # gauge | counter | mean | info | start | event
    host: str = ""
    dependency: bool = False
    departure: Departure | None = None
    recurring: bool = False
    score: float = 0.0
    rank: int = 0
    why: list[str] = field(default_factory=list)  # reasons the score was raised or lowered
    change: dict[str, str] = field(default_factory=dict)  # info metrics: label → "old → new"
    # set once by relations.py (a pool at its limit, a rollout, an instance's load share);
    # `rank` applies them every time it scores
    boost: float = 1.0
    notes: list[str] = field(default_factory=list)


def _finite_last(values: FloatArray, upto: int) -> float | None:
    head = values[: upto + 1]
    idx = np.nonzero(np.isfinite(head))[0]
    return float(head[idx[-1]]) if idx.size else None


def baseline(values: FloatArray) -> tuple[float, float] | None:
    """(median, scale) of the finite values: scale = 1.4826·MAD with a floor."""
    finite = values[np.isfinite(values)]
    if finite.size < MIN_BASELINE:
        return None
    med = float(np.median(finite))
    mad = 1.4826 * float(np.median(np.abs(finite - med)))
    floor = max(REL_FLOOR * abs(med), 0.1 * float(np.std(finite)), 1e-9)
    return med, max(mad, floor)


def _trend(ts: FloatArray, values: FloatArray) -> float:
    """Slope per second of the baseline (median of half-window differences)."""
    lag = values.size // 2
    if lag < 4:
        return 0.0
    diffs = (values[lag:] - values[:-lag]) / (ts[lag:] - ts[:-lag])
    diffs = diffs[np.isfinite(diffs)]
    return float(np.median(diffs)) if diffs.size >= 4 else 0.0


def departure(ts: FloatArray, values: FloatArray, base_end: float, alert_at: float) -> Departure:
    """The departure under way at `alert_at` (see the module doc), or one with onset None."""
    none = Departure(None, "", 0.0, 0.0, None, None, None)
    in_base = ts < base_end
    at_idx = int(np.searchsorted(ts, alert_at, side="right")) - 1
    ok = in_base & np.isfinite(values)
    if int(ok.sum()) < MIN_BASELINE or at_idx < 0:
        return none
    base_ts, base_vals = ts[ok], values[ok]
    mid = float(np.median(base_ts))
    slope = _trend(base_ts, base_vals)
    fit = baseline(base_vals - slope * (base_ts - mid))
    if fit is None:
        return none
    med, scale = fit
    if abs(slope) * float(base_ts[-1] - base_ts[0]) <= 3 * scale:
        # no clear trend: extrapolating noise would only widen errors
        slope = 0.0
        fit = baseline(base_vals)
        assert fit is not None
        med, scale = fit
    value = _finite_last(values, at_idx)
    none.baseline, none.scale, none.value = med, scale, value
    z = (values - (med + slope * (ts - mid))) / scale
    # the alert's own point may be missing (a dead process stops reporting): use the last one
    finite_idx = np.nonzero(np.isfinite(z[: at_idx + 1]))[0]
    if finite_idx.size == 0:
        return none
    last = int(finite_idx[-1])
    tail = z[finite_idx[-3:]]
    sign = float(np.sign(np.median(tail)))
    if sign == 0 or abs(float(np.median(tail))) < K:
        return none
    out = (z * sign) > K
    start, gap, i = last, 0, last
    while i >= 0 and ts[i] >= base_end:
        if out[i]:
            start, gap = i, 0
        elif np.isfinite(z[i]):
            gap += 1
            if gap > GAP:
                break
        i -= 1
    run = out[start : last + 1]
    if int(run.sum()) < SUSTAIN:
        return none
    start = _jump(z, sign, start, last)
    # size and persistence over the sustained run only: the walk back below may cross a slow
    # drift that would dilute them
    span = z[start : last + 1]
    span = span[np.isfinite(span)]
    # back to where the excursion began; a drift of a tenth of the jump is not its beginning
    back = max(BACK, 0.1 * float(np.median(np.abs(span)))) if span.size else BACK
    onset_idx = start
    while onset_idx > 0 and np.isfinite(z[onset_idx - 1]) and z[onset_idx - 1] * sign > back:
        onset_idx -= 1
    size = min(float(np.percentile(np.abs(span), 75)), MAX_SIZE) if span.size else 0.0
    persistence = float((span * sign > K).mean()) if span.size else 0.0
    return Departure(
        onset=float(ts[onset_idx]),
        direction="up" if sign > 0 else "down",
        size=size,
        persistence=persistence,
        baseline=med,
        scale=scale,
        value=value,
    )


def _jump(z: FloatArray, sign: float, start: int, last: int) -> int:
    """Where a run out of band jumped, when one step made most of the departure (a slow drift
    took the series just out of band before the real change): the later start; else `start`."""
    w = 2 * SUSTAIN
    run = z[start : last + 1] * sign
    if run.size < 3 * w or not np.isfinite(run).all():
        return start
    now = float(np.median(run[-w:]))
    steps = np.array(
        [np.median(run[k : k + w]) - np.median(run[k - w : k]) for k in range(w, run.size - w + 1)]
    )
    best = int(np.argmax(steps))
    if steps[best] < 0.5 * now:
        return start
    k = best + w
    half = float(np.median(run[k - w : k])) + 0.25 * float(steps[best])
    above = np.nonzero(run[k - w : k + w] > half)[0]
    return start + k - w + (int(above[0]) if above.size else w)


def restart_departure(
    ts: FloatArray, values: FloatArray, since: float, alert_at: float
) -> Departure | None:
    """A process start time that jumped after `since` (the value is the new start time)."""
    upto = int(np.searchsorted(ts, alert_at, side="right"))
    vals = values[:upto]
    ok = np.nonzero(np.isfinite(vals))[0]
    if ok.size < 2:
        return None
    seen = vals[ok]
    jumps = np.nonzero(np.diff(seen) > 1.0)[0]
    starts = [float(seen[j + 1]) for j in jumps if ts[ok[j + 1]] >= since]
    if not starts:
        return None
    first = starts[0]
    return Departure(
        onset=min(first, float(ts[ok[jumps[0] + 1]])),
        direction="step",
        size=CHANGE_SIZE * min(len(starts), 3) / (3 if len(starts) > 1 else 1),
        persistence=1.0,
        baseline=float(seen[0]),
        scale=None,
        value=float(seen[-1]),
    )


def event_departure(
    ts: FloatArray, values: FloatArray, base_end: float, alert_at: float
) -> Departure | None:
    """A "time of the last X" gauge that stood still through the baseline and then jumped (a
    config reload); one that keeps moving (a heartbeat) is no event."""
    before = values[(ts < base_end) & np.isfinite(values)]
    if before.size < 2 or float(np.ptp(before)) > 1.0:
        return None
    upto = (ts <= alert_at) & np.isfinite(values)
    if int((np.diff(values[upto]) > 1.0).sum()) > MAX_EVENTS:
        return None  # a heartbeat that started ticking, not an event
    return restart_departure(ts, values, base_end, alert_at)


def host_of(instance: str) -> str:
    """`api-1:8080` → `api-1`; `[::1]:9100` → `[::1]`; a bare host stays as it is."""
    if instance.startswith("["):
        return instance.split("]", 1)[0] + "]"
    head, sep, tail = instance.rpartition(":")
    return head if sep and tail.isdigit() else instance
