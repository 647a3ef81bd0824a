"""`make demo` (`python -m receiver.demo`): the product end to end on loopback.

Starts a scripted exporter, a real `prometheus` evaluating the generated rules (the shipped specs
with demo timings: 1 s evaluation, short rate windows and `for`), a real
`prometheus-alertmanager` routing to the receiver with a bearer token, an SMTP sink writing
`.eml` files, and the receiver itself (`receiver serve`: embedded store, offline analyst unless
LLM_URL is set, outlier poller on the p95 latency, email for every severity). Then it plays the
script (normal → CPU saturation on node-b → a latency outlier below every threshold → recovery)
and reports what the receiver made of it. Ctrl-C (or SIGTERM) stops everything it started.
"""

from __future__ import annotations

import argparse
import contextlib
import ctypes
import json
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import FrameType
from typing import Any

import httpx
import yaml

from receiver.demo.exporter import API, NODES, ScriptedExporter
from receiver.demo.mail import MailSink
from receiver.ports import free_port
from receiver.rulegen.generate import GENERATED_DIR, render_all
from receiver.rulegen.generate import write as write_files
from receiver.rulegen.load import load_specs
from receiver.settings import Settings

LATENCY_SERIES = "job:http_request_latency_seconds:p95"
RECIPIENT = "oncall@example.com"
SENDER = "monitor@example.com"
PASS_THROUGH = ("LLM_", "LANGFUSE_")  # the only settings the caller's environment may set


@dataclass(frozen=True)
class Timeline:
    """Seconds after the script starts; the rule and detector timings that fit them."""

    cpu_start: float
    cpu_end: float
    slow_start: float
    slow_end: float
    deadline: float  # give up waiting for the outcome this long after the start
    rule_for: str  # HighCPUUsage `for`
    rate_window: str  # rate() windows of the recorded CPU and HTTP series
    monitor_interval: int
    detect_window: float
    group_interval: str


NORMAL = Timeline(15, 45, 60, 85, 150, "10s", "10s", 2, 120.0, "2s")
FAST = Timeline(6, 22, 26, 42, 100, "4s", "6s", 1, 60.0, "1s")


class Stop(Exception):
    """Ctrl-C or SIGTERM: stop everything the demo started."""


def _on_signal(signum: int, frame: FrameType | None) -> None:
    raise Stop


