"""Retention on the embedded store: caps and TTLs never remove open or unsent work."""

from __future__ import annotations

import asyncio
import contextlib
import os
from datetime import timedelta
from typing import Any

import pytest
from bson import ObjectId
from prometheus_client import CollectorRegistry

from receiver.retention import Limits, Retention, RetentionMetrics
from receiver.settings import Settings
from receiver.store.collections import Collections
from receiver.store.repo import Store
from receiver.timeutil import utcnow
from receiver.work import FakeClock, WorkMetrics


def _old(days: int) -> ObjectId:
    """A fresh id whose embedded time is `days` ago."""
    stamp = ObjectId.from_datetime(utcnow() - timedelta(days=days)).binary[:4]
    return ObjectId(stamp + os.urandom(8))


async def _insert(store: Store, name: str, docs: list[dict[str, Any]]) -> None:
    await store.client[store.db_name][name].insert_many(docs)


async def _left(store: Store, name: str, field: str) -> list[Any]:
    docs = await store.client[store.db_name][name].find({}).sort("_id", 1).to_list()
    return [d.get(field) for d in docs]


def _retention(store: Store, **settings: Any) -> Retention:
    limits = Limits.from_settings(Settings(_env_file=None, **settings))
    return Retention(Collections(store), limits, RetentionMetrics(CollectorRegistry()), 0)


async def test_cap_keeps_open_incidents_and_unsent_notifications(store: Store) -> None:
    """Over MAX_DOCS the oldest deletable documents go; firing, unnotified and unsent stay."""
    await _insert(
        store,
        "incidents",
        [
            {"_id": _old(9), "t": "open", "status": "firing", "needs_notification": False},
            {"_id": _old(8), "t": "unnotified", "status": "resolved", "needs_notification": True},
            {"_id": _old(7), "t": "done-1", "status": "resolved", "needs_notification": False},
            {"_id": _old(6), "t": "done-2", "status": "resolved", "needs_notification": False},
            {"_id": _old(5), "t": "done-3", "status": "resolved", "needs_notification": False},
        ],
    )
    statuses = ["pending", "sent", "failed", "sending", "sent", "suppressed", "sent"]
    await _insert(
        store,
        "notifications",
        [{"_id": _old(20 - i), "status": s, "n": i} for i, s in enumerate(statuses)],
    )
    await _insert(store, "chat_sessions", [{"_id": _old(10 - i), "n": i} for i in range(5)])
    await _insert(store, "targets", [{"name": f"t{i}"} for i in range(5)])
    deleted = await _retention(store, max_docs=3).run_once()
    assert await _left(store, "incidents", "t") == ["open", "unnotified", "done-3"]
    assert await _left(store, "notifications", "status") == ["pending", "failed", "sending"]
    assert await _left(store, "chat_sessions", "n") == [2, 3, 4]
    assert len(await _left(store, "targets", "name")) == 5  # configuration is never pruned
    assert deleted == {"incidents": 2, "notifications": 4, "chat_sessions": 2}


async def test_ttl_days_per_collection(store: Store) -> None:
    """RETENTION_DAYS removes deletable documents older than their collection's TTL only."""
    await _insert(
        store,
        "anomalies",
        [
            {"_id": _old(40), "k": "old-firing", "status": "firing"},
            {"_id": _old(40), "k": "old-resolved", "status": "resolved"},
            {"_id": _old(2), "k": "new-resolved", "status": "resolved"},
        ],
    )
    await _insert(store, "metrics", [{"_id": _old(40), "k": "old"}, {"_id": _old(1), "k": "new"}])
    retention = _retention(store, retention_days="anomalies=30", max_docs_per_collection="")
    assert await retention.run_once() == {"anomalies": 1}
    assert await _left(store, "anomalies", "k") == ["old-firing", "new-resolved"]
    assert await _left(store, "metrics", "k") == ["old", "new"]  # no TTL configured


