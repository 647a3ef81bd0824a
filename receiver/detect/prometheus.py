"""Async client for the Prometheus HTTP API (query, query_range, series, label values).

Error tree (``retryable`` says whether trying again later may succeed)::

    PrometheusError                     base; .retryable, .status_code
    ├── PrometheusUnavailable           connection error, timeout or 5xx after all retries (True)
    ├── PrometheusQueryError            the API answered status=error with a 4xx (False)
    │   └── PrometheusBadQuery          errorType bad_data: PromQL or parameters invalid
    ├── PrometheusTooLarge              the answer is over the client's byte cap; not read (False)
    └── PrometheusProtocolError         the answer is not the API's JSON envelope (False)

Only connection errors, timeouts and 5xx answers are retried, with exponential backoff.

Every answer is read against a byte cap and every result against a series cap (the evidence
defaults, 2 MB and 50 series; the poller passes its own, larger ones): a result with more series
keeps the first ones and says how many it dropped. Credentials in a URL (`http://u:p@host`)
become basic auth at construction, so no URL this client prints carries them.
"""

from __future__ import annotations

import asyncio
import copy
import json
import math
from collections.abc import Sequence
from typing import Any

import httpx
import numpy as np

from receiver.detect.prom_api import (
    EVIDENCE_MAX_BYTES,
    EVIDENCE_MAX_SERIES,
    MAX_POINTS,
    FloatArray,
    Labels,
    Matrix,
    PrometheusAPI,
    PrometheusBadQuery,
    PrometheusError,
    PrometheusProtocolError,
    PrometheusQueryError,
    PrometheusTarget,
    PrometheusTooLarge,
    PrometheusUnavailable,
    QueryResult,
    RangeResult,
    Sample,
    Series,
    TimeLike,
    byte_size,
    min_step,
    parse_value,
    to_matrix,
    unix,
)
from receiver.ports import UsesHttpClient

# Callers import these from here; they live in `prom_api` since the split.
__all__ = [
    "EVIDENCE_MAX_BYTES",
    "EVIDENCE_MAX_SERIES",
    "MAX_POINTS",
    "FloatArray",
    "Labels",
    "Matrix",
    "PrometheusAPI",
    "PrometheusBadQuery",
    "PrometheusClient",
    "PrometheusError",
    "PrometheusProtocolError",
    "PrometheusQueryError",
    "PrometheusTarget",
    "PrometheusTooLarge",
    "PrometheusUnavailable",
    "QueryResult",
    "RangeResult",
    "Sample",
    "Series",
    "TimeLike",
    "min_step",
    "parse_value",
    "to_matrix",
    "unix",
]


