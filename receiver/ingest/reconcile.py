"""Reconciler: close incidents whose alerts Alertmanager no longer holds.

Alertmanager never sends a resolve for an alert that was silenced when it resolved, and loses its
alerts on a restart without storage; an incident would then stay open forever. Every
RECONCILE_INTERVAL seconds this loop asks each configured Alertmanager for all the alerts it
holds (active, silenced, inhibited, unprocessed) and closes firing episodes whose fingerprint none
of them has, with `resolved_by = "reconciler"`. If any Alertmanager cannot be read, nothing is
closed in that round (a partial view must not close live incidents). It never re-opens anything:
only a new episode does.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from datetime import timedelta

import httpx
from prometheus_client import CollectorRegistry, Counter

from receiver.domain import Source
from receiver.ingest.processor import SignalProcessor
from receiver.retry import StageFailures, describe
from receiver.store.repo import Store, StoreError
from receiver.work import REAL_CLOCK, Clock, WorkMetrics, every

log = logging.getLogger(__name__)


class ReconcileError(Exception):
    """An Alertmanager could not be read; this round closes nothing."""


class Reconciler:
    def __init__(
        self,
        store: Store,
        processor: SignalProcessor,
        http: httpx.AsyncClient,
        alertmanager_urls: Sequence[str],
        interval: float,
        registry: CollectorRegistry,
        grace: float = 30.0,
        failures: StageFailures | None = None,
        *,
        clock: Clock = REAL_CLOCK,
        work: WorkMetrics | None = None,
    ) -> None:
        self.failures = failures
        self.clock = clock
        self.work = work
        self.store = store
        self.processor = processor
        self.http = http
        self.urls = [u.rstrip("/") for u in alertmanager_urls]
        self.interval = interval
        self.grace = grace
        self.closed = Counter(
            "reconciler_closed_episodes_total",
            "Episodes closed because no Alertmanager holds their alert any more",
            registry=registry,
        )
        self.errors = Counter(
            "reconciler_errors_total", "Reconcile rounds skipped", ["reason"], registry=registry
        )

    async def held_fingerprints(self) -> set[str]:
        held: set[str] = set()
        params = {"active": "true", "silenced": "true", "inhibited": "true", "unprocessed": "true"}
        for url in self.urls:
            try:
                resp = await self.http.get(f"{url}/api/v2/alerts", params=params, timeout=10)
                resp.raise_for_status()
                alerts = resp.json()
            except (httpx.HTTPError, ValueError) as err:
                raise ReconcileError(f"{url}: {type(err).__name__}") from err
            if not isinstance(alerts, list):
                raise ReconcileError(f"{url}: /api/v2/alerts did not answer a list")
            held.update(str(a.get("fingerprint", "")) for a in alerts if isinstance(a, dict))
        return held

    async def reconcile(self) -> int:
        """One round; returns the number of episodes closed."""
        held = await self.held_fingerprints()
        # only episodes old enough that Alertmanager must already hold them
        cutoff = self.clock.now() - timedelta(seconds=self.grace)
        firing = await self.store.firing_episodes(Source.ALERTMANAGER.value, cutoff)
        gone = [e for e in firing if e.fingerprint not in held]
        if not gone:
            return 0
        closed = 0
        for episode in gone:  # one at a time: an episode that fails must not keep the rest open
            try:
                closed += await self.processor.close_episodes([episode], "reconciler")
            except StoreError as err:
                if err.retryable:
                    raise
                self._failed(episode.episode_key, err)
            except Exception as err:
                self._failed(episode.episode_key, err)
        self.closed.inc(closed)
        log.info("reconciler closed %d episode(s) Alertmanager no longer holds", closed)
        return closed

    def _failed(self, key: str, err: Exception) -> None:
        # nothing to quarantine: the episode stays firing and the next round tries it again
        log.error("reconciler could not close episode %s: %s", key[:80], describe(err))
        if self.failures is not None:
            self.failures.failed("reconciler", quarantined=False)

    async def run(self) -> None:
        await every(self.interval, self.round, self.clock)

    async def round(self) -> None:
        """One timed round; a failed round is counted and logged, the next one tries again."""
        try:
            closed = await self.reconcile()
        except ReconcileError as err:
            self.errors.labels("alertmanager").inc()
            log.warning("reconciler skipped a round: %s", err)
        except StoreError as err:
            self.errors.labels("store").inc()
            if self.work is not None:
                self.work.outages.labels("reconciler").inc()
            log.warning("reconciler skipped a round: %s", err)
        except Exception as err:
            self.errors.labels("bug").inc()
            log.exception("reconciler round failed: %s", describe(err))
        else:
            if self.work is not None:
                self.work.items.labels("reconciler").inc(closed)
