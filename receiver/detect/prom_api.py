"""What the Prometheus HTTP API answers, as types: the error tree (see `prometheus`), samples,
series, instant and range results, a target, the `PrometheusAPI` port that stages and fakes
implement, and the pure conversions between them."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime
from typing import Protocol

import numpy as np
import numpy.typing as npt

from receiver.safety import split_userinfo
from receiver.timeutil import aware

FloatArray = npt.NDArray[np.float64]
Labels = Mapping[str, str]
TimeLike = float | int | datetime

MAX_POINTS = 11_000  # Prometheus refuses query_range answers longer than this per series
# What one evidence or chart query may bring back: enough for the alert's own series and some
# neighbours; an expression over a whole fleet is cut here, not in the prompt.
EVIDENCE_MAX_SERIES = 50
EVIDENCE_MAX_BYTES = 2 * 1024 * 1024


class PrometheusError(Exception):
    """Base of every error this client raises."""

    retryable: bool = False

    def __init__(self, message: str, *, status_code: int | None = None) -> None:
        super().__init__(message)
        self.status_code = status_code


class PrometheusUnavailable(PrometheusError):
    """Could not get an answer: connection refused, timeout, or 5xx (after retries)."""

    retryable = True


class PrometheusQueryError(PrometheusError):
    """Prometheus refused the request (4xx with an error envelope); retrying will not help."""

    def __init__(self, message: str, *, error_type: str, status_code: int | None) -> None:
        super().__init__(message, status_code=status_code)
        self.error_type = error_type


class PrometheusBadQuery(PrometheusQueryError):
    """errorType bad_data: the PromQL expression or a parameter is invalid."""


class PrometheusTooLarge(PrometheusError):
    """The answer is larger than the client's byte cap; it was not read (or parsed)."""

    def __init__(self, message: str, *, limit: int, status_code: int | None = None) -> None:
        super().__init__(message, status_code=status_code)
        self.limit = limit

    @property
    def note(self) -> str:
        """What evidence says instead of the data."""
        return f"response over {byte_size(self.limit)}; not read"


class PrometheusProtocolError(PrometheusError):
    """The answer was not the API's JSON envelope (wrong URL, proxy page, ...)."""


@dataclass(frozen=True)
class Sample:
    """One instant-vector (or scalar) value."""

    labels: Labels
    timestamp: float
    value: float


@dataclass(frozen=True)
class Series:
    """One range-vector series: parallel arrays of unix seconds and values."""

    labels: Labels
    timestamps: FloatArray
    values: FloatArray


@dataclass(frozen=True)
class QueryResult:
    """An instant query's answer: samples for vector/scalar, series for a matrix."""

    result_type: str
    samples: tuple[Sample, ...] = ()
    series: tuple[Series, ...] = ()
    warnings: tuple[str, ...] = ()
    dropped: int = 0  # samples/series beyond the client's series cap, not kept


@dataclass(frozen=True)
class RangeResult:
    """A query_range answer and the grid it was asked on (step after auto-raising)."""

    series: tuple[Series, ...]
    start: float
    end: float
    step: float
    warnings: tuple[str, ...] = ()
    dropped: int = 0  # series beyond the client's series cap, not kept

    @property
    def cap_note(self) -> str:
        """What evidence says when the series cap cut this answer ("" when it did not)."""
        if not self.dropped:
            return ""
        n = len(self.series)
        return f"query returned more than {n} series; first {n} shown"


@dataclass(frozen=True)
class Matrix:
    """Series aligned on one step grid, ready for `outliers.score_batch` (NaN = no sample)."""

    timestamps: FloatArray  # (points,)
    values: FloatArray  # (series, points)
    labels: tuple[Labels, ...]


@dataclass(frozen=True)
class PrometheusTarget:
    """Where one Prometheus lives and how to authenticate ("a URL is the configuration")."""

    url: str
    bearer_token: str | None = field(default=None, repr=False)
    basic_auth: tuple[str, str] | None = field(default=None, repr=False)
    timeout: float = 10.0

    def without_userinfo(self) -> PrometheusTarget:
        """This target with credentials moved from the URL to basic auth (explicit auth wins)."""
        url, credentials = split_userinfo(self.url)
        if credentials is None:
            return self
        return replace(self, url=url, basic_auth=self.basic_auth or credentials)


class PrometheusAPI(Protocol):
    """What the detector needs from a Prometheus."""

    async def query(
        self, promql: str, time: TimeLike | None = None, *, query_timeout: float | None = None
    ) -> QueryResult: ...

    async def query_range(
        self,
        promql: str,
        start: TimeLike,
        end: TimeLike,
        step: float,
        *,
        query_timeout: float | None = None,
    ) -> RangeResult: ...

    async def series(
        self, match: Sequence[str], start: TimeLike | None = None, end: TimeLike | None = None
    ) -> list[dict[str, str]]: ...

    async def label_values(
        self,
        label: str,
        match: Sequence[str] = (),
        start: TimeLike | None = None,
        end: TimeLike | None = None,
    ) -> list[str]: ...


def unix(t: TimeLike) -> float:
    """Unix seconds from a datetime (naive = UTC) or a number."""
    if isinstance(t, datetime):
        return aware(t).timestamp()
    return float(t)


def min_step(start: float, end: float) -> float:
    """The smallest step (whole milliseconds) that keeps a range under MAX_POINTS points."""
    return math.ceil(max(end - start, 0.0) / (MAX_POINTS - 1) * 1000) / 1000


def parse_value(raw: object) -> float:
    """A sample value as Prometheus sends it ("1.5", "NaN", "+Inf", "-Inf") to float."""
    if isinstance(raw, int | float):
        return float(raw)
    if not isinstance(raw, str):
        raise PrometheusProtocolError(f"sample value {raw!r} is not a string")
    try:
        return float(raw)
    except ValueError as err:
        raise PrometheusProtocolError(f"sample value {raw!r} is not a number") from err


def to_matrix(result: RangeResult) -> Matrix:
    """Align every series of a range answer on start + k*step (missing points are NaN)."""
    n = round((result.end - result.start) / result.step) + 1 if result.step > 0 else 1
    grid = result.start + result.step * np.arange(max(n, 0), dtype=np.float64)
    values = np.full((len(result.series), grid.size), np.nan)
    for row, s in enumerate(result.series):
        if s.timestamps.size == 0:
            continue
        idx = np.rint((s.timestamps - result.start) / result.step).astype(np.intp)
        ok = (idx >= 0) & (idx < grid.size)
        values[row, idx[ok]] = s.values[ok]
    return Matrix(grid, values, tuple(s.labels for s in result.series))


def byte_size(n: int) -> str:
    for unit, scale in (("GB", 1 << 30), ("MB", 1 << 20), ("kB", 1 << 10)):
        if n >= scale:
            return f"{n / scale:g} {unit}"
    return f"{n} bytes"
