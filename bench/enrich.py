"""Enrichment throughput: how fast a storm of incidents gets its analyses.

The real service (uvicorn in-process, embedded store) receives N one-alert groups at once; the
clock stops when every incident has a stored analysis. Cases: the offline analyst with no
Prometheus, the offline analyst with Prometheus unreachable (connection refused), and a
loopback Ollama-speaking model that takes LLM_DELAY seconds per answer, at two concurrencies;
and a budget case: a slow model whose hourly token budget covers about two calls, so most
incidents get the offline analyst, which should not wait behind model calls. Prints one JSON
line.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import sys
import tempfile
import threading
import time
from collections.abc import AsyncIterator
from http.server import BaseHTTPRequestHandler
from pathlib import Path
from typing import Any

import httpx
import uvicorn

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from receiver.app import create_app  # noqa: E402
from receiver.ports import LoopbackHTTP, free_port, respond  # noqa: E402
from receiver.settings import Settings  # noqa: E402
from receiver.store.embedded import EmbeddedStore  # noqa: E402

TOKEN = "bench-token"  # noqa: S105 (a loopback-only bench credential)
ANSWER = {
    "summary": "s",
    "cause": "c (E1)",
    "fix": ["f"],
    "simplified": "x",
    "confidence": 0.5,
    "hypotheses": [{"claim": "h", "evidence_ids": ["E1"], "confidence": 0.5}],
    "unknowns": [],
}


class _SlowOllama:
    """POST /api/chat answers ANSWER after `delay` seconds (threads, so calls overlap)."""

    def __init__(self, delay: float) -> None:
        self.calls = 0  # answers started
        lock = threading.Lock()  # a thread per request
        owner = self
        body = json.dumps(
            {
                "model": "bench",
                "message": {"role": "assistant", "content": json.dumps(ANSWER)},
                "done": True,
                "prompt_eval_count": 1000,
                "eval_count": 100,
            }
        ).encode()

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                self.rfile.read(int(self.headers.get("Content-Length") or 0))
                with lock:
                    owner.calls += 1
                time.sleep(delay)
                respond(self, 200, body)

            def log_message(self, format: str, *args: object) -> None:
                return

        self._http = LoopbackHTTP(Handler).start()

    @property
    def url(self) -> str:
        return self._http.url

    def close(self) -> None:
        self._http.stop()


def _payload(i: int, alertname: str = "DiskFull", severity: str = "high") -> dict[str, Any]:
    labels = {"alertname": alertname, "instance": f"node-{i:04d}:9100", "severity": severity}
    return {
        "receiver": "monitor",
        "status": "firing",
        "alerts": [
            {
                "status": "firing",
                "labels": labels,
                "annotations": {"summary": "disk full"},
                "startsAt": "2026-11-28T10:00:00Z",
                "endsAt": "0001-01-01T00:00:00Z",
                "generatorURL": "http://prometheus:9090/graph?g0.expr=disk_used+%3E+90",
                "fingerprint": f"{i:016x}",
            }
        ],
        "groupLabels": {"instance": labels["instance"]},
        "commonLabels": labels,
        "commonAnnotations": {},
        "externalURL": "http://alertmanager:9093",
        "version": "4",
        "groupKey": f'{{}}:{{instance="{labels["instance"]}"}}',
        "truncatedAlerts": 0,
    }


@contextlib.asynccontextmanager
async def _service(
    store: EmbeddedStore, work: Path, **overrides: Any
) -> AsyncIterator[tuple[str, httpx.AsyncClient]]:
    values: dict[str, Any] = {
        # the groups share their alertname, so they would form one storm and get one analysis
        # between them: this bench measures one analysis per incident
        "storm_enabled": False,
        **overrides,
    }
    settings = Settings(
        _env_file=None,
        mongo_uri=store.uri,
        mongo_db=f"bench_{time.monotonic_ns()}",
        data_dir=work,
        webhook_token=TOKEN,
        monitor_interval=0,
        **values,
    )
    port = free_port()
    server = uvicorn.Server(
        uvicorn.Config(create_app(settings), host="127.0.0.1", port=port, log_level="error")
    )
    task = asyncio.create_task(server.serve())
    try:
        for _ in range(1_000):
            if server.started:
                break
            await asyncio.sleep(0.02)
        async with httpx.AsyncClient(
            timeout=30, headers={"Authorization": f"Bearer {TOKEN}"}
        ) as client:
            yield f"http://127.0.0.1:{port}", client
    finally:
        server.should_exit = True
        await task


async def _post_all(url: str, client: httpx.AsyncClient, payloads: list[dict[str, Any]]) -> None:
    gate = asyncio.Semaphore(16)

    async def post(payload: dict[str, Any]) -> None:
        async with gate:
            resp = await client.post(f"{url}/api/v1/alerts", json=payload)
            resp.raise_for_status()

    await asyncio.gather(*(post(p) for p in payloads))


async def _storm(store: EmbeddedStore, work: Path, n: int, **overrides: Any) -> float:
    async with _service(store, work, **overrides) as (url, client):
        started = time.monotonic()
        await _post_all(url, client, [_payload(i) for i in range(n)])
        for _ in range(6_000):
            answer = await client.get(f"{url}/rca", params={"limit": 1})
            if answer.json()["total"] >= n:
                return time.monotonic() - started
            await asyncio.sleep(0.1)
        raise RuntimeError("the analyses did not finish within 10 minutes")


async def _budget(
    store: EmbeddedStore, work: Path, llm: _SlowOllama, n: int, per_hour: int
) -> dict[str, float]:
    """`n` critical incidents for a slow model (2 slots) whose hourly budget covers about two
    calls: seconds until every incident has an analysis, and how many model calls were made
    (the rest is the offline analyst's work, which should not wait for the model)."""
    calls = llm.calls
    seconds = await _storm(
        store,
        work,
        n,
        prom_url="",
        llm_url=llm.url,
        llm_provider="ollama",
        llm_max_tokens_per_hour=per_hour,
        enrich_concurrency=2,
    )
    return {"all_analysed_s": round(seconds, 1), "model_calls": llm.calls - calls}


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--incidents", type=int, default=200)
    parser.add_argument("--llm-delay", type=float, default=0.2)
    parser.add_argument("--budget-delay", type=float, default=1.0)
    parser.add_argument("--budget-tokens", type=int, default=3_000)
    args = parser.parse_args()
    n = args.incidents
    figures: dict[str, Any] = {"bench": "enrich", "incidents": n, "llm_delay_s": args.llm_delay}
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        async with EmbeddedStore(work / "store") as store:
            seconds = await _storm(store, work, n, prom_url="")
            figures["offline_no_prometheus_per_s"] = round(n / seconds, 1)
            refused = f"http://127.0.0.1:{free_port()}"
            seconds = await _storm(store, work, n, prom_url=refused)
            figures["offline_prometheus_down_per_s"] = round(n / seconds, 1)
            llm = _SlowOllama(args.llm_delay)
            try:
                for concurrency in (2, 8):
                    seconds = await _storm(
                        store,
                        work,
                        n,
                        prom_url="",
                        llm_url=llm.url,
                        llm_provider="ollama",
                        llm_max_tokens_per_hour=0,
                        enrich_concurrency=concurrency,
                    )
                    figures[f"model_concurrency_{concurrency}_per_s"] = round(n / seconds, 1)
            finally:
                llm.close()
            llm = _SlowOllama(args.budget_delay)
            try:
                spent = await _budget(store, work, llm, n, args.budget_tokens)
                figures["budget"] = {
                    "llm_delay_s": args.budget_delay,
                    "tokens_per_hour": args.budget_tokens,
                    **spent,
                }
            finally:
                llm.close()
    print(json.dumps(figures))


if __name__ == "__main__":
    asyncio.run(main())
