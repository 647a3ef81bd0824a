"""Root-cause accuracy on the causal incident stories (tests/support/rca_stories.py).

For every story and seed: its series backfilled into a real Prometheus, the real service
(uvicorn in-process, embedded store) analysing the story's webhook once with the offline analyst
and once with a loopback model that cites the first cause candidate the prompt lists (a model
that trusts the ranking). A story is a hit when the top hypothesis cites the cause series.
Per-story verdicts go to stderr; one JSON line to stdout.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from receiver.store.embedded import EmbeddedStore  # noqa: E402
from tests.support.rca_run import Run, analyse_story  # noqa: E402
from tests.support.rca_stories import STORIES, build  # noqa: E402


def _p95(values: list[float | None]) -> float | None:
    """None when the service exposed the figure for no incident."""
    known = [v for v in values if v is not None]
    return round(float(np.percentile(known, 95)), 4) if known else None


def _line(run: Run, seed: int) -> str:
    mark = "HIT " if run.verdict.hit else "miss"
    cited = "; ".join(run.verdict.cited)[:160]
    return f"{mark} {run.mode:7} seed={seed} {run.story:20} cites: {cited}"


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--seed", type=int, default=1, help="first seed")
    parser.add_argument("--seeds", type=int, default=1, help="how many seeds from --seed")
    parser.add_argument("--stories", default="", help="comma-separated names (default: all)")
    parser.add_argument("--offline-only", action="store_true", help="skip the scripted model")
    args = parser.parse_args()
    names = [n for n in args.stories.split(",") if n] or list(STORIES)
    unknown = sorted(set(names) - set(STORIES))
    if unknown:
        parser.error(f"unknown stories: {', '.join(unknown)}; known: {', '.join(STORIES)}")
    runs: list[Run] = []
    started = time.monotonic()
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        async with EmbeddedStore(work / "store") as store:
            for seed in range(args.seed, args.seed + args.seeds):
                for name in names:
                    story = build(name, seed)
                    done = await analyse_story(
                        story,
                        store.uri,
                        work / f"{name}-{seed}",
                        with_model=not args.offline_only,
                    )
                    for run in done:
                        print(_line(run, seed), file=sys.stderr, flush=True)
                    runs.extend(done)
    offline = [r for r in runs if r.mode == "offline"]
    model = [r for r in runs if r.mode == "model"]
    n = len(offline)
    figures: dict[str, Any] = {
        "bench": "rca",
        "seeds": list(range(args.seed, args.seed + args.seeds)),
        "stories": n,
        "offline_hits": sum(r.verdict.hit for r in offline),
        "offline_accuracy": round(sum(r.verdict.hit for r in offline) / n, 3) if n else None,
        "model_hits": sum(r.verdict.hit for r in model) if model else None,
        "model_accuracy": round(sum(r.verdict.hit for r in model) / len(model), 3)
        if model
        else None,
        "queries_per_incident_p95": _p95([r.queries for r in runs]),
        "evidence_seconds_p95": _p95([r.evidence_seconds for r in runs]),
        "wall_seconds": round(time.monotonic() - started, 1),
    }
    print(json.dumps(figures))


if __name__ == "__main__":
    asyncio.run(main())
