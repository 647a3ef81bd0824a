"""Real receiver processes (`python -m receiver.cli serve`) for the fault tests: replicas on one
store, a process that is SIGKILLed and one that takes over.

`replica_env` builds the environment from scratch for the settings (a developer's own LLM_URL,
SMTP_HOST, ... in the shell never leak into a test); `receiver` starts one process on a free
loopback port, waits for /readyz and always stops it.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from receiver.settings import Settings
from tests.support.fake_llm import FakeLLM
from tests.support.procs import free_port, stop, wait_http
from tests.support.service import TOKEN
from tests.support.smtp import SmtpServer

_SETTING_NAMES = frozenset(name.upper() for name in Settings.model_fields)


def replica_env(store_uri: str, db: str, data_dir: Path, **settings: str) -> dict[str, str]:
    """The environment of a receiver process on `store_uri`/`db`; `settings` are extra or
    overriding variables by name (`LLM_URL="..."`). No Prometheus, no log files, the test
    webhook token."""
    env = {k: v for k, v in os.environ.items() if k.upper() not in _SETTING_NAMES}
    env.update(
        {
            "MONGO_URI": store_uri,
            "MONGO_DB": db,
            "DATA_DIR": str(data_dir),
            "WEBHOOK_TOKEN": TOKEN,
            "MONITOR_INTERVAL": "0",
            "PROM_URL": "",
            "LOG_FILES": "false",
        }
    )
    env.update(settings)
    return env


def smtp_env(smtp: SmtpServer | int) -> dict[str, str]:
    """Variables that send email to the loopback SMTP server (or a port) in plain SMTP."""
    port = smtp if isinstance(smtp, int) else smtp.port
    return {
        "SMTP_HOST": "127.0.0.1",
        "SMTP_PORT": str(port),
        "SMTP_FROM": "monitor@example.com",
        "SMTP_TO": "oncall@example.com",
    }


def model_env(llm: FakeLLM) -> dict[str, str]:
    """Variables that point the analyst at the loopback fake model (OpenAI protocol)."""
    return {
        "LLM_PROVIDER": "openai",
        "LLM_URL": llm.url,
        "LLM_MODEL": "fake",
        "LLM_API_KEY": "test-key",
    }


@dataclass(frozen=True)
class Replica:
    proc: subprocess.Popen[bytes]
    url: str
    log: Path

    @property
    def webhook(self) -> str:
        return f"{self.url}/api/v1/alerts"


@contextmanager
def receiver(env: dict[str, str], log: Path, timeout: float = 60.0) -> Iterator[Replica]:
    """`receiver serve` on a free loopback port with `env`, output to `log`; ready on entry,
    stopped (SIGTERM, then SIGKILL) on exit. Runs in `log`'s folder, so no `.env` is read."""
    port = free_port()
    out = log.open("wb")
    proc = subprocess.Popen(
        [sys.executable, "-m", "receiver.cli", "serve", "--port", str(port)],
        env=env,
        stdout=out,
        stderr=subprocess.STDOUT,
        cwd=log.parent,
    )
    try:
        url = f"http://127.0.0.1:{port}"
        try:
            wait_http(f"{url}/readyz", timeout=timeout, proc=proc)
        except Exception as err:
            out.flush()
            tail = log.read_text(errors="replace")[-2000:]
            raise RuntimeError(f"receiver not ready: {err}\n--- log tail ---\n{tail}") from err
        yield Replica(proc, url, log)
    finally:
        stop(proc)
        out.close()


def wait_until(check: Callable[[], object], within: float, what: str) -> None:
    """Poll `check` every 0.1 s until it returns something truthy; fail after `within` s."""
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        if check():
            return
        time.sleep(0.1)
    raise AssertionError(f"timed out after {within:g}s: {what}")
