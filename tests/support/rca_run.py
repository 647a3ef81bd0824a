"""Run one incident story through the real service: a real Prometheus holding the story's
backfilled series, the app (uvicorn, embedded store) with the offline analyst or a loopback
model that trusts the evidence ranking, the story's webhook posted to /api/v1/alerts, and the
stored analysis judged by `verdict`.
"""

from __future__ import annotations

import asyncio
import json
import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tests.support.fake_llm import FakeLLM, Recorded, Reply, ollama_chat
from tests.support.rca_stories import Story, Verdict, story_prometheus, trusting_answer, verdict
from tests.support.service import Running, make_settings, serve

ANALYSIS_WITHIN = 90.0
# Names the service may expose per incident; the first one present is read (see report()).
QUERY_METRICS = ("rca_evidence_queries", "rca_prometheus_queries", "rca_queries")
EVIDENCE_METRIC = "rca_evidence_seconds"


@dataclass(frozen=True)
class Run:
    """One story analysed once: the verdict and what the service measured for it."""

    story: str
    mode: str  # offline | model
    verdict: Verdict
    queries: float | None
    evidence_seconds: float | None
    analysis: dict[str, Any]


def trusting_model(request: Recorded) -> Reply:
    """The scripted model: its top hypothesis cites the prompt's first cause candidate."""
    messages = json.loads(request.body)["messages"]
    prompt = next(str(m["content"]) for m in messages if m["role"] == "user")
    return ollama_chat(trusting_answer(prompt))


def _histogram_sum(text: str, name: str) -> float | None:
    """`name`'s _sum (a histogram or summary) or plain counter value in /metrics text."""
    pattern = re.compile(rf"^{re.escape(name)}(?:_sum|_total)?(?:\{{[^}}]*\}})? (\S+)$", re.M)
    values = [float(m.group(1)) for m in pattern.finditer(text)]
    return sum(values) if values else None


def _from_document(analysis: Mapping[str, Any], *keys: str) -> float | None:
    """A per-incident figure the analysis document itself carries (top level or `stats`)."""
    for holder in (analysis, analysis.get("stats") or {}, analysis.get("evidence_stats") or {}):
        if isinstance(holder, Mapping):
            for key in keys:
                value = holder.get(key)
                if isinstance(value, int | float) and not isinstance(value, bool):
                    return float(value)
    return None


async def _analysis(svc: Running, group: str, within: float) -> dict[str, Any]:
    """The incident of `group`, once its current analysis is stored."""
    key = f'{{}}:{{group="{group}"}}'
    body = await svc.wait_for(
        "/api/v1/incidents",
        lambda b: any(i["key"] == key for i in b["incidents"]),
        within=30.0,
        limit=500,
    )
    incident_id = next(i["id"] for i in body["incidents"] if i["key"] == key)
    deadline = asyncio.get_running_loop().time() + within
    last = ""
    while asyncio.get_running_loop().time() < deadline:
        resp = await svc.client.get(f"{svc.url}/api/v1/incidents/{incident_id}/analysis")
        if resp.status_code == 200 and resp.json()["current"]:
            found: dict[str, Any] = resp.json()
            return found
        last = resp.text
        await asyncio.sleep(0.1)
    raise AssertionError(f"{group}: no analysis within {within}s: {last[:500]}")


async def analyse(
    story: Story, store_uri: str, workdir: Path, prom_url: str, *, llm_url: str | None = None
) -> Run:
    """Post the story's webhook to a fresh service on `prom_url` and judge its analysis."""
    overrides: dict[str, Any] = {
        "prom_url": prom_url,
        "enrich_poll_seconds": 0.3,
        "enrich_settle_seconds": 0.1,
        "notify_rca_wait_seconds": 0,
    }
    if llm_url is not None:
        overrides |= {
            "llm_url": llm_url,
            "llm_provider": "ollama",
            "llm_max_tokens_per_incident": 0,
            "llm_max_tokens_per_hour": 0,
        }
    mode = "offline" if llm_url is None else "model"
    group = f"{story.name}-{story.seed}-{mode}"
    async with serve(make_settings(store_uri, workdir, **overrides)) as svc:
        resp = await svc.post_alerts(story.webhook(group))
        if resp.status_code != 200:
            raise AssertionError(f"webhook refused: {resp.status_code} {resp.text[:300]}")
        analysis = await _analysis(svc, group, ANALYSIS_WITHIN)
        metrics = (await svc.client.get(f"{svc.url}/metrics")).text
    # each service instance analysed exactly this incident, so its histogram sums are its own
    queries = _from_document(analysis, "evidence_queries", "queries", "prometheus_queries")
    if queries is None:
        queries = next(
            (v for n in QUERY_METRICS if (v := _histogram_sum(metrics, n)) is not None), None
        )
    evidence = _from_document(analysis, "evidence_seconds")
    if evidence is None:
        evidence = _histogram_sum(metrics, EVIDENCE_METRIC)
    return Run(story.name, mode, verdict(analysis, story), queries, evidence, analysis)


async def analyse_story(
    story: Story, store_uri: str, workdir: Path, *, with_model: bool = True
) -> list[Run]:
    """The story offline and (if `with_model`) with the trusting model, on one Prometheus."""
    runs: list[Run] = []
    with story_prometheus(story, workdir / "prom") as prom:
        runs.append(await analyse(story, store_uri, workdir / "offline", prom.url))
        if with_model:
            with FakeLLM(responder=trusting_model) as llm:
                runs.append(
                    await analyse(story, store_uri, workdir / "model", prom.url, llm_url=llm.url)
                )
    return runs
