"""Request bodies parsed with orjson, for every route of the API.

FastAPI parses a JSON body with the standard library, which accepts what JSON text must not
hold and PostgreSQL cannot store: an escaped unpaired surrogate (``"\\ud800"``) came through
as a ``str`` that no encoder takes, so a field that was not checked for it failed at write
time (a 500). orjson refuses such a body outright, as it refuses ``NaN`` and ``Infinity``
(RFC 8259 section 6 and 8.2), and the client gets the 400 of any body that is not JSON. It
also parses several times faster: the body of a batch is up to a hundred emails.

Every ``APIRouter`` of the application is made with ``route_class=JsonRoute`` (a test walks
the routes to keep it so).
"""

from __future__ import annotations

from collections.abc import Callable, Coroutine
from typing import Any

import orjson
from fastapi import Request, Response
from fastapi.routing import APIRoute

_BOM = b"\xef\xbb\xbf"  # RFC 8259 section 8.1: may be ignored; the standard library does


class JsonRequest(Request):
    """A request whose ``json()`` is orjson's; ``orjson.JSONDecodeError`` is a
    ``json.JSONDecodeError``, which FastAPI turns into its ``json_invalid`` error."""

    _parsed: Any
    """The body's value, once parsed (``json()`` is asked at most once per request)."""

    async def json(self) -> Any:
        try:
            return self._parsed
        except AttributeError:
            body = await self.body()
            self._parsed = orjson.loads(body.removeprefix(_BOM))
            return self._parsed


class JsonRoute(APIRoute):
    """An API route whose handler gets a ``JsonRequest``."""

    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        handler = super().get_route_handler()

        async def with_json_request(request: Request) -> Response:
            return await handler(JsonRequest(request.scope, request.receive))

        return with_json_request
