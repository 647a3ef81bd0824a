"""schemathesis against /openapi.json of a running instance: no 5xx, answers match the schemas.

The service runs in the test's event loop; schemathesis (sync HTTP) runs in a worker thread so
the loop keeps serving. Bounded: a fixed number of generated cases per operation, no shrinking
phase unless something fails.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import schemathesis
from hypothesis import HealthCheck, Phase, given, settings
from schemathesis import checks

from receiver.api.access import WEBHOOK_PATHS
from receiver.store.embedded import EmbeddedStore
from tests.support.payloads import alert, resolved, webhook
from tests.support.service import TOKEN, make_settings, serve

ADMIN = "fuzz-admin-token-0123456789"
EXAMPLES = 30
CHECKS = [
    checks.not_a_server_error,
    checks.status_code_conformance,
    checks.content_type_conformance,
    checks.response_schema_conformance,
]


def _runner(
    operation: schemathesis.APIOperation[Any, Any, Any, Any], base_url: str, headers: dict[str, str]
) -> Callable[[], None]:
    """A hypothesis test calling `operation` with generated cases and checking the answers."""

    @given(case=operation.as_strategy())
    @settings(
        max_examples=EXAMPLES,
        deadline=None,
        database=None,
        derandomize=True,
        phases=[Phase.explicit, Phase.generate, Phase.shrink],
        suppress_health_check=list(HealthCheck),
    )
    def run(case: Any) -> None:
        case.call_and_validate(base_url=base_url, headers=headers, checks=CHECKS, timeout=30)

    runner: Callable[[], None] = run
    return runner


def _fuzz(base_url: str) -> tuple[list[str], list[str]]:
    """Run every documented operation; return (operations run, failures)."""
    schema = schemathesis.openapi.from_url(f"{base_url}/openapi.json")
    ran: list[str] = []
    failures: list[str] = []
    for result in schema.get_all_operations():
        operation = result.ok()  # type: ignore[union-attr]  # an Err is a schema bug: raise
        if operation.definition.raw.get("x-undocumented"):
            continue  # another stage's route without a RouteDoc yet: nothing to conform to
        token = TOKEN if operation.path in WEBHOOK_PATHS else ADMIN
        headers = {"Authorization": f"Bearer {token}"}

        run = _runner(operation, base_url, headers)
        try:
            run()
        except Exception as err:  # collect every operation's failure, not just the first
            failures.append(f"{operation.label}: {err}"[:3000])
        ran.append(operation.label)
    return ran, failures


async def test_schemathesis_finds_no_5xx_and_no_schema_drift(
    embedded_store: EmbeddedStore, tmp_path: Path
) -> None:
    """Generated requests to every documented operation get documented, schema-valid answers."""
    settings_ = make_settings(embedded_store.uri, tmp_path, admin_token=ADMIN)
    async with serve(settings_) as svc:
        svc.client.headers["Authorization"] = f"Bearer {ADMIN}"  # post_alerts sends its own
        web = alert("HighLatency", "web-01:9100", severity="critical")
        db = alert("DiskFull", "db-1:9100")
        await svc.post_alerts(webhook([web, db]))
        await svc.post_alerts(webhook([resolved(db)]))
        await svc.client.post(f"{svc.url}/api/chat", json={"message": "why web-01?"})
        await svc.settled()
        started = time.monotonic()
        ran, failures = await asyncio.to_thread(_fuzz, svc.url)
        elapsed = time.monotonic() - started
    assert not failures, "\n\n".join(failures)
    assert {"GET /stats", "POST /api/chat", "GET /anomalies", "POST /api/v1/alerts"} <= set(ran)
    assert elapsed < 150
