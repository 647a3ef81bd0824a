"""OpenAPI 3.1 for the running app, generated from its routes and the pydantic models.

Every route in `app.routes` appears, so routes other stages add are listed without work on
their side. What an operation takes and returns comes from a `RouteDoc`: attached to the
endpoint with `@documented(...)`, or listed in `DOCS` by (method, path) for routes whose
modules do not import this one. Security follows `receiver.api.access`, the same policy the
middleware enforces. An operation without a `RouteDoc` is marked `x-undocumented`.
"""

from __future__ import annotations

import inspect
import re
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, TypeVar

from pydantic import BaseModel
from pydantic.json_schema import JsonSchemaMode, models_json_schema
from starlette.routing import BaseRoute, Route

from receiver.api import schemas
from receiver.api.access import Access, required_access
from receiver.ingest.models import WebhookPayload

F = TypeVar("F", bound=Callable[..., Any])

_DOC_ATTR = "__openapi_docs__"
_PARAM = re.compile(r"{([^}:]+)(?::[^}]+)?}")

ERROR_TEXT = {
    400: "Bad request (a parameter or the body names the problem)",
    401: "Missing or unknown token",
    403: "The token's scope does not allow this",
    404: "Not found",
    413: "Body too large",
    421: "The Host header is not one this service answers (RECEIVER_ALLOWED_HOSTS)",
    422: "The body does not match the schema",
    429: "Too many requests (see Retry-After)",
    503: "Store unavailable (retry later)",
}


@dataclass(frozen=True)
class RouteDoc:
    summary: str
    response: type[BaseModel] | None = None
    status: int = 200
    query: type[BaseModel] | None = None
    body: type[BaseModel] | None = None
    errors: tuple[int, ...] = ()
    tags: tuple[str, ...] = ()
    media_type: str = "application/json"
    description: str = ""
    extra_responses: Mapping[int, type[BaseModel]] = field(default_factory=dict)


def documented(doc: RouteDoc, *, method: str = "*") -> Callable[[F], F]:
    """Attach a RouteDoc to an endpoint (per method when one endpoint serves several)."""

    def attach(endpoint: F) -> F:
        docs: dict[str, RouteDoc] = dict(getattr(endpoint, _DOC_ATTR, {}))
        docs[method.upper()] = doc
        setattr(endpoint, _DOC_ATTR, docs)
        return endpoint

    return attach


# Routes whose modules predate this one (or belong to other stages), by (method, path).
DOCS: dict[tuple[str, str], RouteDoc] = {
    ("GET", "/"): RouteDoc(
        "Service status (the seed's shape)", schemas.ServiceStatus, tags=("health",)
    ),
    ("GET", "/healthz"): RouteDoc("Liveness", schemas.Health, tags=("health",)),
    ("GET", "/readyz"): RouteDoc(
        "Readiness: the store answers", schemas.Ready, errors=(503,), tags=("health",)
    ),
    ("GET", "/metrics"): RouteDoc(
        "Prometheus metrics of the service", media_type="text/plain", tags=("health",)
    ),
    ("POST", "/api/v1/alerts"): RouteDoc(
        "Alert webhook: Alertmanager (version 4), Grafana alerting (version 1), OnCall outgoing",
        schemas.WebhookAccepted,
        body=WebhookPayload,
        errors=(400, 413, 415, 422, 503),
        tags=("webhook",),
    ),
    ("POST", "/webhook/alertmanager"): RouteDoc(
        "Alertmanager webhook (the seed's path)",
        schemas.WebhookAccepted,
        body=WebhookPayload,
        errors=(400, 413, 415, 422, 503),
        tags=("webhook",),
    ),
    ("GET", "/api/v1/incidents"): RouteDoc(
        "Incidents, newest first",
        schemas.IncidentList,
        query=schemas.IncidentQuery,
        errors=(400, 503),
        tags=("incidents",),
    ),
    ("GET", "/api/v1/incidents/{incident_id}"): RouteDoc(
        "One incident with its episodes",
        schemas.IncidentDetail,
        errors=(404, 503),
        tags=("incidents",),
    ),
    ("GET", "/api/v1/storms"): RouteDoc(
        "Storms (incidents opening together with a shared cause), newest first",
        schemas.StormList,
        query=schemas.StormQuery,
        errors=(400, 503),
        tags=("incidents",),
    ),
    ("GET", "/api/v1/storms/{storm_id}"): RouteDoc(
        "One storm with a page of its member incidents (`limit`, `offset` page the members)",
        schemas.StormDetail,
        query=schemas.StormQuery,
        errors=(400, 404, 503),
        tags=("incidents",),
    ),
    ("GET", "/api/v1/deliveries"): RouteDoc(
        "Webhook deliveries as received, newest first",
        schemas.DeliveryList,
        query=schemas.DeliveryQuery,
        errors=(400, 503),
        tags=("incidents",),
    ),
    ("POST", "/api/v1/deliveries/{delivery_id}/retry"): RouteDoc(
        "Process a delivery again (admin), e.g. a quarantined one; attempts start over",
        schemas.DeliveryRetry,
        status=202,
        errors=(404, 503),
        tags=("incidents",),
    ),
    ("GET", "/anomalies"): RouteDoc(
        "Alert episodes (the seed's shape)",
        schemas.AnomalyList,
        query=schemas.AnomalyQuery,
        errors=(400, 503),
        tags=("incidents",),
    ),
}


