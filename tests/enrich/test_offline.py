"""The offline analyst: deterministic, labelled, built from the evidence, citing real ids."""

from __future__ import annotations

from receiver.domain import DetectorInfo
from receiver.enrich.evidence import evidence_from_incident
from receiver.enrich.offline import OFFLINE_LABEL, offline_analysis
from tests.enrich.factories import make_incident, make_signal


def test_offline_analysis_is_labelled_and_summarises_what_fired() -> None:
    """Summary names the alert, the instances and their values, prefixed by the label."""
    incident = make_incident(make_signal(), make_signal(instance="checkout-2:8080", value=2.7))
    analysis = offline_analysis(incident, evidence_from_incident(incident))
    assert analysis.offline is True
    assert analysis.provider == "offline"
    assert analysis.summary.startswith(f"{OFFLINE_LABEL} HighLatency on checkout: ")
    assert "2 of 2 alert(s) firing: HighLatency on checkout-1:8080, checkout-2:8080" in (
        analysis.summary
    )
    assert "checkout-1:8080=3.1" in analysis.summary
    assert "checkout-2:8080=2.7" in analysis.summary
    assert "no LLM configured" in analysis.cause
    assert analysis.simplified


def test_offline_fix_steps_come_from_the_runbook_and_annotations() -> None:
    """The runbook URL and remediation annotations become the first fix steps."""
    signal = make_signal(
        annotations={
            "runbook_url": "https://runbooks.example/HighLatency",
            "action": "Roll back the last checkout deploy.",
        }
    )
    incident = make_incident(signal)
    analysis = offline_analysis(incident, evidence_from_incident(incident))
    assert analysis.fix[0] == "Follow the runbook url: https://runbooks.example/HighLatency"
    assert analysis.fix[1] == "Roll back the last checkout deploy."
    assert any("histogram_quantile" in step for step in analysis.fix)


def test_offline_hypotheses_cite_only_real_evidence_of_every_kind() -> None:
    """Alert, group, detector, sibling and history evidence each back a cited hypothesis."""
    det = DetectorInfo(
        method="robust_mad", score=6.0, threshold=4.0, value=97, band_low=20, band_high=50
    )
    incident = make_incident(
        make_signal(detector=det), make_signal(instance="checkout-2:8080", detector=det)
    )
    bundle = evidence_from_incident(incident)
    sibling = bundle.add("sibling", "node_load1 on checkout-1", "rose from 1.2 to 9.8 at 18:40")
    past = bundle.add("history", "HighLatency 2026-11-20 (resolved in 14m)", "same group key")
    assert sibling is not None
    assert past is not None
    analysis = offline_analysis(incident, bundle)
    cited = {i for h in analysis.hypotheses for i in h.evidence_ids}
    assert cited <= bundle.ids
    assert {sibling.id, past.id, bundle.of_kind("detector")[0].id} <= cited
    assert "Detector robust_mad: value 97, score 6 vs threshold 4, normal band [20, 50]" in (
        analysis.cause
    )
    assert "node_load1 on checkout-1: rose from 1.2 to 9.8" in analysis.cause
    assert "HighLatency 2026-11-20" in analysis.cause
    assert not any("No related series" in u for u in analysis.unknowns)


def test_offline_analysis_is_deterministic() -> None:
    """Same incident and evidence, same analysis."""
    incident = make_incident(make_signal(), make_signal(instance="checkout-2:8080"))
    first = offline_analysis(incident, evidence_from_incident(incident), reason="r")
    second = offline_analysis(incident, evidence_from_incident(incident), reason="r")
    assert first == second


def test_offline_analysis_of_an_empty_incident_still_says_something() -> None:
    """No signals at all: the title and the missing evidence are reported."""
    incident = make_incident().model_copy(update={"signals": []})
    analysis = offline_analysis(incident, evidence_from_incident(incident))
    assert analysis.summary.startswith(OFFLINE_LABEL)
    assert "HighLatency" in analysis.summary
    assert analysis.fix
