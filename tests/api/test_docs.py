"""/openapi.json, /docs and /redoc: generated from the app's routes, served without a CDN."""

from __future__ import annotations

import re
from pathlib import Path

from starlette.routing import Route

from receiver.app import create_app
from receiver.store.embedded import EmbeddedStore
from tests.support.service import Running, make_settings

_REFERENCE = re.compile(r"""(?:src|href|spec-url|data-spec)\s*=\s*["']([^"']+)["']""", re.I)


async def _local_references(svc: Running, page: str) -> list[str]:
    resp = await svc.client.get(f"{svc.url}{page}")
    assert resp.status_code == 200
    assert resp.headers["content-type"].startswith("text/html")
    html = resp.text
    assert "<style" not in html.lower()
    # no inline script: every <script> has a src
    assert all("src=" in tag for tag in re.findall(r"<script[^>]*>", html, re.I))
    refs = _REFERENCE.findall(html)
    assert refs, page
    for ref in refs:
        assert ref.startswith("/"), ref
        assert not ref.startswith("//"), ref
    assert "http://" not in html
    assert "https://" not in html
    return refs


async def test_docs_pages_load_only_local_assets(service: Running) -> None:
    """Swagger UI and ReDoc pages reference only this server, and every asset is served."""
    refs = await _local_references(service, "/docs") + await _local_references(service, "/redoc")
    assert "/docs/assets/swagger-ui-bundle.js" in refs
    assert "/redoc/assets/redoc.standalone.js" in refs
    assert refs.count("/openapi.json") == 2
    for ref in set(refs):
        resp = await service.client.get(f"{service.url}{ref}")
        assert resp.status_code == 200, ref
        if ref.endswith(".js"):
            assert resp.headers["content-type"].startswith("text/javascript")
            assert len(resp.content) > (100_000 if "bundle" in ref or "redoc" in ref else 100)
    init = (await service.client.get(f"{service.url}/docs/assets/swagger-init.js")).text
    assert "validatorUrl: null" in init  # Swagger UI would otherwise call a public validator


async def test_unknown_assets_are_404(service: Running) -> None:
    """Only the bundled files are served: other names and traversal attempts are 404."""
    for name in ("index.html", "..%2F..%2Fsettings.py", "redoc.standalone.js"):
        resp = await service.client.get(f"{service.url}/docs/assets/{name}")
        assert resp.status_code == 404, name


async def test_openapi_lists_every_route(
    service: Running, embedded_store: EmbeddedStore, tmp_path: Path
) -> None:
    """OpenAPI 3.1 lists every (path, method) the app serves, with security by scope."""
    doc = await service.get("/openapi.json")
    assert doc["openapi"] == "3.1.0"
    app = create_app(make_settings(embedded_store.uri, tmp_path))
    expected = {
        (route.path, method.lower())
        for route in app.routes
        if isinstance(route, Route) and route.include_in_schema
        for method in (route.methods or {"GET"}) - {"HEAD"}
    }
    listed = {(path, method) for path, ops in doc["paths"].items() for method in ops}
    assert expected == listed
    ops = doc["paths"]
    assert ops["/healthz"]["get"]["security"] == []
    assert ops["/api/v1/incidents"]["get"]["x-scope"] == "read"
    assert ops["/api/sessions/{session_id}"]["delete"]["x-scope"] == "admin"
    assert ops["/api/chat"]["post"]["x-scope"] == "read"
    assert "403" in ops["/api/sessions/{session_id}"]["delete"]["responses"]
    assert {"webhookBearer": []} in ops["/api/v1/alerts"]["post"]["security"]
    chat = ops["/api/chat"]["post"]
    body_ref = chat["requestBody"]["content"]["application/json"]["schema"]["$ref"]
    assert body_ref.rsplit("/", 1)[-1] in doc["components"]["schemas"]
    anomalies = {p["name"] for p in ops["/anomalies"]["get"]["parameters"]}
    assert {"limit", "offset", "since", "severity", "status", "instance"} <= anomalies


async def test_every_reference_resolves(service: Running) -> None:
    """Every `$ref` in the document names a component that exists."""
    doc = await service.get("/openapi.json")
    text = str(doc)
    names = set(re.findall(r"#/components/schemas/([A-Za-z0-9_.\-]+)", text))
    assert names
    assert names <= set(doc["components"]["schemas"])
