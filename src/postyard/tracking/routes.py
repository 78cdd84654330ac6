"""The tracking host: open pixel, click redirect and unsubscribe page. Public (the token is
the credential), outside /v1 and the OpenAPI document, HTML for people.

A token that does not verify, names nothing we sent or another tenant's message gets a 404
page and nothing is written; an expired unsubscribe link gets 410.
"""

from __future__ import annotations

import base64
from typing import Annotated
from urllib.parse import parse_qsl

from fastapi import APIRouter, Depends, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response

from postyard.core.http import Services
from postyard.core.json_route import JsonRoute
from postyard.tracking import pages, service, tokens
from postyard.tracking.errors import UnknownTrackingLink
from postyard.tracking.plan import CLICK_PATH, OPEN_PATH, UNSUBSCRIBE_PATH
from postyard.tracking.types import TrackingConfig
from postyard.tracking.unsubscribe import MAX_ONE_CLICK_BODY, is_one_click_body

router = APIRouter(route_class=JsonRoute, include_in_schema=False)
# A transparent 1x1 GIF.
PIXEL = base64.b64decode("R0lGODlhAQABAIAAAAAAAP///yH5BAEAAAAALAAAAAABAAEAAAIBRAA7")
NO_STORE = {
    "Cache-Control": "no-store, no-cache, must-revalidate, max-age=0",
    "Pragma": "no-cache",
    "Referrer-Policy": "no-referrer",
}


async def _config(request: Request) -> TrackingConfig:
    config: TrackingConfig = request.app.state.tracking
    return config


Config = Annotated[TrackingConfig, Depends(_config)]


def _html(content: str, status: int = 200) -> HTMLResponse:
    return HTMLResponse(content, status_code=status, headers=NO_STORE)


def _visitor(request: Request, services: Services) -> service.Visitor:
    return service.Visitor(
        user_agent=request.headers.get("user-agent"),
        ip=request.client.host if request.client is not None else None,
        method=request.method,
        at=services.clock.now(),
    )


@router.api_route(OPEN_PATH + "{token}", methods=["GET", "HEAD"])
async def open_pixel(token: str, request: Request, services: Services, config: Config) -> Response:
    """The open pixel: counts the open and answers a 1x1 GIF that is never cached."""
    try:
        claim = tokens.verify_open_token(config.key, token)
        async with services.db.tenant_tx(claim.tenant_id) as session:
            await service.record_open(session, config, claim, _visitor(request, services))
    except (tokens.InvalidToken, UnknownTrackingLink):
        return _html(pages.NOT_FOUND, 404)
    return Response(PIXEL, media_type="image/gif", headers=NO_STORE)


@router.api_route(CLICK_PATH + "{token}", methods=["GET", "HEAD"])
async def click(token: str, request: Request, services: Services, config: Config) -> Response:
    """The click redirect: counts the click and redirects (302) to the link that was in the
    message; never anywhere else."""
    try:
        claim = tokens.verify_click_token(config.key, token)
        async with services.db.tenant_tx(claim.tenant_id) as session:
            link = await service.record_click(session, config, claim, _visitor(request, services))
    except (tokens.InvalidToken, UnknownTrackingLink):
        return _html(pages.NOT_FOUND, 404)
    return RedirectResponse(link, status_code=302, headers=NO_STORE)


def _unsubscribe_claim(token: str, services: Services, config: Config) -> tokens.UnsubscribeClaim:
    return tokens.verify_unsubscribe_token(
        config.key, token, now=services.clock.now(), max_age=config.unsubscribe_max_age
    )


@router.get(UNSUBSCRIBE_PATH + "{token}")
async def unsubscribe_page(token: str, services: Services, config: Config) -> HTMLResponse:
    """The confirmation page: a button that POSTs. A GET never unsubscribes (link scanners
    fetch every URL they see)."""
    try:
        claim = _unsubscribe_claim(token, services, config)
        async with services.db.tenant_tx(claim.tenant_id) as session:
            row = await service.require_unsubscribable(session, claim)
    except tokens.ExpiredToken:
        return _html(pages.EXPIRED, 410)
    except (tokens.InvalidToken, UnknownTrackingLink):
        return _html(pages.NOT_FOUND, 404)
    if row.unsubscribed_at is not None:
        return _html(pages.ALREADY)
    return _html(pages.confirmation_page(claim.address))


@router.post(UNSUBSCRIBE_PATH + "{token}")
async def unsubscribe(
    token: str, request: Request, services: Services, config: Config
) -> HTMLResponse:
    """RFC 8058 one-click (and the confirmation form): unsubscribes at once and answers 200,
    without redirects or cookies."""
    body = await request.body()
    if len(body) > MAX_ONE_CLICK_BODY or not is_one_click_body(
        request.headers.get("content-type"), body
    ):
        return _html(pages.BAD_REQUEST, 400)
    source = dict(parse_qsl(body.decode("utf-8", "replace"))).get("source")
    try:
        claim = _unsubscribe_claim(token, services, config)
        async with services.db.tenant_tx(claim.tenant_id) as session:
            await service.unsubscribe(
                session,
                claim,
                method="page" if source == "page" else "one-click",
                now=services.clock.now(),
            )
    except tokens.ExpiredToken:
        return _html(pages.EXPIRED, 410)
    except (tokens.InvalidToken, UnknownTrackingLink):
        return _html(pages.NOT_FOUND, 404)
    return _html(pages.UNSUBSCRIBED)
