"""The service under test: `create_app(settings)` served by a real uvicorn on a free port."""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import uvicorn

from receiver.app import create_app
from receiver.settings import Settings
from tests.support.procs import free_port

TOKEN = "test-token-0123456789"


@dataclass
class Running:
    url: str
    settings: Settings
    client: httpx.AsyncClient

    @property
    def webhook(self) -> str:
        return f"{self.url}/api/v1/alerts"

    async def post_alerts(self, payload: Any, token: str | None = TOKEN) -> httpx.Response:
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        return await self.client.post(self.webhook, json=payload, headers=headers)

    async def get(self, path: str, **params: Any) -> Any:
        resp = await self.client.get(f"{self.url}{path}", params=params)
        resp.raise_for_status()
        return resp.json()

    async def wait_for(self, path: str, predicate: Any, within: float = 20.0, **params: Any) -> Any:
        """Poll GET `path` until `predicate(json)` is true; return that JSON."""
        deadline = asyncio.get_running_loop().time() + within
        body: Any = None
        while asyncio.get_running_loop().time() < deadline:
            body = await self.get(path, **params)
            if predicate(body):
                return body
            await asyncio.sleep(0.05)
        raise AssertionError(f"GET {path} never satisfied the condition; last: {body!r}"[:3000])

    async def settled(self, within: float = 20.0) -> None:
        """Wait until every stored delivery has been processed."""
        deadline = asyncio.get_running_loop().time() + within
        while asyncio.get_running_loop().time() < deadline:
            text = (await self.client.get(f"{self.url}/metrics")).text
            pending = [ln for ln in text.splitlines() if ln.startswith("deliveries_pending ")]
            resp = await self.client.get(f"{self.url}/api/v1/incidents")
            if pending and float(pending[0].split()[1]) == 0 and resp.is_success:
                # one more pass of the worker after the gauge read 0
                await asyncio.sleep(0.1)
                text = (await self.client.get(f"{self.url}/metrics")).text
                pending = [ln for ln in text.splitlines() if ln.startswith("deliveries_pending ")]
                if float(pending[0].split()[1]) == 0:
                    return
            await asyncio.sleep(0.05)
        raise AssertionError("deliveries were not processed in time")


def make_settings(mongo_uri: str, data_dir: Path, **overrides: Any) -> Settings:
    values: dict[str, Any] = {
        "mongo_uri": mongo_uri,
        "mongo_db": f"t_{uuid.uuid4().hex[:12]}",
        "data_dir": data_dir,
        "webhook_token": TOKEN,
        "prom_url": "http://127.0.0.1:9",
        "monitor_interval": 0,
        "_env_file": None,
    }
    values.update(overrides)
    return Settings(**values)


@contextlib.asynccontextmanager
async def serve(settings: Settings) -> AsyncIterator[Running]:
    port = free_port()
    config = uvicorn.Config(
        create_app(settings),
        host="127.0.0.1",
        port=port,
        log_level="warning",
        lifespan="on",
    )
    server = uvicorn.Server(config)
    task = asyncio.create_task(server.serve())
    try:
        for _ in range(400):
            if server.started or task.done():
                break
            await asyncio.sleep(0.025)
        if not server.started:
            if task.done():
                task.result()
            raise RuntimeError("service did not start")
        async with httpx.AsyncClient(timeout=30.0) as client:
            yield Running(url=f"http://127.0.0.1:{port}", settings=settings, client=client)
    finally:
        server.should_exit = True
        await asyncio.wait_for(task, timeout=30)
