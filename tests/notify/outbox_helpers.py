"""Helpers for the outbox tests: service settings wired to a loopback SMTP server and Slack
fake, waiting on the outbox API, counters from /metrics, and analyses written the way the
enrichment stage stores them (an `rca` document per incident)."""

from __future__ import annotations

import asyncio
import re
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from bson import ObjectId
from pymongo import AsyncMongoClient

from receiver.settings import Settings
from tests.support.fake_slack import FakeSlack
from tests.support.service import Running, make_settings
from tests.support.smtp import SmtpServer

SENDER = "Alert Bot <alerts@example.com>"
PUBLIC_URL = "http://monitor.test:8000"


def notify_settings(
    uri: str,
    tmp_path: Path,
    *,
    smtp: SmtpServer | int | None = None,
    slack: FakeSlack | str | None = None,
    **overrides: Any,
) -> Settings:
    """Settings for a service whose email goes to `smtp` and Slack posts to `slack`."""
    values: dict[str, Any] = {
        "public_url": PUBLIC_URL,
        "notify_rca_wait_seconds": 0.2,
        "notify_poll_seconds": 0.05,
        "notify_retry_base_seconds": 0.2,
        "notify_retry_max_seconds": 1.0,
        "notify_rate_limit": 0,
        # The enrichment worker is held off (after its pass at start-up it analyses only after
        # this long), so each test decides when an analysis lands by storing one itself;
        # test_outbox_e2e uses the real one.
        "enrich_settle_seconds": 3600,
        "enrich_poll_seconds": 3600,
    }
    if smtp is not None:
        values.update(
            smtp_host="127.0.0.1",
            smtp_port=smtp if isinstance(smtp, int) else smtp.port,
            smtp_from=SENDER,
            smtp_to="ops@example.com",
        )
    if slack is not None:
        values.update(
            slack_enabled=True,
            slack_webhook_url=slack if isinstance(slack, str) else slack.hook_url(),
        )
    values.update(overrides)
    return make_settings(uri, tmp_path, **values)


async def eventually(
    check: Callable[[], Any], within: float = 20.0, what: str = "condition", every: float = 0.05
) -> Any:
    """Call `check` (sync or async) until it returns something truthy; return that."""
    deadline = asyncio.get_running_loop().time() + within
    last: Any = None
    while asyncio.get_running_loop().time() < deadline:
        last = check()
        if asyncio.iscoroutine(last):
            last = await last
        if last:
            return last
        await asyncio.sleep(every)
    raise AssertionError(f"{what} never held; last: {last!r}"[:3000])


async def total(service: Running, **filters: Any) -> int:
    """How many outbox rows match (one cheap query)."""
    body = await service.get("/api/v1/notifications", limit=1, **filters)
    found: int = body["total"]
    return found


async def all_rows(service: Running, **filters: Any) -> list[dict[str, Any]]:
    """Every matching outbox row, page by page."""
    found: list[dict[str, Any]] = []
    while True:
        body = await service.get("/api/v1/notifications", limit=500, offset=len(found), **filters)
        found += body["notifications"]
        if len(found) >= body["total"] or not body["notifications"]:
            return found


async def rows(service: Running, **filters: Any) -> list[dict[str, Any]]:
    body = await service.get("/api/v1/notifications", limit=500, **filters)
    found: list[dict[str, Any]] = body["notifications"]
    return found


async def rows_where(
    service: Running, predicate: Callable[[list[dict[str, Any]]], bool], **filters: Any
) -> list[dict[str, Any]]:
    seen: list[list[dict[str, Any]]] = [[]]

    async def check() -> list[dict[str, Any]] | None:
        seen[0] = await rows(service, **filters)
        return seen[0] if predicate(seen[0]) else None

    try:
        result: list[dict[str, Any]] = await eventually(check, what=f"outbox rows {filters}")
    except AssertionError as err:
        raise AssertionError(f"{err}; rows: {seen[0]!r}"[:4000]) from None
    return result


async def incident_id(service: Running) -> str:
    body = await service.wait_for("/api/v1/incidents", lambda b: b["total"] >= 1)
    found: str = body["incidents"][0]["id"]
    return found


def counter(metrics_text: str, name: str, **labels: str) -> float:
    """The value of one sample of `name` with exactly `labels` (0 when absent)."""
    want = ",".join(f'{k}="{v}"' for k, v in sorted(labels.items()))
    pattern = re.compile(rf"^{re.escape(name)}(?:\{{(.*)\}})? (\S+)$")
    for line in metrics_text.splitlines():
        match = pattern.match(line)
        if match is None:
            continue
        got = ",".join(sorted((match.group(1) or "").split(","))) if match.group(1) else ""
        if got == want:
            return float(match.group(2))
    return 0.0


async def metrics(service: Running) -> str:
    return (await service.client.get(f"{service.url}/metrics")).text


async def put_analysis(settings: Settings, incident: str, **fields: Any) -> None:
    """Store an analysis for `incident` as the enrichment stage does (`rca` collection)."""
    assert settings.mongo_uri is not None
    doc: dict[str, Any] = {
        "incident_id": incident,
        "created_at": datetime.now(UTC),
        "summary": "CPU saturated on node-1 after the 18:40 deploy.",
        "cause": "A runaway worker loop in the new release pins two cores.",
        "fix": ["Roll back the 18:40 deploy", "Restart the worker pool"],
        "simplified": "One server is overworked because of a faulty update.",
        "confidence": 0.8,
        "provider": "ollama",
        "model": "llama3.1:8b",
        "hypotheses": [],
        "offline": False,
    }
    doc.update(fields)
    client: AsyncMongoClient[dict[str, Any]] = AsyncMongoClient(
        settings.mongo_uri.get_secret_value(), tz_aware=True
    )
    try:
        await client[settings.mongo_db]["rca"].insert_one(doc)
        await client[settings.mongo_db]["incidents"].update_one(
            {"_id": ObjectId(incident)},
            {"$set": {"analysis_id": str(doc["_id"]), "needs_analysis": False}},
        )
    finally:
        await client.close()
