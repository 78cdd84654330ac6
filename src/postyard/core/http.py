"""HTTP plumbing shared by every router: injected services, the one error renderer and the
request-context middleware (request ids, body-size limit, access log)."""

from __future__ import annotations

import logging
import re
import time
import uuid
from dataclasses import dataclass
from typing import Annotated, Any

from fastapi import Depends, FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from sqlalchemy import exc as sa_exc
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from postyard.core.clock import Clock
from postyard.core.db import Database
from postyard.core.errors import AppError
from postyard.core.notify import Waker

log = logging.getLogger("postyard.http")

_STATUS_NAMES = {
    400: "validation_error",
    401: "missing_api_key",
    403: "invalid_api_key",
    404: "not_found",
    405: "method_not_allowed",
    413: "payload_too_large",
    415: "validation_error",
    422: "validation_error",
    429: "rate_limit_exceeded",
}
_REQUEST_ID_RE = re.compile(r"^[A-Za-z0-9._:-]{1,128}$")


@dataclass(frozen=True, slots=True)
class AppServices:
    """What route adapters need, built once at start-up and injected."""

    db: Database
    clock: Clock
    schema_head: str
    rate_limit_per_second: int = 0
    require_verified_domain: bool = False
    waker: Waker | None = None
    """Wakes the delivery workers after a commit that queued mail (None: they poll)."""
    group_commit_window: float = 0.0
    group_commit_max_messages: int = 100
    """Group commit of single sends (POSTYARD_HTTP__GROUP_COMMIT_*; 1: each alone)."""
    metrics_token: str | None = None
    """The bearer token of GET /metrics (None: the path is not served)."""


async def _services(request: Request) -> AppServices:
    # async: a plain function dependency would cost a threadpool hop on every request
    services: AppServices = request.app.state.services
    return services


Services = Annotated[AppServices, Depends(_services)]


def error_response(
    status: int, name: str, message: str, headers: dict[str, str] | None = None
) -> JSONResponse:
    return JSONResponse(
        {"statusCode": status, "name": name, "message": message},
        status_code=status,
        headers=headers,
    )


def unavailable_response() -> JSONResponse:
    """The database could not be reached in time: nothing changed, retry shortly (503)."""
    return error_response(
        503,
        "service_unavailable",
        "The service is overloaded or its database is unreachable; retry shortly.",
        headers={"retry-after": str(UNAVAILABLE_RETRY_AFTER_SECONDS)},
    )


def _field(loc: tuple[Any, ...]) -> str:
    parts = [str(p) for p in loc if p not in {"body", "query", "path", "header"}]
    return ".".join(parts)


def validation_message(errors: list[Any]) -> tuple[int, str]:
    """Status and one readable message for pydantic/FastAPI request errors."""
    first: dict[str, Any] = (
        errors[0] if errors else {"type": "", "loc": (), "msg": "Invalid request."}
    )
    kind = str(first.get("type", ""))
    loc = tuple(first.get("loc", ()))
    field = _field(loc)
    if kind == "json_invalid":
        context: dict[str, Any] = first.get("ctx") or {}
        return 400, _not_json(loc, context.get("error"))
    if kind == "missing" and not field:
        return 422, "The request body is required and must be a JSON object."
    if kind == "missing":
        return 422, f"The `{field}` field is required."
    if kind == "extra_forbidden":
        return 422, f"Unknown field `{field}`."
    if kind in {"model_attributes_type", "dict_type"} and not field:
        return 422, "The request body must be a JSON object."
    where = f"`{field}`: " if field else ""
    return 422, f"Invalid {where}{first.get('msg', 'invalid value')}."


def _not_json(loc: tuple[Any, ...], reason: object) -> str:
    """Where the parser stopped (``loc`` is ``("body", offset)``) and why, when it said."""
    where = f" at character {loc[1]}" if len(loc) > 1 and isinstance(loc[1], int) else ""
    why = f": {reason}" if reason else ""
    return f"The request body is not valid JSON{where}{why}."


UNAVAILABLE_RETRY_AFTER_SECONDS = 1


