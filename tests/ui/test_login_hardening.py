"""Console login hardening: failed logins are throttled, the cookie is Secure behind https."""

from __future__ import annotations

from pathlib import Path

from receiver.store.embedded import EmbeddedStore
from receiver.ui.gate import COOKIE
from tests.support.service import make_settings, serve

READ = "read-token-0123456789"
ADMIN = "admin-token-0123456789"


async def test_failed_logins_are_throttled_per_address(
    embedded_store: EmbeddedStore, tmp_path: Path
) -> None:
    """5 wrong tokens (form, bearer or cookie alike) then even the right one gets 429."""
    settings = make_settings(embedded_store.uri, tmp_path, api_token=READ, admin_token=ADMIN)
    async with serve(settings) as svc:
        c = svc.client
        login = f"{svc.url}/ui/login"
        form = [(await c.post(login, data={"token": f"guess-{n}"})).status_code for n in range(3)]
        bearer = await c.get(f"{svc.url}/stats", headers={"Authorization": "Bearer guess-x"})
        cookie = await c.get(f"{svc.url}/ui", headers={"Cookie": f"{COOKIE}=guess-y"})
        held = await c.post(login, data={"token": READ, "next": "/ui"})
        held_cookie = await c.get(f"{svc.url}/ui", headers={"Cookie": f"{COOKIE}={READ}"})
    assert form == [401, 401, 401]
    assert bearer.status_code == 401
    assert cookie.status_code == 303  # a wrong cookie is sent to the login (and counted)
    assert held.status_code == 429
    assert 1 <= int(held.headers["retry-after"]) <= 60
    assert "set-cookie" not in held.headers
    assert "too many failed logins" in held.text
    assert held_cookie.status_code == 429


async def test_cookie_is_secure_when_public_url_is_https(
    embedded_store: EmbeddedStore, tmp_path: Path
) -> None:
    """Behind a TLS proxy (PUBLIC_URL https) the login cookie is Secure; on plain http not."""
    for public_url, secure in (("https://monitor.example", True), ("", False)):
        settings = make_settings(
            embedded_store.uri,
            tmp_path,
            api_token=READ,
            admin_token=ADMIN,
            public_url=public_url,
        )
        async with serve(settings) as svc:
            resp = await svc.client.post(f"{svc.url}/ui/login", data={"token": READ, "next": "/ui"})
        assert resp.status_code == 303
        cookie = resp.headers["set-cookie"]
        assert cookie.startswith(f"{COOKIE}=")
        assert ("; secure" in cookie.lower()) is secure, cookie
        assert "samesite=strict" in cookie.lower()
