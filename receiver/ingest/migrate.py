"""Start-up pass: incidents and episodes written before a group was (source, receiver, groupKey).

Up to fd02813 an open incident's `open_key` was the bare groupKey and an episode's key was
`alertmanager:<fingerprint>:<startsAt>` with no `group_id`; the processor looks both up by the
new identity, so such an incident would never be found again (its alerts would open a second
one and its resolve would be lost). The delivery worker runs this once before its first drain:
it moves each legacy open incident to `group_id(source, receiver, key)` and gives each legacy
episode its group and group-scoped key. Idempotent (documents already keyed are left alone) and
bounded per round; a key that is already taken (a newer incident or episode of the same group)
is left as it was and logged. Incidents and episodes written since keep their keys: adding the
source changed nothing for Alertmanager's, whose keys already start with `alertmanager:`.
"""

from __future__ import annotations

import logging
from datetime import datetime

from receiver.domain import Source
from receiver.ingest.normalise import WEBHOOK_SOURCES, episode_key, group_id
from receiver.store.migrate import rekey_episodes, rekey_incidents

log = logging.getLogger(__name__)

_SOURCES = sorted(s.value for s in WEBHOOK_SOURCES)


def _group(source: str, receiver: str, key: str) -> str:
    return group_id(Source(source), receiver, key)


def _episode_key(source: str, fingerprint: str, starts_at: datetime, group: str) -> str:
    return episode_key(Source(source), fingerprint, starts_at, group)


async def migrate_groups() -> tuple[int, int]:
    """Re-key legacy open incidents and episodes; returns (incidents, episodes) moved.

    Works on the database the documents are bound to (`Store.connect`)."""
    incidents = await rekey_incidents(_SOURCES, _group)
    episodes = await rekey_episodes(_SOURCES, _group, _episode_key)
    if incidents or episodes:
        log.info("migrated %d incident(s) and %d episode(s) to group keys", incidents, episodes)
    return incidents, episodes
