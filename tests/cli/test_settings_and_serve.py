"""Settings errors name the variable; `receiver serve` runs with the embedded store and stops it."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from receiver.settings import Settings, SettingsError, load_settings
from tests.support.procs import free_port, stop, wait_http


@pytest.mark.parametrize(
    ("env", "needle"),
    [
        ({"MONITOR_INTERVAL": "soon"}, "invalid setting MONITOR_INTERVAL:"),
        ({"RECEIVER_PORT": "70000"}, "invalid setting RECEIVER_PORT:"),
        ({"Z_THRESHOLD": "-1"}, "invalid setting Z_THRESHOLD:"),
        ({"LLM_PROVIDER": "magic"}, "invalid setting LLM_PROVIDER:"),
        ({"SLACK_ENABLED": "perhaps"}, "invalid setting SLACK_ENABLED:"),
    ],
)
def test_invalid_setting_names_the_variable(
    monkeypatch: pytest.MonkeyPatch, env: dict[str, str], needle: str
) -> None:
    """One line, naming the variable, for each kind of bad value."""
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    with pytest.raises(SettingsError) as info:
        load_settings(_env_file=None)
    message = str(info.value)
    assert message.startswith(needle)
    assert "\n" not in message


def test_secret_values_are_not_echoed(monkeypatch: pytest.MonkeyPatch) -> None:
    """A bad secret-bearing value is named but not printed."""
    monkeypatch.setenv("SMTP_PORT", "not-a-port")
    monkeypatch.setenv("SMTP_PASSWORD", "hunter2-secret")
    with pytest.raises(SettingsError) as info:
        load_settings(_env_file=None)
    assert "hunter2" not in str(info.value)


def test_seed_names_are_read(monkeypatch: pytest.MonkeyPatch) -> None:
    """The seed's variable names configure the service."""
    seed = {
        "PROM_URL": "http://127.0.0.1:19090",
        "MONGO_URI": "mongodb://127.0.0.1:1",
        "MONGO_DB": "seeddb",
        "LLM_URL": "http://127.0.0.1:11434",
        "LLM_MODEL": "qwen2.5:7b",
        "MONITOR_INTERVAL": "30",
        "Z_THRESHOLD": "4.5",
        "MAX_DOCS": "123",
        "SMTP_HOST": "127.0.0.1",
        "SMTP_PORT": "2525",
        "SMTP_USER": "u",
        "SMTP_PASSWORD": "p",
        "SLACK_ENABLED": "true",
        "SLACK_WEBHOOK_URL": "http://127.0.0.1:1/hook",
        "LANGFUSE_PUBLIC_KEY": "pk",
        "LANGFUSE_SECRET_KEY": "sk",
        "LANGFUSE_HOST": "http://127.0.0.1:3000",
    }
    for key, value in seed.items():
        monkeypatch.setenv(key, value)
    s = Settings(_env_file=None)
    assert s.prom_url == seed["PROM_URL"]
    assert s.mongo_db == "seeddb"
    assert s.monitor_interval == 30
    assert s.z_threshold == 4.5
    assert s.max_docs == 123
    assert s.smtp_port == 2525
    assert s.slack_enabled is True
    assert s.langfuse_host == "http://127.0.0.1:3000"
    assert s.smtp_password is not None
    assert "p" not in repr(s.smtp_password)


def test_serve_rejects_bad_setting_with_one_line(tmp_path: Path) -> None:
    """`receiver serve` with a bad value exits 2 and prints one line naming it."""
    env = {**os.environ, "MONITOR_INTERVAL": "soon", "DATA_DIR": str(tmp_path)}
    proc = subprocess.run(
        [sys.executable, "-m", "receiver.cli", "serve"],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        cwd=tmp_path,
    )
    assert proc.returncode == 2
    assert proc.stderr.strip().splitlines() == [proc.stderr.strip().splitlines()[0]]
    assert "invalid setting MONITOR_INTERVAL" in proc.stderr


