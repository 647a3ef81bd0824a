"""The offline analyst: a deterministic, clearly-labelled analysis built only from the evidence.

Used when no LLM is configured or the LLM fails, so every notification still says what fired,
where, with which values, what the detector and related series showed, and what to do first.
Its text is sanitised and scored by `analyst.analyse` like a model's answer.
"""

from __future__ import annotations

from typing import Any

from receiver.domain import Analysis, Hypothesis, IncidentView
from receiver.enrich.evidence import EvidenceBundle, EvidenceItem

OFFLINE_LABEL = "[offline analysis]"

_FIX_ANNOTATIONS = ("action", "remediation", "fix", "mitigation", "playbook", "resolution")
_RUNBOOK_ANNOTATIONS = ("runbook_url", "runbook", "playbook_url", "dashboard", "dashboard_url")


def _fmt(value: Any) -> str:
    return f"{value:g}" if isinstance(value, int | float) else "?"


def _first_line(text: str, limit: int = 160) -> str:
    line = text.strip().splitlines()[0] if text.strip() else ""
    return line if len(line) <= limit else line[: limit - 1] + "…"


def _join(names: list[str], limit: int = 5) -> str:
    shown = ", ".join(names[:limit])
    return shown + (f" and {len(names) - limit} more" if len(names) > limit else "")


def _alerts(evidence: EvidenceBundle) -> list[tuple[EvidenceItem, dict[str, Any]]]:
    """Alert and group items that describe one signal (they carry `alertname` in data)."""
    return [
        (item, item.data)
        for item in evidence.of_kind("alert", "group")
        if item.data is not None and "alertname" in item.data
    ]


def _annotations(evidence: EvidenceBundle) -> tuple[EvidenceItem | None, dict[str, str]]:
    for item in evidence.of_kind("alert"):
        if item.data is not None and isinstance(item.data.get("annotations"), dict):
            return item, {str(k): str(v) for k, v in item.data["annotations"].items()}
    return None, {}


