"""Silencing an incident in a REAL prometheus-alertmanager, and expiring it again."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from receiver.store.embedded import EmbeddedStore
from tests.oncall.helpers import OPERATOR, READ, auth, get, oncall_service
from tests.support.payloads import postable_alerts
from tests.support.procs import free_port
from tests.support.prom import alertmanager
from tests.support.service import TOKEN, Running


async def _incident(svc: Running, alertname: str) -> dict[str, Any]:
    for _ in range(400):
        listed = await get(svc, "/api/v1/incidents", status="firing")
        found = [i for i in listed["incidents"] if i["group_labels"] == {"alertname": alertname}]
        if found:
            return dict(found[0])
        await asyncio.sleep(0.05)
    raise AssertionError(f"Alertmanager never delivered {alertname}")


async def _until(check: Any, what: str) -> Any:
    for _ in range(200):
        value = await check()
        if value:
            return value
        await asyncio.sleep(0.05)
    raise AssertionError(what)


async def test_silence_is_created_in_alertmanager_and_expired(
    embedded_store: EmbeddedStore, tmp_path: Path
) -> None:
    """The silence is active in Alertmanager with the group labels as equality matchers and the
    actor as createdBy, Alertmanager reports the incident's alerts silenced by it; DELETE
    expires it; both land in the history and the audit log."""
    am_port = free_port()
    am_url = f"http://127.0.0.1:{am_port}"
    async with oncall_service(embedded_store, tmp_path, alertmanager_urls=am_url) as svc:
        with alertmanager(tmp_path / "am", svc.webhook, token=TOKEN, port=am_port):
            alerts = postable_alerts("CheckoutErrors", 2, datetime.now(UTC))
            posted = await svc.client.post(f"{am_url}/api/v2/alerts", json=alerts)
            assert posted.status_code == 200
            incident = await _incident(svc, "CheckoutErrors")
            url = f"{svc.url}/api/v1/incidents/{incident['id']}/silence"

            refused = await svc.client.post(url, json={"duration": "2h"}, headers=auth(READ))
            assert refused.status_code == 403
            bad = await svc.client.post(url, json={"duration": "soon"}, headers=auth(OPERATOR))
            assert bad.status_code == 422
            assert "duration" in bad.json()["detail"]

            made = await svc.client.post(
                url,
                json={"duration": "2h", "comment": "deploy in progress", "author": "alice"},
                headers=auth(OPERATOR),
            )
            assert made.status_code == 201, made.text
            silence_id = made.json()["silence_id"]
            assert silence_id

            silence = (await svc.client.get(f"{am_url}/api/v2/silence/{silence_id}")).json()
            assert silence["status"]["state"] == "active"
            assert silence["createdBy"] == "alice"
            assert silence["comment"] == "deploy in progress"
            assert silence["matchers"] == [
                {"name": "alertname", "value": "CheckoutErrors", "isRegex": False, "isEqual": True}
            ]

            async def silenced() -> list[dict[str, Any]] | None:
                resp = await svc.client.get(
                    f"{am_url}/api/v2/alerts", params={"filter": 'alertname="CheckoutErrors"'}
                )
                found: list[dict[str, Any]] = resp.json()
                ok = len(found) == 2 and all(
                    a["status"]["silencedBy"] == [silence_id] for a in found
                )
                return found if ok else None

            await _until(silenced, "Alertmanager never showed the alerts silenced")

            expired = await svc.client.delete(url, headers=auth(OPERATOR))
            assert expired.status_code == 200, expired.text
            assert expired.json()["silence_id"] is None

            async def gone() -> bool:
                resp = await svc.client.get(f"{am_url}/api/v2/silence/{silence_id}")
                return bool(resp.json()["status"]["state"] == "expired")

            await _until(gone, "the silence was not expired")
            again = await svc.client.delete(url, headers=auth(OPERATOR))
            assert again.status_code == 409

            detail = await get(svc, f"/api/v1/incidents/{incident['id']}")
            kinds = [(h["kind"], h["detail"].get("silence_id")) for h in detail["history"]]
            assert kinds == [("silence", silence_id), ("unsilence", silence_id)]
