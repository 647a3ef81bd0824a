"""The incident console's pages: the incident list (`/ui`), one incident
(`/ui/incidents/{id}`) and its evidence charts (`/ui/incidents/{id}/chart.png?n=0`).

Server-rendered with Jinja2 (autoescape on: labels, annotations and analyses are untrusted
text), styled by one same-origin stylesheet; the only script posts feedback. Charts are queried
live from Prometheus through the service's httpx client. Access is the API's: a read token when
API auth is on (`receiver.ui.gate` turns the console's login cookie into that header).
"""

from __future__ import annotations

import asyncio
import math
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any
from urllib.parse import urlencode

from starlette.requests import Request
from starlette.responses import HTMLResponse, Response
from starlette.routing import Route

from receiver.api.errors import STORE_RETRY_AFTER
from receiver.api.errors import store_error_handler as api_store_error_handler
from receiver.api.params import BadParam, choice, page, severity, status, text
from receiver.api.views import event_view
from receiver.domain import Source
from receiver.oncall.actions import STATE_FILTERS, state_of
from receiver.oncall.matchers import silence_link
from receiver.records import AnalysisRecord, EpisodeRecord, IncidentRecord, SnapshotRecord
from receiver.safety import mask_url, one_line, safe_url
from receiver.services import Services, services
from receiver.store.collections import Collections
from receiver.store.console import ConsoleStore
from receiver.store.detect import DetectStore
from receiver.store.filters import IncidentFilter
from receiver.store.oncall import OncallStore
from receiver.store.repo import StoreError
from receiver.timeutil import aware
from receiver.ui.evidence import (
    ChartData,
    ChartSpec,
    chart_png,
    chart_specs,
    chart_window,
    fetch_chart,
    fetch_charts,
    rules_for,
)
from receiver.ui.templating import CONSOLE_CSP, TEMPLATES

PAGE_SIZE = 50
SUMMARY_LIMIT = 180
PAGE_QUERY_TIMEOUT = 3.0  # the page waits this long for Prometheus, then shows no chart
CHART_QUERY_TIMEOUT = 5.0

SOURCES = frozenset(s.value for s in Source)
RECENT_SNAPSHOTS = 50  # the detector line reads each target's latest among these
PROBLEMS = {
    "unreachable": "Prometheus could not be reached: chart skipped.",
    "no data": "Prometheus has no data for this expression around the incident.",
    "query error": "Prometheus refused the query.",
}


# --- formatting ------------------------------------------------------------------------------


def when(value: datetime | None) -> str:
    return "" if value is None else aware(value).strftime("%Y-%m-%d %H:%M:%S")


def iso(value: datetime | None) -> str:
    return "" if value is None else aware(value).isoformat()


