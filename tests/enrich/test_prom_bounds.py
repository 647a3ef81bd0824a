"""Bounds on PromQL taken from alerts and on what a query may bring back, against a real
Prometheus holding the enrichment history plus a 60-series fleet metric; and PROM_URL
credentials, which must never leave the service."""

from __future__ import annotations

import json
import logging
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import httpx
import pytest

from receiver.detect.fetch import Grid, fetch
from receiver.detect.prometheus import PrometheusClient
from receiver.detect.promql import MAX_EXPR
from receiver.detect.selection import Selector
from receiver.domain import IncidentView, Signal
from receiver.enrich.context import ContextGatherer
from receiver.store.embedded import EmbeddedStore
from receiver.ui.evidence import ChartSpec, Window, fetch_chart
from tests.enrich.conftest import ALERT_AT, NODE, STEP, T0, _om_labels, history_lines
from tests.enrich.factories import make_incident, make_signal
from tests.enrich.helpers import analysis, cpu_alert, generator_url, incident_of, post, settings
from tests.support.prom import prometheus
from tests.support.service import serve

AT = datetime.fromtimestamp(ALERT_AT, UTC)
FLEET = "fleet:load"
FLEET_SIZE = 60
CAP_NOTE = "query returned more than 50 series; first 50 shown"
SECRET = "hunter2-s3cret"


@dataclass(frozen=True)
class Fleet:
    url: str
    query_log: Path

    def queries(self) -> list[str]:
        """Every query Prometheus ran so far, from its query log."""
        if not self.query_log.exists():
            return []
        lines = self.query_log.read_text().splitlines()
        return [json.loads(line)["params"]["query"] for line in lines if line.strip()]


def _fleet_lines() -> list[str]:
    lines = [f"# TYPE {FLEET} gauge"]
    for i in range(FLEET_SIZE):
        labels = _om_labels({"instance": f"host-{i:02d}:9100", "job": "fleet"})
        lines += [f"{FLEET}{labels} {float(i)!r} {t}" for t in range(T0, T0 + 3_601, STEP)]
    return lines


@pytest.fixture(scope="module")
def fleet(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Fleet]:
    """A real Prometheus with the enrichment history and 60 `fleet:load` series, logging
    every query it runs."""
    work = tmp_path_factory.mktemp("bounds-prom")
    (work / "history.om").write_text("\n".join(history_lines() + _fleet_lines()) + "\n# EOF\n")
    subprocess.run(
        ["promtool", "tsdb", "create-blocks-from", "openmetrics", "history.om", "tsdb"],
        cwd=work,
        check=True,
        capture_output=True,
        timeout=60,
    )
    query_log = work / "queries.jsonl"
    with prometheus(work, tsdb_path=work / "tsdb", query_log=query_log) as endpoint:
        yield Fleet(endpoint.url, query_log)


def _signal(expr: str, instance: str = NODE) -> Signal:
    return make_signal(
        alertname="HighCPUUsage",
        instance=instance,
        labels={"job": "node"},
        generator_url=generator_url(expr),
        value=None,
    ).model_copy(update={"starts_at": AT})


def _incident(signal: Signal) -> IncidentView:
    return make_incident(signal).model_copy(update={"started_at": AT})


async def test_an_answer_over_the_series_cap_is_read_up_to_it_and_noted(fleet: Fleet) -> None:
    """60 series for one expression: evidence reads 50, says so in a note, shows 3 of them."""
    async with httpx.AsyncClient(trust_env=False) as http:
        gatherer = ContextGatherer(PrometheusClient(fleet.url, http=http), prom_url=fleet.url)
        # no fleet series has this instance: the unscoped fallback answers with all 60
        bundle = await gatherer.gather(_incident(_signal(f"{FLEET} > 10", "elsewhere:1")))
    (shown,) = [i for i in bundle.of_kind("expression") if i.data and "series" in i.data]
    assert shown.text.endswith("(47 more series not shown)")
    (note,) = bundle.of_kind("note")
    assert note.title == "the expression of HighCPUUsage matched more series than were read"
    assert note.text == f"{FLEET}\n{CAP_NOTE}"
    assert note.data == {"expr": FLEET, "series_read": 50, "dropped": 10}


async def test_a_chart_over_the_series_cap_draws_from_the_first_ones_and_says_so(
    fleet: Fleet,
) -> None:
    """The chart query is capped like the evidence one and carries the same note."""
    window = Window(float(T0), float(T0 + 3_600), 60.0, (float(ALERT_AT),))
    async with httpx.AsyncClient(trust_env=False) as http:
        data = await fetch_chart(http, fleet.url, ChartSpec(title="fleet", expr=FLEET), window)
        alone = await fetch_chart(
            http,
            fleet.url,
            ChartSpec(title="one", expr=f'{FLEET}{{instance="host-01:9100"}}'),
            window,
        )
    assert (len(data.lines), data.note, data.problem) == (5, CAP_NOTE, "")
    assert (len(alone.lines), alone.note) == (1, "")


