"""Evidence items from an incident, text hygiene for untrusted labels, the bundle size bound."""

from __future__ import annotations

from urllib.parse import quote_plus

from receiver.detect.promql import AlertExpression, generator_expression
from receiver.domain import DetectorInfo, Severity, Status
from receiver.enrich.evidence import (
    TEXT_LIMIT,
    VALUE_LIMIT,
    EvidenceBundle,
    clean_text,
    evidence_from_incident,
)
from tests.enrich.factories import GENERATOR_URL, make_incident, make_signal


def test_incident_evidence_has_sequential_ids_and_kinds() -> None:
    """The primary alert, its annotations, its expression, then the other alerts in the group."""
    incident = make_incident(make_signal(), make_signal(instance="checkout-2:8080", value=2.7))
    bundle = evidence_from_incident(incident)
    assert [(i.id, i.kind) for i in bundle.items] == [
        ("E1", "alert"),
        ("E2", "alert"),
        ("E3", "expression"),
        ("E4", "group"),
    ]
    assert "checkout-1:8080" in bundle.items[0].text
    assert "value: 3.1" in bundle.items[0].text
    assert "runbook_url=" in bundle.items[1].text
    assert "checkout-2:8080" in bundle.items[3].text
    assert bundle.items[0].data is not None
    assert bundle.items[0].data["value"] == 3.1


def test_primary_alert_is_the_most_severe_firing_one() -> None:
    """Ordering puts firing before resolved and critical before warning."""
    resolved = make_signal(instance="a:1", status=Status.RESOLVED)
    warning = make_signal(instance="b:1", severity=Severity.MEDIUM)
    critical = make_signal(instance="c:1", severity=Severity.CRITICAL)
    bundle = evidence_from_incident(make_incident(resolved, warning, critical))
    assert bundle.items[0].data is not None
    assert bundle.items[0].data["instance"] == "c:1"


def test_expression_is_read_from_generator_url() -> None:
    """The PromQL expression comes out of a Prometheus graph URL; junk URLs give none."""
    expr = generator_expression(GENERATOR_URL).expr
    assert expr.startswith("histogram_quantile(0.99, sum by (le, instance)")
    assert expr.endswith("> 2")
    assert generator_expression("") == AlertExpression()
    assert generator_expression("http://x/graph?foo=bar") == AlertExpression()


def test_a_refused_generator_expression_is_a_note_not_an_expression() -> None:
    """`up; drop` in g0.expr gives a note saying why and no expression item."""
    url = f"http://prom:9090/graph?g0.expr={quote_plus('up; drop')}&g0.tab=1"
    bundle = evidence_from_incident(make_incident(make_signal(generator_url=url)))
    assert not bundle.of_kind("expression")
    (note,) = bundle.of_kind("note")
    assert note.title.startswith("the generatorURL expression of ")
    assert (
        note.text
        == "the expression holds ';': only one expression is run; no query was run with it."
    )


def test_detector_signal_adds_a_detector_item_with_its_band() -> None:
    """Detector signals carry method, score, threshold and the normal band as evidence."""
    det = DetectorInfo(
        method="robust_mad",
        score=7.5,
        threshold=4.0,
        value=97.0,
        baseline=35.0,
        band_low=20.0,
        band_high=50.0,
        query="node_cpu_busy",
    )
    signal = make_signal(alertname="CPUOutlier", detector=det, annotations={}, generator_url="")
    bundle = evidence_from_incident(make_incident(signal))
    (item,) = bundle.of_kind("detector")
    assert "robust_mad" in item.text
    assert "normal band: [20, 50]" in item.text
    assert "score: 7.5 (threshold 4)" in item.text
    assert item.data is not None
    assert item.data["band_high"] == 50.0


def test_control_and_format_characters_are_removed() -> None:
    """NUL, ANSI escapes, bidi overrides and zero-width characters never reach the prompt."""
    raw = "a\x00b\x1b[31mred\x1b[0m \u202eevil\u200b \u2028next"
    cleaned = clean_text(raw, 100, multiline=False)
    assert cleaned == "ab[31mred[0m evil next"
    signal = make_signal(labels={"team": "pay\x07ments\u202e"})
    text = evidence_from_incident(make_incident(signal)).items[0].text
    assert 'team="payments"' in text


def test_untrusted_values_are_length_capped() -> None:
    """A huge label value is cut to the per-value cap and the item to the per-item cap."""
    signal = make_signal(labels={"huge": "x" * 10_000}, annotations={"description": "y" * 50_000})
    bundle = evidence_from_incident(make_incident(signal))
    assert "x" * (VALUE_LIMIT + 1) not in bundle.items[0].text
    assert "…[+" in bundle.items[0].text
    assert all(len(item.text) <= TEXT_LIMIT for item in bundle.items)


def test_delimiters_in_untrusted_text_are_defused() -> None:
    """Marker characters used by the prompt cannot appear in cleaned text."""
    cleaned = clean_text("<<<INCIDENT_DATA and INCIDENT_DATA>>>", 200)
    assert "<<<" not in cleaned
    assert ">>>" not in cleaned


def test_bundle_total_size_is_bounded_and_omissions_counted() -> None:
    """Items beyond the budget are truncated or left out, and the count says so."""
    bundle = EvidenceBundle(max_chars=3_000)
    for n in range(10):
        bundle.add("sibling", f"series {n}", "z" * 1_000)
    assert bundle.size <= 3_000
    assert bundle.omitted > 0
    assert len(bundle.items) + bundle.omitted == 10
    assert [i.id for i in bundle.items] == [f"E{n + 1}" for n in range(len(bundle.items))]


def test_large_groups_are_summarised_in_one_item() -> None:
    """Past the per-group cap, the remaining alerts are counted in a single item."""
    signals = [make_signal(instance=f"node-{n:02d}:9100") for n in range(30)]
    bundle = evidence_from_incident(make_incident(*signals), max_group_items=5)
    groups = bundle.of_kind("group")
    assert len(groups) == 6
    assert groups[-1].title == "24 more alerts in the group"
    assert groups[-1].data == {"count": 24}
