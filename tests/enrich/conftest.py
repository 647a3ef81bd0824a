"""Fixtures for the enrichment tests: loopback fake LLM and Langfuse servers, an HTTP client,
and a real Prometheus holding an hour of recording-rule series around a CPU alert."""

from __future__ import annotations

import subprocess
from collections.abc import AsyncIterator, Callable, Iterator

import httpx
import pytest

from receiver.enrich.tracing import NoopTracer, Tracer
from tests.support.fake_langfuse import FakeLangfuse
from tests.support.fake_llm import FakeLLM
from tests.support.prom import prometheus


@pytest.fixture
def fake_llm() -> Iterator[FakeLLM]:
    with FakeLLM() as server:
        yield server


@pytest.fixture
def fake_langfuse() -> Iterator[FakeLangfuse]:
    with FakeLangfuse() as server:
        yield server


@pytest.fixture
async def http() -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(trust_env=False) as client:
        yield client


@pytest.fixture
def noop_tracer() -> Tracer:
    return NoopTracer()


# --- a real Prometheus with backfilled history ---------------------------------------------------

T0 = 1_700_000_000  # 2023-11-14 22:13:20 UTC: long before "now", so blocks never meet the head
ALERT_AT = T0 + 2_400  # the alert's startsAt in every history-based test
STEP = 15
NODE = "node-7:9100"
OTHER_NODE = "node-8:9100"
HOSTILE_NODE = 'we"ird$1\\:9100'  # a label value that must stay a string inside PromQL


def _cpu(t: int) -> float:
    """20 % until 7 min before the alert, a ramp to 95 % 2 min before it, then 95 %."""
    ramp_start, ramp_end = ALERT_AT - 420, ALERT_AT - 120
    if t <= ramp_start:
        return 20.0
    if t >= ramp_end:
        return 95.0
    return 20.0 + 75.0 * (t - ramp_start) / (ramp_end - ramp_start)


def _latency(t: int) -> float:
    return 0.2 if t < ALERT_AT - 300 else 1.5


def _om_labels(labels: dict[str, str]) -> str:
    inner = ",".join(
        f'{k}="{v.replace(chr(92), chr(92) * 2).replace(chr(34), chr(92) + chr(34))}"'
        for k, v in sorted(labels.items())
    )
    return "{" + inner + "}"


def history_lines() -> list[str]:
    """OpenMetrics text for one hour of the recording-rule series around ALERT_AT."""
    series: list[tuple[str, dict[str, str], Callable[[int], float]]] = [
        ("instance:cpu_usage:percent", {"instance": NODE, "job": "node"}, _cpu),
        ("instance:cpu_usage:percent", {"instance": OTHER_NODE, "job": "node"}, lambda t: 10.0),
        ("instance:cpu_usage:percent", {"instance": HOSTILE_NODE, "job": "node"}, lambda t: 50.0),
        ("instance:memory_usage:percent", {"instance": NODE, "job": "node"}, lambda t: 40.0),
        (
            "instance:disk_usage:percent",
            {"instance": NODE, "job": "node", "mountpoint": "/"},
            lambda t: 55.0,
        ),
        ("job:http_request_latency_seconds:p95", {"job": "node"}, _latency),
    ]
    lines: list[str] = []
    for name in dict.fromkeys(name for name, _, _ in series):
        lines.append(f"# TYPE {name} gauge")
        for metric, labels, fn in series:
            if metric != name:
                continue
            for t in range(T0, T0 + 3_600 + 1, STEP):
                lines.append(f"{name}{_om_labels(labels)} {fn(t)!r} {t}")
    return lines


@pytest.fixture(scope="session")
def prom_history(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """URL of a real Prometheus holding `history_lines()` (promtool-backfilled blocks)."""
    work = tmp_path_factory.mktemp("enrich-prom")
    (work / "history.om").write_text("\n".join(history_lines()) + "\n# EOF\n")
    subprocess.run(
        ["promtool", "tsdb", "create-blocks-from", "openmetrics", "history.om", "tsdb"],
        cwd=work,
        check=True,
        capture_output=True,
        timeout=60,
    )
    with prometheus(work, tsdb_path=work / "tsdb") as endpoint:
        yield endpoint.url
