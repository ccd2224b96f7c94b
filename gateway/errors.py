"""Gateway errors and the ONE table that maps every error class to an HTTP status.

Routes, the data plane and backends raise typed exceptions; only this module knows status codes.
Anything not in the table is a server fault (500) whose text never reaches the client.
"""

from __future__ import annotations

import logging
import math
from datetime import UTC, datetime
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from mlsharp.errors import (
    CheckpointError,
    ImageTooLargeError,
    InvalidImageError,
    InvalidParameterError,
    MLSharpError,
)

log = logging.getLogger("gateway.errors")


class GatewayError(Exception):
    """Base of errors raised by the gateway itself; ``code`` is the machine-readable name."""

    code = "gateway_error"

    def __init__(self, message: str, *, headers: dict[str, str] | None = None) -> None:
        super().__init__(message)
        self.headers = headers or {}


class BadRequest(GatewayError):
    code = "bad_request"


class Unauthorized(GatewayError):
    code = "unauthorized"


class Forbidden(GatewayError):
    code = "forbidden"


class NotFound(GatewayError):
    code = "not_found"


class Conflict(GatewayError):
    """The resource is not in a state that allows the request (e.g. archive of a running job)."""

    code = "conflict"


class PayloadTooLarge(GatewayError):
    code = "payload_too_large"


class UnsupportedMediaType(GatewayError):
    code = "unsupported_media_type"


class Unprocessable(GatewayError):
    code = "invalid_request"


class RateLimited(GatewayError):
    """Too many requests for one principal (token bucket empty)."""

    code = "rate_limited"

    def __init__(self, message: str, *, retry_after_s: float) -> None:
        super().__init__(message, headers={"Retry-After": str(max(1, math.ceil(retry_after_s)))})


class Overloaded(RateLimited):
    """Admission control: every in-flight slot is busy and the wait queue is full."""

    code = "overloaded"


class BackendUnavailable(GatewayError):
    """The inference backend is not ready, unreachable or timed out."""

    code = "backend_unavailable"

    def __init__(self, message: str, *, retry_after_s: int = 5) -> None:
        super().__init__(message, headers={"Retry-After": str(retry_after_s)})


class BackendError(GatewayError):
    """The backend failed a request for a reason of its own (a bug, not the input): 502."""

    code = "backend_error"


#: error class -> HTTP status; the most specific class wins (walk the MRO)
STATUS_TABLE: dict[type[Exception], int] = {
    BadRequest: 400,
    InvalidImageError: 400,
    Unauthorized: 401,
    Forbidden: 403,
    NotFound: 404,
    Conflict: 409,
    PayloadTooLarge: 413,
    ImageTooLargeError: 413,
    UnsupportedMediaType: 415,
    Unprocessable: 422,
    InvalidParameterError: 422,
    RateLimited: 429,
    BackendError: 502,
    BackendUnavailable: 503,
    CheckpointError: 503,
    MLSharpError: 400,
}

_REASONS = {
    400: "Bad Request",
    401: "Unauthorized",
    403: "Forbidden",
    404: "Not Found",
    405: "Method Not Allowed",
    409: "Conflict",
    413: "Payload Too Large",
    415: "Unsupported Media Type",
    422: "Unprocessable Entity",
    429: "Too Many Requests",
    500: "Internal Server Error",
    502: "Bad Gateway",
    503: "Service Unavailable",
}


#: asyncpg's classes for "the server is not there (now)", by name: importing asyncpg here would
#: make the embedded SQLite gateway depend on it
_DATABASE_OUTAGES = {"PostgresConnectionError", "InterfaceError", "CannotConnectNowError"}


def storage_outage(error: BaseException) -> bool:
    """The database or the object store failed on its side (unreachable, full, 5xx): not the
    client's fault and worth a retry, so 503 with Retry-After rather than a 500."""
    if isinstance(error, OSError | TimeoutError):  # refused, reset, disk full
        return True
    module = type(error).__module__
    if module.startswith("botocore"):
        response = getattr(error, "response", None)
        if not isinstance(response, dict):
            return True  # endpoint unreachable, connect or read timeout
        return int(response.get("ResponseMetadata", {}).get("HTTPStatusCode", 500)) >= 500
    if module.startswith("asyncpg"):
        return any(cls.__name__ in _DATABASE_OUTAGES for cls in type(error).__mro__)
    return False


