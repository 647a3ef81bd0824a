"""Deployment files checked with the tools this machine has: the systemd unit with
`systemd-analyze`, the compose stack's Prometheus and Alertmanager configs with promtool and
amtool as the containers would see them, and the Dockerfile's structure."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import yaml

REPO = Path(__file__).resolve().parents[2]
UNIT = REPO / "deploy" / "ai-devops-monitor.service"
INSTALL_DIR = "/opt/ai-devops-monitor"


def _unit_keys(text: str) -> dict[str, list[str]]:
    """`Key=value` lines of the unit by key (a key may repeat), comments skipped."""
    keys: dict[str, list[str]] = {}
    for line in text.splitlines():
        line = line.strip()
        if not line or line.startswith(("#", ";", "[")):
            continue
        key, _, value = line.partition("=")
        keys.setdefault(key.strip(), []).append(value.strip())
    return keys


def _installed_unit(tmp_path: Path) -> Path:
    """The unit as installed here: the project at this checkout, its venv this interpreter's."""
    text = UNIT.read_text().replace(f"{INSTALL_DIR}/.venv", sys.prefix)
    text = text.replace(f"WorkingDirectory={INSTALL_DIR}", f"WorkingDirectory={REPO}")
    path = tmp_path / UNIT.name
    path.write_text(text)
    return path