def route_doc(route: Route, method: str) -> RouteDoc | None:
    attached: dict[str, RouteDoc] = getattr(route.endpoint, _DOC_ATTR, {})
    return attached.get(method) or attached.get("*") or DOCS.get((method, route.path))


class _Schemas:
    """Collects the models operations reference; `components()` fills in the `$ref`s.

    The refs are placeholders until then because pydantic picks the component names (it
    disambiguates equal class names and input/output variants).
    """

    def __init__(self) -> None:
        self.wanted: dict[tuple[type[BaseModel], JsonSchemaMode], list[dict[str, Any]]] = {}

    def ref(self, model: type[BaseModel], mode: JsonSchemaMode) -> dict[str, Any]:
        placeholder: dict[str, Any] = {}
        self.wanted.setdefault((model, mode), []).append(placeholder)
        return placeholder

    def components(self) -> dict[str, Any]:
        if not self.wanted:
            return {}
        keys, top = models_json_schema(
            list(self.wanted), ref_template="#/components/schemas/{model}"
        )
        for key, placeholders in self.wanted.items():
            for placeholder in placeholders:
                placeholder.update(keys[key])
        found: dict[str, Any] = top.get("$defs", {})
        return found


def _not_null(prop: dict[str, Any]) -> dict[str, Any]:
    """`X | None = None` in a query model means "may be left out", not "may be null"."""
    variants = prop.get("anyOf")
    if isinstance(variants, list):
        kept = [v for v in variants if v != {"type": "null"}]
        if len(kept) == 1:
            rest = {k: v for k, v in prop.items() if k != "anyOf"}
            prop = {**rest, **kept[0]}
    if prop.get("default", 0) is None:
        del prop["default"]
    return prop


def _query_parameters(model: type[BaseModel]) -> list[dict[str, Any]]:
    schema = model.model_json_schema(ref_template="#/components/schemas/{model}")
    required = set(schema.get("required", []))
    params = []
    for name, prop in schema.get("properties", {}).items():
        prop = _not_null(dict(prop))
        description = prop.pop("description", None)
        prop.pop("title", None)
        param: dict[str, Any] = {
            "name": name,
            "in": "query",
            "required": name in required,
            "schema": prop,
        }
        if description:
            param["description"] = description
        params.append(param)
    return params


def _error_ref(schemas_: _Schemas) -> dict[str, Any]:
    return {"application/json": {"schema": schemas_.ref(schemas.Error, "serialization")}}


