"""The console's on-call buttons in headless Chromium: ack, note, the state in the list, and
the list refreshing its rows without a page load."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import pytest

from receiver.store.embedded import EmbeddedStore
from tests.oncall.helpers import OPERATOR, act, get, oncall_service, open_incident
from tests.support.browser import Browser, browser, chromium_path, is_local

XSS = '<img src=x onerror="document.title=1"><script>document.title=2</script>'


def _wait_for(b: Browser, expression: str, timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if b.evaluate(expression):
            return
        time.sleep(0.1)
    raise AssertionError(f"never true in the page: {expression}")


@pytest.mark.skipif(chromium_path() is None, reason="Debian chromium is not installed")
async def test_console_ack_note_and_refreshing_list(
    embedded_store: EmbeddedStore, tmp_path: Path
) -> None:
    """Clicking Acknowledge shows the new state; a note with markup is shown as text; the
    unacknowledged list drops an incident acked elsewhere without reloading the page."""
    async with oncall_service(embedded_store, tmp_path) as svc:
        mine = await open_incident(svc, "checkout", service="checkout", severity="critical")
        other = await open_incident(svc, "search", service="search")
        requests: list[str] = []
        with browser(tmp_path) as b:
            page = await asyncio.to_thread(b.open, f"{svc.url}/ui/incidents/{mine['id']}")
            login = (
                f"document.querySelector('input[name=token]').value = {OPERATOR!r};"
                "document.querySelector('.login form').submit();"
            )
            page = await asyncio.to_thread(b.act, login)
            requests += page.requests
            assert page.url == f"{svc.url}/ui/incidents/{mine['id']}"
            assert (
                await asyncio.to_thread(b.evaluate, "document.getElementById('state').textContent")
                == "open"
            )

            page = await asyncio.to_thread(b.act, "document.getElementById('ack').click()")
            requests += page.requests
            state = await asyncio.to_thread(
                b.evaluate, "document.getElementById('state').textContent"
            )
            assert state == "acknowledged"
            assert (await get(svc, f"/api/v1/incidents/{mine['id']}"))["state"] == "acknowledged"

            fill = (
                f"document.querySelector('textarea[name=text]').value = {XSS!r};"
                "document.getElementById('note').click();"
            )
            page = await asyncio.to_thread(b.act, fill)
            requests += page.requests
            shown = await asyncio.to_thread(
                b.evaluate, "document.querySelector('#history .history-text').textContent"
            )
            assert shown == XSS
            injected = await asyncio.to_thread(
                b.evaluate, "document.querySelectorAll('#history img, #history script').length"
            )
            assert injected == 0
            assert await asyncio.to_thread(b.evaluate, "document.title") != "1"

            page = await asyncio.to_thread(b.open, f"{svc.url}/ui?state=unacknowledged")
            requests += page.requests
            rows = "document.querySelectorAll('tr[data-incident]').length"
            assert await asyncio.to_thread(b.evaluate, rows) == 1
            assert f'data-incident="{other["id"]}"' in page.html
            await asyncio.to_thread(b.evaluate, "window.__sameDocument = true")
            assert (await act(svc, other["id"], "ack")).status_code == 200
            await asyncio.to_thread(_wait_for, b, f"{rows} === 0")
            # the same document: the rows changed without a navigation
            assert await asyncio.to_thread(b.evaluate, "window.__sameDocument") is True

            page = await asyncio.to_thread(b.open, f"{svc.url}/ui")
            assert "state-acknowledged" in page.html
            await asyncio.to_thread(b.screenshot, tmp_path / "console-oncall-list.png")
            await asyncio.to_thread(b.open, f"{svc.url}/ui/incidents/{mine['id']}")
            await asyncio.to_thread(b.screenshot, tmp_path / "console-oncall.png")
        assert all(is_local(u) for u in requests), [u for u in requests if not is_local(u)]
