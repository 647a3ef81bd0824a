"""Poison isolation: a row or incident the outbox cannot plan, render or even read fails on its
own, recorded on the row with a masked error, counted, and the next row is still sent."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from bson import ObjectId
from pymongo import AsyncMongoClient

from receiver.notify.outbox import OutboxOptions
from receiver.retry import RetryPolicy
from receiver.settings import Settings
from receiver.store.documents import utcnow
from receiver.store.embedded import EmbeddedStore
from tests.notify.outbox_helpers import counter, metrics, notify_settings, rows, rows_where
from tests.support.fake_slack import fake_slack
from tests.support.payloads import alert, webhook
from tests.support.service import serve
from tests.support.smtp import smtp_server

ATTEMPTS = 3
SECRET = "xoxFakeWebhookSecret9"  # the path secret of FakeSlack.hook_url()


async def _plant(settings: Settings, hook: str) -> dict[str, str]:
    """Write what a broken or hostile history can leave in the store, due before anything
    else; returns {what: outbox key} for the rows planted."""
    assert settings.mongo_uri is not None
    past = utcnow() - timedelta(minutes=5)
    odd_incident = ObjectId()
    row: dict[str, Any] = {
        "channel": "slack",
        "event": "firing",
        "severity": "high",
        "status": "pending",
        "next_attempt_at": past,
        "created_at": past,
        "admitted": True,
    }
    planted = {
        # a stored message whose event is text a sender chose (here: the hook URL itself)
        "bad_message": "poison:message",
        # an incident whose fields break rendering (alertnames is not a list)
        "bad_incident": f"{odd_incident}:slack:firing",
        # a row that does not fit the model at all
        "unreadable": "poison:unreadable",
    }
    message = {
        "incident_id": "x",
        "event": hook,
        "severity": "high",
        "title": "t",
        "text": "t",
        "html": "t",
        "slack": [],
        "thread_id": "t",
        "colour": "#000000",
    }
    client: AsyncMongoClient[dict[str, Any]] = AsyncMongoClient(
        settings.mongo_uri.get_secret_value(), tz_aware=True
    )
    try:
        db = client[settings.mongo_db]
        await db["incidents"].insert_many(
            [
                {
                    "_id": odd_incident,
                    "key": "odd",
                    "open_key": "odd",
                    "source": "alertmanager",
                    "alertnames": "HighCPU",
                    "needs_notification": False,
                },
                # flagged for planning, but unreadable (instances is not a list)
                {
                    "key": "unplannable",
                    "open_key": "unplannable",
                    "source": "alertmanager",
                    "status": "firing",
                    "instances": 5,
                    "needs_notification": True,
                    "updated_at": past,
                },
            ]
        )
        await db["notifications"].insert_many(
            [
                {**row, "key": planted["bad_message"], "message": message},
                {**row, "key": planted["bad_incident"], "incident_id": str(odd_incident)},
                {**row, "key": planted["unreadable"], "message": "not a document"},
            ]
        )
    finally:
        await client.close()
    return planted


async def test_poisoned_rows_fail_alone_and_the_next_row_is_sent(
    embedded_store: EmbeddedStore, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """Rows whose render raises are retried then `failed`/`poison`, an unreadable row is
    `failed`/`unreadable` at once, an unreadable incident gets a failed plan row; errors are
    masked and counted, and the webhook's page behind them is sent."""
    with fake_slack() as slack:
        settings = notify_settings(
            embedded_store.uri,
            tmp_path,
            slack=slack,
            notify_rca_wait_seconds=0,
            notify_max_attempts=ATTEMPTS,
        )
        async with serve(settings) as service:
            planted = await _plant(settings, slack.hook_url())
            answer = await service.post_alerts(webhook([alert("HighCPU", "node-1:9100")]))
            assert answer.status_code == 200

            def settled(found: list[dict[str, Any]]) -> bool:
                return len(found) == 5 and {r["status"] for r in found} == {"sent", "failed"}

            found = {r["key"]: r for r in await rows_where(service, settled, event="firing")}
            text = await metrics(service)
            everything = await rows(service)

    [page] = [r for r in found.values() if r["status"] == "sent"]
    assert page["channel"] == "slack"
    assert len(slack.accepted) == 1
    assert slack.accepted[0]["text"] == "[HIGH] HighCPU"

    for what in ("bad_message", "bad_incident"):
        poisoned = found[planted[what]]
        assert (poisoned["status"], poisoned["reason"]) == ("failed", "poison")
        assert poisoned["attempts"] == ATTEMPTS
        assert poisoned["last_error"].startswith("render: ")
    assert "ValueError" in found[planted["bad_message"]]["last_error"]
    assert (
        "ValidationError: alertnames: Input should be a valid list"
        in (found[planted["bad_incident"]]["last_error"])
    )
    unreadable = found[planted["unreadable"]]
    assert (unreadable["status"], unreadable["reason"]) == ("failed", "unreadable")
    assert "message: Input should be a valid dictionary" in unreadable["last_error"]
    [plan] = [r for r in found.values() if r["key"].startswith("plan:")]
    assert (plan["status"], plan["reason"]) == ("failed", "unreadable")
    assert "instances: Input should be a valid list" in plan["last_error"]

    # the hook URL a row carried is masked wherever the error went
    assert "/services/****/****/****" in found[planted["bad_message"]]["last_error"]
    assert SECRET not in str(everything)
    assert SECRET not in caplog.text
    retried = counter(text, "pipeline_item_errors_total", stage="outbox", outcome="retry")
    quarantined = counter(text, "pipeline_item_errors_total", stage="outbox", outcome="quarantined")
    assert (retried, quarantined) == (2 * (ATTEMPTS - 1), 4)
    assert counter(text, "notifications_failed_total", channel="slack", reason="poison") == 2
    assert counter(text, "notifications_failed_total", channel="slack", reason="unreadable") == 1


