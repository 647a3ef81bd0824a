"""The outbox's bulk claim (`OutboxStore.claim_many`) on the embedded store: of two replicas
claiming the same due rows at once each row is won by exactly one and sent once; a row whose
lease expired is taken over, and its first holder can no longer finish it."""

from __future__ import annotations

import asyncio
from collections import Counter
from datetime import timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
from prometheus_client import CollectorRegistry

from receiver.notify.wiring import build_notify
from receiver.records import NotificationRecord
from receiver.settings import Settings
from receiver.store.documents import utcnow
from receiver.store.embedded import EmbeddedStore
from receiver.store.notify import OutboxStore
from receiver.store.repo import Store
from tests.notify.outbox_helpers import notify_settings
from tests.support.smtp import smtp_server

ROWS = 40
LEASE = timedelta(seconds=60)


def _row(n: int) -> NotificationRecord:
    """A due critical page (no rate limit) that carries its rendered message already."""
    past = utcnow() - timedelta(minutes=1)
    message: dict[str, Any] = {
        "incident_id": f"inc-{n}",
        "event": "firing",
        "severity": "critical",
        "title": f"[CRITICAL] page {n}",
        "text": f"page {n}",
        "html": f"<p>page {n}</p>",
        "slack": [],
        "thread_id": f"inc-{n}",
        "colour": "#d00000",
    }
    return NotificationRecord(
        key=f"inc-{n}:email:firing",
        incident_id=f"inc-{n}",
        channel="email",
        event="firing",
        severity="critical",
        next_attempt_at=past,
        created_at=past,
        admitted=True,
        with_analysis=True,  # no analysis follow-up row: only the pages are sent
        message=message,
    )


async def _connect(settings: Settings) -> Store:
    assert settings.mongo_uri is not None
    return await Store.connect(
        settings.mongo_uri.get_secret_value(), settings.mongo_db, 5.0, "embedded"
    )


@pytest.fixture
def outbox(store: Store) -> OutboxStore:
    return OutboxStore(store)


async def test_two_claims_racing_for_the_same_rows_split_them(outbox: OutboxStore) -> None:
    """Two claims of the same due rows at once: each row is won once, nobody wins it again."""
    assert await outbox.insert_rows([_row(n) for n in range(ROWS)]) == ROWS
    now = utcnow()
    due = await outbox.due(now, ROWS)
    assert len(due) == ROWS

    first, second = await asyncio.gather(
        outbox.claim_many(due, now, "replica-a:1", LEASE),
        outbox.claim_many(due, now, "replica-b:1", LEASE),
    )

    won_a, won_b = {r.key for r in first}, {r.key for r in second}
    assert not won_a & won_b
    assert won_a | won_b == {r.key for r in due}
    assert {r.lease_owner for r in first} <= {"replica-a:1"}
    assert {r.lease_owner for r in second} <= {"replica-b:1"}
    assert {(r.status, r.attempts) for r in [*first, *second]} == {("sending", 1)}
    # in the order asked for, so the rows of one incident are sent in order
    order = [r.key for r in due]
    assert [r.key for r in first] == [k for k in order if k in won_a]
    assert await outbox.claim_many(due, now, "replica-c:1", LEASE) == []
    assert await outbox.due(now, ROWS) == []


async def test_an_expired_lease_is_taken_over_and_the_first_holder_cannot_finish(
    outbox: OutboxStore,
) -> None:
    """A row whose holder died is claimed again after its lease; the old claim's outcome is
    then not written, the new one's is."""
    assert await outbox.insert_rows([_row(n) for n in range(3)]) == 3
    now = utcnow()
    held = await outbox.claim_many(await outbox.due(now, 3), now, "dead:1", LEASE)
    assert len(held) == 3
    assert await outbox.expired(now, 10) == []  # the lease still holds

    later = now + LEASE + timedelta(seconds=2)
    expired = await outbox.expired(later, 10)
    assert sorted(r.key for r in expired) == sorted(r.key for r in held)
    taken = await outbox.claim_many(expired, later, "alive:1", LEASE)
    assert [r.key for r in taken] == [r.key for r in expired]
    assert {r.attempts for r in taken} == {2}
    # a second replica that read the same expired rows gets none of them
    assert await outbox.claim_many(expired, later, "other:1", LEASE) == []

    stale = {r.id: ("dead:1", {"status": "sent"}) for r in held}
    assert await outbox.finish_claimed(stale) == 0
    fresh = {r.id: ("alive:1", {"status": "sent", "lease_until": None}) for r in taken}
    assert await outbox.finish_claimed(fresh) == 3
    assert set((await outbox.statuses({r.key for r in held})).keys()) == {r.key for r in held}
    assert {r.status for r in (await outbox.statuses({r.key for r in held})).values()} == {"sent"}


async def test_two_outboxes_sending_the_same_due_rows_send_each_once(
    embedded_store: EmbeddedStore, tmp_path: Path
) -> None:
    """Two replicas' outbox cycles run at once over the same due rows: every page is
    emailed exactly once and every row ends `sent` after one attempt."""
    with smtp_server() as smtp:
        settings = notify_settings(embedded_store.uri, tmp_path, smtp=smtp)
        one, two = await _connect(settings), await _connect(settings)
        try:
            async with httpx.AsyncClient() as http:
                workers = [
                    build_notify(settings, store, http, CollectorRegistry()).worker
                    for store in (one, two)
                ]
                assert await workers[0].outbox.insert_rows([_row(n) for n in range(ROWS)]) == ROWS
                await asyncio.gather(*(w.cycle() for w in workers))
                # a row given back (never, unless SMTP failed) would be sent by a later cycle
                await asyncio.gather(*(w.cycle() for w in workers))
                final = await workers[0].outbox.statuses({_row(n).key for n in range(ROWS)})
        finally:
            await one.close()
            await two.close()

    subjects = Counter(m.message["Subject"] for m in smtp.messages)
    assert subjects == Counter({f"[CRITICAL] page {n}": 1 for n in range(ROWS)})
    assert {(r.status, r.attempts) for r in final.values()} == {("sent", 1)}
    assert len(final) == ROWS
