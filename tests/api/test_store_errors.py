"""One StoreError handler for the web layer: a store that cannot answer is 503 + Retry-After
on every route, JSON on the API and the problem page on the console."""

from __future__ import annotations

from pathlib import Path

from receiver.store.embedded import EmbeddedStore
from tests.support.service import make_settings, serve

API_READS = [
    "/api/v1/incidents",
    "/api/v1/incidents/0123456789abcdef01234567",
    "/api/v1/deliveries",
    "/anomalies",
    "/api/v1/rca",
    "/api/v1/incidents/0123456789abcdef01234567/analysis",
    "/api/v1/notifications",
    "/api/v1/targets",
    "/api/v1/storms",
    "/api/v1/audit",
    "/api/sessions",
    "/stats",
]


async def test_store_down_is_503_with_retry_after_everywhere(tmp_path: Path) -> None:
    """With the store gone every store-backed read answers 503 + Retry-After, never 500."""
    async with EmbeddedStore(tmp_path / "own-store") as store:
        settings = make_settings(store.uri, tmp_path, store_timeout_seconds=0.5)
        async with serve(settings) as svc:
            await store.stop()
            for path in API_READS:
                resp = await svc.client.get(f"{svc.url}{path}")
                assert (path, resp.status_code) == (path, 503)
                assert resp.headers.get("retry-after") == "5", path
                assert resp.json()["error"] == "store_unavailable", path
            page = await svc.client.get(f"{svc.url}/ui")
            assert page.status_code == 503
            assert page.headers.get("retry-after") == "5"
            assert page.headers["content-type"].startswith("text/html")
            assert "Store unavailable" in page.text
