"""Storm control: a burst of 500 alert groups gives a bounded number of messages per channel and
a digest per rate window that accounts for every suppressed one; critical pages are never
suppressed."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path
from typing import Any

import httpx

from receiver.store.embedded import EmbeddedStore
from tests.notify.outbox_helpers import (
    PUBLIC_URL,
    all_rows,
    counter,
    eventually,
    metrics,
    notify_settings,
    rows,
    rows_where,
    total,
)
from tests.support.fake_slack import fake_slack
from tests.support.payloads import alert, webhook
from tests.support.service import Running, serve
from tests.support.smtp import smtp_server

STORM = 500
LIMIT = 10
WINDOW = 12.0
CRITICAL_EVERY = 50


def _severity(n: int) -> str:
    """One group in CRITICAL_EVERY is critical: pages that must never be digested."""
    return "low" if n % CRITICAL_EVERY else "critical"


async def _post_storm(service: Running) -> None:
    """POST 500 one-alert groups (Alertmanager with group_by [alertname, instance])."""
    gate = asyncio.Semaphore(16)

    async def post(n: int) -> None:
        payload = webhook(
            [alert("DiskFull", f"node-{n:03d}:9100", severity=_severity(n))],
            group=f"disk-{n:03d}",
        )
        async with gate:
            for attempt in range(3):
                try:
                    answer = await service.post_alerts(payload)
                    break
                except httpx.TransportError:
                    # A keep-alive connection the busy server closed: retry the delivery,
                    # as Alertmanager would (delivery keys make the retry harmless).
                    if attempt == 2:
                        raise
            assert answer.status_code == 200

    await asyncio.gather(*(post(n) for n in range(STORM)))


async def test_storm_is_bounded_and_digested(embedded_store: EmbeddedStore, tmp_path: Path) -> None:
    """500 groups → at most LIMIT non-critical messages per channel per window plus one digest
    per window, every critical page sent; sent + suppressed add up to 500 per channel, and the
    digests list every suppressed one."""
    with smtp_server() as smtp, fake_slack() as slack:
        settings = notify_settings(
            embedded_store.uri,
            tmp_path,
            smtp=smtp,
            slack=slack,
            notify_rca_wait_seconds=0,
            notify_rate_limit=LIMIT,
            notify_rate_window_seconds=WINDOW,
            notify_routes="low=email,slack",
            notify_poll_seconds=0.2,
        )
        async with serve(settings) as service:
            began = time.monotonic()
            await _post_storm(service)

            async def storm_handled() -> bool:
                # Counts only: paging 1,000 rows every few ms would load the store more than
                # the storm itself.
                planned = await total(service, event="firing")
                done = await total(service, event="firing", status="sent") + await total(
                    service, event="firing", status="suppressed"
                )
                return planned == done == 2 * STORM

            await eventually(storm_handled, within=120, what="storm handled", every=0.5)
            storm_seconds = time.monotonic() - began
            due = {r["key"] for r in await all_rows(service, event="digest")}

            async def digests_sent() -> list[dict[str, Any]] | None:
                done = await rows(service, event="digest", status="sent")
                return done if {r["key"] for r in done} >= due else None

            digests = await eventually(
                digests_sent, within=WINDOW + 10, what="digests sent at window end", every=0.5
            )
            found = await all_rows(service)
            text = await metrics(service)

    firing = [r for r in found if r["event"] == "firing"]
    for channel in ("email", "slack"):
        mine = [r for r in firing if r["channel"] == channel]
        # critical pages all go out, outside the budget, however full the window is
        pages = [r for r in mine if r["severity"] == "critical"]
        assert len(pages) == STORM // CRITICAL_EVERY
        assert {r["status"] for r in pages} == {"sent"}
        assert {r["window_start"] for r in pages} == {None}
        limited = [r for r in mine if r["severity"] != "critical"]
        sent = [r for r in limited if r["status"] == "sent"]
        suppressed = [r for r in limited if r["status"] == "suppressed"]
        windows = {r["window_start"] for r in limited}
        channel_digests = [d for d in digests if d["channel"] == channel]
        assert len(sent) + len(suppressed) == len(limited)
        assert len(sent) <= LIMIT * len(windows)
        assert len(windows) <= storm_seconds // WINDOW + 2
        assert {r["reason"] for r in suppressed} == {"rate_limit"}
        # one digest per window that had suppressions, counting exactly those alerts
        assert {d["key"] for d in channel_digests} == {r["digest_key"] for r in suppressed}
        assert sum(d["digest_count"] for d in channel_digests) == len(suppressed)
        assert counter(text, "alerts_sent_total", channel=channel) == len(sent) + len(pages)
        assert counter(text, "notification_digests_sent_total", channel=channel) == len(
            channel_digests
        )
    assert (
        counter(text, "alerts_sent_total", channel="email")
        + counter(text, "alerts_sent_total", channel="slack")
        + counter(text, "notifications_suppressed_total", reason="rate_limit")
        == 2 * STORM
    )

    # What arrived: bounded messages, and digests naming the count and linking the API query.
    email_digests = [m for m in smtp.messages if "more alerts in" in m.message["Subject"]]
    slack_digests = [p for p in slack.accepted if "more alerts in" in p["text"]]
    assert len(email_digests) == len([d for d in digests if d["channel"] == "email"])
    assert len(slack_digests) == len([d for d in digests if d["channel"] == "slack"])
    assert len(smtp.messages) == counter(text, "alerts_sent_total", channel="email") + len(
        email_digests
    )
    biggest = max((d for d in digests if d["channel"] == "slack"), key=lambda d: d["digest_count"])
    phrase = f"{biggest['digest_count']} more alerts in {biggest['digest_count']} groups"
    [listing] = [p for p in slack_digests if phrase in p["text"]]
    assert str(listing).count("• [") == 10  # the top 10
    assert f"{PUBLIC_URL}/api/v1/incidents?since=" in str(listing)


async def test_critical_pages_pass_a_full_window(
    embedded_store: EmbeddedStore, tmp_path: Path
) -> None:
    """With the channel's budget spent, low alerts are digested but critical ones, alone or
    mixed into the same burst, are each sent and take no slot."""
    with fake_slack() as slack:
        settings = notify_settings(
            embedded_store.uri,
            tmp_path,
            slack=slack,
            notify_rca_wait_seconds=0,
            notify_rate_limit=1,
            notify_rate_window_seconds=600,
        )

        def group(n: int, severity: str) -> dict[str, Any]:
            return webhook([alert("DiskFull", f"node-{n}:9100", severity=severity)], group=f"g{n}")

        async with serve(settings) as service:
            for n in range(3):
                assert (await service.post_alerts(group(n, "low"))).status_code == 200
            await rows_where(
                service,
                lambda found: (
                    sorted(r["status"] for r in found) == ["sent", "suppressed", "suppressed"]
                ),
                event="firing",
            )
            burst = [group(n, "low") for n in (3, 4)] + [group(n, "critical") for n in (5, 6, 7)]
            answers = await asyncio.gather(*(service.post_alerts(p) for p in burst))
            assert all(a.status_code == 200 for a in answers)
            found = await rows_where(
                service,
                # a row is `sending` between its claim and its result: wait past that too
                lambda found: (
                    len(found) == 8 and not {"pending", "sending"} & {r["status"] for r in found}
                ),
                event="firing",
            )
            text = await metrics(service)

    outcome = sorted((r["severity"], r["status"]) for r in found)
    assert outcome == [("critical", "sent")] * 3 + [("low", "sent")] + [("low", "suppressed")] * 4
    assert {r["window_start"] for r in found if r["severity"] == "critical"} == {None}
    assert sum("[CRITICAL]" in p["text"] for p in slack.accepted) == 3
    assert len(slack.accepted) == 4  # the digest is due when the 600 s window ends
    assert counter(text, "notifications_suppressed_total", reason="rate_limit") == 4
