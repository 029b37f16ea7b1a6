"""Every error leaves the API as `{"error": {"code", "message", "details"}}`, no traceback."""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from pydantic import BaseModel, Field
from starlette.exceptions import HTTPException as StarletteHTTPException

from email_sender import errors

logger = logging.getLogger(__name__)

# Renders an error as a page for a request that a person's browser made, or answers None.
PageFor = Callable[[Request, int, str], Response | None]

STATUS_BY_ERROR: list[tuple[type[errors.EmailSenderError], int]] = [
    (errors.PayloadTooLarge, 413),
    (errors.ValidationError, 422),
    (errors.DimensionMismatch, 400),
    (errors.NotFound, 404),
    (errors.Conflict, 409),
    (errors.ModeError, 503),
    (errors.DatabaseUnavailable, 503),
    (errors.VectorStoreUnavailable, 503),
    (errors.EmbedderUnavailable, 503),
    (errors.StoreError, 503),
    (errors.ConfigError, 400),
    (errors.EventBusError, 503),
    (errors.DeliveryError, 503),
    (errors.InboundError, 503),
]

# A 503 tells the client what is down; the internal code says how it failed, not what to do.
_CODE_FOR_CLIENT: list[tuple[type[errors.EmailSenderError], str]] = [
    (errors.EventBusError, "event_bus_unavailable"),
    (errors.DeliveryError, "relay_unavailable"),
    (errors.InboundError, "mailbox_unavailable"),
]

# Seconds a client should wait before trying again after a 503.
RETRY_AFTER_SECONDS = 5

_HTTP_CODES = {
    400: "bad_request",
    401: "unauthorized",
    403: "forbidden",
    404: "not_found",
    405: "method_not_allowed",
    406: "not_acceptable",
    409: "conflict",
    413: "payload_too_large",
    415: "unsupported_media_type",
    422: "validation_error",
    429: "rate_limited",
    503: "unavailable",
}


class ErrorDetail(BaseModel):
    code: str = Field(description="stable machine-readable code, e.g. validation_error")
    message: str = Field(description="what failed, naming the field where there is one")
    details: dict[str, Any] = Field(default_factory=dict)


class ErrorBody(BaseModel):
    """The body of every error answer."""

    error: ErrorDetail


# Declared on every operation, so the OpenAPI schema tells clients (and the schema fuzzer
# checks) what an error looks like; FastAPI's own 422 schema ({"detail": [...]}) is not ours.
ERROR_RESPONSES: dict[int | str, dict[str, Any]] = {
    status: {"model": ErrorBody, "description": description}
    for status, description in [
        (400, "Bad request"),
        (401, "Missing or unknown API key"),
        (403, "The API key lacks the scope"),
        (404, "No such resource"),
        (409, "Conflict with the resource's state"),
        (413, "Over a size limit"),
        (415, "Unsupported Content-Type"),
        (422, "Invalid input; the message names the field"),
        (429, "Rate limited"),
        (503, "A dependency is down or the service mode refuses it"),
    ]
}


def error_body(code: str, message: str, details: Any = None) -> dict[str, Any]:
    return {"error": {"code": code, "message": message, "details": details or {}}}


def error_response(
    status: int,
    code: str,
    message: str,
    details: Any = None,
    headers: Mapping[str, str] | None = None,
) -> JSONResponse:
    return JSONResponse(error_body(code, message, details), status_code=status, headers=headers)


def status_for(exc: errors.EmailSenderError) -> int:
    for error_type, status in STATUS_BY_ERROR:
        if isinstance(exc, error_type):
            return status
    return 500


def client_code(exc: errors.EmailSenderError) -> str:
    for error_type, code in _CODE_FOR_CLIENT:
        if isinstance(exc, error_type):
            return code
    return exc.code


def describe_validation(exc: RequestValidationError) -> tuple[str, list[dict[str, str]]]:
    """Name every bad field: ``body.to.0: value is not a valid email address``."""
    problems = []
    for error in exc.errors():
        location = [str(part) for part in error.get("loc", ())]
        if location and location[0] == "body":
            location = location[1:]
        field = ".".join(location) or "body"
        reason = str(error.get("msg", "invalid")).removeprefix("Value error, ")
        if error.get("type") == "json_invalid":
            field, reason = "body", f"malformed JSON: {error.get('ctx', {}).get('error', reason)}"
        elif error.get("type") == "extra_forbidden":
            reason = "unknown field"
        problems.append({"field": field, "reason": reason})
    message = "; ".join(f"{p['field']}: {p['reason']}" for p in problems)
    return message, problems


def install(app: FastAPI, page_for: PageFor | None = None) -> None:
    """JSON errors; on the console's paths, ``page_for`` answers with a page instead."""

    def answer(
        request: Request,
        status: int,
        code: str,
        message: str,
        details: Any = None,
        headers: Mapping[str, str] | None = None,
    ) -> Response:
        shown = page_for(request, status, message) if page_for is not None else None
        return shown or error_response(status, code, message, details, headers=headers)

    @app.exception_handler(errors.EmailSenderError)
    async def _ours(request: Request, exc: errors.EmailSenderError) -> Response:
        status = status_for(exc)
        if status >= 500:
            logger.error("request_failed", extra={"error": str(exc), "code": exc.code})
        headers = {"Retry-After": str(RETRY_AFTER_SECONDS)} if status == 503 else None
        code = client_code(exc)
        details = exc.details if code == exc.code else {**exc.details, "cause": exc.code}
        return answer(request, status, code, exc.message, details, headers=headers)

    @app.exception_handler(RequestValidationError)
    async def _invalid(request: Request, exc: RequestValidationError) -> Response:
        message, problems = describe_validation(exc)
        return answer(request, 422, "validation_error", message, {"problems": problems})

    @app.exception_handler(StarletteHTTPException)
    async def _http(request: Request, exc: StarletteHTTPException) -> Response:
        code = _HTTP_CODES.get(exc.status_code, "http_error")
        message = str(exc.detail)
        if exc.status_code == 404 and message == "Not Found":
            message = f"no route {request.method} {request.url.path}"
        return answer(request, exc.status_code, code, message, headers=exc.headers)

    @app.exception_handler(Exception)
    async def _unexpected(request: Request, exc: Exception) -> Response:
        logger.exception("request_crashed")
        return answer(request, 500, "internal_error", "internal error; see the error log")
