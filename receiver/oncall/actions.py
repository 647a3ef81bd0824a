"""What the on-call actions mean: an incident's state, and the checks on what people type.

State, from the incident alone:
- `open`: firing, nobody has acknowledged it;
- `acknowledged`: firing, someone said "I have it" (`acked_by`);
- `resolved`: Alertmanager (or the detector / the reconciler) reported it resolved;
- `closed`: resolved by hand (`closed_by`), kept apart from `resolved`. A close frees the
  group: the next new firing of the same group opens a NEW incident (alerts still firing when
  it was closed stay with the closed one and open nothing).
"""

from __future__ import annotations

from collections.abc import Mapping
from enum import StrEnum
from typing import Any

from receiver.enrich.evidence import clean_text
from receiver.records import IncidentRecord
from receiver.store.filters import STATES

MAX_NOTE = 2000
MAX_NAME = 64  # an assignee or an author
MAX_COMMENT = 500  # a silence comment
MIN_SILENCE_MS = 60_000
MAX_SILENCE_MS = 30 * 86_400_000


class State(StrEnum):
    OPEN = "open"
    ACKNOWLEDGED = "acknowledged"
    RESOLVED = "resolved"
    CLOSED = "closed"


STATE_FILTERS = STATES  # the store turns each into a query


def state_of(incident: IncidentRecord) -> State:
    if incident.closed_by:
        return State.CLOSED
    if incident.status != "firing":
        return State.RESOLVED
    return State.ACKNOWLEDGED if incident.acked_by else State.OPEN


class InputError(ValueError):
    """A field of an action's body is wrong; the message names it."""


def name_field(body: Mapping[str, Any], field: str, required: bool = False) -> str:
    """A short single-line name (assignee, author): control characters removed, bounded."""
    raw = body.get(field, "")
    if raw is None:
        raw = ""
    if not isinstance(raw, str):
        raise InputError(f"{field}: must be a string")
    if len(raw) > MAX_NAME:
        raise InputError(f"{field}: at most {MAX_NAME} characters")
    value = clean_text(raw, MAX_NAME, multiline=False).strip()
    if required and not value and raw.strip():
        raise InputError(f"{field}: only control characters")
    return value


def text_field(body: Mapping[str, Any], field: str, limit: int, required: bool) -> str:
    raw = body.get(field, "")
    if raw is None:
        raw = ""
    if not isinstance(raw, str):
        raise InputError(f"{field}: must be a string")
    if len(raw) > limit:
        raise InputError(f"{field}: at most {limit} characters")
    value = clean_text(raw, limit).strip()
    if required and not value:
        raise InputError(f"{field}: must not be empty")
    return value
