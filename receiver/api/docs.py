"""GET /openapi.json, /docs (Swagger UI) and /redoc, with assets from the `openapi-ui-bundles`
package: nothing is fetched from a CDN, so the docs work offline.

The pages load only same-origin files (no inline script), which the docs CSP in
`receiver.api.access` enforces.
"""

from __future__ import annotations

import html
from pathlib import Path
from typing import Any

from openapi_ui_bundles import redoc as redoc_bundle
from openapi_ui_bundles import swagger_ui as swagger_bundle
from starlette.requests import Request
from starlette.responses import FileResponse, HTMLResponse, JSONResponse, Response
from starlette.routing import Route

from receiver import __version__
from receiver.api.errors import error
from receiver.api.openapi import openapi_document

TITLE = "AI DevOps Monitor API"
DESCRIPTION = (
    "Alertmanager webhook receiver and enricher. Data routes need `Authorization: Bearer` "
    "with an API_TOKEN (read) or ADMIN_TOKEN (admin) once tokens are configured; the webhook "
    "uses WEBHOOK_TOKEN or basic auth."
)

_SWAGGER_FILES = {
    "swagger-ui.css": "text/css",
    "swagger-ui-bundle.js": "text/javascript",
    "swagger-ui-standalone-preset.js": "text/javascript",
    "favicon-32x32.png": "image/png",
    "favicon-16x16.png": "image/png",
}
_REDOC_FILES = {"redoc.standalone.js": "text/javascript"}

# Served as a file so the page needs no inline script.
SWAGGER_INIT = """\
window.addEventListener("load", function () {
  var root = document.getElementById("swagger-ui");
  window.ui = SwaggerUIBundle({
    url: root.getAttribute("data-spec"),
    dom_id: "#swagger-ui",
    deepLinking: true,
    validatorUrl: null,
    presets: [SwaggerUIBundle.presets.apis, SwaggerUIStandalonePreset],
    plugins: [SwaggerUIBundle.plugins.DownloadUrl],
    layout: "BaseLayout"
  });
});
"""


def _prefix(request: Request) -> str:
    return html.escape(str(request.scope.get("root_path", "")).rstrip("/"), quote=True)


async def openapi_json(request: Request) -> Response:
    """The OpenAPI 3.1 document of every route this service serves."""
    routes = request.app.routes
    cached: tuple[int, dict[str, Any]] | None = getattr(request.app.state, "openapi", None)
    if cached is None or cached[0] != len(routes):
        document = openapi_document(
            routes, title=TITLE, version=__version__, description=DESCRIPTION
        )
        cached = (len(routes), document)
        request.app.state.openapi = cached
    return JSONResponse(cached[1])


async def swagger_ui(request: Request) -> Response:
    """Swagger UI for /openapi.json."""
    p = _prefix(request)
    page = f"""<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<title>{TITLE}</title>
<link rel="stylesheet" href="{p}/docs/assets/swagger-ui.css">
<link rel="icon" type="image/png" href="{p}/docs/assets/favicon-32x32.png">
</head>
<body>
<div id="swagger-ui" data-spec="{p}/openapi.json"></div>
<script src="{p}/docs/assets/swagger-ui-bundle.js"></script>
<script src="{p}/docs/assets/swagger-ui-standalone-preset.js"></script>
<script src="{p}/docs/assets/swagger-init.js"></script>
</body>
</html>
"""
    return HTMLResponse(page)


async def redoc(request: Request) -> Response:
    """ReDoc for /openapi.json."""
    p = _prefix(request)
    page = f"""<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>{TITLE}</title>
</head>
<body>
<redoc spec-url="{p}/openapi.json"></redoc>
<script src="{p}/redoc/assets/redoc.standalone.js"></script>
</body>
</html>
"""
    return HTMLResponse(page)


def _asset(directory: Path, files: dict[str, str], name: str) -> Response:
    media_type = files.get(name)
    if media_type is None:  # a fixed list: no path from the request reaches the filesystem
        return error(404, "not_found", "no such asset")
    return FileResponse(
        directory / name,
        media_type=media_type,
        headers={"Cache-Control": "public, max-age=86400"},
    )


async def swagger_asset(request: Request) -> Response:
    name = request.path_params["name"]
    if name == "swagger-init.js":
        return Response(
            SWAGGER_INIT,
            media_type="text/javascript",
            headers={"Cache-Control": "public, max-age=86400"},
        )
    return _asset(Path(swagger_bundle.static_path), _SWAGGER_FILES, name)


async def redoc_asset(request: Request) -> Response:
    return _asset(Path(redoc_bundle.static_path), _REDOC_FILES, request.path_params["name"])


ROUTES: list[Route] = [
    Route("/openapi.json", openapi_json, methods=["GET"], include_in_schema=False),
    Route("/docs", swagger_ui, methods=["GET"], include_in_schema=False),
    Route("/docs/assets/{name}", swagger_asset, methods=["GET"], include_in_schema=False),
    Route("/redoc", redoc, methods=["GET"], include_in_schema=False),
    Route("/redoc/assets/{name}", redoc_asset, methods=["GET"], include_in_schema=False),
]
