"""Sustained load with the whole pipeline on: the service vs a do-nothing receiver, same run.

The service runs as `receiver serve` (embedded store) with enrichment against a loopback fake
OpenAI-compatible model (or the offline analyst with `--offline`) and email to a real loopback
SMTP server (aiosmtpd), rate limit off. Two phases:

1. unrelated: `--groups` groups of 5 alerts sharing no cause label, repeating fingerprints,
   every delivery sent twice (a retry / HA twin), at a fixed concurrency;
2. storm (`--storm` > 0): one job on that many instances, one Alertmanager group per instance
   (as `group_by: [alertname, instance]` sends them), sent once the first phase is emailed.

Prints one JSON line: alerts/s and p50/p99 ack latency for both receivers (and during the
storm), alert → first page p50/p99 for the individual incidents, alert → storm page for the
storm (and whether it listed every member), analyses by outcome, the stage rates (deliveries/s,
analyses/s, emails/s from the service's counters, first ack to last item), RSS, and the
exactly-once check counted at the SMTP server: one firing email per incident, none lost, none
doubled.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
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


def storm_deliveries(size: int) -> list[tuple[str, bytes]]:
    """One job down on `size` instances: one single-alert group per instance."""
    out = []
    for i in range(size):
        labels = {
            "alertname": "StormTargetDown",
            "job": "storm-api",
            "instance": f"storm-{i}:8080",
            "severity": "critical",
        }
        key = f'{{}}:{{alertname="StormTargetDown",instance="storm-{i}:8080"}}'
        body = {
            "receiver": "monitor",
            "status": "firing",
            "alerts": [
                {
                    "status": "firing",
                    "labels": labels,
                    "annotations": {"summary": f"storm-api down on storm-{i}"},
                    "startsAt": "2026-11-28T11:00:00Z",
                    "endsAt": "0001-01-01T00:00:00Z",
                    "generatorURL": "http://127.0.0.1:9/graph?g0.expr=up",
                    "fingerprint": fingerprint(labels),
                }
            ],
            "groupLabels": {"alertname": "StormTargetDown", "instance": f"storm-{i}:8080"},
            "commonLabels": labels,
            "commonAnnotations": {},
            "externalURL": "http://127.0.0.1:9093",
            "version": "4",
            "groupKey": key,
            "truncatedAlerts": 0,
        }
        out.append((key, json.dumps(body).encode()))
    return out


class Sampler:
    """Polls the service's counters to time each stage from first ack to its last item."""

    NAMES = ("deliveries_processed_total", "rca_generated_total")

    def __init__(self, base: str, smtp_messages: list[Any]) -> None:
        self.base = base
        self.smtp = smtp_messages
        self.samples: list[tuple[float, dict[str, float]]] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        # one client for every poll: a new one builds an SSL context (~20-40 ms holding the
        # GIL), which stalled the load generator's event loop and showed up as ack latency
        self._http = httpx.Client(timeout=30)

    def _read(self) -> dict[str, float]:
        totals = dict.fromkeys(self.NAMES, 0.0)
        text = self._http.get(f"{self.base}/metrics").text
        for line in text.splitlines():
            for name in self.NAMES:
                if line.startswith((name + " ", name + "{")):
                    totals[name] += float(line.rsplit(" ", 1)[1])
        totals["emails"] = float(len(self.smtp))
        return totals

    def _run(self) -> None:
        while not self._stop.is_set():
            with contextlib.suppress(httpx.HTTPError):
                self.samples.append((time.time(), self._read()))
            self._stop.wait(0.5)

    def __enter__(self) -> Sampler:
        self._thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self._stop.set()
        self._thread.join()
        self._http.close()

    def rates(self, since: float) -> dict[str, float | None]:
        """Items per second from `since` to when each counter last changed."""
        out: dict[str, float | None] = {}
        labels = {
            "deliveries_processed_total": "deliveries_per_s",
            "rca_generated_total": "analyses_per_s",
            "emails": "emails_per_s",
        }
        for name, label in labels.items():
            series = [(t, v[name]) for t, v in self.samples if t >= since]
            if not series:
                out[label] = None
                continue
            base = max((v[name] for t, v in self.samples if t < since), default=0.0)
            final = series[-1][1]
            done = next(t for t, v in series if v == final)
            out[label] = round((final - base) / (done - since), 1) if done > since else None
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


