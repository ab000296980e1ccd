"""How each deliberate error shows on the wire: one table for the HTTP and the WebSocket edge.

A row gives the HTTP status and problem title, and the WebSocket ``error`` frame's code, of a
:class:`domain.errors.DomainError` class; the first row whose class matches wins, so the
catch-all :class:`DomainError` row comes last. The HTTP problem ``type`` is the error's own
``code``; the WebSocket codes are the contract's (§3.3), a shorter list. The codes the live
session uses for frames no use case saw (``unknown_type``, ``too_large`` …) are
:class:`WsErrorCode` members too.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

from domain.errors import (
    AuthenticationError,
    BusyError,
    ConflictError,
    DomainError,
    ForbiddenError,
    InvalidInputError,
    NotFoundError,
    RateLimitedError,
)


class WsErrorCode(StrEnum):
    """The ``code`` of a WebSocket ``error`` frame."""

    BAD_REQUEST = "bad_request"
    UNKNOWN_TYPE = "unknown_type"
    TOO_LARGE = "too_large"
    NOT_FOUND = "not_found"
    FORBIDDEN = "forbidden"
    RATE_LIMITED = "rate_limited"
    INTERNAL = "internal"


@dataclass(frozen=True, slots=True)
class WireError:
    """One row of :data:`WIRE_ERRORS`."""

    error: type[DomainError]
    status: int
    title: str
    ws_code: WsErrorCode


WIRE_ERRORS: tuple[WireError, ...] = (
    WireError(InvalidInputError, 400, "Invalid input", WsErrorCode.BAD_REQUEST),
    WireError(AuthenticationError, 401, "Not authenticated", WsErrorCode.BAD_REQUEST),
    WireError(ForbiddenError, 403, "Forbidden", WsErrorCode.FORBIDDEN),
    WireError(NotFoundError, 404, "Not found", WsErrorCode.NOT_FOUND),
    WireError(ConflictError, 409, "Conflict", WsErrorCode.BAD_REQUEST),
    WireError(RateLimitedError, 429, "Too many requests", WsErrorCode.RATE_LIMITED),
    WireError(BusyError, 503, "Busy", WsErrorCode.INTERNAL),
    WireError(DomainError, 400, "Bad request", WsErrorCode.BAD_REQUEST),
)


def wire_error(exc: DomainError) -> WireError:
    """The first row of :data:`WIRE_ERRORS` whose class ``exc`` is an instance of."""
    return wire_error_of(type(exc))


def wire_error_of(error: type[DomainError]) -> WireError:
    """The first row of :data:`WIRE_ERRORS` whose class is ``error`` or a base of it (the HTTP
    edge documents each operation's errors by class, through the same rows it answers with)."""
    return next(row for row in WIRE_ERRORS if issubclass(error, row.error))
