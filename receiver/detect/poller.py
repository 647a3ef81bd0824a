"""The outlier poller: every MONITOR_INTERVAL seconds, poll each enabled target this replica
holds the lease for, score every watched series in one batch, and feed outliers into the same
`SignalProcessor` as Alertmanager alerts.

One cycle of one target: enumerate selectors (`selection`), fetch history with one query_range
per selector (`fetch`), score (`outliers.score_batch`, in a worker thread), turn the latest
points into signals with stable episode identity (`signals`), apply them, and store a snapshot
in the `metrics` collection. Errors of a target (Prometheus down, a bad selector, the store) are
counted and recorded on its snapshot; the loop never stops on them.
"""

from __future__ import annotations

import asyncio
import logging
import math
import time
from datetime import timedelta

import httpx

from receiver.detect.cycle import (
    LEASE_PREFIX,
    CycleReport,
    PollerConfig,
    error_kind,
    holder_id,
    season_key,
    snapshot_sample,
    warming_names,
)
from receiver.detect.fetch import Fetched, Grid, fetch, label_key
from receiver.detect.metrics import DetectorMetrics
from receiver.detect.outliers import (
    BatchResult,
    score_batch,
)
from receiver.detect.prometheus import (
    PrometheusAPI,
    PrometheusClient,
    PrometheusError,
    to_matrix,
)
from receiver.detect.seasonal import SeasonBatch, SeasonCache, SeasonSpec, fit_matrix
from receiver.detect.selection import (
    Selector,
    auto_selectors,
    custom_selectors,
    job_matcher,
    parse_selectors,
)
from receiver.detect.signals import Flag, Plan, SignalBuilder, at, explain_flags
from receiver.detect.targets import PollTarget, default_target, poll_target
from receiver.ingest.processor import SignalProcessor
from receiver.settings import Settings
from receiver.store.detect import DetectStore
from receiver.store.repo import Store, StoreError
from receiver.timeutil import utcnow
from receiver.work import REAL_CLOCK, Clock, WorkMetrics

log = logging.getLogger(__name__)

# Callers import these from here; they live in `cycle` since the split.
__all__ = ["LEASE_PREFIX", "CycleReport", "OutlierPoller", "PollerConfig"]