async def test_per_collection_caps_override_max_docs(store: Store) -> None:
    """MAX_DOCS_PER_COLLECTION overrides MAX_DOCS for the named collection only."""
    await _insert(store, "metrics", [{"_id": _old(10 - i), "n": i} for i in range(6)])
    await _insert(store, "rca", [{"_id": _old(10 - i), "n": i} for i in range(6)])
    await _retention(store, max_docs=4, max_docs_per_collection="metrics=2").run_once()
    assert await _left(store, "metrics", "n") == [4, 5]
    assert await _left(store, "rca", "n") == [2, 3, 4, 5]


def test_bad_retention_settings_name_the_variable() -> None:
    """Malformed pairs stop start-up with a message naming the setting."""
    from receiver.settings import SettingsError, load_settings

    with pytest.raises(SettingsError, match="RETENTION_DAYS"):
        load_settings(_env_file=None, retention_days="anomalies=thirty")
    with pytest.raises(SettingsError, match="MAX_DOCS_PER_COLLECTION"):
        load_settings(_env_file=None, max_docs_per_collection="metrics=0")


async def test_notification_rows_of_open_incidents_and_unsent_digests_stay(store: Store) -> None:
    """Sent rows of an open (or unplanned resolved) incident and members of an unsent digest
    survive TTL and cap; rows of a finished incident and of a sent digest go."""
    open_id, unplanned_id, done_id = _old(50), _old(50), _old(50)
    await _insert(
        store,
        "incidents",
        [
            {"_id": open_id, "status": "firing", "needs_notification": False},
            {"_id": unplanned_id, "status": "resolved", "needs_notification": True},
            {"_id": done_id, "status": "resolved", "needs_notification": False},
        ],
    )

    def row(n: str, incident: ObjectId | None, status: str, **extra: Any) -> dict[str, Any]:
        iid = str(incident) if incident is not None else ""
        return {"_id": _old(40), "n": n, "incident_id": iid, "status": status, **extra}

    await _insert(
        store,
        "notifications",
        [
            row("open-firing", open_id, "sent", event="firing"),
            row("unplanned-firing", unplanned_id, "sent", event="firing"),
            row("done-firing", done_id, "sent", event="firing"),
            row("done-resolved", done_id, "sent", event="resolved"),
            row("in-unsent-digest", done_id, "suppressed", event="firing", digest_key="d:1"),
            row("unsent-digest", None, "pending", event="digest", key="d:1"),
            row("in-sent-digest", done_id, "suppressed", event="firing", digest_key="d:2"),
            row("sent-digest", None, "sent", event="digest", key="d:2"),
        ],
    )
    kept = ["open-firing", "unplanned-firing", "in-unsent-digest", "unsent-digest"]
    retention = _retention(store, retention_days="notifications=30", max_docs_per_collection="")
    assert await retention.run_once() == {"notifications": 4}
    assert sorted(await _left(store, "notifications", "n")) == sorted(kept)
    # the cap cannot take them either, even when it wants every row gone
    assert "notifications" not in await _retention(store, max_docs=1).run_once()
    assert sorted(await _left(store, "notifications", "n")) == sorted(kept)


async def test_the_timer_passes_run_on_the_injected_clock(store: Store) -> None:
    """The retention timer prunes when the fake clock reaches its interval, not before."""
    await _insert(store, "metrics", [{"_id": _old(40), "k": "old"}, {"_id": _old(1), "k": "new"}])
    limits = Limits.from_settings(
        Settings(_env_file=None, retention_days="metrics=30", max_docs_per_collection="")
    )
    registry = CollectorRegistry()
    clock = FakeClock(start=utcnow())
    retention = Retention(
        Collections(store),
        limits,
        RetentionMetrics(registry),
        3600,
        clock=clock,
        work=WorkMetrics(registry),
    )
    task = asyncio.create_task(retention.run())
    try:
        await clock.until_parked()
        await clock.advance(3599)
        assert await _left(store, "metrics", "k") == ["old", "new"]
        parks = clock.parks
        await clock.advance(1)
        await clock.until_parked(after=parks)
        assert await _left(store, "metrics", "k") == ["new"]
        assert registry.get_sample_value("retention_runs_total", {"outcome": "ok"}) == 1
        processed = {"stage": "retention"}
        assert registry.get_sample_value("pipeline_items_processed_total", processed) == 1
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
