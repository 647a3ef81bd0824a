"""Sustained load with the whole pipeline on: the service vs a do-nothing receiver, same run.

The service runs as `receiver serve` (embedded store) with enrichment against a loopback fake
OpenAI-compatible model and email to a real loopback SMTP server (aiosmtpd). Load: groups of 5
alerts, repeating fingerprints, every delivery sent twice (a retry / HA twin), at a fixed
concurrency. Prints one JSON line: alerts/s and p50/p99 ack latency for both receivers, the
end-to-end alert → email p50/p99, the service's RSS, and the exactly-once check counted at the
SMTP server: one firing email per incident, none lost, none doubled.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import sys
import tempfile
import threading
import time
from collections import Counter
from pathlib import Path
from typing import Any

import httpx

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.ingest import TOKEN, _process, hammer  # noqa: E402
from receiver.ingest.normalise import fingerprint  # noqa: E402
from receiver.ports import free_port  # noqa: E402
from tests.support.fake_llm import FakeLLM, openai_chat  # noqa: E402
from tests.support.smtp import smtp_server  # noqa: E402

ANSWER = json.dumps(
    {
        "summary": "Load test incident",
        "cause": "Synthetic load",
        "fix": ["Nothing to do"],
        "simplified": "A test alert.",
        "confidence": 0.5,
        "hypotheses": [{"claim": "synthetic", "evidence_ids": ["E1"], "confidence": 0.5}],
        "unknowns": [],
    }
)


def deliveries(groups: int, seed: int) -> list[tuple[str, bytes]]:
    """One firing delivery of 5 alerts per group; fingerprints repeat across the run."""
    rng = random.Random(seed)
    out = []
    for g in range(groups):
        alerts = []
        for j in range(5):
            labels = {
                "alertname": f"Load{g % 40}",
                "instance": f"node-{rng.randrange(200)}:9100",
                "group": f"g{g}",
                "severity": "critical" if g % 2 else "high",
            }
            alerts.append(
                {
                    "status": "firing",
                    "labels": labels,
                    "annotations": {"summary": f"load {g}/{j}"},
                    "startsAt": "2026-11-28T10:00:00Z",
                    "endsAt": "0001-01-01T00:00:00Z",
                    "generatorURL": "http://127.0.0.1:9/graph?g0.expr=up",
                    "fingerprint": fingerprint(labels),
                }
            )
        key = f'{{}}:{{group="g{g}"}}'
        body = {
            "receiver": "monitor",
            "status": "firing",
            "alerts": alerts,
            "groupLabels": {"group": f"g{g}"},
            "commonLabels": {"group": f"g{g}"},
            "commonAnnotations": {},
            "externalURL": "http://127.0.0.1:9093",
            "version": "4",
            "groupKey": key,
            "truncatedAlerts": 0,
        }
        out.append((key, json.dumps(body).encode()))
    return out


def _rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return round(int(line.split()[1]) / 1024, 1)
    return float("nan")


def server_latency(metrics_text: str) -> dict[str, Any]:
    """The service's own view of ack latency, from its `webhook_request_seconds` histogram.

    The client's p99 includes queueing in the client itself (one Python process driving the
    load on the same cores; the do-nothing receiver's p99 shows that floor), so the histogram
    says how long the service took from reading a request to answering it.
    """
    buckets: list[tuple[float, float]] = []
    for line in metrics_text.splitlines():
        if line.startswith("webhook_request_seconds_bucket{"):
            bound = line.split('le="', 1)[1].split('"', 1)[0]
            buckets.append((float(bound), float(line.rsplit(" ", 1)[1])))
    buckets.sort()
    count = buckets[-1][1] if buckets else 0.0
    under = next((n for le, n in buckets if le == 0.1), 0.0)
    p99 = next((le for le, n in buckets if count and n >= 0.99 * count), float("inf"))
    return {
        "requests": int(count),
        "share_under_100ms": round(under / count, 4) if count else None,
        "p99_at_most_ms": p99 * 1000,
    }


def _pct(values: list[float], q: float) -> float:
    values = sorted(values)
    return round(values[min(len(values) - 1, int(len(values) * q))], 3) if values else float("nan")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--groups", type=int, default=1000)
    parser.add_argument("--concurrency", type=int, default=16)
    parser.add_argument("--drain-timeout", type=float, default=600)
    args = parser.parse_args()

    items = deliveries(args.groups, seed=5)
    sends = items + items  # every delivery twice
    random.Random(9).shuffle(sends)
    bodies = [b for _, b in sends]
    result: dict[str, Any] = {
        "bench": "load",
        "groups": args.groups,
        "concurrency": args.concurrency,
    }
    with tempfile.TemporaryDirectory() as tmp, FakeLLM() as llm, smtp_server() as smtp:
        llm.script(*[openai_chat(ANSWER) for _ in range(args.groups * 3)])
        work = Path(tmp)
        env = {k: v for k, v in os.environ.items() if not k.startswith(("MONGO_", "WEBHOOK_"))}
        env.update(
            {
                "WEBHOOK_TOKEN": TOKEN,
                "MONITOR_INTERVAL": "0",
                "LOG_LEVEL": "warning",
                "LOG_FILES": "false",
                "LLM_PROVIDER": "openai",
                "LLM_URL": llm.url,
                "LLM_MODEL": "fake",
                "LLM_API_KEY": "bench-key",
                "SMTP_HOST": "127.0.0.1",
                "SMTP_PORT": str(smtp.port),
                "SMTP_FROM": "monitor@example.com",
                "SMTP_TO": "oncall@example.com",
                "NOTIFY_RATE_LIMIT": "0",
                "NOTIFY_RCA_WAIT_SECONDS": "5",
                "NOTIFY_RESOLVED": "false",
                "PROM_URL": "",
                "RETENTION_INTERVAL_SECONDS": "0",
            }
        )
        noop_port = free_port()
        noop = [
            sys.executable, "-m", "uvicorn", "bench.noop_receiver:app",
            "--host", "127.0.0.1", "--port", str(noop_port), "--log-level", "warning",
        ]  # fmt: skip
        with _process(
            noop,
            {**env, "PYTHONPATH": str(ROOT)},
            work / "noop.log",
            f"http://127.0.0.1:{noop_port}/",
        ):
            url = f"http://127.0.0.1:{noop_port}/api/v1/alerts"
            result["noop"] = asyncio.run(hammer(url, bodies, args.concurrency))

        port = free_port()
        base = f"http://127.0.0.1:{port}"
        svc = [sys.executable, "-m", "receiver.cli", "serve", "--port", str(port)]
        with _process(
            svc, {**env, "DATA_DIR": str(work / "data")}, work / "svc.log", f"{base}/readyz"
        ) as pid:
            arrivals: list[float] = []
            watching = True

            def watch() -> None:  # stamp each email as it lands
                while watching:
                    while len(arrivals) < len(smtp.messages):
                        arrivals.append(time.time())
                    time.sleep(0.005)

            watcher = threading.Thread(target=watch, daemon=True)
            watcher.start()
            acked: dict[int, float] = {}
            result["service"] = asyncio.run(
                hammer(f"{base}/api/v1/alerts", bodies, args.concurrency, acked)
            )
            text = httpx.get(f"{base}/metrics", timeout=30).text
            result["service"]["server_side"] = server_latency(text)
            deadline = time.monotonic() + args.drain_timeout
            while time.monotonic() < deadline and len(smtp.messages) < args.groups:
                time.sleep(0.5)
            time.sleep(3.0)  # anything doubled would arrive now
            watching = False
            watcher.join()
            listed = httpx.get(f"{base}/api/v1/incidents", params={"limit": 500}, timeout=30).json()
            key_of = {i["id"]: i["key"] for i in listed["incidents"]}
            first_ack: dict[str, float] = {}
            for index, (key, _) in enumerate(sends):
                if index in acked:
                    first_ack[key] = min(first_ack.get(key, acked[index]), acked[index])
            firing = [
                (i, m)
                for i, m in enumerate(smtp.messages)
                if not str(m.message["Subject"]).startswith(("Re:", "[RESOLVED]"))
            ]
            per_incident = Counter(str(m.message["X-Incident-Id"]) for _, m in firing)
            e2e = [
                arrivals[i] - first_ack[key_of[str(m.message["X-Incident-Id"])]]
                for i, m in firing
                if i < len(arrivals) and key_of.get(str(m.message["X-Incident-Id"])) in first_ack
            ]
            result["service"]["rss_mb"] = _rss_mb(pid)
            result["service"]["incidents"] = listed["total"]
            result["service"]["llm_calls"] = len(llm.requests)
            analyses: dict[str, float] = {}
            for line in httpx.get(f"{base}/metrics", timeout=30).text.splitlines():
                if line.startswith("rca_generated_total{"):
                    labels, value = line.rsplit(" ", 1)
                    analyses[labels.removeprefix("rca_generated_total")] = float(value)
            result["service"]["analyses"] = analyses
            result["notifications"] = {
                "emails": len(smtp.messages),
                "firing_emails": len(firing),
                "incidents_with_firing_email": len(per_incident),
                "doubled": sum(1 for n in per_incident.values() if n > 1),
                "lost": max(0, listed["total"] - len(per_incident)),
                "e2e_alert_to_email_p50_s": _pct(e2e, 0.5),
                "e2e_alert_to_email_p99_s": _pct(e2e, 0.99),
            }
    result["ratio_alerts_per_s"] = round(
        result["service"]["alerts_per_s"] / result["noop"]["alerts_per_s"], 3
    )
    print(json.dumps(result))


if __name__ == "__main__":
    main()
