"""Read API: incidents with their episodes, and the seed's /anomalies."""

from __future__ import annotations

from dataclasses import replace
from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from receiver.api.errors import error
from receiver.api.incidents import find_page, list_options
from receiver.api.params import BadParam, episode_filter, incident_filter, page
from receiver.api.views import (
    RAW_ITEM_BYTES,
    delivery_view,
    episode_view,
    event_view,
    incident_view,
)
from receiver.services import services
from receiver.store.oncall import OncallStore

RAW_PAGE_LIMIT = 50  # deliveries per page when their bodies are included
RAW_PAGE_BYTES = 4 * 1024 * 1024  # of bodies in one `raw=1` answer


async def list_incidents(request: Request) -> Response:
    try:
        p = page(request)
        query = incident_filter(request)
        matchers, sort, state = list_options(request)
        query = replace(query, state=state)
    except BadParam as err:
        return error(400, "bad_parameter", str(err))
    if matchers or sort != "started":
        items, total = await find_page(request, query, matchers, sort, p.offset, p.limit)
    else:
        items, total = await services(request).store.list_incidents(query, p.offset, p.limit)
    nxt = p.offset + len(items)
    return JSONResponse(
        {
            "incidents": [incident_view(i) for i in items],
            "total": total,
            "limit": p.limit,
            "offset": p.offset,
            "next_offset": nxt if nxt < total else None,
        }
    )


async def get_incident(request: Request) -> Response:
    store = services(request).store
    incident_id = request.path_params["incident_id"]
    incident = await store.get_incident(incident_id)
    if incident is None:
        return error(404, "not_found", f"no incident {incident_id[:40]!r}")
    episodes = await store.episodes_of(str(incident.id))
    history = await OncallStore(store).events_of(str(incident.id))
    return JSONResponse(
        {
            **incident_view(incident),
            "episodes": [episode_view(a) for a in episodes],
            "notes": [event_view(e) for e in history if e.kind == "note"],
            "history": [event_view(e) for e in history],
        }
    )


async def list_anomalies(request: Request) -> Response:
    """The seed's shape: {"anomalies": [...], "count": n, "total": N}."""
    try:
        p = page(request)
        query = episode_filter(request)
    except BadParam as err:
        return error(400, "bad_parameter", str(err))
    items, total = await services(request).store.list_episodes(query, p.offset, p.limit)
    return JSONResponse(
        {"anomalies": [episode_view(a) for a in items], "count": len(items), "total": total}
    )


DELIVERY_STATES = ("pending", "processed", "failed")


async def list_deliveries(request: Request) -> Response:
    """Webhook deliveries as received, newest first; `raw=1` includes the payload;
    `status=failed` lists the quarantined ones (also `pending`, `processed`).

    With `raw=1` a page holds at most RAW_PAGE_LIMIT deliveries, each body is cut at
    RAW_ITEM_BYTES and the page stops before RAW_PAGE_BYTES of bodies (`next_offset` says
    where to go on); bodies are read one at a time, so an answer never holds more than that.
    """
    raw = request.query_params.get("raw", "") in {"1", "true", "yes"}
    state = request.query_params.get("status", "")
    if state and state not in DELIVERY_STATES:
        return error(400, "bad_parameter", f"status: must be one of {', '.join(DELIVERY_STATES)}")
    try:
        p = page(request, default=RAW_PAGE_LIMIT) if raw else page(request)
    except BadParam as err:
        return error(400, "bad_parameter", str(err))
    limit = min(p.limit, RAW_PAGE_LIMIT) if raw else p.limit
    store = services(request).store
    items, total = await store.list_deliveries(p.offset, limit, state)
    views: list[dict[str, Any]] = []
    body_bytes = 0
    for delivery in items:
        if not raw:
            views.append(delivery_view(delivery))
            continue
        body = await store.delivery_raw(delivery)
        size = min(len(body.encode()), RAW_ITEM_BYTES)
        if views and body_bytes + size > RAW_PAGE_BYTES:
            break
        body_bytes += size
        views.append(delivery_view(delivery, body))
    nxt = p.offset + len(views)
    return JSONResponse(
        {
            "deliveries": views,
            "total": total,
            "limit": limit,
            "offset": p.offset,
            "next_offset": nxt if nxt < total else None,
        }
    )


async def retry_delivery(request: Request) -> Response:
    """POST /api/v1/deliveries/{delivery_id}/retry (admin): process it again, attempts reset."""
    svc = services(request)
    delivery_id = request.path_params["delivery_id"]
    delivery = await svc.store.retry_delivery(delivery_id)
    if delivery is None:
        return error(404, "not_found", f"no delivery {delivery_id[:40]!r}")
    svc.deliveries.wake()
    return JSONResponse({"status": "queued", **delivery_view(delivery)}, status_code=202)
