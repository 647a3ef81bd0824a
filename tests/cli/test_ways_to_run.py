"""The ways people run the service: `uvicorn receiver.app:app`, `receiver serve --workers N`
(each worker a replica on one store) and `receiver serve --reload`, as real processes."""

from __future__ import annotations

import os
import subprocess
import sys
from collections import Counter
from pathlib import Path
from typing import Any

import httpx
import pytest

from receiver.app import EnvironmentApp, app
from tests.support.payloads import alert, webhook
from tests.support.procs import free_port, running
from tests.support.replica import replica_env, smtp_env, wait_until
from tests.support.service import TOKEN
from tests.support.smtp import email_event, smtp_server

GROUPS = 4


def _env(tmp_path: Path, **settings: str) -> dict[str, str]:
    """A clean environment with no MONGO_URI: the service (or its parent) starts the embedded
    store under DATA_DIR."""
    env = replica_env("unused", "ways", tmp_path / "data", **settings)
    del env["MONGO_URI"]
    return env


def _children(pid: int) -> list[int]:
    found: list[int] = []
    for task in Path(f"/proc/{pid}/task").iterdir():
        found += [int(c) for c in (task / "children").read_text().split()]
    return found


def _cmdline(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()
    except FileNotFoundError:
        return ""


def _post(url: str, payload: Any) -> int:
    # a new connection each time, so the kernel may hand it to either worker
    with httpx.Client(timeout=10) as client:
        resp = client.post(
            f"{url}/api/v1/alerts", json=payload, headers={"Authorization": f"Bearer {TOKEN}"}
        )
    return resp.status_code


def test_importing_the_module_reads_no_settings(tmp_path: Path) -> None:
    """`receiver.app` imports with a broken environment: `app` is built on first use only."""
    assert isinstance(app, EnvironmentApp)
    env = {**os.environ, "MONITOR_INTERVAL": "soon"}
    code = "import receiver.app as m; print(type(m.app).__name__)"
    proc = subprocess.run(
        [sys.executable, "-c", code],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        cwd=tmp_path,
    )
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "EnvironmentApp"


def test_uvicorn_serves_the_module_level_app(tmp_path: Path) -> None:
    """`uvicorn receiver.app:app` builds the service from the environment: it takes webhooks,
    and its status names the settings it read."""
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    env = _env(tmp_path, LLM_MODEL="qwen2.5:7b")
    argv = [sys.executable, "-m", "uvicorn", "receiver.app:app", "--port", str(port)]
    with running(argv, tmp_path / "uvicorn.log", f"{url}/readyz", 60, env, cwd=tmp_path):
        status = httpx.get(f"{url}/", timeout=10).json()
        assert _post(url, webhook([alert("DiskFull", "db-1:9100")], group="db")) == 200
        wait_until(
            lambda: httpx.get(f"{url}/api/v1/incidents", timeout=10).json()["total"] == 1,
            30,
            "the incident",
        )
    assert status["llm"]["model"] == "qwen2.5:7b"
    assert status["store"] == "embedded"


def test_uvicorn_with_a_bad_setting_stops_with_one_line(tmp_path: Path) -> None:
    """A bad variable fails uvicorn's start-up with the line naming it, and uvicorn exits."""
    env = {**_env(tmp_path), "MONITOR_INTERVAL": "soon"}
    proc = subprocess.run(
        [sys.executable, "-m", "uvicorn", "receiver.app:app", "--port", str(free_port())],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        cwd=tmp_path,
    )
    assert proc.returncode != 0
    assert "receiver: invalid setting MONITOR_INTERVAL" in proc.stderr + proc.stdout


@pytest.mark.parametrize("argv", [["--workers", "0"], ["--workers", "2", "--reload"]])
def test_serve_refuses_bad_process_options(argv: list[str], tmp_path: Path) -> None:
    """`--workers` below 1, or with `--reload`, is a usage error before anything starts."""
    proc = subprocess.run(
        [sys.executable, "-m", "receiver.cli", "serve", *argv],
        env=_env(tmp_path),
        capture_output=True,
        text=True,
        timeout=60,
        cwd=tmp_path,
    )
    assert proc.returncode == 2
    assert "--workers" in proc.stderr
    assert not (tmp_path / "data").exists()


def test_two_workers_are_replicas_of_one_store(tmp_path: Path) -> None:
    """`receiver serve --workers 2`: two worker processes on the embedded store the parent
    started; every delivery posted twice still makes one incident, one analysis and one
    email per group; stopping the parent stops the workers and the store."""
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    with smtp_server() as smtp:
        env = _env(
            tmp_path, **smtp_env(smtp), NOTIFY_RCA_WAIT_SECONDS="5", NOTIFY_POLL_SECONDS="0.2"
        )
        argv = [sys.executable, "-m", "receiver.cli", "serve", "--port", str(port)]
        log = tmp_path / "serve.log"
        with running([*argv, "--workers", "2"], log, f"{url}/readyz", 90, env, cwd=tmp_path) as p:
            children = {c: _cmdline(c) for c in _children(p.pid)}
            workers = [c for c, cmd in children.items() if "spawn_main" in cmd]
            stores = [c for c, cmd in children.items() if "nx_launch" in cmd]
            assert len(workers) == 2, children
            assert len(stores) == 1, children
            for g in range(GROUPS):
                payload = webhook([alert(f"Worker{g}", f"node-{g}:9100")], group=f"g{g}")
                assert _post(url, payload) == 200
                assert _post(url, payload) == 200  # the HA twin, maybe to the other worker
            try:
                wait_until(lambda: len(smtp.messages) >= GROUPS, 60, "a page per group")
            except AssertionError as err:
                rows = httpx.get(f"{url}/api/v1/notifications", timeout=10).json()
                raise AssertionError(f"{err}; outbox: {rows}") from None

            def outbox_done() -> bool:
                rows = httpx.get(f"{url}/api/v1/notifications", timeout=10).json()
                return bool(rows["total"]) and all(
                    r["status"] == "sent" for r in rows["notifications"]
                )

            wait_until(outbox_done, 60, "every outbox row sent")
            incidents = httpx.get(f"{url}/api/v1/incidents", timeout=10).json()
            analyses = httpx.get(f"{url}/rca", params={"limit": 100}, timeout=10).json()
            rows = httpx.get(f"{url}/api/v1/notifications", timeout=10).json()
        left = [c for c in (*workers, *stores) if _cmdline(c)]
    assert left == []
    assert incidents["total"] == GROUPS
    ids = {i["id"] for i in incidents["incidents"]}
    assert Counter(a["incident_id"] for a in analyses["rca"]) == Counter(dict.fromkeys(ids, 1))
    assert Counter((r["incident_id"], r["event"]) for r in rows["notifications"]) == Counter(
        dict.fromkeys(((i, "firing") for i in ids), 1)
    )
    assert Counter(email_event(m) for m in smtp.messages) == Counter({"firing": GROUPS})


def test_reload_serves_and_stops_with_its_store(tmp_path: Path) -> None:
    """`receiver serve --reload` serves through uvicorn's reloader; stopping it stops the
    reloaded worker and the embedded store it shares."""
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    argv = [sys.executable, "-m", "receiver.cli", "serve", "--reload", "--port", str(port)]
    with running(
        argv, tmp_path / "reload.log", f"{url}/readyz", 90, _env(tmp_path), cwd=tmp_path
    ) as p:
        children = {c: _cmdline(c) for c in _children(p.pid)}
        status = httpx.get(f"{url}/", timeout=10).json()
    assert status["status"] == "running"
    assert any("nx_launch" in cmd for cmd in children.values()), children
    assert any("spawn_main" in cmd for cmd in children.values()), children
    ours = [c for c, cmd in children.items() if "nx_launch" in cmd or "spawn_main" in cmd]
    assert [c for c in ours if _cmdline(c)] == []
    assert "Will watch for changes" in (tmp_path / "reload.log").read_text()