class OutlierPoller:
    """Polls targets on a timer; `poll(target)` is one cycle of one target, lease aside."""

    def __init__(
        self,
        config: PollerConfig,
        store: Store,
        processor: SignalProcessor,
        http: httpx.AsyncClient,
        metrics: DetectorMetrics,
        default: PollTarget | None,
        holder: str | None = None,
        *,
        clock: Clock = REAL_CLOCK,
        work: WorkMetrics | None = None,
    ) -> None:
        self.config = config
        self.clock = clock
        self.work = work
        self.store = DetectStore(store)
        self.processor = processor
        self.http = http
        self.metrics = metrics
        self.default = default
        self.holder = holder or holder_id()
        self._held: set[str] = set()
        spec = config.season
        self.seasons = SeasonCache(spec.max_entries if spec is not None else 0)

    @classmethod
    def from_settings(
        cls,
        settings: Settings,
        store: Store,
        processor: SignalProcessor,
        http: httpx.AsyncClient,
        metrics: DetectorMetrics,
        *,
        work: WorkMetrics | None = None,
    ) -> OutlierPoller:
        return cls(
            PollerConfig.from_settings(settings),
            store,
            processor,
            http,
            metrics,
            default_target(settings),
            work=work,
        )

    # ---------------------------------------------------------------------------- the loop

    async def run(self) -> None:
        log.info(
            "outlier poller %s: every %gs, method %s",
            self.holder,
            self.config.interval,
            self.config.detector.method,
        )
        try:
            while True:
                started = self.clock.monotonic()
                reports = await self.cycle()
                if self.work is not None:
                    self.work.items.labels("outlier poller").inc(len(reports))
                # the interval runs from the start of a cycle, so a slow cycle does not drift it
                elapsed = self.clock.monotonic() - started
                await self.clock.sleep(max(0.05, self.config.interval - elapsed))
        finally:
            await self.release()

    async def cycle(self) -> list[CycleReport]:
        """Poll every enabled target whose lease this replica gets."""
        try:
            targets = await self.targets()
        except StoreError as err:
            log.warning("outlier poller: cannot read targets: %s", err)
            return []
        reports = await asyncio.gather(*(self.poll_leased(t) for t in targets))
        return [r for r in reports if r is not None]

    async def targets(self) -> list[PollTarget]:
        stored = [poll_target(t) for t in await self.store.list_targets(enabled_only=True)]
        self.metrics.invalid_targets.set(len(self.store.invalid_targets))
        return ([self.default] if self.default is not None else []) + stored

    async def poll_leased(self, target: PollTarget) -> CycleReport | None:
        """One cycle of `target` if this replica holds (or gets) its lease."""
        lease = LEASE_PREFIX + target.name
        try:
            held = await self.store.acquire_lease(lease, self.holder, self.config.lease_ttl)
        except StoreError as err:
            log.warning("outlier poller: lease for %s: %s", target.name, err)
            self.metrics.errors.labels(target.name, "store").inc()
            return None
        self.metrics.lease.labels(target.name).set(1 if held else 0)
        if not held:
            self._held.discard(lease)
            return None
        self._held.add(lease)
        report = await self.poll(target)
        try:
            await self._record(report)
        except Exception as err:
            log.exception("outlier poller: %s: snapshot not recorded: %s", target.name, err)
        return report

    async def release(self) -> None:
        """Give up this replica's leases (on shutdown) so another replica takes over at once."""
        for lease in sorted(self._held):
            try:
                await asyncio.wait_for(self.store.release_lease(lease, self.holder), 5.0)
            except (StoreError, TimeoutError) as err:
                log.warning("outlier poller: could not release %s: %s", lease, err)
        self._held.clear()

    # ---------------------------------------------------------------------------- one cycle

    async def poll(self, target: PollTarget) -> CycleReport:
        report = CycleReport(target=target.name, holder=self.holder)
        started = time.perf_counter()
        client = PrometheusClient(
            target.prometheus(self.config.query_timeout + 5.0),
            http=self.http,
            retries=2,
            max_series=self.config.max_series,
            max_bytes=self.config.max_bytes,
        )
        try:
            await self._poll(client, target, report)
        except Exception as err:  # a target's failure must never stop the loop
            kind = error_kind(err)
            report.error = f"{kind}: {err}"[:500]
            self.metrics.errors.labels(target.name, kind).inc()
            if kind == "internal":
                log.exception("outlier poller: %s failed", target.name)
            else:
                log.warning("outlier poller: %s: %s", target.name, err)
        duration = time.perf_counter() - started
        report.duration_seconds = round(duration, 4)
        self.metrics.polls.labels(target.name).inc()
        self.metrics.duration.labels(target.name).observe(duration)
        return report

    async def _poll(self, client: PrometheusAPI, target: PollTarget, report: CycleReport) -> None:
        cfg = self.config
        grid = Grid.ending(time.time(), cfg.window, cfg.step)
        selectors = await self.selectors(client, target, grid)
        report.selectors = len(selectors)
        fetched = await fetch(
            client,
            selectors,
            grid,
            max_series=cfg.max_series,
            prior=cfg.prior,
            query_timeout=cfg.query_timeout,
        )
        report.series = len(fetched.refs)
        report.capped = fetched.capped
        if fetched.capped:
            self.metrics.capped.labels(target.name).inc()
            log.warning(
                "outlier poller: %s: DETECT_MAX_SERIES=%d reached after %d of %d selectors; "
                "the rest is not scored this cycle",
                target.name,
                cfg.max_series,
                fetched.selectors_done,
                len(selectors),
            )
        if fetched.errors:
            self.metrics.errors.labels(target.name, "query").inc(len(fetched.errors))
            report.error = ("query: " + "; ".join(fetched.errors))[:500]
            log.warning("outlier poller: %s: %s", target.name, report.error)
        scored = await self._score(target, fetched)
        result, flags = scored if scored is not None else (None, {})
        self.metrics.series.labels(target.name).inc(report.series)
        plan = await self._plan(target, fetched, result, flags, grid)
        for batch in plan.batches:
            applied = await self.processor.apply(batch)
            report.opened += applied.new_episodes
            report.resolved += applied.resolved_episodes
        if result is not None:
            report.flagged = len(flags)
            report.sample = snapshot_sample(fetched, result)
            report.warming = int(result.warming.sum())
            report.warming_series = warming_names(fetched, result)
            self.metrics.warming.labels(target.name).set(report.warming)
            self.metrics.flagged.labels(target.name).inc(report.flagged)
            if result.season is not None:
                report.seasonal = int(result.season.active.sum())
            self.metrics.seasonal.labels(target.name).set(report.seasonal)
        self.metrics.opened.labels(target.name).inc(report.opened)
        if cfg.season is not None:
            await self._fit(client, target, fetched, grid, cfg.season, report)
        if report.opened or report.resolved:
            log.info(
                "outlier poller: %s: %d outlier episode(s) opened, %d resolved",
                target.name,
                report.opened,
                report.resolved,
            )

    async def selectors(
        self, client: PrometheusAPI, target: PollTarget, grid: Grid
    ) -> list[Selector]:
        custom, auto = parse_selectors(self.config.selectors)
        selectors = custom_selectors(custom)
        if auto:
            names = await client.label_values(
                "__name__", match=job_matcher(target.job), start=grid.start, end=grid.end
            )
            selectors += auto_selectors(
                names,
                recorded=self.config.recorded,
                derived=self.config.derived,
                job=target.job,
                include_internal=self.config.include_internal,
                rate_window=self.config.rate_window,
            )
        return selectors

    async def _score(
        self, target: PollTarget, fetched: Fetched
    ) -> tuple[BatchResult, dict[int, Flag]] | None:
        if not fetched.refs:
            return None
        season = None
        if self.config.season is not None and len(self.seasons):
            season = self.seasons.batch([season_key(target.name, r) for r in fetched.refs])
        return await asyncio.to_thread(self._score_sync, fetched, season)

    def _score_sync(
        self, fetched: Fetched, season: SeasonBatch | None
    ) -> tuple[BatchResult, dict[int, Flag]]:
        """Score every series at once, then explain each point flagged since the last cycle
        (a flagged point before the last is re-scored alone on its prefix: same score, and
        the band it was judged against)."""
        cfg = self.config.detector
        result = score_batch(
            fetched.timestamps,
            fetched.values,
            cfg,
            prior_low=fetched.prior_low,
            prior_high=fetched.prior_high,
            season=season,
        )
        flags = explain_flags(
            result,
            fetched.values,
            cfg,
            span=self.config.interval + self.config.step,
            prior_low=fetched.prior_low,
            prior_high=fetched.prior_high,
            season=result.season,
        )
        return result, flags

    async def _fit(
        self,
        client: PrometheusAPI,
        target: PollTarget,
        fetched: Fetched,
        grid: Grid,
        spec: SeasonSpec,
        report: CycleReport,
    ) -> None:
        """Refit the seasonal profiles of the selectors due (never fitted, or `spec.refit`
        ago), about `max_series` series per cycle, from a coarse `spec.span` history that ends
        before this cycle's window: the profiles judge later points only. A failed fit query
        is logged and retried at the next refit."""
        now = time.time()
        selectors = list(dict.fromkeys(ref.selector for ref in fetched.refs))
        step = spec.fit_step(self.config.step)
        end = math.floor((grid.start - 1.0) / step) * step
        start = end - math.floor(spec.span / step) * step
        budget = self.config.max_series
        started = time.perf_counter()
        for selector in selectors:
            group = (target.name, selector.expr)
            if budget <= 0:
                break
            if not self.seasons.due(group, now, spec.refit):
                continue
            self.seasons.fitted(group, now)
            try:
                answer = await client.query_range(
                    selector.expr, start, end, step, query_timeout=self.config.query_timeout
                )
            except PrometheusError as err:
                self.metrics.errors.labels(target.name, error_kind(err)).inc()
                log.warning(
                    "outlier poller: %s: no seasonal fit for %s: %s",
                    target.name,
                    selector.expr[:200],
                    err,
                )
                continue
            matrix = to_matrix(answer)
            if not matrix.labels:
                continue
            fits = await asyncio.to_thread(fit_matrix, matrix.timestamps, matrix.values, spec, now)
            for labels, fit in zip(matrix.labels, fits, strict=True):
                self.seasons.put((target.name, selector.expr, label_key(labels)), fit)
            budget -= len(fits)
            report.fitted += len(fits)
        if report.fitted:
            self.metrics.season_fits.labels(target.name).inc(report.fitted)
            self.metrics.season_fit_seconds.labels(target.name).inc(time.perf_counter() - started)

    async def _plan(
        self,
        target: PollTarget,
        fetched: Fetched,
        result: BatchResult | None,
        flags: dict[int, Flag],
        grid: Grid,
    ) -> Plan:
        builder = SignalBuilder(target.name, target.url, self.config.rules)
        open_episodes = await self.store.open_episodes(target.name)
        quiet: set[str] = set()
        if flags and self.config.suppress > 0:
            fresh = [
                fp for fp in builder.fingerprints(fetched.refs, flags) if fp not in open_episodes
            ]
            since = self.clock.now() - timedelta(seconds=self.config.suppress)
            quiet = await self.store.resolved_since(fresh, since)
        end = at(float(result.timestamps[-1])) if result is not None else at(grid.end)
        return builder.plan(
            fetched.refs,
            result,
            open_episodes,
            flags=flags,
            quiet=quiet,
            complete=fetched.complete,
            end=end,
        )

    async def _record(self, report: CycleReport) -> None:
        # stamped when the cycle ended, as the snapshot list and its retention sort by it
        snapshot = report.model_copy(update={"created_at": utcnow()})
        try:
            await self.store.insert_snapshot(snapshot, self.config.max_docs)
        except StoreError as err:
            self.metrics.errors.labels(report.target, "store").inc()
            log.warning("outlier poller: snapshot of %s not stored: %s", report.target, err)
