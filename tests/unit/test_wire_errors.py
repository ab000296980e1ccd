"""The one table of error codes: each deliberate error has its HTTP status and WebSocket code."""

from __future__ import annotations

import pytest

from application.errors import WIRE_ERRORS, WsErrorCode, wire_error
from domain.errors import (
    BusyError,
    DomainError,
    EmailTakenError,
    InvalidInputError,
    InvalidTokenError,
    RateLimitedError,
    UserNotFoundError,
)


@pytest.mark.parametrize(
    ("error", "status", "ws_code"),
    [
        (InvalidInputError.of("to", "is missing"), 400, WsErrorCode.BAD_REQUEST),
        (InvalidTokenError(), 401, WsErrorCode.BAD_REQUEST),
        (UserNotFoundError(7), 404, WsErrorCode.NOT_FOUND),
        (EmailTakenError(), 409, WsErrorCode.BAD_REQUEST),
        (RateLimitedError(3), 429, WsErrorCode.RATE_LIMITED),
        (BusyError(), 503, WsErrorCode.INTERNAL),
        (DomainError("anything else"), 400, WsErrorCode.BAD_REQUEST),
    ],
)
def test_an_error_finds_its_row_by_its_class(error: DomainError, status: int, ws_code: WsErrorCode) -> None:
    row = wire_error(error)
    assert (row.status, row.ws_code) == (status, ws_code)


def test_the_catch_all_row_comes_last() -> None:
    assert [row.error for row in WIRE_ERRORS].index(DomainError) == len(WIRE_ERRORS) - 1