def status_for(error: BaseException) -> int:
    for cls in type(error).__mro__:
        if cls in STATUS_TABLE:
            return STATUS_TABLE[cls]
    return 503 if storage_outage(error) else 500


#: the code of an error that has no class of its own (framework 404/405, unknown exceptions)
_STATUS_CODES = {
    400: "bad_request",
    401: "unauthorized",
    403: "forbidden",
    404: "not_found",
    405: "method_not_allowed",
    409: "conflict",
    413: "payload_too_large",
    415: "unsupported_media_type",
    422: "invalid_request",
    429: "rate_limited",
    500: "internal_error",
    502: "backend_error",
    503: "backend_unavailable",
}


def error_code(error: BaseException | None, status: int) -> str:
    """The machine-readable code clients switch on (never the English message)."""
    if isinstance(error, GatewayError | MLSharpError):
        return error.code
    return _STATUS_CODES.get(status, "error")


def error_body(status: int, message: str, path: str, code: str | None = None) -> dict[str, Any]:
    """The one error shape of the API: the fields existing clients parse, plus ``code``."""
    return {
        "error": _REASONS.get(status, "Error"),
        "code": code or _STATUS_CODES.get(status, "error"),
        "message": message,
        "status_code": status,
        "path": path,
        "timestamp": datetime.now(UTC).isoformat(),
    }


def error_response(error: BaseException, path: str) -> JSONResponse:
    """Response for any exception; unknown ones become a 500 without their text."""
    status = status_for(error)
    headers = getattr(error, "headers", None) or {}
    code = error_code(error, status)
    if status >= 500 and not isinstance(error, GatewayError | MLSharpError):
        log.error("unhandled error on %s", path, exc_info=error)
        message = "Internal server error; the request id in the logs has the details."
        if storage_outage(error):
            message = "Storage (database or object store) is unavailable; retry later."
            headers, code = {"Retry-After": "5"}, "storage_unavailable"
    else:
        message = str(error) or type(error).__name__
    if status == 401:
        headers = {"WWW-Authenticate": 'Bearer realm="mlsharp"', **headers}
    body = error_body(status, message, path, code)
    return JSONResponse(body, status_code=status, headers=headers)


def _describe_validation(error: RequestValidationError) -> str:
    parts = []
    for item in error.errors()[:5]:
        loc = ".".join(str(p) for p in item.get("loc", ()) if p not in ("body", "query", "path", "header"))
        parts.append(f"{loc or 'request'}: {item.get('msg', 'invalid')}")
    return "Invalid request: " + "; ".join(parts)


def install_error_handlers(app: FastAPI) -> None:
    """Route every exception through the table, including FastAPI's own validation errors."""

    async def on_known(request: Request, exc: Exception) -> JSONResponse:
        return error_response(exc, request.url.path)

    async def on_validation(request: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, RequestValidationError)
        return error_response(Unprocessable(_describe_validation(exc)), request.url.path)

    async def on_http(request: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, StarletteHTTPException)
        status = exc.status_code
        message = str(exc.detail) if exc.detail else _REASONS.get(status, "Error")
        if status == 400 and "parsing the body" in message:
            message = "The request body is not a valid multipart/form-data or JSON document."
        headers = dict(exc.headers or {})
        return JSONResponse(
            error_body(status, message, request.url.path), status_code=status, headers=headers
        )

    app.add_exception_handler(RequestValidationError, on_validation)
    app.add_exception_handler(StarletteHTTPException, on_http)
    app.add_exception_handler(GatewayError, on_known)
    app.add_exception_handler(MLSharpError, on_known)
    app.add_exception_handler(Exception, on_known)
