"""History for one poll cycle: ONE query_range per selector, all on one step grid.

For the `range` method with a lookback longer than the window, two instant queries per selector
add each series' extremes from before the window (`min_over_time` / `max_over_time` over a
subquery ending at the window's start), gated on the series having samples at least
`min_history` old, so a series born minutes ago gets no score instead of false alarms.
"""

from __future__ import annotations

import asyncio
import logging
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np

from receiver.detect.prometheus import (
    FloatArray,
    Matrix,
    PrometheusAPI,
    PrometheusQueryError,
    PrometheusTooLarge,
    PrometheusUnavailable,
    to_matrix,
)
from receiver.detect.selection import Selector, duration

log = logging.getLogger(__name__)

# Selectors fetched at once: Prometheus answers in parallel while this side parses JSON.
FETCH_CONCURRENCY = 4
# Points of a prior's subquery: bounds Prometheus' work (a 14 d lookback → ~5 min resolution).
PRIOR_POINTS = 4000


@dataclass(frozen=True)
class Grid:
    """The cycle's time grid: end aligned down to the step, start = end - window."""

    start: float
    end: float
    step: float

    @classmethod
    def ending(cls, now: float, window: float, step: float) -> Grid:
        end = math.floor(now / step) * step
        return cls(end - window, end, step)


@dataclass(frozen=True)
class PriorSpec:
    """Extremes from before the window: over `lookback` back from now, if `min_history` old."""

    lookback: float
    min_history: float
    step: float

    def queries(self, expr: str, grid: Grid) -> tuple[str, str] | None:
        span = self.lookback - (grid.end - grid.start)
        if span <= 0:
            return None
        res = duration(math.ceil(max(self.step, span / PRIOR_POINTS, 1.0)))
        sub = f"({expr})[{duration(span)}:{res}] @ {grid.start:.3f}"
        gate = ""
        if self.min_history > 0:
            old = self.lookback - self.min_history
            at = grid.end - self.min_history
            gate = f" and present_over_time(({expr})[{duration(max(old, 1.0))}:{res}] @ {at:.3f})"
        return f"min_over_time({sub}){gate}", f"max_over_time({sub}){gate}"


@dataclass(frozen=True)
class SeriesRef:
    """One scored series: its selector and labels."""

    selector: Selector
    labels: Mapping[str, str]

    @property
    def metric(self) -> str:
        return self.selector.metric_of(self.labels)

    @property
    def instance(self) -> str:
        return self.labels.get("instance", "")


@dataclass
class Fetched:
    timestamps: FloatArray
    values: FloatArray  # (series, points)
    refs: list[SeriesRef]
    prior_low: FloatArray | None
    prior_high: FloatArray | None
    errors: list[str] = field(default_factory=list)
    capped: bool = False
    selectors_done: int = 0

    @property
    def complete(self) -> bool:
        """Every selector answered and none was cut by the cap: absent series are really gone."""
        return not self.errors and not self.capped


def label_key(labels: Mapping[str, str]) -> tuple[tuple[str, str], ...]:
    """A series' identity within one selector's answer (its labels but the name)."""
    return tuple(sorted((k, v) for k, v in labels.items() if k != "__name__"))


_key = label_key


async def _prior(
    client: PrometheusAPI, query: str, grid: Grid, query_timeout: float
) -> dict[tuple[tuple[str, str], ...], float]:
    result = await client.query(query, grid.end, query_timeout=query_timeout)
    return {_key(s.labels): s.value for s in result.samples}


@dataclass(frozen=True)
class _Answer:
    selector: Selector
    matrix: Matrix | None  # None: Prometheus refused the selector
    error: str = ""
    low: Mapping[tuple[tuple[str, str], ...], float] = field(default_factory=dict)
    high: Mapping[tuple[tuple[str, str], ...], float] = field(default_factory=dict)
    dropped: int = 0  # series the client's cap cut from the answer


async def _one(
    client: PrometheusAPI,
    selector: Selector,
    grid: Grid,
    prior: PriorSpec | None,
    query_timeout: float,
) -> _Answer:
    try:
        answer = await client.query_range(
            selector.expr, grid.start, grid.end, grid.step, query_timeout=query_timeout
        )
    except PrometheusUnavailable:
        raise
    except (PrometheusQueryError, PrometheusTooLarge) as err:
        return _Answer(selector, None, f"{selector.expr[:200]}: {err}")
    matrix = to_matrix(answer)
    if not matrix.labels:
        return _Answer(selector, matrix)
    low, high = await _priors(client, selector, grid, prior, query_timeout)
    return _Answer(selector, matrix, low=low, high=high, dropped=answer.dropped)


async def fetch(
    client: PrometheusAPI,
    selectors: Sequence[Selector],
    grid: Grid,
    *,
    max_series: int,
    prior: PriorSpec | None,
    query_timeout: float,
    concurrency: int = FETCH_CONCURRENCY,
) -> Fetched:
    """Query the selectors in order, `concurrency` at a time, until `max_series` series are in
    hand (at most `concurrency - 1` selectors are fetched in vain when the cap is hit).

    `PrometheusUnavailable` propagates (the cycle fails); a selector Prometheus refuses is
    recorded in `errors` and skipped.
    """
    rows: list[FloatArray] = []
    refs: list[SeriesRef] = []
    lows: list[float] = []
    highs: list[float] = []
    timestamps: FloatArray = np.empty(0)
    out = Fetched(timestamps, np.empty((0, 0)), refs, None, None)
    for begin in range(0, len(selectors), max(1, concurrency)):
        if len(refs) >= max_series:
            out.capped = True
            break
        chunk = selectors[begin : begin + max(1, concurrency)]
        answers = await asyncio.gather(
            *(_one(client, s, grid, prior, query_timeout) for s in chunk)
        )
        for answer in answers:
            if len(refs) >= max_series:
                out.capped = True
                break
            if answer.matrix is None:
                out.errors.append(answer.error)
                continue
            out.selectors_done += 1
            matrix = answer.matrix
            if not matrix.labels:
                continue
            timestamps = matrix.timestamps
            take = min(max_series - len(refs), len(matrix.labels))
            out.capped = out.capped or take < len(matrix.labels) or answer.dropped > 0
            for row in range(take):
                labels = matrix.labels[row]
                rows.append(matrix.values[row])
                refs.append(SeriesRef(answer.selector, dict(labels)))
                lows.append(answer.low.get(_key(labels), math.nan))
                highs.append(answer.high.get(_key(labels), math.nan))
    out.timestamps = timestamps
    out.values = np.vstack(rows) if rows else np.empty((0, timestamps.size))
    if prior is not None and refs:
        out.prior_low, out.prior_high = np.asarray(lows), np.asarray(highs)
    return out


async def _priors(
    client: PrometheusAPI,
    selector: Selector,
    grid: Grid,
    prior: PriorSpec | None,
    query_timeout: float,
) -> tuple[dict[tuple[tuple[str, str], ...], float], dict[tuple[tuple[str, str], ...], float]]:
    queries = prior.queries(selector.expr, grid) if prior is not None else None
    if queries is None:
        return {}, {}
    try:
        low, high = await asyncio.gather(
            _prior(client, queries[0], grid, query_timeout),
            _prior(client, queries[1], grid, query_timeout),
        )
    except (PrometheusQueryError, PrometheusTooLarge) as err:
        # e.g. a selector spanning several metric names: the extremes lose __name__ and clash
        log.warning("outlier poller: no history before the window for %s: %s", selector.expr, err)
        return {}, {}
    return low, high