def _operation(
    route: Route, method: str, path: str, doc: RouteDoc | None, schemas_: _Schemas
) -> dict[str, Any]:
    endpoint_doc = inspect.getdoc(route.endpoint) or ""
    slug = re.sub(r"[^A-Za-z0-9]+", "_", path).strip("_") or "root"
    fallback = endpoint_doc.splitlines()[0] if endpoint_doc else path
    op: dict[str, Any] = {
        "operationId": f"{method.lower()}_{slug}",
        "summary": doc.summary if doc else fallback,
    }
    description = (doc.description if doc else "") or endpoint_doc
    if description:
        op["description"] = description
    if doc and doc.tags:
        op["tags"] = list(doc.tags)
    params = [
        {"name": name, "in": "path", "required": True, "schema": {"type": "string"}}
        for name in _PARAM.findall(path)
    ]
    if doc and doc.query is not None:
        params.extend(_query_parameters(doc.query))
    if params:
        op["parameters"] = params
    if doc and doc.body is not None:
        op["requestBody"] = {
            "required": True,
            "content": {"application/json": {"schema": schemas_.ref(doc.body, "validation")}},
        }
    responses: dict[str, Any] = {}
    if doc is None:
        op["x-undocumented"] = True
        responses["default"] = {"description": "Not documented yet"}
    else:
        content: dict[str, Any]
        if doc.response is not None:
            content = {doc.media_type: {"schema": schemas_.ref(doc.response, "serialization")}}
        else:
            content = {doc.media_type: {"schema": {"type": "string"}}}
        responses[str(doc.status)] = {"description": doc.summary, "content": content}
        for status, model in doc.extra_responses.items():
            responses[str(status)] = {
                "description": ERROR_TEXT.get(status, "See the body"),
                "content": {"application/json": {"schema": schemas_.ref(model, "serialization")}},
            }
    access = required_access(method, path)
    codes = set(doc.errors if doc else ())
    if access is Access.WEBHOOK:
        codes.add(401)
        op["security"] = [{"webhookBearer": []}, {"webhookBasic": []}]
    elif access is Access.OPEN:
        op["security"] = []
    else:
        codes.add(401)
        if access in (Access.ADMIN, Access.OPERATE):
            codes.add(403)
        op["security"] = [{"apiToken": []}]
        op["x-scope"] = access.value
    if doc is not None:
        for status in sorted(codes):
            responses.setdefault(
                str(status),
                {"description": ERROR_TEXT.get(status, "Error"), "content": _error_ref(schemas_)},
            )
    op["responses"] = responses
    return op


def _methods(route: Route) -> list[str]:
    methods = route.methods or {"GET"}
    return sorted(m for m in methods if m != "HEAD")


def openapi_document(
    routes: Iterable[BaseRoute], *, title: str, version: str, description: str = ""
) -> dict[str, Any]:
    schemas_ = _Schemas()
    paths: dict[str, dict[str, Any]] = {}
    for route in routes:
        if not isinstance(route, Route) or not route.include_in_schema:
            continue
        path = _PARAM.sub(lambda m: "{" + m.group(1) + "}", route.path)
        for method in _methods(route):
            operations = paths.setdefault(path, {})
            if method.lower() in operations:
                continue  # Starlette serves the first matching route; so does the document
            doc = route_doc(route, method)
            operations[method.lower()] = _operation(route, method, path, doc, schemas_)
    return {
        "openapi": "3.1.0",
        "info": {"title": title, "version": version, "description": description},
        "paths": dict(sorted(paths.items())),
        "components": {
            "schemas": schemas_.components(),
            "securitySchemes": {
                "apiToken": {
                    "type": "http",
                    "scheme": "bearer",
                    "description": "API_TOKEN (read) or ADMIN_TOKEN (admin)",
                },
                "webhookBearer": {
                    "type": "http",
                    "scheme": "bearer",
                    "description": "WEBHOOK_TOKEN",
                },
                "webhookBasic": {
                    "type": "http",
                    "scheme": "basic",
                    "description": "WEBHOOK_USER / WEBHOOK_PASSWORD",
                },
            },
        },
    }
