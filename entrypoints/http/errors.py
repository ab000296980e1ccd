"""Errors as RFC 9457 problem responses: domain errors by the shared table of
:mod:`application.errors`, framework errors by status. Nothing here ever shows a stack trace."""

from __future__ import annotations

import logging
from typing import Any

import msgspec
from litestar import Request, Response
from litestar.exceptions import HTTPException, SerializationException, ValidationException
from litestar.status_codes import HTTP_500_INTERNAL_SERVER_ERROR

from application.errors import wire_error
from domain.errors import AuthenticationError, BusyError, DomainError, InvalidInputError, RateLimitedError
from entrypoints.http.client import client_address
from entrypoints.http.refusals import HTTP_TYPES, PROBLEM_JSON
from entrypoints.http.schemas import FieldError, Problem

log = logging.getLogger("p2p_chat.http")


def problem(
    status: int,
    code: str,
    title: str,
    detail: str | None = None,
    errors: list[FieldError] | None = None,
    headers: dict[str, str] | None = None,
) -> Response[Problem]:
    return Response(
        Problem.of(status, code, title, detail, errors),
        status_code=status,
        media_type=PROBLEM_JSON,
        headers=headers,
    )


def domain_error_to_problem(request: Request[Any, Any, Any], exc: DomainError) -> Response[Problem]:
    row = wire_error(exc)
    status, title = row.status, row.title
    if status in REFUSALS_LOGGED:
        log_refusal(request, status, exc.code)
    headers = {}
    if isinstance(exc, RateLimitedError | BusyError):
        headers["Retry-After"] = str(exc.retry_after_s)
    if isinstance(exc, AuthenticationError):
        headers["WWW-Authenticate"] = 'Bearer realm="p2p-chat"'
    errors = None
    if isinstance(exc, InvalidInputError):
        errors = [FieldError(field=p.field, message=p.message) for p in exc.problems]
    return problem(status, exc.code, title, exc.message, errors, headers)


# Authentication failures and limits: one line each, with the route, the client address and the
# user when known, never what was sent (an email, a password, a token, a search term).
REFUSALS_LOGGED = {401: logging.INFO, 403: logging.INFO, 429: logging.WARNING}
TRUSTED_PROXIES_STATE = "trusted_proxies"  # app.state: the networks whose X-Forwarded-For counts


def log_refusal(request: Request[Any, Any, Any], status: int, code: str) -> None:
    trusted = request.app.state.get(TRUSTED_PROXIES_STATE, ())
    route = request.scope.get("path_template") or request.url.path
    fields: dict[str, Any] = {
        "status": status,
        "code": code,
        "route": route,
        "client": client_address(request, trusted),
    }
    log.log(REFUSALS_LOGGED[status], "refused %s %s: %d %s", request.method, route, status, code, extra={"ctx": fields})


def problem_bytes(status: int, detail: str) -> tuple[bytes, list[tuple[bytes, bytes]]]:
    """The body and headers of a problem answered below the framework (CORS preflight, WebSocket
    handshake), typed by :data:`HTTP_TYPES`."""
    code, title = HTTP_TYPES[status]
    body = msgspec.json.encode(Problem.of(status, code, title, detail, None))
    return body, [(b"content-type", PROBLEM_JSON.encode()), (b"content-length", str(len(body)).encode())]


def _validation_errors(exc: ValidationException) -> list[FieldError]:
    extra = [item for item in exc.extra if isinstance(item, dict)] if isinstance(exc.extra, list) else []
    return [FieldError(field=_field_name(item.get("key")), message=str(item.get("message", ""))) for item in extra]


def _errors_of(exc: HTTPException) -> list[FieldError] | None:
    if isinstance(exc, ValidationException):
        return _validation_errors(exc)
    if isinstance(exc.__cause__, SerializationException):  # the body is not JSON at all
        return [FieldError(field="body", message=f"is not valid JSON: {exc.detail}")]
    return None


def _field_name(key: object) -> str:
    # Litestar names the request body after the handler parameter ("data"); clients know it as the body.
    return "body" if key in (None, "", "data") else str(key)


def http_error_to_problem(_: Request[Any, Any, Any], exc: HTTPException) -> Response[Problem]:
    status = exc.status_code
    if status >= 500:
        log.error("server error %s: %s", status, exc.detail)
    code, title = HTTP_TYPES.get(status, ("http_error" if status < 500 else "internal", exc.detail or "Error"))
    errors = _errors_of(exc)
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