def duration(seconds: float) -> str:
    """`45 s`, `12 min`, `3 h 5 min`, `2 d 4 h`."""
    s = max(int(seconds), 0)
    if s < 60:
        return f"{s} s"
    if s < 3600:
        return f"{s // 60} min"
    if s < 86400:
        h, m = divmod(s // 60, 60)
        return f"{h} h {m} min" if m else f"{h} h"
    d, h = divmod(s // 3600, 24)
    return f"{d} d {h} h" if h else f"{d} d"


def _lasted(incident: IncidentRecord, now: datetime) -> str:
    end = aware(incident.resolved_at) if incident.resolved_at else now
    return duration((end - aware(incident.started_at)).total_seconds())


def _job(incident: IncidentRecord) -> str:
    return incident.group_labels.get("job") or incident.common_labels.get("job", "")


def _title(incident: IncidentRecord) -> str:
    """The stored title; for an outlier, the series and where (its alertname says little)."""
    metric = incident.group_labels.get("metric", "")
    if incident.source == "detector" and metric:
        where = incident.group_labels.get("instance") or _job(incident)
        return f"Outlier in {metric}" + (f" on {where}" if where else "")
    return incident.title or ", ".join(incident.alertnames) or incident.key


def _instances(incident: IncidentRecord) -> str:
    shown = incident.instances[:2]
    more = len(incident.instances) - len(shown)
    label = ", ".join(shown) or _job(incident)
    return f"{label} +{more}" if more > 0 else label


def _number(value: float | None) -> str:
    if value is None or not math.isfinite(value):
        return ""
    return f"{value:.4g}"


def _base(request: Request) -> str:
    return str(request.scope.get("root_path", "")).rstrip("/")


def _html(
    request: Request, template: str, context: dict[str, Any], status_code: int = 200
) -> HTMLResponse:
    settings = services(request).settings
    body = TEMPLATES.get_template(template).render(
        base=_base(request), auth_on=settings.api_auth_configured, **context
    )
    return HTMLResponse(
        body, status_code=status_code, headers={"Content-Security-Policy": CONSOLE_CSP}
    )


def _problem(request: Request, status_code: int, message: str) -> HTMLResponse:
    context = {"rows": [], "total": 0, "filters": {}, "error": message, "offset": 0}
    return _html(request, "incidents.html", context, status_code)


# --- the list --------------------------------------------------------------------------------


def _row(incident: IncidentRecord, rca: AnalysisRecord | None, now: datetime) -> dict[str, Any]:
    return {
        "id": str(incident.id),
        "severity": incident.severity,
        "status": incident.status,
        "source": incident.source,
        "started": when(incident.started_at),
        "started_iso": iso(incident.started_at),
        "duration": _lasted(incident, now),
        "instance": _instances(incident),
        "title": _title(incident),
        "summary": one_line(rca.summary, SUMMARY_LIMIT) if rca is not None else "",
        "pending": "analysis pending…" if incident.needs_analysis else "",
        "state": state_of(incident).value,
        "holder": incident.acked_by,
        "assignee": incident.assignee,
    }


async def incident_list(request: Request) -> Response:
    try:
        p = page(request, default=PAGE_SIZE)
        shown: dict[str, str] = {}
        if (st := status(request)) is not None:
            shown["status"] = st
        if (sev := severity(request)) is not None:
            shown["severity"] = sev
        if (source := text(request, "source", 40)) is not None:
            if source not in SOURCES:
                raise BadParam("source", f"one of {', '.join(sorted(SOURCES))}")
            shown["source"] = source
        if (state := choice(request, "state", set(STATE_FILTERS))) is not None:
            shown["state"] = state
        filters = IncidentFilter(status=st, severity=sev, source=source, state=state)
    except BadParam as err:
        return _problem(request, 400, f"Bad filter: {err}")
    svc = services(request)
    incidents, total = await svc.store.list_incidents(filters, p.offset, p.limit)
    console = ConsoleStore(svc.store)
    analyses = await console.analyses_for(incidents)
    quarantined = await Collections(svc.store).quarantined()
    now = datetime.now(UTC)
    base = f"{_base(request)}/ui"
    try:
        recent, _ = await DetectStore(svc.store).snapshots(None, 0, RECENT_SNAPSHOTS)
    except StoreError:
        recent = []  # the incident list matters more than the detector line

    def link(offset: int) -> str:
        query = {**shown, **({"offset": str(offset)} if offset else {})}
        if p.limit != PAGE_SIZE:
            query["limit"] = str(p.limit)
        return f"{base}?{urlencode(query)}" if query else base

    nxt = p.offset + len(incidents)
    context = {
        "rows": [_row(i, analyses.get(str(i.id)), now) for i in incidents],
        "quarantined": {k: v for k, v in quarantined.items() if v},
        "sources": sorted(SOURCES),
        "detector": _detector_view(recent),
        "total": total,
        "offset": p.offset,
        "filters": shown,
        "error": "",
        "prev_url": link(max(p.offset - p.limit, 0)) if p.offset > 0 else "",
        "next_url": link(nxt) if nxt < total else "",
        "refresh_url": link(p.offset) + ("&" if "?" in link(p.offset) else "?") + "fragment=rows",
    }
    if request.query_params.get("fragment") == "rows":
        # the list page refreshes its rows with this every few seconds (console.js)
        return _html(request, "incident_rows.html", context)
    return _html(request, "incidents.html", context)


def _detector_view(snapshots: Sequence[SnapshotRecord]) -> list[dict[str, Any]]:
    """Per polled target, its latest cycle: series scored, seasonal, and warming up (a series
    younger than DETECT_MIN_HISTORY, judged by the stricter warm-up method) with their names."""
    latest: dict[str, SnapshotRecord] = {}
    for snap in snapshots:  # newest first
        latest.setdefault(snap.target, snap)
    return [
        {
            "target": s.target,
            "series": s.series,
            "seasonal": s.seasonal,
            "warming": s.warming,
            "warming_series": s.warming_series,
            "more": max(s.warming - len(s.warming_series), 0),
        }
        for s in sorted(latest.values(), key=lambda s: s.target)
    ]


# --- one incident ----------------------------------------------------------------------------


def _analysis_view(rca: AnalysisRecord) -> dict[str, Any]:
    hypotheses = []
    for h in rca.hypotheses:
        confidence = h.get("confidence")
        hypotheses.append(
            {
                "claim": str(h.get("claim", "")),
                "evidence_ids": [str(e) for e in h.get("evidence_ids", []) if isinstance(e, str)],
                "confidence": f"{confidence:.0%}" if isinstance(confidence, int | float) else "",
            }
        )
    if rca.offline:
        made_by = "Offline analysis (no LLM answered): a summary of the evidence."
    else:
        made_by = f"Analysis by {rca.provider} {rca.model}, confidence {rca.confidence:.0%}."
    made_by += f" Written {when(rca.created_at)} UTC."
    return {
        "id": str(rca.id),
        "summary": rca.summary,
        "cause": rca.cause,
        "fix": list(rca.fix),
        "simplified": rca.simplified,
        "hypotheses": hypotheses,
        "evidence": [
            {
                "id": str(e.get("id", "")),
                "kind": str(e.get("kind", "")),
                "title": str(e.get("title", "")),
                "text": str(e.get("text", "")),
            }
            for e in rca.evidence
        ],
        "made_by": made_by,
    }


def _episode_view(e: EpisodeRecord) -> dict[str, Any]:
    summary = e.annotations.get("summary") or e.annotations.get("description") or e.reason
    return {
        "alertname": e.alertname or e.metric,
        "status": e.status,
        "severity": e.severity,
        "instance": e.instance,
        "started": when(e.starts_at),
        "ended": when(e.ends_at),
        "value": _number(e.value),
        "summary": one_line(summary, 300),
        "link": safe_url(e.generator_url),
        "runbook": safe_url(e.annotations.get("runbook_url", "")),
        "dashboard": safe_url(e.links.get("dashboard") or e.links.get("panel", "")),
        "silence": safe_url(e.links.get("silence", "")),
        "evaluated": ", ".join(f"{k}={_number(v)}" for k, v in sorted(e.values.items())),
    }


async def _load(
    svc: Services, incident_id: str
) -> tuple[IncidentRecord, Sequence[EpisodeRecord], AnalysisRecord | None, list[ChartSpec]] | None:
    incident = await svc.store.get_incident(incident_id)
    if incident is None:
        return None
    episodes = await svc.store.episodes_of(str(incident.id), 200)
    rca = await ConsoleStore(svc.store).analysis_of(incident)
    rules = rules_for(episodes, svc.settings.enrich_rules_dir)
    return incident, episodes, rca, chart_specs(incident, episodes, rca, rules)


def _chart_view(spec: ChartSpec, data: ChartData) -> dict[str, Any]:
    band = f"[{spec.band[0]:.4g}, {spec.band[1]:.4g}]" if spec.band else ""
    return {
        "title": spec.title,
        "expr": spec.expr,
        "threshold_text": spec.threshold_text,
        "band": band,
        "evidence_id": spec.evidence_id,
        "has_data": bool(data.lines),
        "problem": PROBLEMS.get(data.problem, data.problem),
        "note": data.note,
    }


async def incident_page(request: Request) -> Response:
    svc = services(request)
    incident_id = request.path_params["incident_id"]
    loaded = await _load(svc, incident_id)
    if loaded is None:
        return _problem(request, 404, f"No incident {incident_id[:40]!r}.")
    incident, episodes, rca, specs = loaded
    console = ConsoleStore(svc.store)
    feedback = await console.feedback_counts(str(incident.id))
    similar = await console.similar(incident)
    history = await OncallStore(svc.store).events_of(str(incident.id))
    window = chart_window(incident)
    data = await fetch_charts(
        svc.http, svc.settings.prom_url, specs, window, query_timeout=PAGE_QUERY_TIMEOUT
    )
    note = ""
    if data and all(d.problem == "unreachable" for d in data):
        note = (
            f"Prometheus at {mask_url(svc.settings.prom_url)} could not be reached: charts skipped."
        )
    now = datetime.now(UTC)
    context = {
        "incident": {
            "id": str(incident.id),
            "title": _title(incident),
            "severity": incident.severity,
            "status": incident.status,
            "source": incident.source,
            "started": when(incident.started_at),
            "started_iso": iso(incident.started_at),
            "resolved": when(incident.resolved_at),
            "duration": _lasted(incident, now),
            "alertnames": incident.alertnames,
            "instances": incident.instances or ([_job(incident)] if _job(incident) else []),
            "episode_count": incident.episode_count,
            "firing_count": incident.firing_count,
            "needs_analysis": incident.needs_analysis,
            "state": state_of(incident).value,
            "acked_by": incident.acked_by,
            "assignee": incident.assignee,
            "closed_by": incident.closed_by,
            "silence_id": incident.silence_id,
            "silenceable": incident.source == "alertmanager" and bool(incident.group_labels),
            "silence_link": safe_url(silence_link(incident.external_url, incident.group_labels)),
        },
        "history": [event_view(e) for e in history],
        "analysis": _analysis_view(rca) if rca is not None else None,
        "feedback": feedback,
        "charts": [_chart_view(s, d) for s, d in zip(specs, data, strict=True)],
        "charts_note": note,
        "episodes": [_episode_view(e) for e in episodes],
        "similar": [
            {
                "id": str(i.id),
                "title": _title(i),
                "status": i.status,
                "started": when(i.started_at),
                "duration": _lasted(i, now),
                "summary": one_line(r.summary, SUMMARY_LIMIT) if r is not None else "",
            }
            for i, r in similar
        ],
    }
    return _html(request, "incident.html", context)


async def incident_chart(request: Request) -> Response:
    """One evidence chart as PNG: `n` indexes the incident page's charts."""
    svc = services(request)
    raw = request.query_params.get("n", "0")
    if not raw.isdigit() or int(raw) > 100:
        return Response("n: a chart number", status_code=400, media_type="text/plain")
    loaded = await _load(svc, request.path_params["incident_id"])
    if loaded is None:
        return Response("no such incident", status_code=404, media_type="text/plain")
    incident, _, _, specs = loaded
    n = int(raw)
    if n >= len(specs):
        return Response("no such chart", status_code=404, media_type="text/plain")
    window = chart_window(incident)
    data = await fetch_chart(
        svc.http, svc.settings.prom_url, specs[n], window, query_timeout=CHART_QUERY_TIMEOUT
    )
    png = await asyncio.to_thread(chart_png, specs[n], data, window)
    return Response(png, media_type="image/png", headers={"Cache-Control": "private, max-age=15"})


ROUTES: list[Route] = [
    Route("/ui", incident_list, methods=["GET"]),
    Route("/ui/incidents/{incident_id}", incident_page, methods=["GET"]),
    Route("/ui/incidents/{incident_id}/chart.png", incident_chart, methods=["GET"]),
]
_PAGES = frozenset(route.endpoint for route in ROUTES)


async def store_error_handler(request: Request, exc: Exception) -> Response:
    """The web layer's one StoreError handler: 503 + Retry-After, as a page on the console's
    routes and as the API's JSON error everywhere else."""
    if request.scope.get("endpoint") not in _PAGES:
        return await api_store_error_handler(request, exc)
    response = _problem(request, 503, f"Store unavailable: {exc}")
    response.headers["Retry-After"] = STORE_RETRY_AFTER
    return response
