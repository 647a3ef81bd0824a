"""GET/POST/PUT/DELETE /api/v1/targets against the real app: validation, masking, builtin."""

from __future__ import annotations

from typing import Any

import pytest

from tests.support.service import Running

TOKEN = "prom-bearer-0123456789abcdef"
PASSWORD = "basic-pass-9876543210"


async def _post(service: Running, body: Any) -> Any:
    return await service.client.post(f"{service.url}/api/v1/targets", json=body)


async def test_target_crud_masks_secrets(service: Running) -> None:
    """Targets are created, listed, updated and deleted; credentials are stored but every answer
    shows them masked; the PROM_URL target is listed as builtin and read-only."""
    listed = await service.get("/api/v1/targets")
    assert listed["count"] == 1
    (builtin,) = listed["targets"]
    assert builtin["name"] == "default"
    assert builtin["builtin"] is True
    assert builtin["url"] == service.settings.prom_url

    bearer = {
        "name": "prod-eu",
        "url": "https://prom.example.internal:9090/prometheus/",
        "job": "node",
        "auth": {"type": "bearer", "token": TOKEN},
    }
    created = await _post(service, bearer)
    assert created.status_code == 201
    view = created.json()
    assert view["url"] == "https://prom.example.internal:9090/prometheus"
    assert view["auth"] == {"type": "bearer", "token": "********"}
    assert view["enabled"] is True
    basic = {
        "name": "staging",
        "url": "http://10.0.0.5:9090",
        "auth": {"type": "basic", "username": "monitor", "password": PASSWORD},
        "enabled": False,
    }
    assert (await _post(service, basic)).status_code == 201

    resp = await service.client.get(f"{service.url}/api/v1/targets")
    assert TOKEN not in resp.text
    assert PASSWORD not in resp.text
    names = [t["name"] for t in resp.json()["targets"]]
    assert names == ["default", "prod-eu", "staging"]
    one = await service.get("/api/v1/targets/staging")
    assert one["auth"] == {"type": "basic", "username": "monitor", "password": "********"}
    assert one["enabled"] is False

    again = await _post(service, bearer)
    assert again.status_code == 409
    assert again.json()["field"] == "name"

    # PUT changes what it names; credentials left out stay as they were
    put = await service.client.put(
        f"{service.url}/api/v1/targets/prod-eu", json={"enabled": False, "job": "api"}
    )
    assert put.status_code == 200
    assert put.json()["enabled"] is False
    assert put.json()["job"] == "api"
    assert put.json()["auth"] == {"type": "bearer", "token": "********"}
    assert TOKEN not in put.text
    cleared = await service.client.put(f"{service.url}/api/v1/targets/prod-eu", json={"auth": None})
    assert cleared.json()["auth"] is None
    renamed = await service.client.put(
        f"{service.url}/api/v1/targets/prod-eu", json={"name": "other"}
    )
    assert renamed.status_code == 422
    assert renamed.json()["field"] == "name"
    missing = await service.client.put(f"{service.url}/api/v1/targets/nope", json={"job": "x"})
    assert missing.status_code == 404

    for method in ("PUT", "DELETE"):
        ro = await service.client.request(
            method, f"{service.url}/api/v1/targets/default", json={"enabled": False}
        )
        assert ro.status_code == 409
    deleted = await service.client.delete(f"{service.url}/api/v1/targets/prod-eu")
    assert deleted.status_code == 204
    gone = await service.client.get(f"{service.url}/api/v1/targets/prod-eu")
    assert gone.status_code == 404
    assert (await service.client.delete(f"{service.url}/api/v1/targets/prod-eu")).status_code == 404
    assert (await service.get("/api/v1/targets"))["count"] == 2


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"url": "http://p:9090"}, "name"),
        ({"name": "bad name!", "url": "http://p:9090"}, "name"),
        ({"name": "default", "url": "http://p:9090"}, "name"),
        ({"name": "t1"}, "url"),
        ({"name": "t1", "url": "ftp://p:9090"}, "url"),
        ({"name": "t1", "url": "http://user:pw@p:9090"}, "url"),
        ({"name": "t1", "url": "http://p:9090?x=1"}, "url"),
        ({"name": "t1", "url": "http://p:9090", "enabled": "yes"}, "enabled"),
        ({"name": "t1", "url": "http://p:9090", "auth": {"type": "digest"}}, "auth"),
        ({"name": "t1", "url": "http://p:9090", "auth": {"type": "bearer"}}, "auth.bearer.token"),
        (
            {"name": "t1", "url": "http://p:9090", "auth": {"type": "bearer", "token": ""}},
            "auth.bearer.token",
        ),
        ({"name": "t1", "url": "http://p:9090", "colour": "red"}, "colour"),
        (["not", "an", "object"], "body"),
    ],
)
async def test_invalid_target_is_422_naming_the_field(
    service: Running, body: Any, field: str
) -> None:
    """Each invalid body is refused with 422 whose `field` names the offending field."""
    resp = await _post(service, body)
    assert resp.status_code == 422, resp.text
    assert resp.json()["field"] == field
    assert resp.json()["detail"].startswith(f"{field}: ")
    assert (await service.get("/api/v1/targets"))["count"] == 1


async def test_target_body_that_is_not_json_is_400(service: Running) -> None:
    """A body that is not JSON is a 400 and stores nothing."""
    resp = await service.client.post(
        f"{service.url}/api/v1/targets",
        content=b"{name: nope",
        headers={"content-type": "application/json"},
    )
    assert resp.status_code == 400
    assert resp.json()["error"] == "invalid_json"
    assert (await service.get("/api/v1/targets"))["count"] == 1


async def test_changing_a_target_url_drops_its_credentials_unless_new_ones_come(
    service: Running,
) -> None:
    """Credentials belong to the URL they were given for: the same URL keeps them, a new URL
    alone drops them, a new URL with `auth` stores the new ones; none is ever answered."""
    basic = {"type": "basic", "username": "monitor", "password": PASSWORD}
    body = {"name": "moving", "url": "http://10.0.0.5:9090", "auth": basic}
    assert (await _post(service, body)).status_code == 201
    url = f"{service.url}/api/v1/targets/moving"

    same = await service.client.put(url, json={"url": "http://10.0.0.5:9090/", "job": "node"})
    assert same.json()["auth"] == {"type": "basic", "username": "monitor", "password": "********"}
    moved = await service.client.put(url, json={"url": "http://10.0.0.6:9090"})
    assert moved.status_code == 200
    assert (moved.json()["url"], moved.json()["auth"]) == ("http://10.0.0.6:9090", None)
    assert (await service.get("/api/v1/targets/moving"))["auth"] is None

    bearer = {"type": "bearer", "token": TOKEN}
    rekeyed = await service.client.put(url, json={"url": "http://10.0.0.7:9090", "auth": bearer})
    assert rekeyed.json()["auth"] == {"type": "bearer", "token": "********"}
    assert (await service.get("/api/v1/targets/moving"))["job"] == "node"

    for path in ("/api/v1/targets", "/api/v1/targets/moving", "/stats", "/prom-metrics", "/"):
        resp = await service.client.get(f"{service.url}{path}")
        assert resp.status_code == 200, path
        assert PASSWORD not in resp.text
        assert TOKEN not in resp.text
