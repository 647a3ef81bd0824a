"""Resource caps: every body is read with a limit, `raw=1` pages stay small, incident lists cap."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from receiver.api.query import RAW_PAGE_BYTES, RAW_PAGE_LIMIT
from receiver.api.views import RAW_ITEM_BYTES
from receiver.store.documents import Incident
from tests.support.payloads import alert, webhook
from tests.support.service import Running

# every route that reads a body besides the webhook (tested in test_webhook.py)
BODY_ROUTES = [
    ("POST", "/api/chat"),
    ("PUT", "/agent/email-config"),
    ("PUT", "/api/v1/routing"),
    ("POST", "/api/v1/targets"),
    ("PUT", "/api/v1/targets/cpu"),
    ("POST", "/api/v1/incidents/0123456789abcdef01234567/feedback"),
]


async def _chunks(total: int) -> AsyncIterator[bytes]:
    """A body without Content-Length (chunked): only the reader's own count can stop it."""
    sent = 0
    while sent < total:
        yield b" " * 65_536
        sent += 65_536


@pytest.mark.parametrize(("method", "path"), BODY_ROUTES)
async def test_oversized_bodies_are_413_declared_or_chunked(
    service: Running, method: str, path: str
) -> None:
    """A body over the route's cap is a 413 naming the limit, with or without Content-Length."""
    url = service.url + path
    declared = await service.client.request(
        method, url, content=b" " * 1_100_000, headers={"Content-Type": "application/json"}
    )
    chunked = await service.client.request(
        method, url, content=_chunks(1_100_000), headers={"Content-Type": "application/json"}
    )
    for resp in (declared, chunked):
        assert resp.status_code == 413, (path, resp.text)
        assert resp.json()["error"] == "payload_too_large"
        assert "body exceeds the limit of" in resp.json()["detail"]
    targets = await service.get("/api/v1/targets")
    assert all(t["name"] != "cpu" for t in targets["targets"])


async def test_raw_deliveries_page_small_and_cut_big_bodies(service: Running) -> None:
    """raw=1 caps the page at 50, cuts bodies over 256 KB with a marker, stops at 4 MB."""
    small = webhook([alert("Small", "h0")], group="small")
    assert (await service.post_alerts(small)).status_code == 200
    big_count = RAW_PAGE_BYTES // RAW_ITEM_BYTES + 2
    for n in range(big_count):
        big = alert("Big", f"h{n}")
        # annotation values are capped at 16 KiB each: many of them make one big body
        big["annotations"].update({f"d{i}": "x" * 15_000 for i in range(19)})
        assert (await service.post_alerts(webhook([big], group=f"big{n}"))).status_code == 200
    total = big_count + 1

    plain = await service.get("/api/v1/deliveries", limit=500)
    assert len(plain["deliveries"]) == total
    assert all("payload" not in d for d in plain["deliveries"])

    first = await service.get("/api/v1/deliveries", raw=1, limit=500)
    assert first["limit"] == RAW_PAGE_LIMIT
    assert first["total"] == total
    shown = first["deliveries"]
    assert len(shown) == RAW_PAGE_BYTES // RAW_ITEM_BYTES  # the page stopped at the byte cap
    assert first["next_offset"] == len(shown)
    cut = shown[0]
    assert cut["payload"] is None
    assert cut["payload_truncated"] is True
    assert cut["payload_bytes"] > RAW_ITEM_BYTES
    assert cut["raw_json"].endswith(f"first {RAW_ITEM_BYTES} shown]")
    assert len(cut["raw_json"].encode()) < RAW_ITEM_BYTES + 100

    rest = await service.get("/api/v1/deliveries", raw=1, offset=first["next_offset"])
    assert rest["next_offset"] is None
    assert len(shown) + len(rest["deliveries"]) == total
    oldest = rest["deliveries"][-1]
    assert oldest["payload"]["alerts"][0]["labels"]["alertname"] == "Small"
    assert "payload_truncated" not in oldest


async def test_raw_deliveries_limit_is_still_validated(service: Running) -> None:
    """raw=1 with a bad limit is still a 400 naming the parameter."""
    resp = await service.client.get(f"{service.url}/api/v1/deliveries?raw=1&limit=0")
    assert resp.status_code == 400
    assert "limit" in resp.json()["detail"]


async def test_incident_lists_are_capped_with_exact_counts(service: Running) -> None:
    """An incident keeps 100 instances/alertnames while its counts stay exact across deliveries."""
    cap = Incident.MAX_NAMES
    first = [alert(f"A{n % 3}", f"host-{n:04d}") for n in range(cap + 50)]
    assert (await service.post_alerts(webhook(first, group="storm"))).status_code == 200
    body = await service.wait_for(
        "/api/v1/incidents",
        lambda b: b["incidents"] and b["incidents"][0]["episode_count"] == len(first),
    )
    (incident,) = body["incidents"]
    assert len(incident["instances"]) == cap
    assert incident["instance_count"] == cap + 50
    assert incident["alertname_count"] == 3
    assert sorted(incident["alertnames"]) == ["A0", "A1", "A2"]

    # more instances past the cap, some already known, plus alertnames past the cap
    second = [alert("A0", f"host-{n:04d}") for n in range(cap + 40, cap + 70)]
    second += [alert(f"N{n:03d}", "host-0000") for n in range(cap + 5)]
    assert (await service.post_alerts(webhook(second, group="storm"))).status_code == 200
    episodes = len({a["fingerprint"] for a in first + second})
    detail = await service.wait_for(
        f"/api/v1/incidents/{incident['id']}", lambda b: b["episode_count"] == episodes
    )
    assert len(detail["instances"]) == cap
    assert detail["instance_count"] == cap + 70
    assert len(detail["alertnames"]) == cap
    assert detail["alertname_count"] == 3 + cap + 5
