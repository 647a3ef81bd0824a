"""The analysis lease on incidents (receiver/store/rca.py) against the embedded store."""

from __future__ import annotations

import asyncio
import time

import pytest

from receiver.store.documents import Incident
from receiver.store.rca import AnalysisStore
from receiver.store.repo import Store


@pytest.fixture
def analyses(store: Store) -> AnalysisStore:
    return AnalysisStore(store)


async def _incident(analyses: AnalysisStore, key: str, **fields: object) -> Incident:
    incident = Incident(
        key=key, open_key=key, source="alertmanager", alertnames=["A"], instances=["i:1"]
    )
    for name, value in fields.items():
        setattr(incident, name, value)
    await analyses.store.insert_incident(incident)
    return incident


async def test_one_claim_wins_and_an_expired_lease_can_be_taken_over(
    analyses: AnalysisStore,
) -> None:
    """While a lease holds nobody else claims; once it expires (holder died) another does,
    and the dead holder can no longer complete."""
    incident = await _incident(analyses, "g1")
    now = time.time()
    assert await analyses.claim(incident.id, "holder-a", now, now + 0.3) is not None
    assert await analyses.claim(incident.id, "holder-b", time.time(), time.time() + 60) is None
    await asyncio.sleep(0.4)
    taken = await analyses.claim(incident.id, "holder-b", time.time(), time.time() + 60)
    assert taken is not None
    assert taken.analysis_claim_token == "holder-b"
    assert await analyses.complete(taken, "holder-a", "rca-a", "sig") is False
    assert await analyses.complete(taken, "holder-b", "rca-b", "sig") is True
    done = await analyses.store.get_incident(str(incident.id))
    assert done is not None
    assert (done.needs_analysis, done.analysis_id, done.analysis_claim_token) == (
        False,
        "rca-b",
        "",
    )
    assert await analyses.claim(incident.id, "holder-c", time.time(), time.time() + 60) is None


async def test_a_claim_never_touches_another_incident(analyses: AnalysisStore) -> None:
    """Regression: `{_id, needs_analysis, $or: [...]}` updated OTHER documents on nx-27017."""
    finished = await _incident(analyses, "done", needs_analysis=False)
    pending = await _incident(analyses, "pending", analysis_claim_until=time.time() + 600)
    now = time.time()
    assert await analyses.claim(pending.id, "someone", now, now + 60) is None  # leased
    untouched = await analyses.store.get_incident(str(finished.id))
    assert untouched is not None
    assert untouched.analysis_claim_token == ""
    assert await analyses.claim(finished.id, "someone", now, now + 60) is None  # not pending


async def test_growth_during_an_analysis_keeps_the_incident_pending(
    analyses: AnalysisStore,
) -> None:
    """A new instance added while the analysis ran leaves needs_analysis set for the next round."""
    incident = await _incident(analyses, "grows")
    now = time.time()
    claimed = await analyses.claim(incident.id, "t1", now, now + 60)
    assert claimed is not None
    await analyses.store.update_incident(
        incident.id,
        {"$addToSet": {"instances": {"$each": ["i:2"]}}, "$set": {"needs_analysis": True}},
    )
    assert await analyses.complete(claimed, "t1", "rca-1", "old-signature") is False
    after = await analyses.store.get_incident(str(incident.id))
    assert after is not None
    assert after.needs_analysis is True
    assert (after.analysis_id, after.analysis_claim_token) == ("rca-1", "")
    assert await analyses.claim(incident.id, "t2", time.time(), time.time() + 60) is not None


async def test_release_frees_the_lease_at_once(analyses: AnalysisStore) -> None:
    """A stopping replica gives its lease back; only the holder's token can release it."""
    incident = await _incident(analyses, "released")
    now = time.time()
    assert await analyses.claim(incident.id, "t1", now, now + 600) is not None
    await analyses.release(incident.id, "not-the-holder")
    assert await analyses.claim(incident.id, "t2", time.time(), time.time() + 600) is None
    await analyses.release(incident.id, "t1")
    assert await analyses.claim(incident.id, "t2", time.time(), time.time() + 600) is not None