def database_unavailable(exc: BaseException) -> bool:
    """Whether ``exc`` (or what caused it) says the database could not be reached in time:
    the connection pool was exhausted, the server refused or dropped the connection. Such a
    request changed nothing (its transaction never committed), so the client may retry: a
    503, not a 500."""
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        if isinstance(current, sa_exc.TimeoutError | ConnectionError | TimeoutError):
            return True
        if isinstance(current, sa_exc.DBAPIError) and current.connection_invalidated:
            return True
        if type(current).__name__ in _UNAVAILABLE_DRIVER_ERRORS:
            return True
        current = current.__cause__ or current.__context__
    return False


# asyncpg's errors for a server that cannot take or keep the connection (by name, so that
# this module does not depend on the driver's exception hierarchy).
_UNAVAILABLE_DRIVER_ERRORS = frozenset(
    {
        "TooManyConnectionsError",
        "CannotConnectNowError",
        "ConnectionDoesNotExistError",
        "ConnectionFailureError",
        "AdminShutdownError",
        "CrashShutdownError",
    }
)


def install_error_handlers(app: FastAPI) -> None:
    @app.exception_handler(AppError)
    async def _app_error(_: Request, exc: AppError) -> JSONResponse:
        return error_response(exc.status, exc.code, exc.message, headers=exc.headers)

    @app.exception_handler(RequestValidationError)
    async def _validation(_: Request, exc: RequestValidationError) -> JSONResponse:
        status, message = validation_message(list(exc.errors()))
        return error_response(status, "validation_error", message)

    @app.exception_handler(StarletteHTTPException)
    async def _http(_: Request, exc: StarletteHTTPException) -> JSONResponse:
        name = _STATUS_NAMES.get(exc.status_code, "application_error")
        message = exc.detail if isinstance(exc.detail, str) else "Request failed."
        if exc.status_code == 404 and message == "Not Found":
            message = "The requested endpoint does not exist."
        if exc.status_code == 405:
            message = "Method not allowed on this endpoint."
        headers = dict(exc.headers) if exc.headers else None
        return error_response(exc.status_code, name, message, headers=headers)

    @app.exception_handler(Exception)
    async def _unexpected(request: Request, exc: Exception) -> JSONResponse:
        log.error(
            "unhandled error",
            exc_info=exc,
            extra={"path": request.url.path, "request_id": request.scope.get("request_id")},
        )
        return error_response(500, "internal_server_error", "An unexpected error occurred.")


class RequestContextMiddleware:
    """Request ids (``x-request-id``), an early 413 for oversize bodies, and an access log."""

    def __init__(self, app: ASGIApp, *, max_body_bytes: int) -> None:
        self.app = app
        self.max_body_bytes = max_body_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = dict(scope["headers"])
        incoming = headers.get(b"x-request-id", b"").decode("latin-1")
        request_id = incoming if _REQUEST_ID_RE.match(incoming) else uuid.uuid4().hex
        scope["request_id"] = request_id
        started = time.perf_counter()
        status = 0

        async def send_with_id(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
                message.setdefault("headers", [])
                message["headers"] = [*message["headers"], (b"x-request-id", request_id.encode())]
            await send(message)

        length = headers.get(b"content-length")
        if length is not None and (not length.isdigit() or int(length) > self.max_body_bytes):
            response = error_response(
                413,
                "payload_too_large",
                f"The request body exceeds the limit of {self.max_body_bytes} bytes.",
            )
            await response(scope, receive, send_with_id)
        else:
            try:
                await self.app(scope, self._limited(receive), send_with_id)
            except Exception as exc:
                if status or not database_unavailable(exc):
                    raise  # a bug: the server's error handler answers 500 and logs it
                # Answered here rather than by an `Exception` handler, which Starlette
                # re-raises so that the server logs an expected overload as an error.
                log.warning(
                    "database unavailable: %s",
                    type(exc).__name__,
                    extra={"path": scope["path"], "request_id": request_id},
                )
                await unavailable_response()(scope, receive, send_with_id)
        log.info(
            "request",
            extra={
                "request_id": request_id,
                "method": scope["method"],
                "path": scope["path"],
                "status": status,
                "duration_ms": round((time.perf_counter() - started) * 1000, 2),
            },
        )

    def _limited(self, receive: Receive) -> Receive:
        received = 0

        async def wrapped() -> Message:
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > self.max_body_bytes:
                    detail = f"The request body exceeds the limit of {self.max_body_bytes} bytes."
                    raise StarletteHTTPException(status_code=413, detail=detail)
            return message

        return wrapped
