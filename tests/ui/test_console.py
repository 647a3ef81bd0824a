"""The incident console (/ui): pages, login cookie, escaping, charts from a real Prometheus,
and headless Chromium loading nothing from outside loopback."""

from __future__ import annotations

import asyncio
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import quote

import pytest

from receiver.store.embedded import EmbeddedStore
from receiver.ui.chart import PALETTE, THRESHOLD
from receiver.ui.gate import COOKIE, safe_next
from tests.support.browser import browser, chromium_path, is_local
from tests.support.exporter import SyntheticExporter
from tests.support.payloads import alert, resolved, rfc3339, webhook
from tests.support.prom import prometheus, until_scraped
from tests.support.service import Running, make_settings, serve
from tests.ui import pngs

READ = "read-token-0123456789"
ADMIN = "admin-token-0123456789"
XSS = '<script>alert("x")</script><img src=x onerror=alert(1)>'


async def _api(svc: Running, path: str, **params: Any) -> Any:
    resp = await svc.client.get(
        f"{svc.url}{path}", params=params, headers={"Authorization": f"Bearer {READ}"}
    )
    resp.raise_for_status()
    return resp.json()


async def _analysed(svc: Running, count: int) -> list[dict[str, Any]]:
    """Wait until `count` incidents exist and each has its analysis."""
    deadline = time.monotonic() + 40
    body: Any = None
    while time.monotonic() < deadline:
        body = await _api(svc, "/api/v1/incidents")
        incidents: list[dict[str, Any]] = body["incidents"]
        if len(incidents) == count and all(i["analysis_id"] for i in incidents):
            return incidents
        await asyncio.sleep(0.1)
    raise AssertionError(f"incidents were not analysed in time: {body!r}"[:2000])


def _history(now: datetime) -> list[dict[str, Any]]:
    """Two HighCPUUsage incidents (one resolved yesterday) and a critical one."""
    old = alert("HighCPUUsage", "node-a:9100", starts=rfc3339(now - timedelta(days=1)))
    cpu = alert("HighCPUUsage", "node-b:9100", starts=rfc3339(now - timedelta(minutes=5)))
    down = alert("ServiceDown", "api-1:8080", severity="critical", starts=rfc3339(now))
    return [
        webhook([old], group="cpu-a"),
        webhook([resolved(old, rfc3339(now - timedelta(hours=23)))], group="cpu-a"),
        webhook([cpu], group="cpu-b"),
        webhook([down], group="down"),
    ]


