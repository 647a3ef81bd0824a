"""API access control on every route of the real app: tokens, scopes, CORS, security headers."""

from __future__ import annotations

import re
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest
from starlette.routing import Route

from receiver.api.access import Access, ApiTokens, required_access
from receiver.app import create_app
from receiver.settings import Settings
from receiver.store.embedded import EmbeddedStore
from tests.support.payloads import alert, webhook
from tests.support.service import TOKEN, Running, make_settings, serve

READ = "read-token-aaaaaaaaaaaa"
READ_2 = "read-token-bbbbbbbbbbbb"
ADMIN = "admin-token-cccccccccccc"

# The policy as the issue states it, written independently of receiver.api.access.
OPEN = {"/metrics", "/healthz", "/readyz", "/openapi.json", "/docs", "/redoc"}
WEBHOOK = {"/api/v1/alerts", "/webhook/alertmanager"}
READER_WRITES = [("POST", re.compile(r"/api/chat")), ("POST", re.compile(r".*/feedback"))]
# issue #19: on-call actions take an operator (or admin) token; #18: the audit log is admin
OPERATOR_WRITES = re.compile(r"/api/v1/incidents/[^/]+/(ack|unack|assign|notes|close|silence)")
ADMIN_GETS = {"/api/v1/audit"}


def _expected(method: str, path: str) -> str:
    if path in OPEN or path.startswith(("/docs/", "/redoc/")):
        return "open"
    if path in WEBHOOK:
        return "webhook"
    if method == "GET" and path in ADMIN_GETS:
        return "admin"
    if method == "GET" or any(m == method and p.fullmatch(path) for m, p in READER_WRITES):
        return "read"
    if OPERATOR_WRITES.fullmatch(path):
        return "operator"
    return "admin"


def _settings(store: EmbeddedStore, tmp_path: Path, **extra: str) -> Settings:
    return make_settings(
        store.uri, tmp_path, api_token=f"{READ}, {READ_2}", admin_token=ADMIN, **extra
    )


@pytest.fixture
async def secured(embedded_store: EmbeddedStore, tmp_path: Path) -> AsyncIterator[Running]:
    async with serve(_settings(embedded_store, tmp_path)) as running:
        yield running


def _concrete(path: str) -> str:
    return re.sub(r"{[^}]+}", "0123456789abcdef01234567", path)


async def _call(svc: Running, method: str, path: str, token: str | None) -> httpx.Response:
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    body = None if method in ("GET", "DELETE") else b"{}"
    if body is not None:
        headers["Content-Type"] = "application/json"
    return await svc.client.request(method, svc.url + path, headers=headers, content=body)


async def test_every_route_enforces_its_scope(
    secured: Running, embedded_store: EmbeddedStore, tmp_path: Path
) -> None:
    """No token / read token / admin token on every route in the app gives 401/403 by scope."""
    app = create_app(_settings(embedded_store, tmp_path))
    checked = 0
    for route in app.routes:
        assert isinstance(route, Route)
        for method in sorted((route.methods or {"GET"}) - {"HEAD"}):
            path = _concrete(route.path)
            expected = _expected(method, route.path)
            assert required_access(method, path).value == expected, (method, route.path)
            anonymous = await _call(secured, method, path, None)
            reader = await _call(secured, method, path, READ_2)
            admin = await _call(secured, method, path, ADMIN)
            label = f"{method} {route.path}"
            assert anonymous.headers["x-content-type-options"] == "nosniff", label
            if expected == "open":
                for resp in (anonymous, reader, admin):
                    assert resp.status_code not in (401, 403), label
            elif expected == "webhook":
                # API tokens are not webhook credentials, and the webhook token is not an API one
                for resp in (anonymous, reader, admin):
                    assert resp.status_code == 401, label
            elif expected == "read":
                if anonymous.status_code == 303:  # the console sends browsers to its login
                    assert anonymous.headers["location"].startswith("/ui/login"), label
                else:
                    assert anonymous.status_code == 401, label
                    assert anonymous.headers["www-authenticate"].startswith("Bearer"), label
                assert reader.status_code not in (401, 403), label
                assert admin.status_code not in (401, 403), label
            else:
                assert anonymous.status_code == 401, label
                assert reader.status_code == 403, label
                assert admin.status_code not in (401, 403), label
            checked += 1
    assert checked >= 20


