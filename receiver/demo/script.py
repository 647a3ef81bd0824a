"""What the demo plays and what it watches: a timestamped console, the script of load changes on
the scripted exporter, and the watcher that polls the receiver's API and the mailbox and says
what changed. Used by `run`."""

from __future__ import annotations

import contextlib
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import httpx

from receiver.demo.configs import Timeline
from receiver.demo.exporter import ScriptedExporter
from receiver.demo.mail import MailSink


class Console:
    """Timestamped progress lines on stdout."""

    def __init__(self) -> None:
        self.t0 = time.monotonic()
        self._lock = threading.Lock()

    def say(self, text: str) -> None:
        with self._lock:
            print(f"[demo {time.monotonic() - self.t0:6.1f}s] {text}", flush=True)


@dataclass(frozen=True)
class Step:
    at: float
    text: str
    apply: Callable[[], None]


def script(exporter: ScriptedExporter, t: Timeline) -> list[Step]:
    def busy(fraction: float) -> Callable[[], None]:
        return lambda: exporter.set_busy("node-b", fraction)

    def slow(flag: bool) -> Callable[[], None]:
        return lambda: exporter.set_slow(flag)

    return [
        Step(0.0, "normal load: node-a/node-b CPU ~25-30 %, api-1 p95 ~0.24 s", lambda: None),
        Step(t.cpu_start, "node-b CPU -> 97 % (HighCPUUsage fires above 80 %)", busy(0.97)),
        Step(t.cpu_end, "node-b CPU back to ~30 %", busy(0.30)),
        Step(
            t.slow_start,
            "api-1 p95 latency -> ~2.3 s (the alert is at 5 s: only the outlier poller sees it)",
            slow(True),
        ),
        Step(t.slow_end, "api-1 latency back to normal", slow(False)),
    ]


def play(steps: Sequence[Step], console: Console, stop: threading.Event) -> None:
    start = time.monotonic()
    for step in steps:
        if stop.wait(max(0.0, start + step.at - time.monotonic())):
            return
        step.apply()
        console.say(f"script: {step.text}")


@dataclass
class Seen:
    incident: dict[str, Any]
    announced: set[str] = field(default_factory=set)
    mails: int = 0


class Watcher:
    """Polls the receiver's API and the mailbox; says what changed."""

    def __init__(self, base: str, sink: MailSink, console: Console) -> None:
        self.base = base
        self.sink = sink
        self.console = console
        self.http = httpx.Client(timeout=5.0)
        self.seen: dict[str, Seen] = {}
        self.mails_seen = 0

    def close(self) -> None:
        self.http.close()

    def poll(self) -> None:
        try:
            body = self.http.get(f"{self.base}/api/v1/incidents", params={"limit": 50}).json()
        except (httpx.HTTPError, ValueError):
            return
        for incident in body.get("incidents", []):
            seen = self.seen.setdefault(incident["id"], Seen(incident))
            seen.incident = incident
            self._announce(seen)
        mails = self.sink.mails
        for mail in mails[self.mails_seen :]:
            owner = next((s for i, s in self.seen.items() if i.encode() in mail.raw), None)
            if owner is not None:
                owner.mails += 1
            self.console.say(f"mail → {mail.path.name}: {mail.subject}")
        self.mails_seen = len(mails)

    def _announce(self, seen: Seen) -> None:
        i = seen.incident
        kind = "outlier" if i["source"] == "detector" else "threshold"
        link = f"{self.base}/ui/incidents/{i['id']}"
        if "opened" not in seen.announced:
            seen.announced.add("opened")
            self.console.say(f"{kind} incident opened: {i['title']} ({i['severity']}) {link}")
        if i.get("analysis_id") and "analysis" not in seen.announced:
            seen.announced.add("analysis")
            summary = ""
            with contextlib.suppress(httpx.HTTPError, ValueError, KeyError):
                resp = self.http.get(f"{self.base}/api/v1/incidents/{i['id']}/analysis")
                summary = str(resp.json()["summary"])
            self.console.say(f"analysis of {i['title']}: {' '.join(summary.split())[:160]}")
        if i["status"] == "resolved" and "resolved" not in seen.announced:
            seen.announced.add("resolved")
            self.console.say(f"{kind} incident resolved: {i['title']}")

    def outcome(self) -> dict[str, Any]:
        incidents = [
            {
                "id": s.incident["id"],
                "source": s.incident["source"],
                "title": s.incident["title"],
                "alertnames": s.incident["alertnames"],
                "status": s.incident["status"],
                "analysis": bool(s.incident.get("analysis_id")),
                "mails": s.mails,
            }
            for s in self.seen.values()
        ]
        threshold = [i for i in incidents if "HighCPUUsage" in i["alertnames"]]
        outlier = [i for i in incidents if i["source"] == "detector"]

        def finished(group: list[dict[str, Any]]) -> bool:
            return bool(group) and all(
                i["status"] == "resolved" and i["analysis"] and i["mails"] for i in group
            )

        done = [finished(threshold), finished(outlier)]
        return {
            "ok": all(done),
            "threshold_done": done[0],
            "outlier_done": done[1],
            "incidents": incidents,
            "mails": [m.path.name for m in self.sink.mails],
        }
