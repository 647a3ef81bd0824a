"""The enrichment worker: picks incidents with `needs_analysis` from the store and analyses them.

Work is database state, so a restart resumes it. Each incident is claimed with a lease (one
conditional update), so replicas sharing a database analyse it once; a replica that stops
gives its leases back, one that dies loses them when they expire. The webhook never waits for
any of this: ingest calls `wake()` and returns.

Work that needs no model call (storm members, no model, the hourly budget spent) and work
that may call it are claimed against separate capacities, so the offline path never waits
behind the model, and few model-bound claims wait (receiver/enrich/slots.py). `timeout` bounds
an analysis as a whole (evidence, waiting for a model slot, the call); past it the offline
analyst answers. The lease outlives it by `lease_margin`, and the task is cut off before its
lease can end, so no other replica takes an incident this one still writes.
"""

from __future__ import annotations

import asyncio
import collections
import functools
import logging
import time
import uuid
from collections.abc import Sequence

from receiver.detect.prometheus import PrometheusAPI
from receiver.domain import Analysis, IncidentView
from receiver.enrich.analyst import analyse
from receiver.enrich.budget import Budget
from receiver.enrich.context import ContextGatherer, PastIncident, RuleIndex
from receiver.enrich.evidence import EvidenceBundle, evidence_from_incident
from receiver.enrich.fit import OUTPUT_TOKENS, estimate_tokens, fit, prompt_limit
from receiver.enrich.llm import LLMProvider
from receiver.enrich.metrics import EnrichMetrics
from receiver.enrich.records import (
    AnalysisResult,
    RecordingTracer,
    analysis_record,
    evidence_hash,
    past_incident,
    primary_episode,
    signature,
)
from receiver.enrich.slots import ModelSlots
from receiver.enrich.tracing import Tracer
from receiver.records import EpisodeRecord, IncidentRecord
from receiver.retry import RetryPolicy, StageFailures, describe
from receiver.store.convert import incident_view
from receiver.store.rca import AnalysisStore
from receiver.store.repo import Store, StoreError
from receiver.store.storms import STORM_SOURCE, StormStore
from receiver.work import REAL_CLOCK, Clock, ItemFailure, Worker

log = logging.getLogger(__name__)

LEASE_MARGIN = 60.0  # seconds a lease outlives the analysis timeout
MAX_EPISODES = 200  # newest episodes an analysis looks at (the evidence shows ~15)
HISTORY_CANDIDATES = 30
BATCH = 32  # candidates read per pending query
REQUERY_SECONDS = 0.5  # new work re-reads the candidates at most this often
COUNT_SECONDS = 1.0  # the queue-depth gauge is refreshed at most this often
REANALYSE_SECONDS = 30.0  # budget fallbacks are looked at again at most this often
REANALYSE_BATCH = 4
MODEL_WAITING = 2  # model-bound claims beyond the slots (at least as many as the slots)
MAX_SCAN = 256  # candidates read at most when model-bound ones fill the batch
LEASE_SAFETY = 5.0  # seconds before its lease ends that an analysis is cut off


