"""`make demo --fast`: both incidents (threshold and outlier) analysed, mailed, resolved; every
process it started is gone afterwards."""

from __future__ import annotations

import email
import email.policy
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import httpx
import pytest

# the demo starts real Prometheus, Alertmanager and receiver processes
pytestmark = pytest.mark.e2e

REPO = Path(__file__).resolve().parents[2]


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    # a zombie is gone for our purposes (its parent, the demo, has exited)
    stat = Path(f"/proc/{pid}/stat")
    return stat.exists() and stat.read_text().split()[2] != "Z"


def _mentioning(text: str) -> list[int]:
    """PIDs of processes whose command line mentions `text` (e.g. the demo's data dir)."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            cmdline = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode()
        except OSError:
            continue
        if text in cmdline and _alive(int(entry.name)):
            found.append(int(entry.name))
    return found


@pytest.mark.skipif(
    shutil.which("prometheus") is None or shutil.which("prometheus-alertmanager") is None,
    reason="prometheus / prometheus-alertmanager not installed",
)
def test_demo_fast_end_to_end(tmp_path: Path) -> None:
    """Threshold + outlier incident, each with an analysis and mail, both resolved, all stopped."""
    data, mail = tmp_path / "data", tmp_path / "mail"
    argv = [
        sys.executable,
        "-m",
        "receiver.demo",
        "--fast",
        "--exit-when-done",
        "--port",
        "0",
        "--data-dir",
        str(data),
        "--mail-dir",
        str(mail),
        "--specs",
        str(REPO / "rules" / "specs"),
    ]
    env = {k: v for k, v in os.environ.items() if not k.startswith(("LLM_", "LANGFUSE_"))}
    done = subprocess.run(
        argv, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=240, check=False
    )
    out = done.stdout
    lines = [ln for ln in out.splitlines() if ln.startswith("DEMO-SUMMARY ")]
    assert lines, f"no summary; stdout:\n{out[-3000:]}\nstderr:\n{done.stderr[-3000:]}"
    summary: dict[str, Any] = json.loads(lines[-1].removeprefix("DEMO-SUMMARY "))
    assert summary["ok"], f"{json.dumps(summary, indent=1)}\n{out[-3000:]}"
    assert done.returncode == 0

    incidents = summary["incidents"]
    [threshold] = [i for i in incidents if i["alertnames"] == ["HighCPUUsage"]]
    [outlier] = [i for i in incidents if i["source"] == "detector"]
    assert len(incidents) == 2, incidents
    for incident in (threshold, outlier):
        assert incident["status"] == "resolved"
        assert incident["analysis"]
        assert incident["mails"] >= 1
    assert "node-b" in threshold["title"]

    files = sorted(mail.glob("*.eml"))
    assert len(files) >= 2
    subjects = []
    charted = []  # subjects of mails carrying the evidence chart inline
    for path in files:
        message = email.message_from_bytes(path.read_bytes(), policy=email.policy.default)
        subjects.append(str(message["Subject"]))
        assert message["To"] == "oncall@example.com"
        images = [p for p in message.walk() if p.get_content_type() == "image/png"]
        if images and images[0]["Content-ID"] == "<evidence.png>":
            charted.append(str(message["Subject"]))
    # the generated rule's `metric` label names the threshold page, as in the seed
    assert "[HIGH] cpu_usage" in subjects, subjects
    assert any("job:http_request_latency_seconds:p95" in s for s in subjects), subjects
    assert "[HIGH] cpu_usage" in charted, (charted, subjects)
    assert any("job:http_request_latency_seconds:p95" in s for s in charted), (charted, subjects)
    assert "threshold incident opened: HighCPUUsage on node-b:9100" in out
    assert "outlier incident opened" in out

    # everything stopped: the children, the embedded store they started, the ports
    for proc in summary["processes"]:
        assert not _alive(proc["pid"]), proc
    assert _mentioning(str(data)) == []
    with pytest.raises(httpx.TransportError):
        httpx.get(summary["console"], timeout=2.0)
