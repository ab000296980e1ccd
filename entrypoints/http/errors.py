"""Errors as RFC 9457 problem responses: domain errors by the shared table of
:mod:`application.errors`, framework errors by status. Nothing here ever shows a stack trace."""

from __future__ import annotations

import logging
from typing import Any

from litestar import Request, Response
from litestar.exceptions import HTTPException, ValidationException
from litestar.status_codes import HTTP_500_INTERNAL_SERVER_ERROR

from application.errors import wire_error
from domain.errors import AuthenticationError, BusyError, DomainError, InvalidInputError, RateLimitedError
from entrypoints.http.schemas import FieldError, Problem

log = logging.getLogger("p2p_chat.http")

PROBLEM_JSON = "application/problem+json"

_HTTP_TYPES = {
    400: ("validation_error", "Invalid input"),
    401: ("unauthorized", "Not authenticated"),
    403: ("forbidden", "Forbidden"),
    404: ("not_found", "Not found"),
    405: ("method_not_allowed", "Method not allowed"),
    413: ("payload_too_large", "Payload too large"),
    415: ("unsupported_media_type", "Unsupported media type"),
    429: ("rate_limited", "Too many requests"),
    503: ("busy", "Service unavailable"),
}


def problem(
    status: int,
    code: str,
    title: str,
    detail: str | None = None,
    errors: list[FieldError] | None = None,
    headers: dict[str, str] | None = None,
) -> Response[Problem]:
    return Response(
        Problem(type=code, title=title, status=status, detail=detail, errors=errors or None),
        status_code=status,
        media_type=PROBLEM_JSON,
        headers=headers,
    )


def domain_error_to_problem(_: Request[Any, Any, Any], exc: DomainError) -> Response[Problem]:
    row = wire_error(exc)
    status, title = row.status, row.title
    headers = {}
    if isinstance(exc, RateLimitedError | BusyError):
        headers["Retry-After"] = str(exc.retry_after_s)
    if isinstance(exc, AuthenticationError):
        headers["WWW-Authenticate"] = 'Bearer realm="p2p-chat"'
    errors = None
    if isinstance(exc, InvalidInputError):
        errors = [FieldError(field=p.field, message=p.message) for p in exc.problems]
    return problem(status, exc.code, title, exc.message, errors, headers)


def _validation_errors(exc: ValidationException) -> list[FieldError]:
    extra = [item for item in exc.extra if isinstance(item, dict)] if isinstance(exc.extra, list) else []
    return [FieldError(field=_field_name(item.get("key")), message=str(item.get("message", ""))) for item in extra]


def _field_name(key: object) -> str:
    # Litestar names the request body after the handler parameter ("data"); clients know it as the body.
    return "body" if key in (None, "", "data") else str(key)


def http_error_to_problem(_: Request[Any, Any, Any], exc: HTTPException) -> Response[Problem]:
    status = exc.status_code
    if status >= 500:
        log.error("server error %s: %s", status, exc.detail)
    code, title = _HTTP_TYPES.get(status, ("http_error" if status < 500 else "internal", exc.detail or "Error"))
    errors = _validation_errors(exc) if isinstance(exc, ValidationException) else None
    detail = "the request body is larger than the server accepts" if status == 413 else exc.detail
    return problem(status, code, title, detail, errors, exc.headers)


def unexpected_error_to_problem(request: Request[Any, Any, Any], exc: Exception) -> Response[Problem]:
    log.exception("unhandled error on %s %s", request.method, request.url.path, exc_info=exc)
    return problem(HTTP_500_INTERNAL_SERVER_ERROR, "internal", "Internal server error", "an unexpected error occurred")


EXCEPTION_HANDLERS: dict[type[Exception] | int, Any] = {
    DomainError: domain_error_to_problem,
    HTTPException: http_error_to_problem,
    Exception: unexpected_error_to_problem,
}
