"""Session fixtures: one embedded store (real nx-27017 over TCP) shared by all tests.

Each service instance gets its own database name, so tests do not see each other's data.
"""

from __future__ import annotations

import inspect
import types
import uuid
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from receiver.store.embedded import EmbeddedStore
from receiver.store.repo import Store
from tests.support.service import Running, make_settings, serve


@pytest.fixture(scope="session")
async def embedded_store(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[EmbeddedStore]:
    async with EmbeddedStore(tmp_path_factory.mktemp("store")) as store:
        yield store


@pytest.fixture
async def store(embedded_store: EmbeddedStore) -> AsyncIterator[Store]:
    """A fresh database on the session's store, for tests that use the store directly."""
    connected = await Store.connect(
        embedded_store.uri, f"t_{uuid.uuid4().hex[:12]}", 5.0, "embedded"
    )
    try:
        yield connected
    finally:
        await connected.close()


@pytest.fixture
async def service(embedded_store: EmbeddedStore, tmp_path: Path) -> AsyncIterator[Running]:
    async with serve(make_settings(embedded_store.uri, tmp_path)) as running:
        yield running


# --- the `e2e` marker -----------------------------------------------------------------------

# Helpers that start a real Prometheus, Alertmanager or receiver process.
_PROCESS_MODULES = frozenset({"tests.support.prom", "tests.support.replica"})


def _code_names(code: types.CodeType) -> Iterator[str]:
    yield from code.co_names
    for const in code.co_consts:
        if isinstance(const, types.CodeType):
            yield from _code_names(const)


def _starts_processes(func: Callable[..., Any], seen: set[int] | None = None) -> bool:
    """Whether `func`, or a test helper it calls by its global name, calls a helper of
    tests/support/prom.py or replica.py."""
    func = inspect.unwrap(func)
    seen = set() if seen is None else seen
    code = getattr(func, "__code__", None)
    if code is None or id(code) in seen:
        return False
    seen.add(id(code))
    for name in _code_names(code):
        obj = func.__globals__.get(name)
        module = getattr(obj, "__module__", None) or ""
        if module in _PROCESS_MODULES:
            return True
        if module.startswith("tests.") and callable(obj) and _starts_processes(obj, seen):
            return True
    return False


def _uses_processes(item: pytest.Function) -> bool:
    if "e2e" in item.path.parts or _starts_processes(item.function):
        return True
    defs = item._fixtureinfo.name2fixturedefs  # the fixtures this test pulls in, transitively
    return any(_starts_processes(d.func) for fixturedefs in defs.values() for d in fixturedefs)


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Mark every test that starts real processes `e2e` (`-m "not e2e"`: the fast layer)."""
    for item in items:
        if isinstance(item, pytest.Function) and _uses_processes(item):
            item.add_marker(pytest.mark.e2e)