async def test_webhook_token_is_no_api_token(secured: Running) -> None:
    """The webhook's token opens the webhook only; an API token does not open the webhook."""
    assert (await secured.post_alerts(webhook([alert("A", "h1")]))).status_code == 200
    denied = await secured.client.get(
        f"{secured.url}/api/v1/incidents", headers={"Authorization": f"Bearer {TOKEN}"}
    )
    assert denied.status_code == 401
    assert (await secured.post_alerts(webhook([alert("A", "h1")]), token=ADMIN)).status_code == 401


async def test_wrong_tokens_are_refused_without_echo(secured: Running) -> None:
    """Unknown, prefix-of and basic-auth credentials get 401 and the body never repeats them."""
    attempts = {
        "Bearer " + READ[:-1]: 401,
        "Bearer " + READ + "x": 401,
        "Basic " + READ: 401,
        "Bearer": 401,
        "bearer " + READ: 200,
    }
    for header, status in attempts.items():
        resp = await secured.client.get(f"{secured.url}/stats", headers={"Authorization": header})
        assert resp.status_code == status, header
        if status == 401:
            assert READ[:-1] not in resp.text
            assert resp.json()["error"] == "unauthorised"


async def test_tokens_are_compared_by_value_and_scope() -> None:
    """ApiTokens grants admin over read and nothing for near misses, whatever the list order."""
    tokens = ApiTokens.from_settings(
        Settings(_env_file=None, api_token=" r1-token , r2-token ", admin_token="a1-token")
    )
    assert tokens.scope_of("r1-token") is Access.READ
    assert tokens.scope_of("r2-token") is Access.READ
    assert tokens.scope_of("a1-token") is Access.ADMIN
    assert tokens.scope_of("a1-toke") is None
    assert tokens.scope_of("") is None
    assert not ApiTokens.from_settings(Settings(_env_file=None)).configured


async def test_without_tokens_the_api_is_open(service: Running) -> None:
    """With no API_TOKEN/ADMIN_TOKEN every data route answers without credentials."""
    for path in ("/stats", "/api/v1/incidents", "/api/sessions", "/"):
        assert (await service.client.get(service.url + path)).status_code == 200


async def test_security_headers(secured: Running) -> None:
    """JSON answers forbid framing and sniffing; the docs allow only same-origin scripts."""
    api = await secured.client.get(f"{secured.url}/healthz")
    assert api.headers["x-frame-options"] == "DENY"
    assert api.headers["referrer-policy"] == "no-referrer"
    assert api.headers["content-security-policy"].startswith("default-src 'none'")
    assert api.headers["cache-control"] == "no-store"
    docs = await secured.client.get(f"{secured.url}/docs")
    csp = docs.headers["content-security-policy"]
    assert "script-src 'self'" in csp
    assert "frame-ancestors 'none'" in csp
    assert "unsafe-eval" not in csp
    assert "http" not in csp


async def test_cors_off_by_default(secured: Running) -> None:
    """Without CORS_ORIGINS no origin is allowed, preflight or not."""
    resp = await secured.client.get(
        f"{secured.url}/healthz", headers={"Origin": "http://console.example"}
    )
    assert "access-control-allow-origin" not in resp.headers


async def test_cors_allows_configured_origins(
    embedded_store: EmbeddedStore, tmp_path: Path
) -> None:
    """CORS_ORIGINS origins get a preflight answer and the allow header; others do not."""
    settings = _settings(
        embedded_store, tmp_path, cors_origins="http://console.example, http://other.example"
    )
    async with serve(settings) as svc:
        preflight = await svc.client.options(
            f"{svc.url}/api/v1/incidents",
            headers={
                "Origin": "http://console.example",
                "Access-Control-Request-Method": "GET",
                "Access-Control-Request-Headers": "authorization",
            },
        )
        assert preflight.status_code == 200
        assert preflight.headers["access-control-allow-origin"] == "http://console.example"
        ok = await svc.client.get(
            f"{svc.url}/api/v1/incidents",
            headers={"Origin": "http://other.example", "Authorization": f"Bearer {READ}"},
        )
        assert ok.headers["access-control-allow-origin"] == "http://other.example"
        evil = await svc.client.options(
            f"{svc.url}/api/v1/incidents",
            headers={"Origin": "http://evil.example", "Access-Control-Request-Method": "GET"},
        )
        assert evil.status_code == 400
        assert "access-control-allow-origin" not in evil.headers
