"""Analysis API: the seed's GET /rca, an incident's current analysis with the evidence it cites,
re-analysis on request, and feedback on an analysis.
"""

from __future__ import annotations

import json
from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from receiver.api.body import BodyTooLarge, read_limited, too_large
from receiver.api.errors import error
from receiver.api.params import BadParam, page, severity, since, text
from receiver.enrich.evidence import clean_text
from receiver.records import AnalysisRecord, FeedbackRecord, IncidentRecord
from receiver.services import services
from receiver.store.filters import AnalysisFilter
from receiver.store.rca import AnalysisStore
from receiver.timeutil import iso_or_none

MAX_FEEDBACK_BODY = 16 * 1024


def rca_view(rca: AnalysisRecord) -> dict[str, Any]:
    """The seed's fields first (summary, cause, fix, simplified), then how it was made."""
    # rows stored before these fields existed: the model's and the evidence's time
    seconds = rca.processing_seconds or (rca.latency_ms / 1000 + rca.evidence_seconds)
    return {
        "id": str(rca.id),
        "incident_id": rca.incident_id,
        "anomaly_id": rca.anomaly_id or None,
        "metric": rca.metric or rca.alertname,
        "processing_time": round(seconds, 3),
        "alertname": rca.alertname,
        "instance": rca.instance,
        "severity": rca.severity,
        "summary": rca.summary,
        "cause": rca.cause,
        "fix": rca.fix,
        "simplified": rca.simplified,
        "confidence": rca.confidence,
        "hypotheses": rca.hypotheses,
        "unknowns": rca.unknowns,
        "quality": rca.quality,
        "offline": rca.offline,
        "provider": rca.provider,
        "model": rca.model,
        "prompt_version": rca.prompt_version,
        "tokens_in": rca.tokens_in,
        "tokens_out": rca.tokens_out,
        "latency_ms": rca.latency_ms,
        "cost_estimate": rca.cost_estimate,
        "dropped_hypotheses": rca.dropped_hypotheses,
        "evidence_queries": rca.evidence_queries,
        "evidence_seconds": rca.evidence_seconds,
        "trace_id": rca.trace_id or None,
        "timestamp": iso_or_none(rca.created_at),
        "created_at": iso_or_none(rca.created_at),
    }


def _evidence_item(raw: dict[str, Any]) -> dict[str, Any]:
    return {k: raw.get(k) for k in ("id", "kind", "title", "text", "data")}


def analysis_detail(rca: AnalysisRecord, incident: IncidentRecord) -> dict[str, Any]:
    """The analysis with every evidence item and, per hypothesis, the items it cites."""
    evidence = [_evidence_item(e) for e in rca.evidence]
    by_id = {e["id"]: e for e in evidence}
    hypotheses = [
        {**h, "evidence": [by_id[i] for i in h.get("evidence_ids", []) if i in by_id]}
        for h in rca.hypotheses
    ]
    return {
        **rca_view(rca),
        "hypotheses": hypotheses,
        "evidence": evidence,
        "current": incident.analysis_id == str(rca.id),
        "needs_analysis": incident.needs_analysis,
    }


async def list_rca(request: Request) -> Response:
    """The seed's shape: {"rca": [...], "count": n, "total": N}, newest first."""
    try:
        p = page(request)
        filters = AnalysisFilter(
            severity=severity(request),
            since=since(request),
            incident_id=text(request, "incident_id", 64),
            alertname=text(request, "alertname"),
        )
    except BadParam as err:
        return error(400, "bad_parameter", str(err))
    items, total = await AnalysisStore(services(request).store).list_rca(filters, p.offset, p.limit)
    return JSONResponse({"rca": [rca_view(r) for r in items], "count": len(items), "total": total})


async def get_analysis(request: Request) -> Response:
    """GET /api/v1/incidents/{id}/analysis: the current analysis with its cited evidence."""
    svc = services(request)
    analyses = AnalysisStore(svc.store)
    incident_id = request.path_params["incident_id"]
    incident = await svc.store.get_incident(incident_id)
    if incident is None:
        return error(404, "not_found", f"no incident {incident_id[:40]!r}")
    rca = await analyses.get(incident.analysis_id) if incident.analysis_id else None
    if rca is None:
        rca = await analyses.latest(str(incident.id))
    if rca is None:
        return error(
            404,
            "not_analysed",
            "no analysis stored yet",
            needs_analysis=incident.needs_analysis,
        )
    return JSONResponse(analysis_detail(rca, incident))


async def reanalyse(request: Request) -> Response:
    """POST /api/v1/incidents/{id}/reanalyse (also /analyze): analyse it again."""
    svc = services(request)
    incident_id = request.path_params["incident_id"]
    incident = await AnalysisStore(svc.store).request(incident_id)
    if incident is None:
        return error(404, "not_found", f"no incident {incident_id[:40]!r}")
    svc.enrichment.wake()
    return JSONResponse({"status": "queued", "incident_id": str(incident.id)}, status_code=202)


def _feedback(body: Any) -> FeedbackRecord | str:
    if not isinstance(body, dict):
        return "the body must be a JSON object"
    helpful = body.get("helpful")
    if helpful is not None and not isinstance(helpful, bool):
        return "helpful: must be true, false or null"
    fields: dict[str, str] = {}
    for name in ("actual_cause", "comment"):
        value = body.get(name, "")
        if not isinstance(value, str):
            return f"{name}: must be a string"
        fields[name] = clean_text(value, 2_000)
    if helpful is None and not any(fields.values()):
        return "give at least one of helpful, actual_cause, comment"
    return FeedbackRecord(incident_id="", helpful=helpful, **fields)


async def post_feedback(request: Request) -> Response:
    """POST /api/v1/incidents/{id}/feedback: {helpful, actual_cause, comment} on the analysis."""
    svc = services(request)
    incident_id = request.path_params["incident_id"]
    try:
        raw = await read_limited(request, MAX_FEEDBACK_BODY)
    except BodyTooLarge as err:
        return too_large(err)
    try:
        body = json.loads(raw or b"null")
    except ValueError:
        return error(400, "bad_json", "the body is not JSON")
    feedback = _feedback(body)
    if isinstance(feedback, str):
        return error(422, "invalid_feedback", feedback)
    incident = await svc.store.get_incident(incident_id)
    if incident is None:
        return error(404, "not_found", f"no incident {incident_id[:40]!r}")
    feedback.incident_id = str(incident.id)
    feedback.rca_id = incident.analysis_id
    await AnalysisStore(svc.store).add_feedback(feedback)
    return JSONResponse(
        {"status": "stored", "id": str(feedback.id), "rca_id": feedback.rca_id or None},
        status_code=201,
    )


ROUTES: list[Route] = [
    Route("/rca", list_rca, methods=["GET"]),
    Route("/api/v1/rca", list_rca, methods=["GET"]),
    Route("/api/v1/incidents/{incident_id}/analysis", get_analysis, methods=["GET"]),
    Route("/api/v1/incidents/{incident_id}/reanalyse", reanalyse, methods=["POST"]),
    Route("/api/v1/incidents/{incident_id}/analyze", reanalyse, methods=["POST"]),
    Route("/api/v1/incidents/{incident_id}/feedback", post_feedback, methods=["POST"]),
]
