"""Session fixtures: one embedded store (real nx-27017 over TCP) shared by all tests.

Each service instance gets its own database name, so tests do not see each other's data.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from receiver.store.embedded import EmbeddedStore
from tests.support.service import Running, make_settings, serve


@pytest.fixture(scope="session")
async def embedded_store(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[EmbeddedStore]:
    async with EmbeddedStore(tmp_path_factory.mktemp("store")) as store:
        yield store


@pytest.fixture
async def service(embedded_store: EmbeddedStore, tmp_path: Path) -> AsyncIterator[Running]:
    async with serve(make_settings(embedded_store.uri, tmp_path)) as running:
        yield running
