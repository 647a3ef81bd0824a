"""What every store module shares: the error tree, `translated`, `object_id`, and the base the
repositories extend (the client, counting, paging).

`receiver.store.repo` re-exports these names; callers import them from there.
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Awaitable, Callable, Mapping, Sequence
from typing import Any, ParamSpec, TypeVar

from beanie import Document
from bson import ObjectId
from bson.errors import InvalidId
from pydantic import ValidationError
from pymongo import AsyncMongoClient
from pymongo.asynchronous.collection import AsyncCollection
from pymongo.errors import (
    BulkWriteError,
    ConnectionFailure,
    DuplicateKeyError,
    ExecutionTimeout,
    PyMongoError,
    WTimeoutError,
)

from receiver.store.valid import first_error, valid

log = logging.getLogger(__name__)

P = ParamSpec("P")
T = TypeVar("T")
D = TypeVar("D", bound=Document)


class StoreError(Exception):
    """A store operation failed. `retryable` tells the caller whether to try again later."""

    retryable = False


class StoreUnavailable(StoreError):
    """The store cannot be reached right now (connection refused, timeout, failover)."""

    retryable = True


class DuplicateKey(StoreError):
    """A unique index refused the write: the thing already exists."""


UNAVAILABLE = (ConnectionFailure, ExecutionTimeout, WTimeoutError)


DUPLICATE_KEY = 11000  # the server's code for a write a unique index refused


async def insert_new(
    collection: AsyncCollection[Any], docs: Sequence[Mapping[str, Any]]
) -> list[bool]:
    """Insert `docs` in one unordered round trip; per document, False when a unique index
    already held its key (a retry, a replica that was first). Any other write error raises."""
    if not docs:
        return []
    try:
        await collection.insert_many(docs, ordered=False)
    except BulkWriteError as err:
        errors = err.details.get("writeErrors", [])
        if any(w.get("code") != DUPLICATE_KEY for w in errors):
            raise
        duplicate = {w["index"] for w in errors}
        return [i not in duplicate for i in range(len(docs))]
    return [True] * len(docs)


def translated(fn: Callable[P, Awaitable[T]]) -> Callable[P, Awaitable[T]]:
    """Map pymongo errors to the store's error tree, keeping the cause."""

    @functools.wraps(fn)
    async def wrapper(*args: P.args, **kwargs: P.kwargs) -> T:
        try:
            return await fn(*args, **kwargs)
        except DuplicateKeyError as err:
            raise DuplicateKey(str(err)) from err
        except UNAVAILABLE as err:
            raise StoreUnavailable(f"store unavailable: {type(err).__name__}") from err
        except PyMongoError as err:
            raise StoreError(f"store error: {type(err).__name__}: {err}") from err

    return wrapper


def object_id(raw: str) -> ObjectId | None:
    try:
        return ObjectId(raw)
    except (InvalidId, TypeError):
        return None


class StoreBase:
    """The client and the reads every repository uses; `Store` (repo.py) combines them."""

    def __init__(
        self,
        client: AsyncMongoClient[dict[str, Any]],
        db_name: str,
        kind: str,
        nx_server: bool | None = None,
    ) -> None:
        self.client = client
        # the client of the webhook's inserts (`Store.connect` may give them their own pool)
        self.ingress = client
        self.db_name = db_name
        self.kind = kind
        # The nx-27017 server answers some queries far slower than MongoDB (see `count`); its
        # workarounds apply whether we launched it or MONGO_URI points at one (replicas).
        self.nx_server = kind == "embedded" if nx_server is None else nx_server

    async def page(
        self,
        model: type[D],
        query: Mapping[str, Any],
        newest_first_by: str,
        skip: int,
        limit: int,
    ) -> tuple[list[D], int]:
        """One page of `model` matching `query`, newest first, and the total that matched.

        A document that does not validate is left out of the page (and logged), so one bad
        document cannot take a listing down; `total` still counts it.
        """
        total = await self.count(model, query)
        cursor = (
            model.get_pymongo_collection()
            .find(dict(query))
            .sort([(newest_first_by, -1), ("_id", -1)])
            .skip(skip)
            .limit(limit)
        )

        def left_out(raw: Mapping[str, Any], err: ValidationError) -> None:
            log.warning(
                "%s %s left out of a listing: %s",
                model.__name__,
                str(raw.get("_id"))[:40],
                first_error(err),
            )

        items = valid(model, await cursor.to_list(), left_out)
        return items, total

    async def count(self, model: type[Document], query: Mapping[str, Any]) -> int:
        """Count the documents of `model` matching `query` (see `count_in`)."""
        return await self.count_in(model.get_pymongo_collection(), query)

    async def count_in(self, collection: AsyncCollection[Any], query: Mapping[str, Any]) -> int:
        """Count matching documents of any collection.

        The embedded server runs `count_documents` as an aggregation that scans the whole
        collection (150 ms at 5k documents); fetching only `_id`s uses its indexes and is ~20x
        faster there. Real MongoDB counts natively.
        """
        if not self.nx_server:
            return await collection.count_documents(dict(query))
        if not query:
            return await collection.estimated_document_count()
        return len(await collection.find(dict(query), {"_id": 1}).to_list())
