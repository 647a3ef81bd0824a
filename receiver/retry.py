"""The one retry policy of the background stages, and the failure counter they share.

Every stage (delivery worker, enrichment, outbox, poller, reconciler) handles items one at a
time: a failure of ONE item is recorded on the item, retried after an exponential backoff with
jitter, and quarantined (status `failed`) after `max_attempts`, while the stage moves on. An
operator lists quarantined items through the API and retries one by hand.
"""

from __future__ import annotations

import random
from dataclasses import dataclass

from prometheus_client import CollectorRegistry, Counter

STAGES = ("delivery", "enrichment", "outbox", "poller", "reconciler")


@dataclass(frozen=True)
class RetryPolicy:
    base_seconds: float = 2.0
    cap_seconds: float = 600.0
    max_attempts: int = 5
    jitter: float = 0.2  # ± this share of the delay, so failing items do not retry in lockstep

    def delay(self, attempts: int, rand: float | None = None) -> float:
        """Seconds before attempt `attempts + 1`, given `attempts` failures so far (≥ 1)."""
        raw = min(self.base_seconds * 2.0 ** max(attempts - 1, 0), self.cap_seconds)
        r = random.random() if rand is None else rand  # noqa: S311 jitter, not crypto
        return raw * (1 - self.jitter + 2 * self.jitter * r)

    def exhausted(self, attempts: int) -> bool:
        """True when `attempts` failures mean the item is quarantined."""
        return attempts >= self.max_attempts


def describe(err: BaseException, limit: int = 500) -> str:
    """`Type: message`, one line, capped: what an item's `last_error` holds."""
    text = f"{type(err).__name__}: {err}".replace("\n", " ").replace("\r", " ")
    return text[:limit]


class StageFailures:
    """`pipeline_item_errors_total{stage, outcome}`: outcome retry | quarantined."""

    def __init__(self, registry: CollectorRegistry) -> None:
        self.counter = Counter(
            "pipeline_item_errors_total",
            "Items a background stage failed on, by stage and what happens next",
            ["stage", "outcome"],
            registry=registry,
        )
        for stage in STAGES:
            for outcome in ("retry", "quarantined"):
                self.counter.labels(stage, outcome)

    def failed(self, stage: str, quarantined: bool) -> None:
        self.counter.labels(stage, "quarantined" if quarantined else "retry").inc()
