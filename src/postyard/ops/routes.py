"""GET /metrics: the instance's metrics for Prometheus, behind the operator's metrics token
(`POSTYARD_HTTP__METRICS_TOKEN`; without one the path does not exist). API keys are never
accepted: the figures span every tenant."""

from __future__ import annotations

import hmac

from fastapi import APIRouter, Request, Response

from postyard.core.http import Services, error_response
from postyard.core.json_route import JsonRoute
from postyard.ops.metrics import CONTENT_TYPE, render
from postyard.ops.snapshot import read_snapshot

router = APIRouter(route_class=JsonRoute, tags=["Operations"])


@router.get("/metrics", response_model=None, include_in_schema=False)
async def metrics(request: Request, services: Services) -> Response:
    token = services.metrics_token
    if token is None:
        return error_response(404, "not_found", "Not Found")
    scheme, _, given = request.headers.get("authorization", "").partition(" ")
    if scheme.lower() != "bearer" or not given:
        return error_response(
            401,
            "missing_metrics_token",
            "Send the metrics token (POSTYARD_HTTP__METRICS_TOKEN) as a bearer token.",
        )
    if not hmac.compare_digest(given.strip().encode(), token.encode()):
        return error_response(403, "invalid_metrics_token", "The metrics token is not valid.")
    snapshot = await read_snapshot(services.db, services.clock.now())
    return Response(render(snapshot), media_type=CONTENT_TYPE)