@pytest.mark.parametrize(
    ("env", "needle"),
    [
        ({"NOTIFY_ROUTES": "urgent=email"}, "invalid setting NOTIFY_ROUTES:"),
        (
            {"SLACK_ENABLED": "true", "SLACK_WEBHOOK_URL": "ftp://hooks.invalid/SECRET0123"},
            "invalid setting SLACK_WEBHOOK_URL:",
        ),
        ({"SMTP_HOST": "127.0.0.1", "SMTP_TO": "not-an-address"}, "invalid setting SMTP_TO:"),
    ],
)
def test_serve_rejects_bad_channel_setting_with_one_line(
    env: dict[str, str], needle: str, tmp_path: Path
) -> None:
    """A bad notification variable stops start-up with one line naming it, secret masked."""
    clean = {k: v for k, v in os.environ.items() if not k.startswith(("SLACK_", "SMTP_"))}
    proc = subprocess.run(
        [sys.executable, "-m", "receiver.cli", "serve", "--port", str(free_port())],
        env={**clean, **env, "DATA_DIR": str(tmp_path)},
        capture_output=True,
        text=True,
        timeout=60,
        cwd=tmp_path,
    )
    assert proc.returncode == 2
    errors = [line for line in proc.stderr.splitlines() if line.startswith("receiver: ")]
    assert len(errors) == 1, proc.stderr
    assert needle in errors[0]
    assert "Traceback" not in proc.stderr
    assert "SECRET0123" not in proc.stderr


def test_serve_with_embedded_store_starts_and_stops_it(tmp_path: Path) -> None:
    """Without MONGO_URI, `receiver serve` starts nx-27017 under DATA_DIR and stops it on exit."""
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith(("MONGO_", "WEBHOOK_"))}
    env.update({"DATA_DIR": str(tmp_path / "data"), "MONITOR_INTERVAL": "0"})
    log = (tmp_path / "serve.log").open("wb")
    proc = subprocess.Popen(
        [sys.executable, "-m", "receiver.cli", "serve", "--port", str(port)],
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
        cwd=tmp_path,
    )
    try:
        wait_http(f"http://127.0.0.1:{port}/readyz", timeout=60, proc=proc)
        status = httpx.get(f"http://127.0.0.1:{port}/").json()
        assert status["store"] == "embedded"
        pid_file = tmp_path / "data" / "store" / "nx-27017.pid"
        nx_pid = int(pid_file.read_text().strip())
        os.kill(nx_pid, 0)  # alive
        proc.send_signal(signal.SIGINT)
        proc.wait(timeout=30)
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            try:
                os.kill(nx_pid, 0)
            except ProcessLookupError:
                break
            time.sleep(0.1)
        else:
            raise AssertionError("embedded store still running after the service stopped")
    finally:
        stop(proc)
        log.close()
    text = (tmp_path / "serve.log").read_text()
    assert "WEBHOOK AUTH IS OFF" in text


@pytest.mark.parametrize(
    ("overrides", "expected"),
    [
        ({"public_url": "https://monitor.example.com"}, "https://monitor.example.com"),
        ({"receiver_host": "127.0.0.1", "receiver_port": 8123}, "http://127.0.0.1:8123"),
        ({"receiver_host": "::1", "receiver_port": 8123}, "http://[::1]:8123"),
        ({"receiver_host": "0.0.0.0"}, ""),
        ({"receiver_host": "::"}, ""),
    ],
)
def test_notification_links_use_public_url_else_a_single_bind_address(
    overrides: dict[str, object], expected: str
) -> None:
    assert Settings(_env_file=None, **overrides).links_url == expected  # type: ignore[arg-type]


def test_serve_refuses_webhook_user_without_password(tmp_path: Path) -> None:
    """WEBHOOK_USER with an empty WEBHOOK_PASSWORD stops `receiver serve` with one clear line."""
    clean = {k: v for k, v in os.environ.items() if not k.startswith("WEBHOOK_")}
    proc = subprocess.run(
        [sys.executable, "-m", "receiver.cli", "serve", "--port", str(free_port())],
        env={**clean, "WEBHOOK_USER": "am", "WEBHOOK_PASSWORD": "", "DATA_DIR": str(tmp_path)},
        capture_output=True,
        text=True,
        timeout=60,
        cwd=tmp_path,
    )
    assert proc.returncode == 2
    errors = [line for line in proc.stderr.splitlines() if line.startswith("receiver: ")]
    assert errors == [
        "receiver: invalid setting WEBHOOK_PASSWORD: must not be empty when WEBHOOK_USER is set "
        "(basic auth with an empty password is no protection)"
    ], proc.stderr
    assert "Traceback" not in proc.stderr
