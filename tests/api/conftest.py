"""Fixtures for the API tests: loopback fake LLM and Langfuse servers."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.support.fake_langfuse import FakeLangfuse
from tests.support.fake_llm import FakeLLM


@pytest.fixture
def fake_llm() -> Iterator[FakeLLM]:
    with FakeLLM() as server:
        yield server


@pytest.fixture
def fake_langfuse() -> Iterator[FakeLangfuse]:
    with FakeLangfuse() as server:
        yield server