def offline_analysis(
    incident: IncidentView, evidence: EvidenceBundle, *, reason: str = "no LLM configured"
) -> Analysis:
    """Summarise the evidence without a model; every hypothesis cites real evidence ids."""
    alerts = _alerts(evidence)
    annotation_item, annotations = _annotations(evidence)
    expressions = evidence.of_kind("expression")
    detectors = evidence.of_kind("detector")
    siblings = evidence.of_kind("sibling")
    history = evidence.of_kind("history")
    # the alert's expression evaluated around its start (context.py): what moved, when, how much
    ranges = [e for e in expressions if e.data is not None and e.data.get("series")]
    notes = evidence.of_kind("note")

    firing = [data for _, data in alerts if data.get("status") == "firing"]
    names = sorted({str(d["alertname"]) for _, d in alerts if d.get("alertname")})
    names = names or incident.alertnames
    instances = sorted({str(d["instance"]) for _, d in alerts if d.get("instance")})
    instances = instances or incident.instances
    values = [
        f"{d.get('instance') or d.get('alertname')}={_fmt(d['value'])}"
        for _, d in alerts
        if d.get("value") is not None
    ]

    facts: list[str] = []
    what = _join(names) or incident.title
    where = f" on {_join(instances)}" if instances else ""
    if alerts:
        facts.append(f"{len(firing)} of {len(alerts)} alert(s) firing: {what}{where}.")
    else:
        facts.append(f"No alert details were available for {what}{where}.")
    for item in ranges[:1]:
        lines = item.text.splitlines()
        moved = lines[1] if len(lines) > 1 and lines[0].endswith(":") else lines[0]
        expr = str((item.data or {}).get("expr") or "the alert expression")
        facts.append(f"{_first_line(expr, 120)}: {_first_line(moved, 300)}.")
    if values:
        facts.append(f"Values: {_join(values, 8)}.")
    if annotations.get("summary"):
        facts.append(f"Alert summary: {_first_line(annotations['summary'])}.")
    for item in detectors[:3]:
        data = item.data or {}
        band = ""
        if data.get("band_low") is not None or data.get("band_high") is not None:
            band = f", normal band [{_fmt(data.get('band_low'))}, {_fmt(data.get('band_high'))}]"
        facts.append(
            f"Detector {data.get('method', '?')}: value {_fmt(data.get('value'))}, "
            f"score {_fmt(data.get('score'))} vs threshold {_fmt(data.get('threshold'))}{band}."
        )
    if siblings:
        facts.append(
            "Related series: "
            + "; ".join(f"{s.title}: {_first_line(s.text, 100)}" for s in siblings[:4])
            + "."
        )
    if history:
        facts.append("Similar past incidents: " + "; ".join(h.title for h in history[:3]) + ".")

    summary = f"{OFFLINE_LABEL} {incident.title}: " + " ".join(facts[:3])
    cause = (
        f"No model analysis is available ({reason}); this restates the evidence without "
        "inferring a root cause. " + " ".join(facts)
    )

    fix: list[str] = []
    for key in _RUNBOOK_ANNOTATIONS:
        if annotations.get(key):
            fix.append(f"Follow the {key.replace('_', ' ')}: {annotations[key]}")
    for key in _FIX_ANNOTATIONS:
        if annotations.get(key):
            fix.append(_first_line(annotations[key], 300))
    if expressions:
        fix.append(
            f"Graph the alert expression in Prometheus around {incident.started_at:%Y-%m-%d %H:%M}"
            f" UTC: {_first_line(expressions[0].text, 200)}"
        )
    if instances:
        fix.append(f"Check the affected instances: {_join(instances)}.")
    if siblings:
        fix.append("Compare with the related series listed in the evidence.")
    fix.append("If the condition persists or spreads, escalate to the owning team.")

    hypotheses: list[Hypothesis] = []
    alert_ids = [item.id for item, _ in alerts[:3]]
    if alert_ids:
        cited = alert_ids + [e.id for e in expressions[:2]]
        if annotation_item is not None:
            cited.append(annotation_item.id)
        cited.sort(key=lambda i: int(i[1:]) if i[1:].isdigit() else 0)
        hypotheses.append(
            Hypothesis(
                claim=f"The alert condition of {what} is met{where}.",
                evidence_ids=cited,
                confidence=0.6,
            )
        )
    if len(instances) > 1 and len(alert_ids) > 1:
        hypotheses.append(
            Hypothesis(
                claim=(
                    f"{len(instances)} instances alert together, which points to a shared "
                    "cause (a common dependency, deploy or load change) over a single host."
                ),
                evidence_ids=alert_ids,
                confidence=0.4,
            )
        )
    for item in detectors[:2]:
        data = item.data or {}
        hypotheses.append(
            Hypothesis(
                claim=(
                    f"The series value {_fmt(data.get('value'))} is outside its usual range "
                    f"({data.get('method', '?')} score {_fmt(data.get('score'))} against "
                    f"threshold {_fmt(data.get('threshold'))})."
                ),
                evidence_ids=[item.id],
                confidence=0.5,
            )
        )
    if siblings:
        hypotheses.append(
            Hypothesis(
                claim="Related series of the same instance or job moved at the same time.",
                evidence_ids=[s.id for s in siblings[:4]],
                confidence=0.3,
            )
        )
    if history:
        hypotheses.append(
            Hypothesis(
                claim="The same pattern happened before; its past resolution may apply.",
                evidence_ids=[h.id for h in history[:3]],
                confidence=0.3,
            )
        )

    unknowns = [f"Root cause not determined: {reason}."]
    unknowns.extend(f"{_first_line(note.title)}." for note in notes[:3])
    if not siblings:
        unknowns.append("No related series were gathered.")
    if evidence.omitted:
        unknowns.append(f"{evidence.omitted} evidence item(s) were left out for size.")

    affected = f" Affected: {_join(instances, 3)}." if instances else ""
    simplified = (
        f"Monitoring reports a problem: {incident.title}.{affected} "
        "This is an automatic summary of the signals, not a diagnosis."
    )
    return Analysis(
        summary=summary,
        cause=cause,
        fix=fix,
        simplified=simplified,
        confidence=0.3 if detectors or siblings else 0.2,
        hypotheses=hypotheses,
        unknowns=unknowns,
        provider="offline",
        model="",
        offline=True,
    )