class PrometheusClient(UsesHttpClient):
    """`PrometheusAPI` over HTTP for one target; POSTs form-encoded parameters.

    Pass a shared `httpx.AsyncClient` (built in the app's lifespan) or let the client create
    and own one. Auth and timeouts are sent per request, so one AsyncClient can serve many
    targets.
    """

    def __init__(
        self,
        target: PrometheusTarget | str,
        *,
        http: httpx.AsyncClient | None = None,
        retries: int = 3,
        backoff: float = 0.2,
        max_backoff: float = 5.0,
        max_series: int = EVIDENCE_MAX_SERIES,
        max_bytes: int = EVIDENCE_MAX_BYTES,
    ) -> None:
        given = PrometheusTarget(target) if isinstance(target, str) else target
        self.target = given.without_userinfo()
        self.max_series = max(1, max_series)
        self.max_bytes = max(1, max_bytes)
        self._base = self.target.url.rstrip("/")
        self._use_client(http)
        self._retries = max(0, retries)
        self._backoff = backoff
        self._max_backoff = max_backoff
        self._headers: dict[str, str] = {"Accept": "application/json"}
        if self.target.bearer_token:
            self._headers["Authorization"] = f"Bearer {self.target.bearer_token}"
        self._auth = httpx.BasicAuth(*self.target.basic_auth) if self.target.basic_auth else None

    def widened(self, *, max_series: int, max_bytes: int) -> PrometheusClient:
        """This client with other answer caps, sharing its connection pool (closing the copy
        leaves the pool open): the cause search reads hundreds of series per batched query."""
        other = copy.copy(self)
        other.max_series = max(1, max_series)
        other.max_bytes = max(1, max_bytes)
        other._own_http = False
        return other

    # ------------------------------------------------------------------ endpoints

    async def query(
        self, promql: str, time: TimeLike | None = None, *, query_timeout: float | None = None
    ) -> QueryResult:
        """Instant query (`/api/v1/query`)."""
        params: dict[str, Any] = {"query": promql}
        if time is not None:
            params["time"] = _fmt(unix(time))
        if query_timeout is not None:
            params["timeout"] = f"{query_timeout:g}s"
        data, warnings = await self._call("/api/v1/query", params, query_timeout)
        rtype = _get(data, "resultType", str)
        raw = data.get("result")
        if rtype == "matrix":
            series, dropped = _parse_matrix(raw, self.max_series)
            return QueryResult(rtype, series=series, warnings=warnings, dropped=dropped)
        if rtype in ("scalar", "string"):
            ts, val = _pair(raw)
            value = parse_value(val) if rtype == "scalar" else math.nan
            return QueryResult(rtype, samples=(Sample({}, ts, value),), warnings=warnings)
        if not isinstance(raw, list):
            raise PrometheusProtocolError(f"vector result is {type(raw).__name__}, not a list")
        kept = raw[: self.max_series]
        samples = tuple(Sample(_labels(item), *_sample(_get(item, "value", list))) for item in kept)
        return QueryResult(rtype, samples=samples, warnings=warnings, dropped=len(raw) - len(kept))

    async def query_range(
        self,
        promql: str,
        start: TimeLike,
        end: TimeLike,
        step: float,
        *,
        query_timeout: float | None = None,
    ) -> RangeResult:
        """Range query (`/api/v1/query_range`); `step` (seconds) is raised to the API's limit."""
        t0, t1 = unix(start), unix(end)
        eff = max(float(step), min_step(t0, t1), 0.001)
        params: dict[str, Any] = {
            "query": promql,
            "start": _fmt(t0),
            "end": _fmt(t1),
            "step": _fmt(eff),
        }
        if query_timeout is not None:
            params["timeout"] = f"{query_timeout:g}s"
        data, warnings = await self._call("/api/v1/query_range", params, query_timeout)
        series, dropped = _parse_matrix(data.get("result"), self.max_series)
        return RangeResult(series, t0, t1, eff, warnings, dropped)

    async def series(
        self, match: Sequence[str], start: TimeLike | None = None, end: TimeLike | None = None
    ) -> list[dict[str, str]]:
        """Label sets of the series matching any selector in `match` (`/api/v1/series`)."""
        if isinstance(match, str):
            match = [match]
        params: dict[str, Any] = {"match[]": list(match), **_span(start, end)}
        data, _ = await self._call("/api/v1/series", params, None, data_type=list)
        return [dict(_labels({"metric": item})) for item in data]

    async def label_values(
        self,
        label: str,
        match: Sequence[str] = (),
        start: TimeLike | None = None,
        end: TimeLike | None = None,
    ) -> list[str]:
        """Values of one label (`/api/v1/label/<name>/values`), optionally for some series."""
        if isinstance(match, str):
            match = [match]
        params: dict[str, Any] = {**_span(start, end)}
        if match:
            params["match[]"] = list(match)
        path = f"/api/v1/label/{label}/values"
        data, _ = await self._call(path, params, None, data_type=list, method="GET")
        return [str(v) for v in data]

    # ------------------------------------------------------------------ transport

    async def _call(
        self,
        path: str,
        params: dict[str, Any],
        query_timeout: float | None,
        *,
        data_type: type = dict,
        method: str = "POST",
    ) -> tuple[Any, tuple[str, ...]]:
        """One API call with retries; returns (data, warnings) or raises PrometheusError."""
        url = self._base + path
        # the HTTP timeout outlives the server-side one so Prometheus can answer "timeout" itself
        http_timeout = self.target.timeout if query_timeout is None else query_timeout + 1.0
        attempt = 0
        while True:
            try:
                async with self._http.stream(
                    method,
                    url,
                    data=params if method == "POST" else None,
                    params=params if method != "POST" else None,
                    headers=self._headers,
                    auth=self._auth or httpx.USE_CLIENT_DEFAULT,
                    timeout=http_timeout,
                ) as resp:
                    body = await _read_capped(resp, self.max_bytes)
            except httpx.TransportError as err:
                if attempt < self._retries:
                    await self._sleep(attempt)
                    attempt += 1
                    continue
                raise PrometheusUnavailable(
                    f"{method} {url}: {type(err).__name__}: {err} (after {attempt + 1} attempts)"
                ) from err
            if resp.status_code >= 500 and attempt < self._retries:
                await self._sleep(attempt)
                attempt += 1
                continue
            return _unwrap(resp, body, data_type, attempt + 1)

    async def _sleep(self, attempt: int) -> None:
        await asyncio.sleep(min(self._max_backoff, self._backoff * (2**attempt)))