def test_backoff_is_the_stages_retry_policy_with_retry_after_as_a_floor() -> None:
    """A retry waits what `RetryPolicy.delay` says (base x 2^(n-1), capped, ± its jitter),
    the formula every stage uses; Retry-After is a floor, itself capped."""
    policy = RetryPolicy(base_seconds=5.0, cap_seconds=60.0, max_attempts=8, jitter=0.2)
    options = OutboxOptions(retry=policy)
    assert [options.backoff(n, None, rand=0.5) for n in (1, 2, 3, 4, 5)] == [
        5.0,
        10.0,
        20.0,
        40.0,
        60.0,
    ]
    assert [options.backoff(n, None, rand=r) for n in (1, 3) for r in (0.0, 1.0)] == [
        policy.delay(n, r) for n in (1, 3) for r in (0.0, 1.0)
    ]
    assert options.backoff(3, None, rand=0.0) == pytest.approx(16.0)
    assert options.backoff(3, None, rand=1.0) == pytest.approx(24.0)
    assert options.backoff(1, 30.0, rand=1.0) == 30.0
    assert options.backoff(1, 3600.0, rand=0.0) == 60.0
    spread = {options.backoff(4, None) for _ in range(50)}
    assert len(spread) > 1
    assert all(32.0 <= d <= 48.0 for d in spread)


async def test_hostile_webhook_text_does_not_stop_the_outbox(
    embedded_store: EmbeddedStore, tmp_path: Path
) -> None:
    """Control characters, bidi overrides, astral emoji and labels at the webhook's size limit
    (16384 characters; NUL is refused with a 422) are rendered and sent by email and Slack,
    and the next group's page follows."""
    odd = "\x07\x1b[31m\u202eevil\u202c \u200b\U0001f4a5 <!channel> \ufeff\r\n"
    hostile = alert("Odd" + odd, "node-x:9100" + odd, summary=odd * 300, huge="λ" * 16_384)
    plain = alert("HighCPU", "node-1:9100")
    with smtp_server() as smtp, fake_slack() as slack:
        settings = notify_settings(
            embedded_store.uri, tmp_path, smtp=smtp, slack=slack, notify_rca_wait_seconds=0
        )
        async with serve(settings) as service:
            assert (await service.post_alerts(webhook([hostile], group="odd"))).status_code == 200
            assert (await service.post_alerts(webhook([plain], group="plain"))).status_code == 200
            found = await rows_where(
                service,
                lambda found: len(found) == 4 and {r["status"] for r in found} == {"sent"},
                event="firing",
            )
            text = await metrics(service)

    assert len(found) == 4
    assert len(smtp.messages) == 2
    assert len(slack.accepted) >= 2
    assert any("HighCPU" in p["text"] for p in slack.accepted)
    for outcome in ("retry", "quarantined"):
        assert counter(text, "pipeline_item_errors_total", stage="outbox", outcome=outcome) == 0