@pytest.mark.skipif(chromium_path() is None, reason="Debian chromium is not installed")
async def test_console_in_headless_chromium(embedded_store: EmbeddedStore, tmp_path: Path) -> None:
    """Login, list, incident page with a live chart, feedback: all requests stay on loopback."""
    now = datetime.now(UTC)
    with (
        SyntheticExporter() as exporter,
        prometheus(tmp_path / "prom", scrape_targets=[exporter.target]) as prom,
    ):
        exporter.set("demo_queue_depth", {}, 7.0)
        settings = make_settings(
            embedded_store.uri,
            tmp_path,
            api_token=READ,
            admin_token=ADMIN,
            prom_url=prom.url,
            llm_provider="offline",
        )
        async with serve(settings) as svc:
            queue = alert(
                "QueueBacklog",
                exporter.target,
                severity="critical",
                starts=rfc3339(now - timedelta(seconds=30)),
                job="synthetic",
            )
            queue["generatorURL"] = f"{prom.url}/graph?g0.expr={quote('demo_queue_depth > 5')}"
            queue["annotations"]["summary"] = f"queue is deep {XSS}"
            for payload in [*_history(now), webhook([queue], group="queue")]:
                assert (await svc.post_alerts(payload)).status_code == 200
            incidents = await _analysed(svc, 4)
            [backlog] = [i for i in incidents if i["alertnames"] == ["QueueBacklog"]]
            await until_scraped(svc.client, prom.url, "demo_queue_depth", samples=3)

            requests: list[str] = []
            with browser(tmp_path) as b:
                page = await asyncio.to_thread(b.open, f"{svc.url}/ui")
                requests += page.requests
                assert page.url.startswith(f"{svc.url}/ui/login?next=")
                assert 'name="token"' in page.html

                login = (
                    f"document.querySelector('input[name=token]').value = {READ!r};"
                    "document.querySelector('.login form').submit();"
                )
                page = await asyncio.to_thread(b.act, login)
                requests += page.requests
                assert page.url == f"{svc.url}/ui"
                assert page.html.count("<tr data-incident=") == 4
                assert "QueueBacklog on" in page.html
                assert "[offline analysis]" in page.html  # the one-line summary
                await asyncio.to_thread(b.screenshot, tmp_path / "list.png")

                page = await asyncio.to_thread(b.open, f"{svc.url}/ui/incidents/{backlog['id']}")
                requests += page.requests
                assert page.status == 200
                html = page.html
                assert 'id="summary"' in html
                assert 'id="fix"' in html
                assert "E1" in html
                assert "<script>alert" not in html
                assert "&lt;script&gt;alert" in html
                assert f"/ui/incidents/{backlog['id']}/chart.png?n=0" in html
                width = await asyncio.to_thread(
                    b.evaluate, "document.querySelector('#charts img').naturalWidth"
                )
                assert width == 640
                await asyncio.to_thread(b.screenshot, tmp_path / "incident.png")

                click = "document.querySelector('form[data-feedback] button[value=true]').click()"
                await asyncio.to_thread(b.evaluate, click)
                state = ""
                for _ in range(100):
                    state = await asyncio.to_thread(
                        b.evaluate, "document.querySelector('form[data-feedback]').dataset.state"
                    )
                    if state:
                        break
                    await asyncio.sleep(0.05)
                assert state == "sent"
                requests += await asyncio.to_thread(b.requests_during, 0.2)
                page = await asyncio.to_thread(b.open, f"{svc.url}/ui/incidents/{backlog['id']}")
                requests += page.requests
                assert "1 helpful" in page.html

            assert any(u.endswith("/feedback") for u in requests)
            assert any("chart.png" in u for u in requests)
            outside = [u for u in requests if not is_local(u)]
            assert outside == []
            assert (tmp_path / "list.png").stat().st_size > 10_000
            assert (tmp_path / "incident.png").stat().st_size > 10_000

            chart = await svc.client.get(
                f"{svc.url}/ui/incidents/{backlog['id']}/chart.png",
                params={"n": 0},
                headers={"Authorization": f"Bearer {READ}"},
            )
            assert chart.status_code == 200
            assert chart.headers["content-type"] == "image/png"
            pixels = pngs.decode(chart.content)
            assert pngs.size(chart.content) == (640, 240)
            assert pngs.count(pixels, THRESHOLD) > 300  # `> 5` from the alert expression
            assert pngs.count(pixels, PALETTE[0]) > 50  # the series itself


