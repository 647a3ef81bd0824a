"""`receiver incidents ...` as a separate process against a running service."""

from __future__ import annotations

import asyncio
import json
import os
import sys
from pathlib import Path

from receiver.store.embedded import EmbeddedStore
from tests.oncall.helpers import OPERATOR, READ, get, oncall_service, open_incident
from tests.support.service import Running

ROOT = Path(__file__).resolve().parents[2]


async def _cli(svc: Running, *args: str, token: str = OPERATOR) -> tuple[int, str, str]:
    env = {
        **os.environ,
        "PYTHONPATH": str(ROOT),
        "RECEIVER_URL": svc.url,
        "RECEIVER_TOKEN": token,
        "USER": "carol",
    }
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "receiver.cli",
        "incidents",
        *args,
        env=env,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await asyncio.wait_for(proc.communicate(), timeout=60)
    assert proc.returncode is not None
    return proc.returncode, out.decode(), err.decode()


async def test_cli_lists_shows_acks_and_closes(
    embedded_store: EmbeddedStore, tmp_path: Path
) -> None:
    """A table by default, JSON with -o json, matchers and state filters; ack and close are
    recorded under $USER; errors exit 1 with the service's message."""
    async with oncall_service(embedded_store, tmp_path) as svc:
        web = await open_incident(svc, "web", service="web")
        db = await open_incident(svc, "db", service="db", severity="critical")

        code, out, _ = await _cli(svc, "list")
        assert code == 0
        lines = out.splitlines()
        assert lines[0].split() == ["ID", "STATE", "SEVERITY", "STARTED", "ASSIGNEE", "TITLE"]
        assert any(line.startswith(web["id"]) and " open " in line for line in lines)
        assert lines[-1] == "2 of 2"

        code, out, _ = await _cli(svc, "-o", "json", "list", "--filter", 'service="db"')
        assert code == 0
        assert [i["id"] for i in json.loads(out)["incidents"]] == [db["id"]]

        code, out, _ = await _cli(svc, "ack", db["id"])
        assert code == 0
        assert "state:          acknowledged" in out
        assert "acked_by:       carol" in out
        code, out, _ = await _cli(svc, "-o", "json", "list", "--state", "unacknowledged")
        assert [i["id"] for i in json.loads(out)["incidents"]] == [web["id"]]

        code, out, _ = await _cli(svc, "--author", "dave", "close", web["id"])
        assert code == 0
        assert "state:          closed" in out
        code, out, _ = await _cli(svc, "show", db["id"])
        assert code == 0
        assert "ack" in out.split("history:")[1]
        assert (await get(svc, f"/api/v1/incidents/{web['id']}"))["closed_by"] == "dave"

        code, out, err = await _cli(svc, "close", web["id"])
        assert code == 1
        assert err.startswith("receiver incidents close: HTTP 409")
        code, _, err = await _cli(svc, "silence", db["id"], "--duration", "2h")
        assert code == 1
        assert "ALERTMANAGER_URLS" in err
        code, _, err = await _cli(svc, "ack", db["id"], token=READ)
        assert code == 1
        assert "HTTP 403" in err
        code, _, err = await _cli(svc, "list", "--filter", 'a=~"("')
        assert code == 1
        assert "filter:" in err
        code, _, err = await _cli(svc, "show", "../../metrics")
        assert code == 1
        assert "not an incident id" in err