def port_free(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            return False
        return True


class Console:
    """Timestamped progress lines on stdout."""

    def __init__(self) -> None:
        self.t0 = time.monotonic()
        self._lock = threading.Lock()

    def say(self, text: str) -> None:
        with self._lock:
            print(f"[demo {time.monotonic() - self.t0:6.1f}s] {text}", flush=True)


# --- processes -------------------------------------------------------------------------------


def _die_with_parent() -> None:
    """In the child: get SIGTERM if the demo itself dies (Linux), so nothing is left behind."""
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG


@dataclass
class Proc:
    name: str
    popen: subprocess.Popen[bytes]
    log: Path

    def stop(self, timeout: float = 20.0) -> None:
        if self.popen.poll() is not None:
            return
        self.popen.send_signal(signal.SIGTERM)
        try:
            self.popen.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.popen.kill()
            self.popen.wait(timeout=timeout)


@dataclass
class Stack:
    """Processes in start order; stopped in reverse order."""

    procs: list[Proc] = field(default_factory=list)

    def start(
        self,
        name: str,
        argv: Sequence[str],
        log: Path,
        ready: str,
        *,
        env: dict[str, str] | None = None,
        cwd: Path | None = None,
        timeout: float = 60.0,
    ) -> Proc:
        handle = log.open("wb")
        popen = subprocess.Popen(
            list(argv),
            stdout=handle,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            env=env,
            cwd=cwd,
            start_new_session=True,  # Ctrl-C reaches the demo only; it stops these in order
            preexec_fn=_die_with_parent,
        )
        handle.close()
        proc = Proc(name, popen, log)
        self.procs.append(proc)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if popen.poll() is not None:
                tail = log.read_text(errors="replace")[-1500:]
                raise RuntimeError(f"{name} exited with {popen.returncode}:\n{tail}")
            with contextlib.suppress(httpx.HTTPError):
                if httpx.get(ready, timeout=1.0).is_success:
                    return proc
            time.sleep(0.2)
        raise RuntimeError(f"{name} did not get ready within {timeout:.0f}s (log: {log})")

    def stop(self) -> None:
        for proc in reversed(self.procs):
            proc.stop()


# --- configuration ---------------------------------------------------------------------------


def demo_rules(specs: Path, root: Path, timeline: Timeline) -> list[Path]:
    """The shipped specs with demo timings, generated into `root`/rules/generated."""
    target = root / "rules" / "specs"
    target.mkdir(parents=True, exist_ok=True)
    for path in sorted(specs.glob("*.yml")):
        spec: dict[str, Any] = yaml.safe_load(path.read_text(encoding="utf-8"))
        if path.name in ("node.yml", "http.yml"):
            spec["interval"] = "1s"
            for rule in spec.get("recording", []):
                rule["expr"] = rule["expr"].replace("[5m]", f"[{timeline.rate_window}]")
                rule["examples"] = []  # written for 5m windows; promtool is not run on these
            for alert in spec.get("thresholds", []):
                alert["for"] = timeline.rule_for
                alert.pop("examples", None)
        (target / path.name).write_text(yaml.safe_dump(spec, sort_keys=False), encoding="utf-8")
    write_files(root, render_all(load_specs(target, root)))
    return sorted((root / GENERATED_DIR).glob("*.yml"))


def prometheus_config(exporter: str, rule_files: Sequence[Path], alertmanager: str) -> str:
    scrape = [
        {
            # one scrape config per path; the static labels give each its instance and job
            "job_name": node,
            "metrics_path": f"/{node}/metrics",
            "static_configs": [
                {"targets": [exporter], "labels": {"instance": f"{node}:9100", "job": "node"}}
            ],
        }
        for node in NODES
    ]
    scrape.append(
        {
            "job_name": "api",
            "metrics_path": f"/{API}/metrics",
            "static_configs": [{"targets": [exporter], "labels": {"instance": f"{API}:8080"}}],
        }
    )
    config = {
        "global": {"scrape_interval": "1s", "evaluation_interval": "1s"},
        "rule_files": [str(p) for p in rule_files],
        "alerting": {"alertmanagers": [{"static_configs": [{"targets": [alertmanager]}]}]},
        "scrape_configs": scrape,
    }
    return yaml.safe_dump(config, sort_keys=False)


def alertmanager_config(webhook: str, token_file: Path, timeline: Timeline) -> str:
    """alertmanager.example.yml with demo timings."""
    config = {
        "route": {
            "receiver": "ai-devops-monitor",
            "group_by": ["alertname", "cluster", "job", "instance"],
            "group_wait": "1s",
            "group_interval": timeline.group_interval,
            "repeat_interval": "4h",
        },
        "receivers": [
            {
                "name": "ai-devops-monitor",
                "webhook_configs": [
                    {
                        "url": webhook,
                        "send_resolved": True,
                        "max_alerts": 100,
                        "http_config": {
                            "authorization": {
                                "type": "Bearer",
                                "credentials_file": str(token_file),
                            },
                            "follow_redirects": False,
                        },
                    }
                ],
            }
        ],
    }
    return yaml.safe_dump(config, sort_keys=False)


def receiver_env(
    *,
    data: Path,
    port: int,
    token: str,
    prom_url: str,
    smtp_port: int,
    rules: Path,
    specs: Path,
    timeline: Timeline,
) -> dict[str, str]:
    """The receiver's environment: ours, plus only LLM_*/LANGFUSE_* from the caller's."""
    own = {name.upper() for name in Settings.model_fields}
    env = {
        k: v
        for k, v in os.environ.items()
        if k.upper() not in own or k.upper().startswith(PASS_THROUGH)
    }
    llm = bool(os.environ.get("LLM_URL", "").strip())
    env.update(
        {
            "RECEIVER_HOST": "127.0.0.1",
            "RECEIVER_PORT": str(port),
            "PUBLIC_URL": f"http://127.0.0.1:{port}",
            "DATA_DIR": str(data),
            "WEBHOOK_TOKEN": token,
            "PROM_URL": prom_url,
            "LLM_PROVIDER": os.environ.get("LLM_PROVIDER", "auto") if llm else "offline",
            "ENRICH_RULES_DIR": str(rules),
            "ENRICH_POLL_SECONDS": "1",
            "MONITOR_INTERVAL": str(timeline.monitor_interval),
            "DETECT_RULES_DIR": str(specs),
            "DETECT_SELECTORS": LATENCY_SERIES,
            "DETECT_METHOD": "robust",
            "DETECT_WINDOW": f"{timeline.detect_window:g}",
            "DETECT_STEP": "1",
            "DETECT_MIN_HISTORY": "10",
            "DETECT_MIN_DURATION": "2",
            "DETECT_SUPPRESS": "30",
            "SMTP_HOST": "127.0.0.1",
            "SMTP_PORT": str(smtp_port),
            "SMTP_MODE": "plain",
            "SMTP_FROM": SENDER,
            "SMTP_TO": RECIPIENT,
            "NOTIFY_ROUTES": "critical=email;high=email;medium=email;low=email",
            "NOTIFY_RCA_WAIT_SECONDS": "15",
            "NOTIFY_POLL_SECONDS": "0.5",
            "NOTIFY_RATE_LIMIT": "0",  # a demo sends a handful of mails
            "WATCHDOG_TIMEOUT_SECONDS": "0",
            "LOG_LEVEL": "info",
        }
    )
    return env


# --- the script and what the receiver made of it ---------------------------------------------


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


# --- main ------------------------------------------------------------------------------------


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m receiver.demo", description=__doc__)
    parser.add_argument("--fast", action="store_true", help="compressed timeline (~1 minute)")
    parser.add_argument(
        "--exit-when-done",
        action="store_true",
        help="stop everything once both incidents are resolved (or the deadline passed)",
    )
    parser.add_argument("--port", type=int, default=8000, help="receiver port (0 = any free)")
    parser.add_argument("--data-dir", type=Path, default=Path("data/demo"), help="wiped first")
    parser.add_argument("--mail-dir", type=Path, default=Path("data/mail"))
    parser.add_argument("--specs", type=Path, default=Path("rules/specs"))
    return parser


@contextlib.contextmanager
def _signals() -> Iterator[None]:
    # SIGINT explicitly too: a shell that starts us in the background ignores it by default
    previous = {s: signal.signal(s, _on_signal) for s in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    timeline = FAST if args.fast else NORMAL
    for binary in ("prometheus", "prometheus-alertmanager"):
        if shutil.which(binary) is None:
            print(f"demo: `{binary}` is not on PATH (apt-get install {binary})", file=sys.stderr)
            return 2
    if not args.specs.is_dir():
        print(
            f"demo: no rule specs at {args.specs} (run from the repository root)", file=sys.stderr
        )
        return 2
    data = args.data_dir.resolve()
    shutil.rmtree(data, ignore_errors=True)
    data.mkdir(parents=True)
    mail_dir = args.mail_dir.resolve()
    port = args.port if args.port and port_free(args.port) else free_port()
    console = Console()
    stack = Stack()
    stop = threading.Event()
    summary: dict[str, Any] = {"ok": False}
    interrupted = False
    with contextlib.ExitStack() as exits, _signals():
        try:
            rule_files = demo_rules(args.specs.resolve(), data / "repo", timeline)
            exporter = exits.enter_context(ScriptedExporter())
            sink = exits.enter_context(MailSink(mail_dir))
            token = secrets.token_urlsafe(24)
            token_file = data / "receiver-token"
            token_file.write_text(token)
            token_file.chmod(0o600)
            base = f"http://127.0.0.1:{port}"

            am_port = free_port()
            am_dir = data / "alertmanager"
            am_dir.mkdir()
            (am_dir / "alertmanager.yml").write_text(
                alertmanager_config(f"{base}/api/v1/alerts", token_file, timeline)
            )
            am_url = f"http://127.0.0.1:{am_port}"
            stack.start(
                "alertmanager",
                [
                    "prometheus-alertmanager",
                    f"--config.file={am_dir / 'alertmanager.yml'}",
                    f"--storage.path={am_dir / 'data'}",
                    f"--web.listen-address=127.0.0.1:{am_port}",
                    "--cluster.listen-address=",
                ],
                am_dir / "alertmanager.log",
                f"{am_url}/-/ready",
            )
            prom_port = free_port()
            prom_dir = data / "prometheus"
            prom_dir.mkdir()
            (prom_dir / "prometheus.yml").write_text(
                prometheus_config(exporter.address, rule_files, f"127.0.0.1:{am_port}")
            )
            prom_url = f"http://127.0.0.1:{prom_port}"
            stack.start(
                "prometheus",
                [
                    "prometheus",
                    f"--config.file={prom_dir / 'prometheus.yml'}",
                    f"--storage.tsdb.path={prom_dir / 'tsdb'}",
                    f"--web.listen-address=127.0.0.1:{prom_port}",
                    "--rules.alert.resend-delay=1s",
                ],
                prom_dir / "prometheus.log",
                f"{prom_url}/-/ready",
            )
            env = receiver_env(
                data=data / "service",  # not "receiver": cwd is `data`, python -m would import it
                port=port,
                token=token,
                prom_url=prom_url,
                smtp_port=sink.port,
                rules=data / "repo" / GENERATED_DIR,
                specs=data / "repo" / "rules" / "specs",
                timeline=timeline,
            )
            stack.start(
                "receiver",
                [sys.executable, "-m", "receiver.cli", "serve"],
                data / "receiver.log",
                f"{base}/healthz",
                env=env,
                cwd=data,
            )
            analyst = (
                f"LLM at {os.environ['LLM_URL']}"
                if env["LLM_PROVIDER"] != "offline"
                else "offline (set LLM_URL for a model)"
            )
            lines = [
                "",
                f"  console      {base}/ui",
                f"  API          {base}/api/v1/incidents   (docs: {base}/docs)",
                f"  mailbox      {mail_dir}/  (SMTP sink on 127.0.0.1:{sink.port})",
                f"  Prometheus   {prom_url}/alerts",
                f"  Alertmanager {am_url}",
                f"  logs         {data}/*.log",
                f"  analyst      {analyst}",
                "  Ctrl-C stops everything.",
                "",
            ]
            print("\n".join(lines), flush=True)
            _run(exporter, sink, base, timeline, console, stop, args.exit_when_done, summary)
        except (KeyboardInterrupt, Stop):
            console.say("stopping")
            interrupted = True
        except RuntimeError as err:
            console.say(f"failed: {err}")
            summary = {"ok": False, "error": str(err)}
        finally:
            for sig in (signal.SIGINT, signal.SIGTERM):  # a second Ctrl-C must not cut this short
                signal.signal(sig, signal.SIG_IGN)
            stop.set()
            stack.stop()
    summary["processes"] = [
        {"name": p.name, "pid": p.popen.pid, "returncode": p.popen.returncode} for p in stack.procs
    ]
    summary["console"] = f"http://127.0.0.1:{port}/ui"
    console.say("stopped: receiver, Alertmanager, Prometheus, exporter, SMTP sink")
    print("DEMO-SUMMARY " + json.dumps(summary), flush=True)
    if interrupted and not args.exit_when_done:
        return 0  # Ctrl-C is how an interactive demo ends
    return 0 if summary.get("ok") else 1


def _run(
    exporter: ScriptedExporter,
    sink: MailSink,
    base: str,
    timeline: Timeline,
    console: Console,
    stop: threading.Event,
    exit_when_done: bool,
    summary: dict[str, Any],
) -> None:
    """Play the script and report; `summary` always holds the latest outcome."""
    player = threading.Thread(
        target=play, args=(script(exporter, timeline), console, stop), daemon=True
    )
    player.start()
    watcher = Watcher(base, sink, console)
    started = time.monotonic()
    reported = False
    try:
        while True:
            watcher.poll()
            outcome = watcher.outcome()
            summary.update(outcome)
            over = time.monotonic() - started > timeline.deadline
            if (outcome["ok"] or over) and not reported:
                reported = True
                if outcome["ok"]:
                    console.say(
                        "done: a threshold incident and an outlier incident, each analysed, "
                        "mailed and resolved"
                    )
                else:
                    console.say(
                        "deadline passed before both incidents were analysed, mailed and "
                        f"resolved: {json.dumps(outcome['incidents'])}"
                    )
                if exit_when_done:
                    time.sleep(2.0)  # let a last resolved mail land
                    watcher.poll()
                    summary.update(watcher.outcome())
                    return
                console.say(f"still running: browse {base}/ui; Ctrl-C stops everything")
            time.sleep(0.5)
    finally:
        watcher.close()
