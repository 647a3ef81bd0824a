"""The cause search against a real Prometheus holding backfilled incidents (tests/enrich/stories):
discovery from the alert's labels, the ranked candidates as evidence, the offline analyst
naming the cause, the query budget."""

from __future__ import annotations

import subprocess
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import pytest

from receiver.detect.prometheus import PrometheusClient
from receiver.domain import Analysis, Hypothesis, IncidentView, Signal
from receiver.enrich.analyst import analyse, check_citations, quality_score
from receiver.enrich.causes import QUERY_BUDGET
from receiver.enrich.context import ContextGatherer
from receiver.enrich.evidence import EvidenceBundle
from receiver.enrich.tracing import NoopTracer
from tests.enrich.factories import make_incident, make_signal
from tests.enrich.helpers import generator_url
from tests.enrich.stories import Story, story
from tests.support.prom import prometheus

EXPR = (
    "rate(http_request_duration_seconds_sum[5m]) / rate(http_request_duration_seconds_count[5m])"
    " > 0.2"
)
CONVENTION = {
    "metric",
    "labels",
    "query",
    "onset",
    "direction",
    "size",
    "recurring",
    "score",
    "rank",
    "role",
}


@pytest.fixture(scope="module", params=["leak", "deploy", "dependency", "surge"])
def backfilled(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[str, Story]]:
    """A real Prometheus holding one story that ends a minute before now."""
    kind = str(request.param)
    st = story(kind, seed=11 + len(kind), end=int(time.time()) - 60)
    work = tmp_path_factory.mktemp(f"causes-{kind}")
    (work / "story.om").write_text(st.text)
    subprocess.run(
        ["promtool", "tsdb", "create-blocks-from", "openmetrics", "story.om", "tsdb"],
        cwd=work,
        check=True,
        capture_output=True,
        timeout=120,
    )
    with prometheus(work, tsdb_path=Path(work / "tsdb")) as endpoint:
        yield endpoint.url, st


def _incident(st: Story) -> IncidentView:
    at = datetime.fromtimestamp(st.alert_at, UTC)
    instances = [st.instance] if st.instance else [f"web-{i}:8080" for i in (1, 2, 3)]
    signals: list[Signal] = [
        make_signal(
            alertname="HighLatency",
            instance=instance,
            labels={"job": "web"},
            generator_url=generator_url(EXPR),
            fingerprint=f"fp-{instance}",
        ).model_copy(update={"starts_at": at})
        for instance in instances
    ]
    return make_incident(*signals, title="HighLatency on web").model_copy(update={"started_at": at})


async def _gather(url: str, st: Story) -> EvidenceBundle:
    async with httpx.AsyncClient() as http:
        gatherer = ContextGatherer(PrometheusClient(url, http=http), prom_url=url)
        return await gatherer.gather(_incident(st))


async def test_offline_top_hypothesis_cites_the_causal_series(
    backfilled: tuple[str, Story],
) -> None:
    """The top hypothesis cites a candidate whose metric (and instance) is the story's cause,
    tells its onset, and the gathering stays within the query budget."""
    url, st = backfilled
    bundle = await _gather(url, st)
    assert 0 < bundle.queries <= QUERY_BUDGET
    assert bundle.seconds > 0
    analysis = await analyse(_incident(st), bundle, None, NoopTracer())
    (cited,) = analysis.hypotheses[0].evidence_ids
    item = bundle.get(cited)
    assert item is not None
    assert item.kind == "candidate"
    data: dict[str, Any] = item.data or {}
    assert set(data) >= CONVENTION
    assert data["metric"] == st.cause_metric
    if st.cause_instance and st.kind != "deploy":
        assert data["labels"]["instance"] == st.cause_instance
    assert data["rank"] == 1
    assert data["onset"] <= st.alert_at
    assert analysis.summary.startswith("[offline analysis]")
    assert "statistical" in analysis.cause.lower()
    assert analysis.quality >= 0.9
    assert len(analysis.hypotheses) >= 2  # runners-up follow
    assert all(h.evidence_ids for h in analysis.hypotheses)


def test_a_restatement_scores_below_a_cause() -> None:
    """Quality: a complete, grounded answer that cites only the alert scores < 0.4; citing a
    candidate scores 1; a model ignoring a strong candidate is flagged and keeps it."""
    bundle = EvidenceBundle()
    bundle.add("alert", "alert HighLatency", "alertname: HighLatency")
    cand = bundle.add(
        "candidate",
        "cause candidate #1",
        "process_resident_memory_bytes of web-2 rose from 4e8 to 9e8.",
        {"strong": True, "metric": "process_resident_memory_bytes"},
    )
    assert cand is not None
    restating = Analysis(
        summary="s",
        cause="HighLatency fires",
        fix=["f"],
        simplified="x",
        confidence=0.5,
        hypotheses=[Hypothesis(claim="The alert condition is met.", evidence_ids=["E1"])],
    )
    assert quality_score(restating, bundle) < 0.4
    naming = restating.model_copy(
        update={"hypotheses": [Hypothesis(claim="Memory leak.", evidence_ids=[cand.id])]}
    )
    assert quality_score(naming, bundle) == 1.0
    flagged = check_citations(restating, bundle)
    assert [h.evidence_ids for h in flagged.hypotheses] == [["E1"], [cand.id]]
    assert "cites no ranked cause candidate" in flagged.unknowns[0]
