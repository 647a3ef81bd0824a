"""The enrichment worker's capacity on the real embedded store with a loopback model that holds
its answers: work that needs no model call never waits behind model calls, the model-bound
claims are bounded, and a waiting storm or critical incident gets the next model slot.

The worker runs on a fake clock (no polls fire; ingest's wake drives it); every wait below is
for a state to be reached, bounded only so that a broken worker fails instead of hanging.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import threading
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from dataclasses import dataclass

import httpx
import pytest
from prometheus_client import CollectorRegistry

from receiver.domain import Severity, Source
from receiver.enrich.budget import Budget
from receiver.enrich.llm import OllamaProvider
from receiver.enrich.metrics import EnrichMetrics
from receiver.enrich.tracing import NoopTracer
from receiver.enrich.worker import EnrichmentWorker
from receiver.ingest.processor import SignalBatch, SignalProcessor
from receiver.records import AnalysisRecord, IncidentRecord
from receiver.store.documents import Incident
from receiver.store.rca import AnalysisStore
from receiver.store.repo import Store
from receiver.work import FakeClock
from tests.enrich.factories import answer_json, make_signal
from tests.support.fake_llm import FakeLLM, Recorded, Reply, ollama_chat

WITHIN = 30.0  # a bound for a broken worker, never a performance figure


@dataclass
class HeldModel:
    """A loopback model whose answers wait until the test opens the gate."""

    server: FakeLLM
    gate: threading.Event

    def prompts(self) -> list[str]:
        return [r.body.decode() for r in self.server.requests]


@pytest.fixture
def held() -> Iterator[HeldModel]:
    gate = threading.Event()

    def answer(_request: Recorded) -> Reply:
        gate.wait(WITHIN * 4)
        return ollama_chat(answer_json(), prompt_tokens=500, eval_tokens=50)

    with FakeLLM(responder=answer) as server:
        try:
            yield HeldModel(server, gate)
        finally:
            gate.set()  # a handler thread still holding an answer lets go


@contextlib.asynccontextmanager
async def running(
    store: Store, model: HeldModel, budget: Budget | None = None
) -> AsyncIterator[EnrichmentWorker]:
    """One model slot, one offline slot, on a fake clock; stopped (leases given back) after."""
    async with httpx.AsyncClient(trust_env=False) as client:
        worker = EnrichmentWorker(
            store,
            OllamaProvider(client=client, url=model.server.url, model_name="llama3.1:8b"),
            NoopTracer(),
            EnrichMetrics(CollectorRegistry()),
            prometheus=None,
            prom_url="",
            concurrency=1,
            offline_concurrency=1,
            settle_seconds=0.0,
            budget=budget,
            clock=FakeClock(),
        )
        task = asyncio.create_task(worker.run())
        try:
            yield worker
        finally:
            model.gate.set()
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task


async def until(what: str, check: Callable[[], Awaitable[bool]]) -> None:
    for _ in range(int(WITHIN / 0.02)):
        if await check():
            return
        await asyncio.sleep(0.02)
    raise AssertionError(f"not reached within {WITHIN:g}s: {what}")


async def open_incident(
    processor: SignalProcessor, alertname: str, severity: Severity = Severity.CRITICAL
) -> IncidentRecord:
    signal = make_signal(
        alertname=alertname, instance=f"{alertname.lower()}:9100", severity=severity
    )
    await processor.apply(SignalBatch(Source.ALERTMANAGER, f"group-{alertname}", [signal]))
    found = await Incident.find_one({"alertnames": alertname})
    assert found is not None
    return found


async def analysed(store: Store, incident: IncidentRecord) -> IncidentRecord | None:
    """The incident once its analysis is recorded (the work flag cleared), else None."""
    current = await store.get_incident(str(incident.id))
    assert current is not None
    return None if current.needs_analysis else current


async def test_a_storm_member_completes_while_every_model_slot_is_busy(
    store: Store, held: HeldModel
) -> None:
    """Four critical incidents want the one model slot (one calls, the answer held); a warning
    storm member behind them in the queue takes its storm's analysis at once, and only a
    bounded number of the model-bound incidents is claimed meanwhile."""
    processor = SignalProcessor(store)
    wanting = [await open_incident(processor, f"Critical{i}") for i in range(4)]
    member = await open_incident(processor, "MemberAlert", Severity.LOW)
    doc = await Incident.get(member.id)
    assert doc is not None
    doc.storm_id = "storm-of-the-test"
    await doc.save()
    async with running(store, held) as worker:
        processor.analysis_listeners.append(worker.wake)
        await until("the first model call is held", lambda: _count(held, 1))
        await until("the member is done", lambda: _done(store, member))

        assert not held.gate.is_set()  # the model has not answered anything yet
        done = await analysed(store, member)
        assert done is not None
        assert done.analysis_outcome == "storm"
        claimed = [i for i in wanting if (await _fresh(store, i)).analysis_claim_token]
        assert len(claimed) == 3  # one calling, two waiting; the fourth is not claimed

        held.gate.set()
        for incident in wanting:
            await until(
                f"{incident.alertnames} analysed", functools.partial(_done, store, incident)
            )
        assert len(held.server.requests) == 4


async def test_once_the_budget_is_spent_waiting_work_goes_offline_at_once(
    store: Store, held: HeldModel
) -> None:
    """While the one model call is held and the model-bound claims are full, another replica
    spends the hourly budget: the unclaimed incidents get the offline analyst at once, and
    the ones already waiting for the slot re-check the budget there and never call."""
    processor = SignalProcessor(store)
    analyses = AnalysisStore(store)
    budget = Budget(per_hour=100_000, usage=(analyses.tokens_since,))
    incidents = [await open_incident(processor, f"Disk{i}") for i in range(6)]
    async with running(store, held, budget) as worker:
        processor.analysis_listeners.append(worker.wake)
        await until("the first model call is held", lambda: _count(held, 1))
        unclaimed = [i for i in incidents if not (await _fresh(store, i)).analysis_claim_token]
        assert len(unclaimed) == 3
        await analyses.insert(
            AnalysisRecord(
                incident_id="elsewhere",
                summary="s",
                cause="c",
                provider="ollama",
                tokens_in=200_000,
            )
        )
        assert isinstance(worker.clock, FakeClock)
        await worker.clock.advance(1.0)  # past the budget re-read interval
        worker.wake()
        for incident in unclaimed:
            await until("offline under budget", functools.partial(_done, store, incident))
            done = await analysed(store, incident)
            assert done is not None
            assert done.analysis_outcome == "budget"
        assert not held.gate.is_set()

        held.gate.set()
        for incident in incidents:
            await until("every incident analysed", functools.partial(_done, store, incident))
        outcomes = sorted([(await _fresh(store, i)).analysis_outcome for i in incidents])
        assert outcomes == ["budget"] * 5 + ["model"]
        assert len(held.server.requests) == 1


async def test_a_critical_incident_claimed_later_gets_the_next_model_slot(
    store: Store, held: HeldModel
) -> None:
    """A low-severity incident waits for the held slot; a critical one that arrives after it is
    served first when the slot frees (storms and the most severe spend the model first)."""
    processor = SignalProcessor(store)
    first = await open_incident(processor, "WarnFirst", Severity.LOW)
    second = await open_incident(processor, "WarnSecond", Severity.LOW)
    async with running(store, held) as worker:
        processor.analysis_listeners.append(worker.wake)
        await until("the first call is held", lambda: _count(held, 1))
        await until("one waits for the slot", lambda: _waiting(worker, 1))
        critical = await open_incident(processor, "CriticalLater")
        await until("the critical one waits too", lambda: _waiting(worker, 2))

        held.gate.set()
        for incident in (first, second, critical):
            await until("analysed", functools.partial(_done, store, incident))
        order = [
            name
            for prompt in held.prompts()
            for name in ("WarnFirst", "WarnSecond", "CriticalLater")
            if name in prompt
        ]
        # the first call went to one of the low ones; the critical one came next
        assert len(order) == 3
        assert order[1] == "CriticalLater"


async def _fresh(store: Store, incident: IncidentRecord) -> IncidentRecord:
    current = await store.get_incident(str(incident.id))
    assert current is not None
    return current


async def _done(store: Store, incident: IncidentRecord) -> bool:
    return await analysed(store, incident) is not None


async def _count(held: HeldModel, n: int) -> bool:
    return len(held.server.requests) >= n


async def _waiting(worker: EnrichmentWorker, n: int) -> bool:
    return worker.model_slots.waiting >= n
