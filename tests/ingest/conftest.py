"""The detect tests' fresh-database `store` fixture, for ingest tests that drive the processor."""

from tests.detect.conftest import store

__all__ = ["store"]
