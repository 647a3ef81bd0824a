"""Tokens, a service with the three API scopes, and incidents made through the real webhook."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx

from receiver.store.embedded import EmbeddedStore
from tests.support.payloads import alert, webhook
from tests.support.service import Running, make_settings, serve

READ = "read-token-oncall-0123456789"
OPERATOR = "operator-token-oncall-0123456789"
ADMIN = "admin-token-oncall-0123456789"


def auth(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


@contextlib.asynccontextmanager
async def oncall_service(
    store: EmbeddedStore, tmp_path: Path, **overrides: Any
) -> AsyncIterator[Running]:
    settings = make_settings(
        store.uri,
        tmp_path,
        api_token=READ,
        operator_token=OPERATOR,
        admin_token=ADMIN,
        llm_provider="offline",
        **overrides,
    )
    async with serve(settings) as svc:
        yield svc


async def get(svc: Running, path: str, token: str = READ, **params: Any) -> Any:
    resp = await svc.client.get(f"{svc.url}{path}", params=params, headers=auth(token))
    assert resp.status_code == 200, resp.text
    return resp.json()


async def act(
    svc: Running, incident_id: str, action: str, body: Any = None, token: str = OPERATOR
) -> httpx.Response:
    url = f"{svc.url}/api/v1/incidents/{incident_id}/{action}"
    return await svc.client.post(url, json=body if body is not None else {}, headers=auth(token))


async def open_incident(svc: Running, group: str, **labels: str) -> dict[str, Any]:
    """Post one firing alert in its own group; return the open incident it lands in."""
    firing = alert(f"Alert{group.title()}", f"{group}-1:9100", **labels)
    payload = webhook([firing], group=group, commonLabels=dict(firing["labels"]))
    assert (await svc.post_alerts(payload)).status_code == 200
    return await firing_incident(svc, group)


async def firing_incident(svc: Running, group: str, within: float = 20.0) -> dict[str, Any]:
    """The firing incident of the webhook group `group`, waiting for the delivery worker."""
    deadline = asyncio.get_running_loop().time() + within
    while asyncio.get_running_loop().time() < deadline:
        listed = await get(svc, "/api/v1/incidents", limit=500, status="firing")
        found = [i for i in listed["incidents"] if i["key"].endswith(f'group="{group}"}}')]
        if found:
            return dict(found[0])
        await asyncio.sleep(0.05)
    raise AssertionError(f"no firing incident for group {group!r}")