async def test_console_login_cookie_and_pages(
    embedded_store: EmbeddedStore, tmp_path: Path
) -> None:
    """With API tokens the console needs a login; the cookie opens pages and feedback only."""
    settings = make_settings(embedded_store.uri, tmp_path, api_token=READ, admin_token=ADMIN)
    async with serve(settings) as svc:
        now = datetime.now(UTC)
        odd = alert("Weird", "host-x", severity="low", starts=rfc3339(now), note=XSS)
        odd["annotations"]["description"] = XSS
        for payload in [*_history(now), webhook([odd], group="weird")]:
            assert (await svc.post_alerts(payload)).status_code == 200
        incidents = await _analysed(svc, 4)
        [weird] = [i for i in incidents if i["alertnames"] == ["Weird"]]
        c = svc.client

        resp = await c.get(f"{svc.url}/ui", params={"severity": "high"})
        assert resp.status_code == 303
        assert resp.headers["location"] == "/ui/login?next=%2Fui%3Fseverity%3Dhigh"
        assert (await c.get(f"{svc.url}/api/v1/incidents")).status_code == 401
        css = await c.get(f"{svc.url}/ui/static/console.css")
        assert css.status_code == 200
        assert css.headers["content-type"].startswith("text/css")
        assert css.headers["x-content-type-options"] == "nosniff"

        bad = await c.post(f"{svc.url}/ui/login", data={"token": "nope", "next": "/ui"})
        assert bad.status_code == 401
        assert "not valid" in bad.text
        good = await c.post(f"{svc.url}/ui/login", data={"token": READ, "next": "//evil.example/"})
        assert good.status_code == 303
        assert good.headers["location"] == "/ui"
        cookie = good.headers["set-cookie"]
        assert cookie.startswith(f"{COOKIE}=")
        assert "HttpOnly" in cookie
        assert "SameSite=strict" in cookie
        jar = {"Cookie": f"{COOKIE}={good.cookies[COOKIE]}"}
        c.cookies.clear()  # send the cookie only where a test says so

        page = await c.get(f"{svc.url}/ui", params={"severity": "high"}, headers=jar)
        assert page.status_code == 200
        assert "default-src 'none'" in page.headers["content-security-policy"]
        assert page.text.count("<tr data-incident=") == 2
        assert "ServiceDown" not in page.text
        filtered = await c.get(
            f"{svc.url}/ui", params={"status": "resolved", "source": "alertmanager"}, headers=jar
        )
        assert filtered.text.count("<tr data-incident=") == 1
        assert "node-a:9100" in filtered.text
        wrong = await c.get(f"{svc.url}/ui", params={"source": "bogus"}, headers=jar)
        assert wrong.status_code == 400
        assert "source: one of" in wrong.text

        detail = await c.get(f"{svc.url}/ui/incidents/{weird['id']}", headers=jar)
        assert detail.status_code == 200
        assert "<script>alert" not in detail.text
        assert "<img src=x" not in detail.text
        assert "&lt;script&gt;" in detail.text
        assert "could not be reached: charts skipped" in detail.text
        cpu_b = next(i for i in incidents if i["instances"] == ["node-b:9100"])
        similar = await c.get(f"{svc.url}/ui/incidents/{cpu_b['id']}", headers=jar)
        assert "node-a:9100" in similar.text.split('id="similar"')[1]
        missing = await c.get(f"{svc.url}/ui/incidents/000000000000000000000000", headers=jar)
        assert missing.status_code == 404

        url = f"{svc.url}/api/v1/incidents/{weird['id']}/feedback"
        assert (await c.post(url, json={"helpful": False})).status_code == 401
        assert (await c.post(url, json={"helpful": False}, headers=jar)).status_code == 201
        # the cookie opens the console and feedback, not the rest of the API
        assert (await c.get(f"{svc.url}/api/v1/incidents", headers=jar)).status_code == 401

        out = await c.post(f"{svc.url}/ui/logout", headers=jar)
        assert out.status_code == 303
        assert f'{COOKIE}=""' in out.headers["set-cookie"]


async def test_console_without_api_auth(service: Running) -> None:
    """With API auth off the console is open and /ui/login just leads to it."""
    now = datetime.now(UTC)
    for payload in _history(now):
        assert (await service.post_alerts(payload)).status_code == 200
    await service.settled()
    page = await service.client.get(f"{service.url}/ui")
    assert page.status_code == 200
    assert page.text.count("<tr data-incident=") == 3
    assert "Log out" not in page.text
    login = await service.client.get(f"{service.url}/ui/login")
    assert login.status_code == 303
    assert login.headers["location"] == "/ui"


def test_safe_next_keeps_the_login_on_this_site() -> None:
    """Only console paths survive as the after-login target."""
    assert safe_next("/ui/incidents/abc?x=1") == "/ui/incidents/abc?x=1"
    for bad in ("//evil.example", "https://evil.example/ui", "/ui//x", "/api/v1/x", "/ui\\x", ""):
        assert safe_next(bad) == "/ui"
