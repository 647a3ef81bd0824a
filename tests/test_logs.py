"""Log files: app/debug/error split, JSON lines with extras, rotation, secrets masked."""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

from receiver import logs
from receiver.settings import Settings
from receiver.store.embedded import EmbeddedStore
from tests.support.payloads import alert, webhook
from tests.support.service import TOKEN, make_settings, serve

ADMIN = "admin-secret-token-xyz"


def _lines(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


async def test_service_writes_the_three_logs(embedded_store: EmbeddedStore, tmp_path: Path) -> None:
    """The running service logs info+ to app.log, everything to debug.log, errors to error.log."""
    settings = make_settings(embedded_store.uri, tmp_path, admin_token=ADMIN)
    async with serve(settings) as svc:
        await svc.post_alerts(webhook([alert("HighCPU", "web-01:9100")]))
        svc.client.headers["Authorization"] = f"Bearer {ADMIN}"
        await svc.settled()
        log = logging.getLogger("receiver.tests")
        log.debug("debug detail", extra={"incident_id": "i-1"})
        log.error("failed with token %s and %s", ADMIN, TOKEN, extra={"incident_id": "i-2"})
    directory = tmp_path / "logs"
    app, debug, error = (_lines(directory / n) for n in ("app.log", "debug.log", "error.log"))
    assert any(line["message"].startswith("incident ") for line in app)
    assert all(line["level"] in ("info", "warning", "error") for line in app)
    assert any(line["message"] == "debug detail" and line["incident_id"] == "i-1" for line in debug)
    assert [line["incident_id"] for line in error] == ["i-2"]
    assert error[0]["message"] == "failed with token *** and ***"
    for name in ("app.log", "debug.log", "error.log"):
        text = (directory / name).read_text()
        assert ADMIN not in text
        assert TOKEN not in text


def test_logs_rotate(tmp_path: Path) -> None:
    """Past LOG_MAX_BYTES a file rotates and at most LOG_BACKUP_COUNT old files stay."""
    settings = Settings(_env_file=None, data_dir=tmp_path, log_max_bytes=2048, log_backup_count=2)
    undo = logs.install(settings)
    try:
        for n in range(200):
            logging.getLogger("receiver.tests").info("line %d %s", n, "x" * 40)
    finally:
        undo()
    names = sorted(p.name for p in (tmp_path / "logs").iterdir())
    assert names == [
        "app.log",
        "app.log.1",
        "app.log.2",
        "debug.log",
        "debug.log.1",
        "debug.log.2",
        "error.log",
    ]
    assert all(p.stat().st_size <= 2048 for p in (tmp_path / "logs").iterdir())
    left = [
        h
        for h in logging.getLogger("receiver").handlers
        if isinstance(h, logging.FileHandler) and h.baseFilename.startswith(str(tmp_path))
    ]
    assert left == []
