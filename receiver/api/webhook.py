"""POST /api/v1/alerts (and the seed's /webhook/alertmanager): validate, store durably, answer.

Status codes are what Alertmanager acts on: 2xx = done, 5xx = retry, 4xx = do not retry.
- 200 only after the delivery is stored (or was already stored: a retry or HA duplicate);
- 400 body not UTF-8 / not JSON, 401 bad credentials, 413 body or alert count over the limit,
  415 a Content-Type other than application/json (a browser's no-cors `fetch` can only send
  text/plain, so this keeps any web page from posting alerts to a receiver on localhost),
  422 schema errors naming the field; nothing is stored for any of these;
- 503 when the store is unreachable, so Alertmanager retries.
Nothing else becomes a 5xx: a delivery this code fails on for a reason of its own (a bug) is stored
quarantined (`failed`, with the error) and answered 422, so it is neither lost nor retried forever.
"""

from __future__ import annotations

import hashlib
import json
import logging
import time
from typing import Any

from pydantic import ValidationError
from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from receiver.api.auth import webhook_authorised
from receiver.api.body import BodyTooLarge, media_type, read_limited, too_large
from receiver.api.errors import error, store_unavailable
from receiver.ingest.models import MAX_ALERTS_PER_DELIVERY
from receiver.ingest.normalise import delivery_key
from receiver.ingest.senders import Refused, parse_payload
from receiver.records import DeliveryRecord
from receiver.services import services
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


async def _quarantine(request: Request, text: str, err: Exception) -> Response:
    """Keep a delivery this code could not handle, marked failed, for an operator to retry."""
    svc = services(request)
    svc.ingest_metrics.requests.labels("quarantined").inc()
    log.error("webhook: delivery quarantined: %s: %s", type(err).__name__, err)
    key = "quarantined:" + hashlib.sha256(text.encode("utf-8", "replace")).hexdigest()
    delivery = DeliveryRecord(
        delivery_key=key,
        raw_json=text,
        processed=True,
        failed=True,
        attempts=1,
        last_error=f"{type(err).__name__}: {err}"[:500],
    )
    try:
        await svc.store.insert_delivery(delivery)
    except StoreError as store_err:
        return store_unavailable(
            f"the delivery could not be stored ({store_err}); Alertmanager will retry"
        )
    except Exception:  # not even storable: refuse it (a retry would fail alike)
        log.exception("webhook: quarantined delivery could not be stored")
        return error(
            422,
            "unprocessable_delivery",
            f"the delivery could not be processed nor kept ({type(err).__name__})",
        )
    return error(
        422,
        "unprocessable_delivery",
        f"the delivery could not be processed ({type(err).__name__}); it is kept as failed "
        "delivery for an operator (GET /api/v1/deliveries?status=failed)",
        delivery=key,
    )


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
    if media_type(request) != "application/json":
        metrics.requests.labels("bad_request").inc()
        return error(
            415,
            "unsupported_media_type",
            "Content-Type must be application/json, got "
            f"{request.headers.get('content-type', 'none')[:100]!r}",
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
        return await _accept(request, text, data)
    except StoreError as err:
        metrics.requests.labels("store_unavailable").inc()
        log.warning("webhook: %s", err)
        return store_unavailable(
            f"the delivery could not be stored ({err}); Alertmanager will retry"
        )
    except Exception as err:  # a bug of ours must not cost the alert nor a retry loop
        return await _quarantine(request, text, err)


async def _accept(request: Request, text: str, data: Any) -> Response:
    svc = services(request)
    metrics = svc.ingest_metrics
    try:
        payload = parse_payload(data)
    except Refused as err:
        metrics.requests.labels("invalid").inc()
        return error(
            422, err.code, str(err), problems=[{"field": err.field, "message": err.message}]
        )
    except ValidationError as err:
        metrics.requests.labels("invalid").inc()
        return _schema_error(err)

    svc.watchdog.seen(a.labels.get("alertname", "") for a in payload.alerts)
    key = delivery_key(payload)
    delivery = DeliveryRecord(
        delivery_key=key,
        source=payload.source.value,
        receiver=payload.receiver,
        group_key=payload.groupKey,
        status=payload.status,
        alert_count=len(payload.alerts),
        truncated_alerts=payload.truncatedAlerts,
        external_url=payload.externalURL,
        raw_json=text,
    )
    stored = await svc.commits.submit(delivery)
    if not stored:
        metrics.requests.labels("duplicate").inc()
        return JSONResponse({"status": "duplicate", "delivery": key, "alerts": len(payload.alerts)})
    metrics.requests.labels("accepted").inc()
    for alert in payload.alerts:
        metrics.alerts.labels(alert.status).inc()
    svc.deliveries.wake()
    return JSONResponse({"status": "accepted", "delivery": key, "alerts": len(payload.alerts)})