def test_systemd_unit_verifies_clean(tmp_path: Path) -> None:
    """`systemd-analyze verify` accepts the unit without a single warning (a misspelt key
    would print one)."""
    unit = _installed_unit(tmp_path)
    assert (Path(sys.prefix) / "bin" / "receiver").exists()
    proc = subprocess.run(
        ["systemd-analyze", "verify", "--man=no", str(unit)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 0, proc.stderr
    assert proc.stderr.strip() == ""


def test_systemd_unit_is_hardened(tmp_path: Path) -> None:
    """A transient user that writes only its state and logs directories; systemd's own
    exposure score for it is "OK" (below 2)."""
    keys = _unit_keys(UNIT.read_text())
    assert keys["DynamicUser"] == ["yes"]
    assert keys["ProtectSystem"] == ["strict"]
    assert keys["StateDirectory"] == ["ai-devops-monitor"]
    assert keys["NoNewPrivileges"] == ["yes"]
    assert keys["CapabilityBoundingSet"] == [""]
    assert "User" not in keys
    assert "ReadWritePaths" not in keys
    # the data (and the embedded store) live in the state directory, the logs in the logs one
    env = " ".join(keys["Environment"])
    assert "DATA_DIR=%S/ai-devops-monitor" in env
    assert "LOG_DIR=%L/ai-devops-monitor" in env
    assert keys["ExecStart"] == [f"{INSTALL_DIR}/.venv/bin/receiver serve"]
    proc = subprocess.run(
        ["systemd-analyze", "security", "--offline=yes", str(_installed_unit(tmp_path))],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 0, proc.stderr
    found = re.search(r"Overall exposure level for \S+: ([0-9.]+) (\w+)", proc.stdout)
    assert found is not None, proc.stdout[-2000:]
    assert float(found.group(1)) < 2.0
    assert found.group(2) == "OK"


def _compose() -> dict[str, Any]:
    doc: dict[str, Any] = yaml.safe_load((REPO / "compose.yaml").read_text())
    return doc


def _mirror(service: dict[str, Any], root: Path, token: str) -> None:
    """Lay out under `root` what the container sees at its paths: the bind-mounted files and
    folders of the repository, and the compose configs."""
    for volume in service.get("volumes", []):
        source, target = volume.split(":")[:2]
        if not source.startswith("./"):
            continue  # a named volume: empty at first start
        src, dest = REPO / source, root / target.lstrip("/")
        dest.parent.mkdir(parents=True, exist_ok=True)
        if src.is_dir():
            shutil.copytree(src, dest)
        else:
            shutil.copy(src, dest)
    for config in service.get("configs", []):
        dest = root / config["target"].lstrip("/")
        dest.parent.mkdir(parents=True, exist_ok=True)
        dest.write_text(token)


def _flag(service: dict[str, Any], name: str) -> str:
    for arg in service["command"]:
        if arg.startswith(f"--{name}="):
            value: str = arg.split("=", 1)[1]
            return value
    raise AssertionError(f"no --{name} in {service['command']}")


def test_compose_prometheus_config_passes_promtool_with_every_generated_rule(
    tmp_path: Path,
) -> None:
    """`promtool check config` on Prometheus' config as mounted, loading every generated rule
    file; it sends alerts to the Alertmanager that lives in the receiver's network."""
    services = _compose()["services"]
    prom = services["prometheus"]
    _mirror(prom, tmp_path, "token")
    config = tmp_path / _flag(prom, "config.file").lstrip("/")
    proc = subprocess.run(
        ["promtool", "check", "config", str(config)], capture_output=True, text=True, timeout=60
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    generated = sorted(p.name for p in (REPO / "rules" / "generated").glob("*.yml"))
    checked = re.findall(r"Checking (\S+)", proc.stdout + proc.stderr)
    assert sorted(Path(c).name for c in checked if "/rules/" in c) == generated
    doc = yaml.safe_load(config.read_text())
    (am,) = doc["alerting"]["alertmanagers"]
    assert am["static_configs"][0]["targets"] == ["receiver:9093"]
    assert services["alertmanager"]["network_mode"] == "service:receiver"
    assert "127.0.0.1:9093:9093" in services["receiver"]["ports"]


def test_compose_alertmanager_loads_the_example_and_reaches_the_receiver(tmp_path: Path) -> None:
    """`amtool check-config` on alertmanager.example.yml as mounted; its loopback webhook URL
    is the receiver (shared network, the receiver's port) and its credentials file is the
    WEBHOOK_TOKEN the receiver checks."""
    services = _compose()["services"]
    am = services["alertmanager"]
    _mirror(am, tmp_path, "token")
    config = tmp_path / _flag(am, "config.file").lstrip("/")
    assert config.read_text() == (REPO / "alertmanager.example.yml").read_text()
    proc = subprocess.run(
        ["amtool", "check-config", str(config)], capture_output=True, text=True, timeout=60
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    doc = yaml.safe_load(config.read_text())
    (receiver,) = doc["receivers"]
    (hook,) = receiver["webhook_configs"]
    assert hook["url"] == "http://127.0.0.1:8000/api/v1/alerts"
    credentials = hook["http_config"]["authorization"]["credentials_file"]
    assert (tmp_path / credentials.lstrip("/")).read_text() == "token"
    configs = _compose()["configs"]
    assert configs["receiver-token"]["content"] == "${WEBHOOK_TOKEN:?set WEBHOOK_TOKEN}"
    env = services["receiver"]["environment"]
    assert env["WEBHOOK_TOKEN"] == configs["receiver-token"]["content"]
    assert "127.0.0.1:8000:8000" in services["receiver"]["ports"]
    assert env["MONGO_URI"] == "mongodb://mongo:27017"
    assert "mongo" in services


def _dockerfile() -> list[tuple[str, str]]:
    """(instruction, arguments) per instruction, continuation lines joined."""
    text = (REPO / "Dockerfile").read_text().replace("\\\n", " ")
    out: list[tuple[str, str]] = []
    for line in text.splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            word, _, rest = line.partition(" ")
            out.append((word.upper(), " ".join(rest.split())))
    return out


def test_dockerfile_is_slim_non_root_with_a_healthcheck() -> None:
    """A slim Python 3.11 image, runtime dependencies only, a non-root user from before the
    command runs, and a HEALTHCHECK on /healthz at the port the service binds."""
    steps = _dockerfile()
    stages = [args for word, args in steps if word == "FROM"]
    assert all(s.startswith("python:3.11-slim") for s in stages)
    final = max(i for i, (word, _) in enumerate(steps) if word == "FROM")
    last = steps[final:]
    users = [args for word, args in last if word == "USER"]
    assert users
    assert users[-1] not in {"root", "0"}
    cmd_at = max(i for i, (word, _) in enumerate(last) if word == "CMD")
    assert max(i for i, (word, _) in enumerate(last) if word == "USER") < cmd_at
    assert json.loads(last[cmd_at][1]) == ["receiver", "serve"]
    runs = " ".join(args for word, args in steps if word == "RUN")
    assert "[dev]" not in runs
    assert "pip wheel --no-cache-dir --wheel-dir /wheels ." in runs
    (health,) = [args for word, args in last if word == "HEALTHCHECK"]
    env = " ".join(args for word, args in last if word == "ENV")
    port = re.search(r"RECEIVER_PORT=(\d+)", env)
    assert port is not None
    assert f"http://127.0.0.1:{port.group(1)}/healthz" in health
    assert "RECEIVER_HOST=0.0.0.0" in env
    assert "DATA_DIR=/data" in env
    copies = [args for word, args in steps if word == "COPY"]
    assert not any(c.split()[0] in {".", "tests", "bench"} for c in copies)