class EnrichmentWorker:
    def __init__(
        self,
        store: Store,
        provider: LLMProvider | None,
        tracer: Tracer,
        metrics: EnrichMetrics,
        *,
        prometheus: PrometheusAPI | None,
        prom_url: str,
        rules: RuleIndex | None = None,
        concurrency: int = 2,
        offline_concurrency: int = 8,
        timeout: float = 180.0,
        poll_seconds: float = 5.0,
        settle_seconds: float = 0.5,
        budget: Budget | None = None,
        lease_margin: float = LEASE_MARGIN,
        failures: StageFailures | None = None,
        policy: RetryPolicy | None = None,
        clock: Clock = REAL_CLOCK,
    ) -> None:
        self.clock = clock
        self.policy = policy or RetryPolicy()
        self.record = ItemFailure("enrichment", self.policy, clock, failures)
        self.analyses = AnalysisStore(store)
        self.provider = provider
        self.tracer = tracer
        self.metrics = metrics
        self.gatherer = ContextGatherer(
            prometheus, prom_url=prom_url, rules=rules, history=self._history
        )
        self.offline_concurrency = offline_concurrency
        if provider is None:
            self.offline_concurrency = max(concurrency, offline_concurrency)
        self.model_slots = ModelSlots(concurrency)
        self.model_claims_max = concurrency + max(concurrency, MODEL_WAITING)
        self._model_claims: set[str] = set()  # claims that may still call the model
        self._budget_spent = False
        self._budget_checked_at = -REQUERY_SECONDS
        self._limit = BATCH
        self.storms = StormStore(store)
        self._reanalyse_at = 0.0
        self.timeout = timeout
        self.lease_margin = lease_margin
        self.lease = timeout + lease_margin
        self.poll_seconds = poll_seconds
        self.settle_seconds = settle_seconds
        self.budget = budget or Budget()
        self.replica = uuid.uuid4().hex[:12]
        self._wake = asyncio.Event()
        self._fresh = True  # new work may exist that the candidate batch does not hold
        self._queue: collections.deque[IncidentRecord] = collections.deque()
        self._queried_at = 0.0
        self._counted_at = 0.0
        self._running: dict[str, asyncio.Task[None]] = {}

    def wake(self) -> None:
        """Something may need analysis (ingest grew an incident, the API asked): look now."""
        self._fresh = True
        self._wake.set()

    # -- the loop -------------------------------------------------------------------------------

    async def run(self) -> None:
        worker = Worker(
            "enrichment worker",
            self._step,
            poll=self.poll_seconds,
            clock=self.clock,
            outages=(StoreError,),
            backoff_cap=60.0,
            idle=self._idle,
        )
        try:
            await worker.run()
        finally:
            running = list(self._running.values())
            for task in running:
                task.cancel()
            await asyncio.gather(*running, return_exceptions=True)

    async def _step(self) -> bool:
        try:
            await self.fill()
        except StoreError:
            self.metrics.errors.inc()
            raise
        return False  # the next pass waits for a free slot, new work or the poll

    async def _idle(self) -> None:
        was_idle = not self._running and not self._queue
        wait = self.poll_seconds
        if self._fresh and self._queue:
            # announced work is not read while model-bound candidates hold the queue: read it
            # once the re-read interval allows, not at the next poll
            wait = min(wait, REQUERY_SECONDS)
        await self.clock.wait_for_wake(self._wake, wait)
        if was_idle and self._fresh and self.settle_seconds:
            # the first deliveries of a burst for one group land within moments: let them all
            # land, then analyse the group once (not when a slot frees up mid-storm)
            await self.clock.sleep(self.settle_seconds)
        self._wake.clear()

    async def fill(self) -> int:
        """Claim pending incidents up to the free capacity of their kind and start them.

        Candidates are read in batches and re-read when the batch is used up or new work was
        announced (at most every REQUERY_SECONDS): a storm of incidents costs one query per
        batch, not one per analysis, on a store that serialises requests. Model-bound
        candidates that find no room stay queued in their order; while they fill the batch,
        the next read looks past them (up to MAX_SCAN) for work that needs no model.
        """
        started = skipped = 0
        if self._room(model=False) or self._room(model=True):
            stale = self._fresh and self.clock.monotonic() - self._queried_at >= REQUERY_SECONDS
            if not self._queue or stale:
                self._fresh = False
                self._queried_at = self.clock.monotonic()
                found = await self.analyses.pending(self.clock.time(), self._limit)
                self._queue = collections.deque(found)
            kept: collections.deque[IncidentRecord] = collections.deque()
            while self._queue and (self._room(model=False) or self._room(model=True)):
                incident = self._queue.popleft()
                key = str(incident.id)
                if key in self._running:
                    continue
                model = not await self._needs_no_model(incident)
                if not self._room(model=model):
                    kept.append(incident)
                    if model:
                        skipped += 1
                    continue
                if await self._start(incident, model):
                    started += 1
            self._queue = kept + self._queue
            self._limit = min(BATCH + skipped, MAX_SCAN) if skipped else BATCH
        if not self._queue and not self._running and self.clock.monotonic() >= self._reanalyse_at:
            self._reanalyse_at = self.clock.monotonic() + REANALYSE_SECONDS
            await self._reanalyse()
        if self.clock.monotonic() - self._counted_at >= COUNT_SECONDS:
            self._counted_at = self.clock.monotonic()
            self.metrics.pending.set(await self.analyses.count_pending())
        self.metrics.in_flight.set(len(self._running))
        return started

    def _room(self, *, model: bool) -> bool:
        if model:
            return len(self._model_claims) < self.model_claims_max
        return len(self._running) - len(self._model_claims) < self.offline_concurrency

    async def _needs_no_model(self, incident: IncidentRecord) -> bool:
        """Whether the analysis surely makes no model call (so it need not wait for one)."""
        if self.provider is None or incident.storm_id:
            return True
        if incident.analysis_id and signature(incident) == incident.analysis_signature:
            return True
        return await self._budget_is_spent()

    async def _budget_is_spent(self) -> bool:
        """Even the smallest call (an answer alone) is over the hourly budget; re-read at
        most every REQUERY_SECONDS (it sums the last hour's analyses)."""
        if not self.budget.per_hour:
            return False
        if self.clock.monotonic() - self._budget_checked_at >= REQUERY_SECONDS:
            self._budget_checked_at = self.clock.monotonic()
            self._budget_spent = bool(await self.budget.over_hour(OUTPUT_TOKENS))
        return self._budget_spent

    async def _start(self, incident: IncidentRecord, model: bool) -> bool:
        key = str(incident.id)
        token = f"{self.replica}-{uuid.uuid4().hex[:12]}"
        now = self.clock.time()
        claimed = await self.analyses.claim(incident.id, token, now, now + self.lease)
        if claimed is None:
            return False  # another replica took it or it is done
        if model:
            self._model_claims.add(key)
        task = asyncio.create_task(self._guarded(claimed, token), name=f"rca-{key}")
        self._running[key] = task
        task.add_done_callback(functools.partial(self._finished, key))
        return True

    def _no_model(self, incident: IncidentRecord) -> None:
        """This analysis makes no (further) model call: its model-bound place goes to the next."""
        key = str(incident.id)
        if key in self._model_claims:
            self._model_claims.discard(key)
            self._wake.set()

    def _finished(self, key: str, _task: asyncio.Task[None]) -> None:
        self._running.pop(key, None)
        self._model_claims.discard(key)
        self.metrics.in_flight.set(len(self._running))
        self._wake.set()  # a slot is free

    async def _guarded(self, incident: IncidentRecord, token: str) -> None:
        try:
            # cut off before the lease can end: past it another replica may take the incident
            async with asyncio.timeout(self.lease - min(LEASE_SAFETY, self.lease_margin / 2)):
                await self.analyse(incident, token)
        except asyncio.CancelledError:
            await self._release(incident, token)  # shutting down: let the next replica start
            raise
        except StoreError as err:
            self.metrics.errors.inc()
            log.warning("analysis of incident %s not stored: %s", incident.id, err)
            if err.retryable:
                await self._release(incident, token)
            else:  # the store refuses this incident's write: retrying at once would loop
                await self._failed(incident, token, err)
        except Exception as err:
            self.metrics.errors.inc()
            log.exception("analysis of incident %s failed", incident.id)
            await self._failed(incident, token, err)

    async def _failed(self, incident: IncidentRecord, token: str, err: Exception) -> None:
        """Retry this incident after a backoff; quarantine it after the last attempt."""
        outcome = self.record.decide(incident.analysis_attempts)
        try:
            async with asyncio.timeout(5.0):
                await self.analyses.fail(
                    incident.id, token, describe(err), outcome.quarantined, outcome.retry_at
                )
        except (StoreError, TimeoutError) as store_err:
            log.warning("failure of incident %s not recorded: %s", incident.id, store_err)

    async def _release(self, incident: IncidentRecord, token: str) -> None:
        try:
            async with asyncio.timeout(5.0):
                await self.analyses.release(incident.id, token)
        except (StoreError, TimeoutError) as err:
            log.warning("lease of incident %s left to expire: %s", incident.id, err)

    # -- one analysis ---------------------------------------------------------------------------

    async def analyse(self, incident: IncidentRecord, token: str) -> None:
        """Analyse a claimed incident, store the result, clear its work flag, free the lease."""
        sig = signature(incident)
        if sig == incident.analysis_signature and incident.analysis_id:
            # nothing new since the last analysis (e.g. a restart after storing it)
            await self.analyses.complete(incident, token, incident.analysis_id, sig)
            return
        if incident.storm_id:
            # a storm member: the storm's one analysis covers it (the budget is spent once)
            storm = await self.storms.get(incident.storm_id)
            analysis_id = storm.analysis_id if storm is not None else ""
            await self.analyses.complete(incident, token, analysis_id, sig, "storm")
            self.metrics.generated.labels("storm", "storm").inc()
            return
        started = time.perf_counter()
        episodes: Sequence[EpisodeRecord]
        if incident.source == STORM_SOURCE:
            episodes = await self.storms.member_episodes(str(incident.id), MAX_EPISODES)
        else:
            episodes = await self.analyses.episodes(str(incident.id), MAX_EPISODES)
        view = incident_view(incident, episodes)
        evidence: EvidenceBundle | None = None
        try:
            async with asyncio.timeout(self.timeout):
                t0 = time.perf_counter()
                evidence = await self.gatherer.gather(view)
                self.metrics.evidence_latency.observe(time.perf_counter() - t0)
                self.metrics.evidence_queries.observe(evidence.queries)
                result = await self._decide(incident, view, sig, evidence)
        except TimeoutError:
            self._no_model(incident)
            log.warning("analysis of incident %s timed out", incident.id)
            evidence = evidence or evidence_from_incident(view)
            recorder = RecordingTracer(self.tracer)
            analysis = await analyse(
                view,
                evidence,
                None,
                recorder,
                offline_reason=f"the analysis took longer than {self.timeout:g}s",
            )
            result = AnalysisResult(analysis, "timeout", recorder.trace_id)
        if result.cached is not None:
            rca = result.cached
        else:
            assert evidence is not None
            episode = primary_episode(view, episodes)
            seconds = time.perf_counter() - started
            rca = await self.analyses.insert(
                analysis_record(incident, view, sig, evidence, result, episode, seconds)
            )
        cleared = await self.analyses.complete(incident, token, str(rca.id), sig, result.outcome)
        await self.analyses.mark_analyzed([e.id for e in episodes if not e.analyzed])
        self._count(result, time.perf_counter() - started)
        log.info(
            "incident %s analysed (%s, %s)%s",
            incident.id,
            result.outcome,
            rca.provider,
            "" if cleared else "; it grew meanwhile, another analysis follows",
        )

    async def _decide(
        self, incident: IncidentRecord, view: IncidentView, sig: str, evidence: EvidenceBundle
    ) -> AnalysisResult:
        """Model, cache or offline (no LLM / over budget), then analyse."""
        provider = self.provider
        recorder = RecordingTracer(self.tracer)
        if provider is None:
            offline = await analyse(view, evidence, None, recorder)
            return AnalysisResult(offline, "offline", recorder.trace_id)
        # the lower-ranked candidates give way first when the prompt would not fit the model's
        # context or the per-incident cap; the stored evidence keeps them all
        limit = prompt_limit(getattr(provider, "num_ctx", None), self.budget.per_incident)
        evidence = fit(view, evidence, limit)
        estimate = estimate_tokens(view, evidence)
        over = self.budget.over_incident(estimate)
        if over:
            self.metrics.budget_exceeded.labels("incident").inc()
        else:
            over = await self._over_hour(estimate)
        digest = evidence_hash(evidence, provider)
        cached = None if over else await self.analyses.cached(str(incident.id), sig, digest)
        if over or cached is not None:
            self._no_model(incident)
        if cached is not None:
            stub = Analysis(summary=cached.summary, cause=cached.cause)
            return AnalysisResult(stub, "cached", cached=cached)
        analysis: Analysis | None = None
        if not over:
            async with self.model_slots.slot(incident.priority) as waited:
                # the calls that ran while this one waited spent tokens: check again
                over = await self._over_hour(estimate) if waited else ""
                if not over:
                    analysis = await analyse(view, evidence, provider, recorder)
            self._no_model(incident)
        if analysis is None:
            analysis = await analyse(view, evidence, None, recorder, offline_reason=over)
            return AnalysisResult(analysis, "budget", recorder.trace_id)
        outcome = "fallback" if analysis.offline else "model"
        return AnalysisResult(
            analysis, outcome, recorder.trace_id, "" if analysis.offline else digest
        )

    async def _over_hour(self, estimate: int) -> str:
        """Why the model may not be called now, or "" when it may."""
        over = await self.budget.over_hour(estimate)
        if over:
            self.metrics.budget_exceeded.labels("hour").inc()
        return over

    def _count(self, result: AnalysisResult, seconds: float) -> None:
        analysis = result.analysis
        provider = result.cached.provider if result.cached is not None else analysis.provider
        self.metrics.generated.labels(provider, result.outcome).inc()
        self.metrics.latency.observe(seconds)
        if result.cached is None:
            self.metrics.tokens.labels("in").inc(analysis.tokens_in)
            self.metrics.tokens.labels("out").inc(analysis.tokens_out)
            self.metrics.cost.inc(analysis.cost_estimate)
            self.metrics.dropped_hypotheses.inc(analysis.dropped_hypotheses)

    async def _reanalyse(self) -> int:
        """Open incidents that got the offline analyst because the budget was spent go back to
        the model, the most important first, while the budget allows it."""
        if self.provider is None or not self.budget.per_hour:
            return 0
        requeued = 0
        for incident in await self.analyses.budget_fallbacks(REANALYSE_BATCH):
            if await self.budget.over_hour(OUTPUT_TOKENS * 4):
                break
            if await self.analyses.request(str(incident.id)) is not None:
                requeued += 1
        if requeued:
            log.info("%d offline analyses made under budget pressure go to the model", requeued)
            self.wake()
        return requeued

    # -- history for the evidence ---------------------------------------------------------------

    async def _history(self, alertname: str, exclude_id: str) -> list[PastIncident]:
        rows = await self.analyses.resolved_with(alertname, exclude_id, HISTORY_CANDIDATES)
        return [past_incident(incident, rca) for incident, rca in rows]