def _firing(messages: list[Any]) -> list[tuple[int, Any]]:
    return [
        (i, m)
        for i, m in enumerate(messages)
        if not str(m.message["Subject"]).startswith(("Re:", "[RESOLVED]"))
    ]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--groups", type=int, default=1000)
    parser.add_argument("--storm", type=int, default=500, help="storm size; 0 = no storm phase")
    parser.add_argument("--concurrency", type=int, default=16)
    parser.add_argument("--offline", action="store_true", help="offline analyst, no model")
    parser.add_argument("--drain-timeout", type=float, default=600)
    parser.add_argument(
        "--mongo-pool-size", type=int, default=None, help="MONGO_POOL_SIZE (default: the service's)"
    )
    args = parser.parse_args()

    items = deliveries(args.groups, seed=5)
    sends = items + items  # every delivery twice
    random.Random(9).shuffle(sends)
    bodies = [b for _, b in sends]
    storm = storm_deliveries(args.storm)
    result: dict[str, Any] = {
        "bench": "load",
        "groups": args.groups,
        "storm_size": args.storm,
        "analyst": "offline" if args.offline else "model",
        "mongo_pool_size": args.mongo_pool_size,
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
        if args.mongo_pool_size is not None:
            env["MONGO_POOL_SIZE"] = str(args.mongo_pool_size)
        if args.offline:
            env["LLM_PROVIDER"] = "offline"
        else:
            env.update(
                {
                    "LLM_PROVIDER": "openai",
                    "LLM_URL": llm.url,
                    "LLM_MODEL": "fake",
                    "LLM_API_KEY": "bench-key",
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
        with (
            _process(
                svc, {**env, "DATA_DIR": str(work / "data")}, work / "svc.log", f"{base}/readyz"
            ) as pid,
            Sampler(base, smtp.messages) as sampler,
        ):
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
            started = time.time()
            result["service"] = asyncio.run(
                hammer(f"{base}/api/v1/alerts", bodies, args.concurrency, acked)
            )
            text = httpx.get(f"{base}/metrics", timeout=30).text
            result["service"]["server_side"] = server_latency(text)
            deadline = time.monotonic() + args.drain_timeout
            # first pages only: analysis follow-ups ("Re:") are emails too
            while time.monotonic() < deadline and len(_firing(smtp.messages)) < args.groups:
                time.sleep(0.5)
            time.sleep(3.0)  # anything doubled would arrive now
            result["stage_rates"] = sampler.rates(started)
            listed = httpx.get(f"{base}/api/v1/incidents", params={"limit": 500}, timeout=30)
            total = listed.json()["total"]
            key_of: dict[str, str] = {}
            for offset in range(0, total, 500):
                page = httpx.get(
                    f"{base}/api/v1/incidents",
                    params={"limit": 500, "offset": offset},
                    timeout=30,
                ).json()
                key_of.update({i["id"]: i["key"] for i in page["incidents"]})
            first_ack: dict[str, float] = {}
            for index, (key, _) in enumerate(sends):
                if index in acked:
                    first_ack[key] = min(first_ack.get(key, acked[index]), acked[index])
            firing = _firing(smtp.messages)
            per_incident = Counter(str(m.message["X-Incident-Id"]) for _, m in firing)
            e2e = [
                arrivals[i] - first_ack[key_of[str(m.message["X-Incident-Id"])]]
                for i, m in firing
                if i < len(arrivals) and key_of.get(str(m.message["X-Incident-Id"])) in first_ack
            ]
            result["notifications"] = {
                "emails": len(smtp.messages),
                "firing_emails": len(firing),
                "incidents_with_firing_email": len(per_incident),
                "doubled": sum(1 for n in per_incident.values() if n > 1),
                "lost": max(0, total - len(per_incident)),
                "e2e_alert_to_email_p50_s": _pct(e2e, 0.5),
                "e2e_alert_to_email_p99_s": _pct(e2e, 0.99),
            }

            if storm:
                before = len(smtp.messages)
                storm_acked: dict[int, float] = {}
                storm_start = time.time()
                result["storm"] = asyncio.run(
                    hammer(
                        f"{base}/api/v1/alerts",
                        [b for _, b in storm],
                        args.concurrency,
                        storm_acked,
                    )
                )
                first = min(storm_acked.values()) if storm_acked else storm_start
                page_at = None
                deadline = time.monotonic() + args.drain_timeout
                while time.monotonic() < deadline:
                    pages = [
                        (i, m)
                        for i, m in _firing(smtp.messages[before:])
                        if "Storm: " in str(m.message["Subject"])
                    ]
                    if pages:
                        page_at = (
                            arrivals[before + pages[0][0]]
                            if before + pages[0][0] < len(arrivals)
                            else time.time()
                        )
                        break
                    time.sleep(0.2)
                time.sleep(3.0)
                storms = httpx.get(f"{base}/api/v1/storms", timeout=30).json()
                members = 0
                listed_all = False
                if storms["storms"]:
                    one = storms["storms"][0]
                    members = one["members"]
                    detail = httpx.get(
                        f"{base}/api/v1/storms/{one['id']}", params={"limit": 500}, timeout=30
                    ).json()
                    ids = {m["id"] for m in detail["member_incidents"]}
                    text = "\n".join(
                        str(p.get_content())
                        for m in smtp.messages[before:]
                        if "Storm: " in str(m.message["Subject"])
                        for p in m.message.walk()
                        if not p.is_multipart() and p.get_content_maintype() == "text"
                    )
                    listed_all = bool(ids) and all(i in text for i in ids)
                later = smtp.messages[before:]
                result["storm"].update(
                    {
                        "storms": storms["total"],
                        "members": members,
                        "alert_to_storm_page_s": round(page_at - first, 3) if page_at else None,
                        "storm_pages": sum(
                            1 for _, m in _firing(later) if "Storm: " in str(m.message["Subject"])
                        ),
                        "individual_pages": sum(
                            1
                            for _, m in _firing(later)
                            if "Storm: " not in str(m.message["Subject"])
                        ),
                        "every_member_listed": listed_all,
                    }
                )
            watching = False
            watcher.join()
            result["service"]["rss_mb"] = _rss_mb(pid)
            result["service"]["incidents"] = total
            result["service"]["llm_calls"] = len(llm.requests)
            analyses: dict[str, float] = {}
            for line in httpx.get(f"{base}/metrics", timeout=30).text.splitlines():
                if line.startswith("rca_generated_total{"):
                    labels, value = line.rsplit(" ", 1)
                    analyses[labels.removeprefix("rca_generated_total")] = float(value)
            result["service"]["analyses"] = analyses
    result["ratio_alerts_per_s"] = round(
        result["service"]["alerts_per_s"] / result["noop"]["alerts_per_s"], 3
    )
    print(json.dumps(result))


if __name__ == "__main__":
    main()
