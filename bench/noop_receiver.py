"""The do-nothing baseline: a Starlette endpoint that parses the JSON body and answers 200."""

from __future__ import annotations

import json

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route


async def receive(request: Request) -> JSONResponse:
    body = json.loads(await request.body())
    return JSONResponse({"status": "accepted", "alerts": len(body.get("alerts", []))})


app = Starlette(routes=[Route("/api/v1/alerts", receive, methods=["POST"])])
