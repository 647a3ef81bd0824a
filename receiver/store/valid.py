"""Reading documents one at a time: a stored document that does not fit its model (a hand edit,
another version, a bug) must not fail the read of every document beside it.

`valid` keeps the documents that validate and hands each one that does not, with its error, to
`on_invalid` (collect it to quarantine it, log it); the caller decides what "set aside" means.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from typing import Any, TypeVar

from pydantic import BaseModel, ValidationError

M = TypeVar("M", bound=BaseModel)
Invalid = Callable[[Mapping[str, Any], ValidationError], None]


def first_error(err: ValidationError) -> str:
    """`field.path: message` of the first problem, without the input (it may be huge)."""
    first = err.errors(include_url=False, include_input=False)[0]
    where = ".".join(str(p) for p in first["loc"]) or "document"
    return f"{where}: {first['msg']}"


def valid(
    model: type[M], docs: Iterable[Mapping[str, Any]], on_invalid: Invalid | None = None
) -> list[M]:
    """The documents of `docs` that validate as `model`, in order."""
    found: list[M] = []
    for doc in docs:
        try:
            found.append(model.model_validate(doc))
        except ValidationError as err:
            if on_invalid is not None:
                on_invalid(doc, err)
    return found


class SetAside:
    """An `on_invalid` that collects the documents, for the caller to quarantine after."""

    def __init__(self) -> None:
        self.found: list[tuple[Mapping[str, Any], ValidationError]] = []

    def __call__(self, doc: Mapping[str, Any], err: ValidationError) -> None:
        self.found.append((doc, err))
