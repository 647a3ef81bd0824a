"""The offline analyst: a deterministic, clearly-labelled analysis built only from the evidence.

Used when no LLM is configured or the LLM fails. The ranked cause candidates (causes.py) ARE
the analysis: the top hypothesis names the best-ranked candidate, cites it and tells its
timeline; runners-up follow with why they rank lower; fix steps follow from the kind of cause.
When nothing stood out it says so, with low confidence and what was not looked at. It always
says it is a statistical ranking, not a model's reasoning. Its text is sanitised and scored by
`analyst.analyse` like a model's answer.
"""

from __future__ import annotations

import re
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


STATISTICAL = "statistical ranking of metric series, not a model's analysis"
_MEMORY = re.compile(r"memory|heap|resident|rss|alloc", re.IGNORECASE)
_DISK = re.compile(r"filesystem|disk|volume|inode", re.IGNORECASE)
_CPU = re.compile(r"cpu", re.IGNORECASE)


def _candidates(evidence: EvidenceBundle) -> list[tuple[EvidenceItem, dict[str, Any]]]:
    return [
        (item, item.data)
        for item in evidence.of_kind("candidate")
        if item.data is not None and item.data.get("onset") is not None
    ]


def _mapping(value: Any) -> dict[str, Any]:
    return value if isinstance(value, dict) else {}


def cause_kind(data: dict[str, Any]) -> str:
    """leak | deploy | restart | dependency | disk | surge | saturation | cpu | symptom | other"""
    role, metric = str(data.get("role", "")), str(data.get("metric", ""))
    direction = str(data.get("direction", ""))
    labels = _mapping(data.get("labels"))
    if role == "change":
        return "deploy"
    if role == "restart":
        return "restart"
    if role == "dependency":
        return "dependency"
    if role == "load":
        return "surge"
    if role == "symptom":
        return "symptom"
    if _DISK.search(metric):
        return "disk"
    if _MEMORY.search(metric) and (direction == "up" or "avail" not in metric.lower()):
        return "leak"
    if _CPU.search(metric):
        return "cpu" if labels.get("mode") not in ("iowait",) else "disk"
    if role == "saturation":
        return "saturation"
    return "other"


def _where(data: dict[str, Any]) -> str:
    labels = _mapping(data.get("labels"))
    return str(labels.get("instance") or labels.get("job") or "the affected service")


def _dependency(data: dict[str, Any]) -> str:
    labels = _mapping(data.get("labels"))
    for key in ("upstream", "peer", "target", "backend", "destination", "db", "service"):
        if labels.get(key):
            return str(labels[key])
    return str(labels.get("job") or "the dependency")


def _fix_for(kind: str, data: dict[str, Any]) -> list[str]:
    where, metric = _where(data), str(data.get("metric", "the series"))
    change = _mapping(data.get("change"))
    changed = "; ".join(f"{k} {v}" for k, v in sorted(change.items()))
    steps = {
        "deploy": [
            f"Roll back {where} to the previous version ({changed or metric}).",
            "Compare the change's diff and release notes with the symptoms before re-deploying.",
        ],
        "leak": [
            f"Restart {where} now to regain headroom (memory grows until it hits its limit).",
            f"Take a heap profile of {where} before or right after restarting.",
            "If the growth began with a version change, roll back to the previous version.",
        ],
        "restart": [
            f"Find why {where} restarted: its logs just before, OOM kills, exit code.",
            "Check whether restarts repeat (crash loop) and what changed before the first one.",
        ],
        "dependency": [
            f"Check the dependency {_dependency(data)}, not this service: its latency, errors "
            "and its own alerts.",
            "Consider failing fast or shedding calls to it (timeouts, circuit breaker) meanwhile.",
        ],
        "disk": [
            f"Find the writer filling the disk on {where} (du -x, recent large files, logs).",
            "Free space (rotate or delete logs, old data) before the filesystem is full.",
        ],
        "surge": [
            "Scale out the service; rate-limit the heaviest clients.",
            "Find where the extra traffic comes from (a client, a retry storm, a campaign).",
        ],
        "saturation": [
            f"See what holds {metric} on {where} (slow queries, long requests) before raising "
            "its limit.",
        ],
        "cpu": [
            f"Find the busy process on {where} (top, pidstat); a noisy neighbour if it is steal.",
        ],
    }
    return steps.get(kind, [f"Look at {metric} on {where} around the time it moved."])


_PLAIN = {
    "deploy": "a new version was rolled out",
    "leak": "memory use kept growing",
    "restart": "the program restarted",
    "dependency": "a service it depends on slowed down or failed",
    "disk": "the disk filled up or slowed down",
    "surge": "traffic rose sharply",
    "saturation": "a shared resource (pool or queue) ran full",
    "cpu": "the machine ran short of CPU",
}


def _first_sentence(item: EvidenceItem) -> str:
    return _first_line(item.text, 400).rstrip(".")


