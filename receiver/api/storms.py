"""Storms API: the storms (incidents with source "storm") and their member incidents."""

from __future__ import annotations

from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from receiver.api.errors import error
from receiver.api.params import BadParam, page
from receiver.records import IncidentRecord
from receiver.services import services
from receiver.store.storms import StormStore
from receiver.timeutil import iso_or_none


def storm_view(storm: IncidentRecord) -> dict[str, Any]:
    return {
        "id": str(storm.id),
        "key": storm.storm_key,
        "status": storm.status,
        "severity": storm.severity,
        "title": storm.title,
        "shared_labels": storm.storm_labels,
        "members": storm.storm_members,
        "started_at": iso_or_none(storm.started_at),
        "resolved_at": iso_or_none(storm.resolved_at),
        "analysis_id": storm.analysis_id or None,
    }


async def list_storms(request: Request) -> Response:
    try:
        p = page(request)
    except BadParam as err:
        return error(400, "bad_parameter", str(err))
    items, total = await StormStore(services(request).store).page(p.offset, p.limit)
    nxt = p.offset + len(items)
    return JSONResponse(
        {
            "storms": [storm_view(s) for s in items],
            "total": total,
            "limit": p.limit,
            "offset": p.offset,
            "next_offset": nxt if nxt < total else None,
        }
    )


async def get_storm(request: Request) -> Response:
    storm_id = request.path_params["storm_id"]
    try:
        p = page(request, default=500)
    except BadParam as err:
        return error(400, "bad_parameter", str(err))
    storms = StormStore(services(request).store)
    storm = await storms.get(storm_id)
    if storm is None:
        return error(404, "not_found", f"no storm {storm_id[:40]!r}")
    members = await storms.members(str(storm.id), p.offset, p.limit)
    total = await storms.count_members(str(storm.id))
    nxt = p.offset + len(members)
    return JSONResponse(
        {
            **storm_view(storm),
            "members": total,
            "member_incidents": [
                {
                    "id": str(m.id),
                    "title": m.title,
                    "severity": m.severity,
                    "status": m.status,
                    "started_at": iso_or_none(m.started_at),
                }
                for m in members
            ],
            "member_offset": p.offset,
            "next_member_offset": nxt if nxt < total else None,
        }
    )


ROUTES: list[Route] = [
    Route("/api/v1/storms", list_storms, methods=["GET"]),
    Route("/api/v1/storms/{storm_id}", get_storm, methods=["GET"]),
]
