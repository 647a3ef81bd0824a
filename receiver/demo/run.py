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
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import FrameType
from typing import Any

import httpx

from receiver.demo.configs import (
    FAST,
    NORMAL,
    Timeline,
    alertmanager_config,
    demo_rules,
    prometheus_config,
    receiver_env,
)
from receiver.demo.exporter import ScriptedExporter
from receiver.demo.mail import MailSink
from receiver.demo.script import Console, Watcher, play, script
from receiver.ports import free_port
from receiver.rulegen.generate import GENERATED_DIR


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
