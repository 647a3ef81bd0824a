"""Defaults that fail closed: Host allow-list, failed-token throttle, webhook basic auth."""

from __future__ import annotations

import base64
from pathlib import Path

import pytest

from receiver.api.hosts import host_name
from receiver.app import create_app
from receiver.ratelimit import SlidingLimit
from receiver.settings import SettingsError, load_settings
from receiver.store.embedded import EmbeddedStore
from tests.support.payloads import load
from tests.support.service import Running, make_settings, serve

READ = "read-token-aaaaaaaaaaaa"
ADMIN = "admin-token-cccccccccccc"


async def _status(svc: Running, path: str, host: str) -> int:
    resp = await svc.client.get(f"{svc.url}{path}", headers={"Host": host})
    return resp.status_code


async def test_without_tokens_only_local_hosts_are_answered(service: Running) -> None:
    """No API tokens: a rebinding name gets 421 on every route; local names, any port, pass."""
    for path in ("/api/v1/incidents", "/healthz", "/ui"):
        resp = await service.client.get(
            f"{service.url}{path}", headers={"Host": "attacker.example:8000"}
        )
        assert resp.status_code == 421, path
        assert resp.json()["error"] == "host_not_allowed"
        assert "RECEIVER_ALLOWED_HOSTS" in resp.json()["detail"]
    posted = await service.client.post(
        service.webhook,
        json=load("am_payload_firing.json"),
        headers={"Host": "attacker.example"},
    )
    assert posted.status_code == 421
    assert (await service.get("/api/v1/deliveries"))["total"] == 0
    for host in ("localhost", "LOCALHOST:1", "127.0.0.1:9", "[::1]:8000", "localhost."):
        assert await _status(service, "/api/v1/incidents", host) == 200, host


async def test_allowed_hosts_setting_and_tokens(
    embedded_store: EmbeddedStore, tmp_path: Path
) -> None:
    """With tokens any Host passes unless RECEIVER_ALLOWED_HOSTS lists names; then only those."""
    tokens = {"api_token": READ, "admin_token": ADMIN}
    async with serve(make_settings(embedded_store.uri, tmp_path, **tokens)) as svc:
        assert await _status(svc, "/healthz", "monitor.example") == 200
    listed = make_settings(
        embedded_store.uri, tmp_path, receiver_allowed_hosts="monitor.example", **tokens
    )
    async with serve(listed) as svc:
        assert await _status(svc, "/healthz", "monitor.example:443") == 200
        assert await _status(svc, "/healthz", "other.example") == 421
    public = make_settings(embedded_store.uri, tmp_path, public_url="https://alerts.example/")
    async with serve(public) as svc:
        assert await _status(svc, "/healthz", "alerts.example") == 200
        assert await _status(svc, "/healthz", "other.example") == 421


def test_host_names_drop_ports_and_brackets() -> None:
    """Host headers compare by name: ports, IPv6 brackets, case and a final dot are dropped."""
    assert host_name("Example.COM:8080") == "example.com"
    assert host_name("[::1]:80") == "::1"
    assert host_name("::1") == "::1"
    assert host_name("[::1") == ""
    assert host_name("localhost.") == "localhost"


async def test_wrong_tokens_are_throttled_per_address(
    embedded_store: EmbeddedStore, tmp_path: Path
) -> None:
    """After 5 wrong bearer tokens in a minute even the right one gets 429 with Retry-After."""
    settings = make_settings(embedded_store.uri, tmp_path, api_token=READ, admin_token=ADMIN)
    async with serve(settings) as svc:
        url = f"{svc.url}/api/v1/incidents"
        wrong = [
            (await svc.client.get(url, headers={"Authorization": f"Bearer guess-{n}"})).status_code
            for n in range(5)
        ]
        held = await svc.client.get(url, headers={"Authorization": f"Bearer {READ}"})
        anonymous = await svc.client.get(url)
        health = await svc.client.get(f"{svc.url}/healthz")
    assert wrong == [401] * 5
    assert held.status_code == 429
    assert held.json()["error"] == "too_many_failures"
    assert 1 <= int(held.headers["retry-after"]) <= 60
    assert READ not in held.text
    assert anonymous.status_code == 401
    assert health.status_code == 200


def test_sliding_limit_forgets_after_the_window() -> None:
    """The throttle counts events in the last window only and says how long to wait."""
    now = [1000.0]
    limit = SlidingLimit(2, window=60.0, clock=lambda: now[0])
    limit.record("a")
    now[0] += 10
    limit.record("a")
    assert limit.retry_after("a") == 50
    assert limit.retry_after("b") == 0
    now[0] += 50
    assert limit.retry_after("a") == 0
    assert SlidingLimit(0).retry_after("a") == 0


async def test_basic_auth_needs_user_and_password(
    embedded_store: EmbeddedStore, tmp_path: Path
) -> None:
    """Basic auth fails for a wrong user or a wrong password alike, and passes with both right."""
    settings = make_settings(
        embedded_store.uri,
        tmp_path,
        webhook_token=None,
        webhook_user="am",
        webhook_password="s3cret",
    )
    async with serve(settings) as svc:
        codes = {}
        for pair in ("am:s3cret", "xx:s3cret", "am:wrong!", "am:", ":s3cret", "am"):
            header = "Basic " + base64.b64encode(pair.encode()).decode()
            resp = await svc.client.post(
                svc.webhook, json=load("am_payload_firing.json"), headers={"Authorization": header}
            )
            codes[pair] = resp.status_code
    assert codes == {
        "am:s3cret": 200,
        "xx:s3cret": 401,
        "am:wrong!": 401,
        "am:": 401,
        ":s3cret": 401,
        "am": 401,
    }


@pytest.mark.parametrize(
    ("values", "needle"),
    [
        ({"webhook_user": "am", "webhook_password": "  "}, "WEBHOOK_PASSWORD: must not be empty"),
        ({"webhook_user": "am"}, "WEBHOOK_PASSWORD: must not be empty"),
        ({"webhook_password": "s3cret"}, "WEBHOOK_USER: must be set"),
    ],
)
def test_empty_webhook_password_is_refused_at_start(
    values: dict[str, str], needle: str, tmp_path: Path
) -> None:
    """A user without a password (or the reverse) stops load_settings and create_app."""
    with pytest.raises(SettingsError, match=needle):
        load_settings(_env_file=None, data_dir=tmp_path, **values)
    settings = make_settings("mongodb://127.0.0.1:9", tmp_path, webhook_token=None, **values)
    with pytest.raises(SettingsError, match=needle):
        create_app(settings)
