"""Enrichment throughput: how fast a storm of incidents gets its analyses.

The real service (uvicorn in-process, embedded store) receives N one-alert groups at once; the
clock stops when every incident has a stored analysis. Cases: the offline analyst with no
Prometheus, the offline analyst with Prometheus unreachable (connection refused), and a
loopback Ollama-speaking model that takes LLM_DELAY seconds per answer, at two concurrencies.
Prints one JSON line.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import tempfile
import time
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


def _payload(i: int) -> dict[str, Any]:
    labels = {"alertname": "DiskFull", "instance": f"node-{i:04d}:9100", "severity": "high"}
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


async def _storm(store: EmbeddedStore, work: Path, n: int, **overrides: Any) -> float:
    settings = Settings(
        _env_file=None,
        mongo_uri=store.uri,
        mongo_db=f"bench_{time.monotonic_ns()}",
        data_dir=work,
        webhook_token=TOKEN,
        monitor_interval=0,
        # the groups share their alertname, so they would form one storm and get one analysis
        # between them: this bench measures one analysis per incident
        storm_enabled=False,
        **overrides,
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
        url = f"http://127.0.0.1:{port}"
        async with httpx.AsyncClient(
            timeout=30, headers={"Authorization": f"Bearer {TOKEN}"}
        ) as client:
            gate = asyncio.Semaphore(16)

            async def post(i: int) -> None:
                async with gate:
                    resp = await client.post(f"{url}/api/v1/alerts", json=_payload(i))
                    resp.raise_for_status()

            started = time.monotonic()
            await asyncio.gather(*(post(i) for i in range(n)))
            for _ in range(6_000):
                answer = await client.get(f"{url}/rca", params={"limit": 1})
                if answer.json()["total"] >= n:
                    return time.monotonic() - started
                await asyncio.sleep(0.1)
            raise RuntimeError("the analyses did not finish within 10 minutes")
    finally:
        server.should_exit = True
        await task


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--incidents", type=int, default=200)
    parser.add_argument("--llm-delay", type=float, default=0.2)
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
    print(json.dumps(figures))


if __name__ == "__main__":
    asyncio.run(main())
