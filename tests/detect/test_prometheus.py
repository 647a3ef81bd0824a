"""The Prometheus HTTP client against a real `prometheus` (backfilled + scraping) on loopback."""

from __future__ import annotations

import asyncio
import math
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass

import httpx
import numpy as np
import pytest

from receiver.detect.outliers import score_batch
from receiver.detect.prometheus import (
    MAX_POINTS,
    PrometheusBadQuery,
    PrometheusClient,
    PrometheusError,
    PrometheusQueryError,
    PrometheusTarget,
    PrometheusUnavailable,
    min_step,
    parse_value,
    to_matrix,
)
from tests.support.exporter import SyntheticExporter
from tests.support.procs import free_port
from tests.support.prom import prometheus

STEP = 60
POINTS = 120
GAP = range(40, 80)  # series "b" has no samples here
T0 = 1_700_000_040  # a whole minute, long before "now": backfilled blocks, no head overlap


def expected(series: str, k: int) -> float:
    if series == "a":
        return float(k)
    if series == "b":
        return 100.0 + k
    return {5: math.nan, 6: math.inf}.get(k, -float(k))


@dataclass(frozen=True)
class PromEnv:
    url: str
    exporter: SyntheticExporter


@pytest.fixture(scope="module")
def prom(tmp_path_factory: pytest.TempPathFactory) -> Iterator[PromEnv]:
    work = tmp_path_factory.mktemp("prom")
    lines = ["# TYPE bf_metric gauge"]
    for series in "abc":
        for k in range(POINTS):
            if series == "b" and k in GAP:
                continue
            v = expected(series, k)
            text = "NaN" if math.isnan(v) else "+Inf" if math.isinf(v) else repr(v)
            lines.append(f'bf_metric{{series="{series}"}} {text} {T0 + STEP * k}')
    (work / "history.om").write_text("\n".join(lines) + "\n# EOF\n")
    subprocess.run(
        ["promtool", "tsdb", "create-blocks-from", "openmetrics", "history.om", "tsdb"],
        cwd=work,
        check=True,
        capture_output=True,
        timeout=60,
    )
    with SyntheticExporter() as exporter:
        exporter.set("detect_live_value", {"case": "live"}, 42.0)
        with prometheus(work, scrape_targets=[exporter.target], tsdb_path=work / "tsdb") as ep:
            yield PromEnv(ep.url, exporter)


async def test_instant_query_reads_a_scraped_value(prom: PromEnv) -> None:
    """query() returns the exporter's live sample as a float with its labels."""
    async with PrometheusClient(prom.url) as client:
        for _ in range(100):
            res = await client.query('detect_live_value{case="live"}')
            if res.samples:
                break
            await asyncio.sleep(0.1)
        assert res.result_type == "vector"
        assert [s.value for s in res.samples] == [42.0]
        assert res.samples[0].labels["case"] == "live"
        assert res.samples[0].labels["__name__"] == "detect_live_value"


async def test_query_range_aligns_on_the_step_grid(prom: PromEnv) -> None:
    """query_range + to_matrix put every sample at start + k*step, gaps NaN, NaN/+Inf parsed."""
    start, end = T0 + 30, T0 + 30 + STEP * (POINTS - 1)  # off the sample grid on purpose
    async with PrometheusClient(prom.url) as client:
        res = await client.query_range("bf_metric", start, end, STEP)
    m = to_matrix(res)
    np.testing.assert_array_equal(m.timestamps, start + STEP * np.arange(POINTS))
    order = {labels["series"]: row for row, labels in enumerate(m.labels)}
    assert sorted(order) == ["a", "b", "c"]
    np.testing.assert_array_equal(m.values[order["a"]], np.arange(POINTS, dtype=float))
    b = m.values[order["b"]]
    assert np.isnan(b[GAP.start + 10 : GAP.stop - 10]).all()  # past the 5-minute lookback
    np.testing.assert_array_equal(b[: GAP.start], 100.0 + np.arange(GAP.start))
    c = m.values[order["c"]]
    assert math.isnan(c[5])
    assert c[6] == math.inf
    assert c[7] == -7.0
    scores = score_batch(m.timestamps, m.values).scores
    assert scores.shape == (3, POINTS)


async def test_query_range_raises_step_to_the_point_limit(prom: PromEnv) -> None:
    """A 30-day range with a 1 s step is sent with step >= range/11000 and succeeds."""
    start, end = T0, T0 + 30 * 86400
    async with PrometheusClient(prom.url) as client:
        res = await client.query_range("bf_metric", start, end, 1)
    assert res.step == min_step(start, end)
    assert (end - start) / res.step < MAX_POINTS
    assert {s.labels["series"] for s in res.series} == {"a", "b", "c"}


async def test_series_and_label_values(prom: PromEnv) -> None:
    """series() lists label sets and label_values() the values of one label."""
    async with PrometheusClient(prom.url) as client:
        sets = await client.series(["bf_metric"], T0, T0 + STEP * POINTS)
        values = await client.label_values("series", ["bf_metric"], T0, T0 + STEP * POINTS)
    assert sorted(s["series"] for s in sets) == ["a", "b", "c"]
    assert values == ["a", "b", "c"]