async def test_an_answer_over_the_byte_cap_is_not_read_and_becomes_a_note(fleet: Fleet) -> None:
    """A response larger than the client's byte cap is a note, not a failed analysis."""
    async with httpx.AsyncClient(trust_env=False) as http:
        client = PrometheusClient(fleet.url, http=http, max_bytes=16 * 1024)
        gatherer = ContextGatherer(client, prom_url=fleet.url)
        bundle = await gatherer.gather(_incident(_signal(FLEET, "elsewhere:1")))
    notes = bundle.of_kind("note")
    assert [(n.title, n.text) for n in notes] == [
        ("the expression of HighCPUUsage was not read", f"{FLEET}\nresponse over 16 kB; not read")
    ]
    assert bundle.of_kind("alert")  # the rest of the analysis went on


async def test_the_poller_passes_its_own_series_cap_to_the_client(fleet: Fleet) -> None:
    """The poller's limits are parameters: a client capped at 10 marks the fetch capped, one
    capped at the poller's 10,000 reads all 60 series of the selector."""
    grid = Grid(float(T0), float(T0 + 3_600), 60.0)
    selectors = [Selector(expr=FLEET, custom=True)]
    async with httpx.AsyncClient(trust_env=False) as http:
        small = PrometheusClient(fleet.url, http=http, max_series=10)
        cut = await fetch(small, selectors, grid, max_series=1_000, prior=None, query_timeout=5)
        large = PrometheusClient(fleet.url, http=http, max_series=10_000, max_bytes=1 << 28)
        full = await fetch(large, selectors, grid, max_series=1_000, prior=None, query_timeout=5)
    assert (len(cut.refs), cut.capped) == (10, True)
    assert (len(full.refs), full.capped) == (FLEET_SIZE, False)


@pytest.mark.parametrize(
    ("expr", "problem"),
    [
        ("up; drop", "the expression holds ';': only one expression is run"),
        (
            "instance:cpu_usage:percent" + " + 0" * 2_500,
            f"the expression has 10,026 characters, over the {MAX_EXPR:,} limit",
        ),
    ],
)
async def test_a_refused_generator_expression_is_noted_and_never_queried(
    fleet: Fleet, expr: str, problem: str
) -> None:
    """`up; drop` and a 10 kB expression: a note says why, Prometheus never sees them, and
    the sibling series are still gathered."""
    async with httpx.AsyncClient(trust_env=False) as http:
        gatherer = ContextGatherer(PrometheusClient(fleet.url, http=http), prom_url=fleet.url)
        bundle = await gatherer.gather(_incident(_signal(expr)))
    assert not bundle.of_kind("expression")
    (note,) = bundle.of_kind("note")
    assert note.title == f"the generatorURL expression of HighCPUUsage on {NODE} was not used"
    assert note.text == f"{problem}; no query was run with it."
    assert bundle.of_kind("sibling")
    queries = fleet.queries()
    assert any("instance:memory_usage:percent" in q for q in queries)  # the log records queries
    assert not [q for q in queries if "drop" in q or "+ 0 + 0" in q or len(q) > MAX_EXPR]


async def test_prom_url_credentials_never_leave_the_service(
    fleet: Fleet,
    embedded_store: EmbeddedStore,
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """PROM_URL with user:password: queries still work (basic auth), and the password is in
    no evidence, API answer, console page, log record or log file, while the errors that name
    Prometheus still name its host."""
    caplog.set_level(logging.DEBUG, logger="receiver")
    host = fleet.url.removeprefix("http://")
    cfg = settings(
        embedded_store,
        tmp_path,
        prom_url=f"http://promuser:{SECRET}@{host}",
        monitor_interval=1,
        detect_selectors="rate(nope[5m]) > > 1",
    )
    async with serve(cfg) as svc:
        await post(svc, [cpu_alert(NODE, expr="rate(x[5m]) > > 1")], group="creds")
        incident = await incident_of(svc, "creds")
        answer = await analysis(svc, incident["id"])
        notes = [e for e in answer["evidence"] if e["kind"] == "note"]
        assert any(host in n["text"] and "PrometheusBadQuery" in n["text"] for n in notes)
        assert any(e["kind"] == "sibling" for e in answer["evidence"])  # auth did not break it
        snapshots = await svc.wait_for(
            "/prom-metrics", lambda b: any(m["error"] for m in b["metrics"]), within=30
        )
        assert host in json.dumps(snapshots)
        answers = [json.dumps(answer), json.dumps(snapshots)]
        for path in (
            "/",
            "/healthz",
            "/readyz",
            "/stats",
            "/api/v1/targets",
            "/api/v1/targets/default",
            "/api/v1/rca",
            f"/api/v1/incidents/{incident['id']}",
            f"/ui/incidents/{incident['id']}",
        ):
            resp = await svc.client.get(f"{svc.url}{path}")
            assert resp.status_code in (200, 503), (path, resp.status_code)
            answers.append(resp.text)
        default = await svc.get("/api/v1/targets/default")
    assert default["url"] == fleet.url
    assert default["auth"] == {"type": "basic", "username": "promuser", "password": "********"}
    for text in answers:
        assert SECRET not in text
    assert any("outlier poller: default" in r.getMessage() for r in caplog.records)
    assert SECRET not in caplog.text
    written = "".join(f.read_text() for f in cfg.log_path.glob("*.log"))
    assert host in written
    assert SECRET not in written
