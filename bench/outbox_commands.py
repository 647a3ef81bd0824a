"""Store commands per email: the service in-process on the embedded store, every command counted.

`--groups` unrelated Alertmanager groups (offline analyst, rate limit off, email to a loopback
SMTP server) are posted once; when each has its first page, the commands the service sent are
printed by (command, collection, filter shape) and by the service function that issued them
(`by_stage`, per email), with the totals per email. The outbox's are
those on `notifications` and `notify_windows` and its `needs_notification` reads of incidents.

Run against another checkout with `PYTHONPATH=/path/to/it python bench/outbox_commands.py`.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path
from types import FrameType
from typing import Any

from pymongo import monitoring

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.append(str(ROOT))  # after PYTHONPATH: the checkout measured comes first

from bench.load import _firing, deliveries  # noqa: E402
from receiver.store.embedded import EmbeddedStore  # noqa: E402
from tests.support.service import TOKEN, make_settings, serve  # noqa: E402
from tests.support.smtp import smtp_server  # noqa: E402

SKIP = frozenset({"ping", "hello", "ismaster", "isMaster", "buildInfo", "endSessions"})


def _shape(value: Any) -> Any:
    """A filter with its values dropped: which fields and operators it uses."""
    if isinstance(value, dict):
        return {k: _shape(v) for k, v in value.items()}
    if isinstance(value, list) and value and isinstance(value[0], dict):
        return [_shape(v) for v in value]
    return "_"


def _stage() -> str:
    """The service function that issued the command being sent: the innermost frame of ours
    outside the store package (the listener runs in the task that sends the command)."""
    frame: FrameType | None = sys._getframe(2)
    store = ""
    while frame is not None:
        parts = Path(frame.f_code.co_filename).parts
        if "receiver" in parts:
            inside = parts[len(parts) - parts[::-1].index("receiver") :]
            name = f"{'/'.join(inside)}:{frame.f_code.co_name}"
            if inside[0] != "store":
                return name
            store = store or name
        frame = frame.f_back
    return store or "?"


class Commands(monitoring.CommandListener):
    def __init__(self) -> None:
        self.seen: Counter[str] = Counter()
        # (command, collection) -> the service functions that issued it
        self.by_stage: Counter[str] = Counter()

    def started(self, event: monitoring.CommandStartedEvent) -> None:
        name = event.command_name
        if name in SKIP:
            return
        cmd = event.command
        collection = str(cmd.get(name, ""))
        self.by_stage[f"{name} {collection} <- {_stage()}"] += 1
        if name in ("update", "delete"):
            ops = cmd.get("updates") or cmd.get("deletes") or []
            what = json.dumps(_shape(ops[0].get("q", {})) if ops else {}) + f" x{len(ops)}"
        elif name == "insert":
            what = f"x{len(cmd.get('documents', []))}"
        elif name in ("find", "count", "distinct", "findAndModify", "aggregate"):
            what = json.dumps(_shape(cmd.get("filter", cmd.get("query", {}))))
        else:
            what = ""
        self.seen[f"{name} {collection} {what}"] += 1

    def succeeded(self, event: monitoring.CommandSucceededEvent) -> None:
        pass

    def failed(self, event: monitoring.CommandFailedEvent) -> None:
        pass


async def run(groups: int) -> dict[str, Any]:
    listener = Commands()
    monitoring.register(listener)
    with tempfile.TemporaryDirectory() as tmp, smtp_server() as smtp:
        async with EmbeddedStore(Path(tmp) / "store") as store:
            settings = make_settings(
                store.uri,
                Path(tmp) / "data",
                llm_provider="offline",
                smtp_host="127.0.0.1",
                smtp_port=smtp.port,
                smtp_from="monitor@example.com",
                smtp_to="oncall@example.com",
                notify_rate_limit=0,
                notify_rca_wait_seconds=5,
                notify_resolved=False,
                prom_url="",
                retention_interval_seconds=0,
            )
            async with serve(settings) as svc:
                listener.seen.clear()
                started = time.monotonic()
                for _, body in deliveries(groups, seed=5):
                    resp = await svc.client.post(
                        svc.webhook,
                        content=body,
                        headers={
                            "Authorization": f"Bearer {TOKEN}",
                            "Content-Type": "application/json",
                        },
                    )
                    resp.raise_for_status()
                while len(_firing(smtp.messages)) < groups:
                    if time.monotonic() - started > 600:
                        raise RuntimeError("not every group was emailed")
                    await asyncio.sleep(0.2)
                seconds = time.monotonic() - started
                seen = Counter(listener.seen)
                by_stage = Counter(listener.by_stage)
    emails = len(smtp.messages)
    outbox = {
        k: n
        for k, n in seen.items()
        if " notifications " in k or " notify_windows " in k or "needs_notification" in k
    }
    return {
        "groups": groups,
        "emails": emails,
        "seconds": round(seconds, 1),
        "commands": sum(seen.values()),
        "commands_per_email": round(sum(seen.values()) / emails, 2),
        "outbox_commands": sum(outbox.values()),
        "outbox_commands_per_email": round(sum(outbox.values()) / emails, 2),
        "outbox": dict(sorted(outbox.items(), key=lambda kv: -kv[1])),
        "top": dict(seen.most_common(25)),
        # per email, what issues the most: (command, collection) <- the stage's function
        "by_stage": {k: round(n / emails, 2) for k, n in by_stage.most_common(40)},
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--groups", type=int, default=200)
    args = parser.parse_args()
    print(json.dumps(asyncio.run(run(args.groups)), indent=1))


if __name__ == "__main__":
    main()
