"""POST /api/v1/alerts (and the seed's /webhook/alertmanager): validate, store durably, answer.

Status codes are what Alertmanager acts on: 2xx = done, 5xx = retry, 4xx = do not retry.
- 200 only after the delivery is stored (or was already stored: a retry or HA duplicate);
- 400 body not UTF-8 / not JSON, 401 bad credentials, 413 body or alert count over the limit,
  422 schema errors naming the field; nothing is stored for any of these;
- 503 when the store is unreachable, so Alertmanager retries.
"""

from __future__ import annotations

import json
import logging
import time
from typing import Any

from pydantic import ValidationError
from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from receiver.api.auth import webhook_authorised
from receiver.api.body import BodyTooLarge, read_limited, too_large
from receiver.api.errors import error
from receiver.ingest.models import MAX_ALERTS_PER_DELIVERY, WebhookPayload
from receiver.ingest.normalise import delivery_key
from receiver.services import services
from receiver.store.documents import Delivery
from receiver.store.repo import StoreError

log = logging.getLogger(__name__)


class _NonStandardJSON(ValueError):
    pass


def _reject_constant(name: str) -> Any:
    raise _NonStandardJSON(f"{name} is not a JSON value")


def _field_path(loc: tuple[int | str, ...]) -> str:
    return ".".join(str(part) for part in loc) or "body"


def _schema_error(err: ValidationError) -> Response:
    problems = [
        {"field": _field_path(e["loc"]), "message": e["msg"]}
        for e in err.errors(include_url=False, include_input=False)[:20]
    ]
    first = problems[0]
    return error(
        422,
        "invalid_payload",
        f"{first['field']}: {first['message']}",
        problems=problems,
    )


async def receive_alerts(request: Request) -> Response:
    svc = services(request)
    metrics = svc.ingest_metrics
    started = time.perf_counter()
    response = await _receive(request)
    metrics.latency.observe(time.perf_counter() - started)
    return response


async def _receive(request: Request) -> Response:
    svc = services(request)
    settings = svc.settings
    metrics = svc.ingest_metrics
    if not webhook_authorised(request, settings):
        metrics.requests.labels("unauthorised").inc()
        return error(
            401,
            "unauthorised",
            "missing or wrong credentials (Authorization: Bearer or Basic)",
            headers={"WWW-Authenticate": 'Bearer realm="receiver"'},
        )
    try:
        body = await read_limited(request, settings.max_body_bytes, "MAX_BODY_BYTES")
    except BodyTooLarge as err:
        metrics.requests.labels("too_large").inc()
        return too_large(err)
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError as err:
        metrics.requests.labels("bad_request").inc()
        return error(400, "invalid_utf8", f"body is not valid UTF-8 (byte {err.start})")
    try:
        data: Any = json.loads(text, parse_constant=_reject_constant)
    except json.JSONDecodeError as err:
        metrics.requests.labels("bad_request").inc()
        return error(
            400,
            "malformed_json",
            f"body is not JSON: {err.msg} at line {err.lineno} column {err.colno}",
        )
    except _NonStandardJSON as err:
        metrics.requests.labels("bad_request").inc()
        return error(400, "malformed_json", f"body is not standard JSON: {err}")
    except RecursionError:
        metrics.requests.labels("bad_request").inc()
        return error(
            400, "malformed_json", "body is not JSON this receiver accepts: nested too deeply"
        )
    alerts = data.get("alerts") if isinstance(data, dict) else None
    if isinstance(alerts, list) and len(alerts) > MAX_ALERTS_PER_DELIVERY:
        metrics.requests.labels("too_large").inc()
        return error(
            413,
            "too_many_alerts",
            f"alerts: {len(alerts)} alerts in one delivery, at most {MAX_ALERTS_PER_DELIVERY}; "
            "set max_alerts in Alertmanager's webhook_config",
        )
    try:
        payload = WebhookPayload.model_validate(data)
    except ValidationError as err:
        metrics.requests.labels("invalid").inc()
        return _schema_error(err)

    svc.watchdog.seen(a.labels.get("alertname", "") for a in payload.alerts)
    key = delivery_key(payload)
    delivery = Delivery(
        delivery_key=key,
        receiver=payload.receiver,
        group_key=payload.groupKey,
        status=payload.status,
        alert_count=len(payload.alerts),
        truncated_alerts=payload.truncatedAlerts,
        external_url=payload.externalURL,
        raw_json=text,
    )
    try:
        stored = await svc.commits.submit(delivery)
    except StoreError as err:
        metrics.requests.labels("store_unavailable").inc()
        log.warning("webhook: %s", err)
        return error(
            503 if err.retryable else 500,
            "store_unavailable" if err.retryable else "store_error",
            f"the delivery could not be stored ({err}); Alertmanager will retry",
            headers={"Retry-After": "5"},
        )
    if not stored:
        metrics.requests.labels("duplicate").inc()
        return JSONResponse({"status": "duplicate", "delivery": key, "alerts": len(payload.alerts)})
    metrics.requests.labels("accepted").inc()
    for alert in payload.alerts:
        metrics.alerts.labels(alert.status).inc()
    svc.deliveries.wake()
    return JSONResponse({"status": "accepted", "delivery": key, "alerts": len(payload.alerts)})