async def test_bad_promql_is_a_typed_non_retryable_error(prom: PromEnv) -> None:
    """Invalid PromQL raises PrometheusBadQuery (400, not retryable) after one request."""
    sent: list[httpx.Request] = []

    async def count(request: httpx.Request) -> None:
        sent.append(request)

    async with httpx.AsyncClient(event_hooks={"request": [count]}) as http:
        client = PrometheusClient(prom.url, http=http, retries=3, backoff=0.01)
        with pytest.raises(PrometheusBadQuery) as info:
            await client.query("sum(rate(bf_metric[5m])")
    assert info.value.retryable is False
    assert info.value.status_code == 400
    assert info.value.error_type == "bad_data"
    assert "parse error" in str(info.value)
    assert len(sent) == 1


async def test_unreachable_port_is_retryable_after_retries() -> None:
    """A port nobody listens on raises PrometheusUnavailable (retryable) after 1 + retries."""
    sent: list[httpx.Request] = []

    async def count(request: httpx.Request) -> None:
        sent.append(request)

    async with httpx.AsyncClient(event_hooks={"request": [count]}) as http:
        client = PrometheusClient(
            f"http://127.0.0.1:{free_port()}", http=http, retries=2, backoff=0.01
        )
        with pytest.raises(PrometheusUnavailable) as info:
            await client.query("up")
    assert info.value.retryable is True
    assert isinstance(info.value.__cause__, httpx.ConnectError)
    assert len(sent) == 3


def _envelope(status: int, body: dict[str, object]) -> httpx.Response:
    return httpx.Response(status, json=body)


async def test_5xx_is_retried_and_4xx_is_not() -> None:
    """503 answers are retried until success; a 422 execution error is raised at once."""
    calls: list[httpx.Request] = []
    replies = [
        _envelope(503, {"status": "error", "errorType": "timeout", "error": "slow"}),
        httpx.Response(502, text="bad gateway"),
        _envelope(200, {"status": "success", "data": {"resultType": "scalar", "result": [1, "2"]}}),
        _envelope(422, {"status": "error", "errorType": "execution", "error": "too many"}),
    ]

    def handler(request: httpx.Request) -> httpx.Response:
        calls.append(request)
        return replies[len(calls) - 1]

    async with httpx.AsyncClient(transport=httpx.MockTransport(handler)) as http:
        client = PrometheusClient("http://prom.invalid", http=http, retries=3, backoff=0.0)
        res = await client.query("1+1")
        assert res.result_type == "scalar"
        assert res.samples[0].value == 2.0
        assert len(calls) == 3
        with pytest.raises(PrometheusQueryError) as info:
            await client.query("x")
    assert len(calls) == 4
    assert info.value.retryable is False
    assert info.value.error_type == "execution"
    assert not isinstance(info.value, PrometheusBadQuery)


async def test_5xx_exhausting_retries_is_retryable_error() -> None:
    """Only 503s: PrometheusUnavailable with the status code after 1 + retries attempts."""
    calls: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        calls.append(request)
        return _envelope(503, {"status": "error", "errorType": "unavailable", "error": "down"})

    async with httpx.AsyncClient(transport=httpx.MockTransport(handler)) as http:
        client = PrometheusClient("http://prom.invalid", http=http, retries=2, backoff=0.0)
        with pytest.raises(PrometheusUnavailable) as info:
            await client.query("up")
    assert info.value.status_code == 503
    assert info.value.retryable
    assert len(calls) == 3


async def test_auth_and_form_post_are_sent() -> None:
    """Bearer or basic auth goes on every request; queries are POSTed form-encoded."""
    seen: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return _envelope(200, {"status": "success", "data": {"resultType": "vector", "result": []}})

    async with httpx.AsyncClient(transport=httpx.MockTransport(handler)) as http:
        bearer = PrometheusTarget("http://p.invalid/prom/", bearer_token="tok")
        await PrometheusClient(bearer, http=http).query("up", 1700000000)
        basic = PrometheusTarget("http://p.invalid", basic_auth=("u", "pw"))
        await PrometheusClient(basic, http=http).query("up")
    assert seen[0].headers["authorization"] == "Bearer tok"
    assert seen[0].url.path == "/prom/api/v1/query"
    assert seen[0].method == "POST"
    assert seen[0].headers["content-type"] == "application/x-www-form-urlencoded"
    assert seen[0].content == b"query=up&time=1700000000"
    assert seen[1].headers["authorization"].startswith("Basic ")
    assert "tok" not in repr(bearer)


def test_parse_value_handles_prometheus_spellings() -> None:
    """Sample strings "NaN", "+Inf", "-Inf" and numbers become floats; junk is an error."""
    assert math.isnan(parse_value("NaN"))
    assert parse_value("+Inf") == math.inf
    assert parse_value("-Inf") == -math.inf
    assert parse_value("1e-3") == 0.001
    with pytest.raises(PrometheusError):
        parse_value("abc")


def test_min_step_keeps_ranges_within_the_point_limit() -> None:
    """min_step keeps any range within MAX_POINTS points and is whole milliseconds."""
    for span in (1.0, 3600.0, 7 * 86400.0, 365 * 86400.0):
        step = min_step(0.0, span)
        assert span / step <= MAX_POINTS - 1 + 1e-9
        assert round(step * 1000) == pytest.approx(step * 1000)