def _ranked_hypotheses(
    ranked: list[tuple[EvidenceItem, dict[str, Any]]], alert: str
) -> tuple[list[Hypothesis], float]:
    """The top candidate as the cause, then up to three runners-up; and the confidence."""
    top_item, top = ranked[0]
    score = float(top.get("score") or 0.0)
    second = float(ranked[1][1].get("score") or 0.0) if len(ranked) > 1 else 0.0
    margin = (score - second) / score if score > 0 else 0.0
    # a statistical ranking is never certain: 0.35 when a close runner-up exists, up to 0.75
    confidence = round(min(0.75, 0.35 + 0.4 * margin + (0.1 if top.get("strong") else 0.0)), 2)
    hypotheses = [
        Hypothesis(
            claim=f"Most likely cause: {_first_sentence(top_item)}; {alert}.",
            evidence_ids=[top_item.id],
            confidence=confidence,
        )
    ]
    seen = {(top.get("metric"), top.get("role"))}
    for item, data in ranked[1:]:
        key = (data.get("metric"), data.get("role"))
        if key in seen:
            continue
        seen.add(key)
        why = [str(w) for w in data.get("why") or []]
        lower = f"ranks lower (score {float(data.get('score') or 0):.2f} vs {score:.2f})"
        if why:
            lower += ": " + "; ".join(why[:2])
        hypotheses.append(
            Hypothesis(
                claim=f"Less likely: {_first_sentence(item)}; {lower}.",
                evidence_ids=[item.id],
                confidence=round(confidence * min(1.0, float(data.get("score") or 0) / score), 2)
                if score > 0
                else 0.1,
            )
        )
        if len(hypotheses) >= 4:
            break
    return hypotheses, confidence


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

    ranked = _candidates(evidence)
    strong = [(item, data) for item, data in ranked if data.get("strong")]
    timelines = evidence.of_kind("timeline")
    primary = alerts[0][1] if alerts else {}
    fired = str(primary.get("alertname") or what)
    started = str(primary.get("starts_at") or incident.started_at.isoformat())
    alert = f"{fired} fired at {started[11:19] or started} UTC"
    kind = cause_kind(strong[0][1]) if strong else ""

    if strong:
        top_item, top = strong[0]
        summary = (
            f"{OFFLINE_LABEL} {incident.title}: likely cause: {_first_sentence(top_item)} "
            f"({top_item.id}). " + " ".join(facts[:2])
        )
        others = [
            f"{i.id} {_first_line(i.title, 120)}" for i, _ in ranked[1:4] if i is not top_item
        ]
        cause = (
            f"Statistical analysis ({STATISTICAL}; {reason}): {_first_sentence(top_item)}; "
            f"{alert}. It ranks first of the cause candidates by timing (before the alert), "
            "size against its own noise, scope and kind of change"
            + (f"; runners-up: {'; '.join(others)}" if others else "")
            + ". "
            + " ".join(facts)
        )
    else:
        summary = f"{OFFLINE_LABEL} {incident.title}: " + " ".join(facts[:3])
        looked = (
            "no metric series left its normal strongly before the alert"
            if timelines
            else "no metric history was searched for a cause"
        )
        cause = (
            f"No model analysis is available ({reason}) and {looked}, so no root cause is "
            "named; this restates the evidence. " + " ".join(facts)
        )

    fix: list[str] = _fix_for(kind, strong[0][1]) if strong else []
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
    confidence = 0.3 if detectors or siblings else 0.2
    if strong:
        hypotheses, confidence = _ranked_hypotheses(
            strong + [r for r in ranked if r not in strong], alert
        )
    elif timelines:
        hypotheses.append(
            Hypothesis(
                claim=(
                    "No cause stood out: none of the series searched left its normal strongly "
                    "before the alert; the cause is likely outside what was looked at."
                ),
                evidence_ids=[timelines[0].id] + [i.id for i, _ in ranked[:2]],
                confidence=0.15,
            )
        )
        confidence = 0.15
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

    unknowns = (
        [f"This is a {STATISTICAL} ({reason}); check the cited series before acting."]
        if strong
        else [f"Root cause not determined: {reason}."]
    )
    for item in timelines[:1]:
        unknowns.extend(line + "." for line in item.text.splitlines() if "not looked at" in line)
    unknowns.extend(f"{_first_line(note.title)}." for note in notes[:3])
    if not siblings:
        unknowns.append("No related series were gathered.")
    if evidence.omitted:
        unknowns.append(f"{evidence.omitted} evidence item(s) were left out for size.")

    affected = f" Affected: {_join(instances, 3)}." if instances else ""
    if strong:
        top = strong[0][1]
        plain = _PLAIN.get(kind, f"{top.get('metric', 'a measurement')} changed")
        simplified = (
            f"Monitoring reports a problem: {incident.title}.{affected} The most likely reason: "
            f"{plain} on {_where(top)} shortly before. This is an automatic statistical "
            "estimate, not a diagnosis."
        )
    else:
        simplified = (
            f"Monitoring reports a problem: {incident.title}.{affected} "
            "No clear cause was found automatically; this summarises the signals."
        )
    return Analysis(
        summary=summary,
        cause=cause,
        fix=fix,
        simplified=simplified,
        confidence=confidence,
        hypotheses=hypotheses,
        unknowns=unknowns,
        provider="offline",
        model="",
        offline=True,
    )