def _where(resp: httpx.Response) -> str:
    return f"{resp.request.method} {resp.request.url.copy_with(query=None)}"


async def _read_capped(resp: httpx.Response, max_bytes: int) -> bytes:
    """The (decoded) body, read until it passes `max_bytes`: then the rest is not read."""
    declared = resp.headers.get("Content-Length", "")
    too_large = PrometheusTooLarge(
        f"{_where(resp)}: response over {byte_size(max_bytes)}", limit=max_bytes
    )
    # a compressed length over the cap means the body is over it too
    if declared.isdigit() and int(declared) > max_bytes:
        raise too_large
    chunks: list[bytes] = []
    size = 0
    async for chunk in resp.aiter_bytes():
        size += len(chunk)
        if size > max_bytes:
            raise too_large
        chunks.append(chunk)
    return b"".join(chunks)


def _unwrap(
    resp: httpx.Response, raw: bytes, data_type: type, attempts: int
) -> tuple[Any, tuple[str, ...]]:
    where = _where(resp)
    try:
        body = json.loads(raw)
    except ValueError as err:
        if resp.status_code >= 500:
            raise PrometheusUnavailable(
                f"{where}: HTTP {resp.status_code} (after {attempts} attempts)",
                status_code=resp.status_code,
            ) from err
        raise PrometheusProtocolError(
            f"{where}: HTTP {resp.status_code}, body is not JSON", status_code=resp.status_code
        ) from err
    if not isinstance(body, dict) or body.get("status") not in ("success", "error"):
        raise PrometheusProtocolError(
            f"{where}: HTTP {resp.status_code}, not an API envelope", status_code=resp.status_code
        )
    if body["status"] == "error" or resp.status_code >= 400:
        error_type = str(body.get("errorType", "unknown"))
        message = f"{where}: HTTP {resp.status_code} {error_type}: {body.get('error', '')}"
        if resp.status_code >= 500:
            raise PrometheusUnavailable(
                f"{message} (after {attempts} attempts)", status_code=resp.status_code
            )
        cls = PrometheusBadQuery if error_type == "bad_data" else PrometheusQueryError
        raise cls(message, error_type=error_type, status_code=resp.status_code)
    data = body.get("data")
    if not isinstance(data, data_type):
        raise PrometheusProtocolError(f"{where}: data is {type(data).__name__}")
    warnings = tuple(str(w) for w in body.get("warnings") or ())
    return data, warnings


def _fmt(x: float) -> str:
    return f"{x:.3f}".rstrip("0").rstrip(".")


def _span(start: TimeLike | None, end: TimeLike | None) -> dict[str, str]:
    out = {}
    if start is not None:
        out["start"] = _fmt(unix(start))
    if end is not None:
        out["end"] = _fmt(unix(end))
    return out


def _get(obj: object, key: str, kind: type) -> Any:
    if not isinstance(obj, dict) or not isinstance(obj.get(key), kind):
        raise PrometheusProtocolError(f"expected {key!r} ({kind.__name__}) in {obj!r:.200}")
    return obj[key]


def _labels(item: object) -> dict[str, str]:
    metric = _get(item, "metric", dict)
    return {str(k): str(v) for k, v in metric.items()}


def _pair(raw: object) -> tuple[float, object]:
    if not isinstance(raw, list) or len(raw) != 2:
        raise PrometheusProtocolError(f"expected [timestamp, value], got {raw!r:.200}")
    return float(raw[0]), raw[1]


def _sample(raw: list[Any]) -> tuple[float, float]:
    ts, val = _pair(raw)
    return ts, parse_value(val)


def _parse_matrix(raw: object, max_series: int) -> tuple[tuple[Series, ...], int]:
    """The first `max_series` series and how many more the answer held."""
    if not isinstance(raw, list):
        raise PrometheusProtocolError(f"matrix result is {type(raw).__name__}, not a list")
    out = []
    for item in raw[:max_series]:
        points = _get(item, "values", list)
        ts = np.fromiter((float(p[0]) for p in points), dtype=np.float64, count=len(points))
        vals = np.fromiter((parse_value(p[1]) for p in points), np.float64, count=len(points))
        out.append(Series(_labels(item), ts, vals))
    return tuple(out), max(len(raw) - max_series, 0)
