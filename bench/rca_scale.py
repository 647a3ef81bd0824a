"""Evidence gathering against a Prometheus holding ~10,000 series: time and queries per incident.

One causal story (tests/support/rca_stories.py) plus filler: more instances of the alerting job
(discovery finds them all, so the series cap and the batching matter) and hosts of other jobs
(never looked at). Filler series are sampled every minute over the last 3.5 h. The real
`ContextGatherer` (alert expression, siblings, cause search) runs once per alert of the story,
`--rounds` times; one JSON line to stdout.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

import httpx
import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from receiver.detect.prometheus import PrometheusClient  # noqa: E402
from receiver.domain import IncidentView  # noqa: E402
from receiver.enrich.context import ContextGatherer  # noqa: E402
from tests.enrich.factories import make_incident, make_signal  # noqa: E402
from tests.support.prom import prometheus  # noqa: E402
from tests.support.rca_stories import Family, Sample, Story, backfill, build  # noqa: E402

FILLER_STEP = 60
FILLER_SPAN = 3.5 * 3600


def _filler(story: Story, target: int, rng: np.random.Generator) -> int:
    """Add gauge/counter families until the story holds about `target` series."""
    have = sum(len(f.samples) for f in story.families.values())
    t = story.times.astype(np.float64)
    keep = (t >= t[-1] - FILLER_SPAN) & (np.round(t) % FILLER_STEP == 0)
    job = story.alerts[0]["labels"]["job"]
    n_host = 0
    while have < target:
        n_host += 1
        same_job = n_host % 2 == 1  # half the filler hosts belong to the alerting job
        labels = {
            "instance": f"{'fill' if same_job else 'other'}-{n_host}:8080",
            "job": job if same_job else f"svc-{n_host % 17}",
        }
        for m in range(150):
            name = f"filler_metric_{m % 50}"
            values = np.full(t.size, np.nan)
            values[keep] = 100 + rng.normal(0, 2, int(keep.sum())).cumsum() * 0.1
            family = story.families.setdefault(name, Family(name, "gauge"))
            family.samples.append(Sample(name, {**labels, "shard": str(m // 50)}, values))
        have += 150
    return have


def _incident(story: Story) -> IncidentView:
    signals = []
    for alert in story.alerts:
        labels = dict(alert["labels"])
        at = datetime.fromisoformat(alert["startsAt"].replace("Z", "+00:00")).astimezone(UTC)
        signals.append(
            make_signal(
                alertname=labels.pop("alertname"),
                instance=labels["instance"],
                labels=labels,
                generator_url=alert["generatorURL"],
                fingerprint=alert["fingerprint"],
            ).model_copy(update={"starts_at": at})
        )
    return make_incident(*signals).model_copy(update={"started_at": signals[0].starts_at})


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--series", type=int, default=10_000)
    parser.add_argument("--story", default="db_pool")
    parser.add_argument("--rounds", type=int, default=20)
    args = parser.parse_args()
    story = build(args.story, 1)
    total = _filler(story, args.series, np.random.default_rng(7))
    seconds: list[float] = []
    queries: list[int] = []
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        started = time.monotonic()
        tsdb = backfill(story, work / "prom")
        backfill_s = time.monotonic() - started
        with prometheus(work / "prom", tsdb_path=tsdb) as prom:
            async with httpx.AsyncClient() as http:
                gatherer = ContextGatherer(PrometheusClient(prom.url, http=http), prom_url=prom.url)
                incident = _incident(story)
                for _ in range(args.rounds):
                    t0 = time.perf_counter()
                    bundle = await gatherer.gather(incident)
                    seconds.append(time.perf_counter() - t0)
                    queries.append(bundle.queries)
                timeline = next(i for i in bundle.items if i.kind == "timeline")
                top = next((i for i in bundle.items if i.kind == "candidate"), None)
    print(
        json.dumps(
            {
                "bench": "rca_scale",
                "series_in_prometheus": total,
                "story": args.story,
                "rounds": args.rounds,
                "evidence_seconds_p50": round(float(np.percentile(seconds, 50)), 3),
                "evidence_seconds_p95": round(float(np.percentile(seconds, 95)), 3),
                "queries_per_incident_max": max(queries),
                "series_looked_at": (timeline.data or {}).get("series"),
                "capped": (timeline.data or {}).get("capped"),
                "top_candidate": (top.data or {}).get("metric") if top else None,
                "cause": story.cause.metric,
                "backfill_seconds": round(backfill_s, 1),
            }
        )
    )


if __name__ == "__main__":
    asyncio.run(main())
