"""The LLM token budget: one object, shared by enrichment and the chat (built in `create_app`).

The hourly cap counts what every replica stored in the last hour (analyses and chat turns both
record their tokens in the store), so replicas sharing a database share the budget.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

Usage = Callable[[datetime], Awaitable[int]]  # model tokens (in + out) spent since a time


@dataclass(frozen=True)
class Budget:
    """Token caps; 0 = no cap. `usage` are the stores that record spent tokens."""

    per_incident: int = 0
    per_hour: int = 0
    usage: Sequence[Usage] = ()

    async def spent_last_hour(self) -> int:
        since = datetime.now(UTC) - timedelta(hours=1)
        return sum([await spent(since) for spent in self.usage])

    def over_incident(self, estimate: int) -> str:
        """Why a prompt of ~`estimate` tokens may never go to the model, or "" when it may."""
        if not self.per_incident or estimate <= self.per_incident:
            return ""
        return (
            f"the prompt (~{estimate} tokens) is over the per-incident cap "
            f"of {self.per_incident} tokens"
        )

    async def over_hour(self, estimate: int) -> str:
        """Why a call of ~`estimate` tokens may not be made now, or "" when it may."""
        if not self.per_hour:
            return ""
        spent = await self.spent_last_hour()
        if spent + estimate <= self.per_hour:
            return ""
        return (
            f"the hourly LLM budget of {self.per_hour} tokens is spent "
            f"({spent} used in the last hour)"
        )
