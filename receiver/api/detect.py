"""Outlier poller API: Prometheus targets (CRUD, secrets masked) and the seed's /prom-metrics.

The PROM_URL target is listed as `default` (builtin, read-only). Errors: 400 body not JSON,
404 unknown target, 409 name taken or builtin, 422 invalid field (`field` names it).
"""

from __future__ import annotations

import json
from typing import Any, TypeVar

from pydantic import BaseModel, ValidationError
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from receiver.api.body import BodyTooLarge, read_limited, too_large
from receiver.api.errors import error
from receiver.api.params import BadParam, page, text
from receiver.detect.poller import LEASE_PREFIX
from receiver.detect.targets import (
    DEFAULT_NAME,
    TargetIn,
    TargetUpdate,
    default_target,
    new_target,
    target_view,
)
from receiver.records import SnapshotRecord
from receiver.services import services
from receiver.store.detect import DetectStore
from receiver.store.repo import DuplicateKey
from receiver.timeutil import aware

MAX_TARGET_BODY = 64 * 1024
MAX_INVALID_SHOWN = 20
M = TypeVar("M", bound=BaseModel)


class _BadBody(Exception):
    def __init__(self, response: Response) -> None:
        self.response = response


async def _parse(request: Request, model: type[M]) -> M:
    try:
        body = await read_limited(request, MAX_TARGET_BODY)
    except BodyTooLarge as err:
        raise _BadBody(too_large(err)) from err
    try:
        raw = json.loads(body)
    except (UnicodeDecodeError, json.JSONDecodeError) as err:
        raise _BadBody(error(400, "invalid_json", f"body is not JSON: {err}")) from err
    if not isinstance(raw, dict):
        raise _BadBody(error(422, "invalid_target", "body: must be a JSON object", field="body"))
    try:
        return model.model_validate(raw)
    except ValidationError as err:
        first = err.errors(include_url=False, include_input=False)[0]
        where = ".".join(str(p) for p in first["loc"]) or "body"
        raise _BadBody(
            error(422, "invalid_target", f"{where}: {first['msg']}", field=where)
        ) from err


def _store(request: Request) -> DetectStore:
    return DetectStore(services(request).store)


async def list_targets(request: Request) -> Response:
    store = _store(request)
    default = default_target(services(request).settings)
    stored = await store.list_targets(warn=False)  # the poller logs them
    names = [t.name for t in stored] + ([DEFAULT_NAME] if default else [])
    leases = await store.leases([LEASE_PREFIX + n for n in names])
    views = [default.view(leases.get(LEASE_PREFIX + DEFAULT_NAME))] if default else []
    views += [target_view(t, leases.get(LEASE_PREFIX + t.name)) for t in stored]
    invalid = [
        {"id": doc_id, "name": name or None, "error": why}
        for doc_id, name, why in store.invalid_targets[:MAX_INVALID_SHOWN]
    ]
    return JSONResponse(
        {
            "targets": views,
            "count": len(views),
            # stored documents the poller skips (not a valid target): fix or delete them
            "skipped": len(store.invalid_targets),
            "invalid": invalid,
        }
    )


async def get_target(request: Request) -> Response:
    name = request.path_params["name"]
    store = _store(request)
    lease = (await store.leases([LEASE_PREFIX + name])).get(LEASE_PREFIX + name)
    if name == DEFAULT_NAME:
        default = default_target(services(request).settings)
        if default is not None:
            return JSONResponse(default.view(lease))
    target = await store.get_target(name)
    if target is None:
        return error(404, "not_found", f"no target named {name!r}")
    return JSONResponse(target_view(target, lease))


async def create_target(request: Request) -> Response:
    try:
        body = await _parse(request, TargetIn)
    except _BadBody as bad:
        return bad.response
    target = new_target(body)
    try:
        await _store(request).insert_target(target)
    except DuplicateKey:
        return error(409, "conflict", f"a target named {body.name!r} exists", field="name")
    return JSONResponse(target_view(target), status_code=201)


async def update_target(request: Request) -> Response:
    name = request.path_params["name"]
    if name == DEFAULT_NAME:
        return error(409, "read_only", "the default target is PROM_URL; change the setting")
    try:
        body = await _parse(request, TargetUpdate)
    except _BadBody as bad:
        return bad.response
    if body.name is not None and body.name != name:
        return error(
            422, "invalid_target", "name: cannot be changed (delete and create)", field="name"
        )
    target = await _store(request).update_target(name, body.changes(), body.on_new_url())
    if target is None:
        return error(404, "not_found", f"no target named {name!r}")
    return JSONResponse(target_view(target))


async def delete_target(request: Request) -> Response:
    name = request.path_params["name"]
    if name == DEFAULT_NAME:
        return error(409, "read_only", "the default target is PROM_URL; set it empty to drop it")
    deleted = await _store(request).delete_target(name)
    if not deleted:
        return error(404, "not_found", f"no target named {name!r}")
    return Response(status_code=204)


def _seed_reading(item: dict[str, Any]) -> dict[str, Any]:
    return {
        "name": item.get("metric"),
        "value": item.get("value"),
        "instance": item.get("instance"),
    }


def snapshot_view(s: SnapshotRecord) -> dict[str, Any]:
    return {
        "id": str(s.id),
        "timestamp": aware(s.created_at).isoformat(),
        # the seed's reading: `count` series read, `data` the top-scored few of them
        "count": s.series,
        "data": [_seed_reading(item) for item in s.sample],
        "target": s.target,
        "holder": s.holder,
        "duration_seconds": s.duration_seconds,
        "selectors": s.selectors,
        "series": s.series,
        "flagged": s.flagged,
        "opened": s.opened,
        "resolved": s.resolved,
        "capped": s.capped,
        "error": s.error or None,
        "sample": s.sample,
        "warming": s.warming,
        "warming_series": s.warming_series,
        "seasonal": s.seasonal,
        "fitted": s.fitted,
    }


async def prom_metrics(request: Request) -> Response:
    """The latest poll-cycle snapshots, newest first (the seed's /prom-metrics)."""
    try:
        p = page(request)
        target = text(request, "target", 64)
    except BadParam as err:
        return error(400, "bad_parameter", str(err))
    items, total = await _store(request).snapshots(target, p.offset, p.limit)
    nxt = p.offset + len(items)
    return JSONResponse(
        {
            "metrics": [snapshot_view(s) for s in items],
            "count": len(items),
            "total": total,
            "limit": p.limit,
            "offset": p.offset,
            "next_offset": nxt if nxt < total else None,
        }
    )


ROUTES: list[Route] = [
    Route("/api/v1/targets", list_targets, methods=["GET"]),
    Route("/api/v1/targets", create_target, methods=["POST"]),
    Route("/api/v1/targets/{name}", get_target, methods=["GET"]),
    Route("/api/v1/targets/{name}", update_target, methods=["PUT"]),
    Route("/api/v1/targets/{name}", delete_target, methods=["DELETE"]),
    Route("/prom-metrics", prom_metrics, methods=["GET"]),
]
