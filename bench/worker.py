"""The delivery worker alone: store commands per delivery and deliveries/s on the embedded store.

Starts an nx-27017 server, stores `--groups` deliveries (one unrelated Alertmanager group of 5
alerts each) and lets the delivery worker (with the storm correlator, as the service runs it)
drain them; then the same content again (plain repeats), then every alert resolved. A pymongo
command listener counts what the worker sends to the store in each phase. Prints one JSON line.
Run from a checkout: `PYTHONPATH=. python bench/worker.py`.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import tempfile
import time
from collections import Counter
from datetime import timedelta
from pathlib import Path
from typing import Any

from prometheus_client import CollectorRegistry
from pymongo import monitoring

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from receiver.ingest.metrics import IngestMetrics  # noqa: E402
from receiver.ingest.processor import SignalProcessor  # noqa: E402
from receiver.ingest.storms import StormCorrelator, StormOptions  # noqa: E402
from receiver.ingest.worker import DeliveryWorker  # noqa: E402
from receiver.store.documents import Delivery  # noqa: E402
from receiver.store.embedded import EmbeddedStore  # noqa: E402
from receiver.store.repo import Store  # noqa: E402


class Commands(monitoring.CommandListener):
    """Counts the commands sent, by name (find, insert, update, ...), and their round trips."""

    def __init__(self) -> None:
        self.seen: Counter[str] = Counter()
        self.micros: Counter[str] = Counter()

    def clear(self) -> None:
        self.seen.clear()
        self.micros.clear()

    def started(self, event: monitoring.CommandStartedEvent) -> None:
        self.seen[event.command_name] += 1

    def succeeded(self, event: monitoring.CommandSucceededEvent) -> None:
        self.micros[event.command_name] += event.duration_micros

    def failed(self, event: monitoring.CommandFailedEvent) -> None:
        self.micros[event.command_name] += event.duration_micros


def _alert(group: int, j: int, resolved: bool) -> dict[str, Any]:
    labels = {
        "alertname": f"Bench{group}",
        "instance": f"host-{group}-{j}:9100",
        "job": f"job{group}",
        "severity": ["critical", "high", "medium", "low"][group % 4],
    }
    return {
        "status": "resolved" if resolved else "firing",
        "labels": labels,
        "annotations": {"summary": f"bench alert {group}/{j}"},
        "startsAt": "2026-11-28T10:00:00Z",
        "endsAt": "2026-11-28T10:05:00Z" if resolved else "0001-01-01T00:00:00Z",
        "generatorURL": "http://127.0.0.1:9090/graph?g0.expr=up",
        "fingerprint": f"{group:08x}{j:08x}",
    }


def _delivery(group: int, phase: str) -> Delivery:
    resolved = phase == "resolve"
    payload = {
        "receiver": "monitor",
        "status": "resolved" if resolved else "firing",
        "alerts": [_alert(group, j, resolved) for j in range(5)],
        "groupLabels": {"alertname": f"Bench{group}"},
        "commonLabels": {"alertname": f"Bench{group}", "job": f"job{group}"},
        "commonAnnotations": {},
        "externalURL": "http://127.0.0.1:9093",
        "version": "4",
        "groupKey": f'{{}}:{{alertname="Bench{group}"}}',
        "truncatedAlerts": 0,
    }
    return Delivery(
        delivery_key=f"{phase}-{group}",
        receiver="monitor",
        group_key=payload["groupKey"],
        raw_json=json.dumps(payload),
    )


async def _phase(
    store: Store, worker: DeliveryWorker, commands: Commands, groups: int, phase: str
) -> dict[str, Any]:
    batch = [_delivery(g, phase) for g in range(groups)]
    for i in range(0, len(batch), 64):
        await store.insert_deliveries(batch[i : i + 64])
    commands.clear()
    started = time.perf_counter()
    while await worker.step():
        pass
    elapsed = time.perf_counter() - started
    total = sum(commands.seen.values())
    return {
        "seconds": round(elapsed, 2),
        "deliveries_per_s": round(groups / elapsed, 1),
        "commands_per_delivery": round(total / groups, 2),
        "by_command": dict(commands.seen.most_common()),
        # summed round trips (commands overlap: up to `concurrency` groups are applied at once)
        "round_trip_ms": {k: round(v / 1000) for k, v in commands.micros.most_common()},
    }


async def run(groups: int, concurrency: int) -> dict[str, Any]:
    commands = Commands()
    monitoring.register(commands)
    result: dict[str, Any] = {"bench": "worker", "groups": groups, "concurrency": concurrency}
    with tempfile.TemporaryDirectory() as tmp:
        async with EmbeddedStore(Path(tmp) / "store") as embedded:
            store = await Store.connect(embedded.uri, "bench", 10.0, "embedded")
            try:
                registry = CollectorRegistry()
                worker = DeliveryWorker(
                    store,
                    SignalProcessor(store, hold_for_storms=True),
                    IngestMetrics(registry),
                    retention=timedelta(days=1),
                    concurrency=concurrency,
                    correlator=StormCorrelator(store, StormOptions()),
                )
                for phase in ("new", "repeat", "resolve"):
                    result[phase] = await _phase(store, worker, commands, groups, phase)
            finally:
                await store.close()
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--groups", type=int, default=300)
    parser.add_argument("--concurrency", type=int, default=8, help="groups applied at once")
    args = parser.parse_args()
    print(json.dumps(asyncio.run(run(args.groups, args.concurrency))))


if __name__ == "__main__":
    main()
