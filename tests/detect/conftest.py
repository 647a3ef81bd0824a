"""A fresh database on the session's embedded store, for tests that use the store directly."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator

import pytest

from receiver.store.embedded import EmbeddedStore
from receiver.store.repo import Store


@pytest.fixture
async def store(embedded_store: EmbeddedStore) -> AsyncIterator[Store]:
    connected = await Store.connect(
        embedded_store.uri, f"t_{uuid.uuid4().hex[:12]}", 5.0, "embedded"
    )
    try:
        yield connected
    finally:
        await connected.close()
