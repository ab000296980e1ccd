"""The error hierarchy: stable wire codes, field problems, retry hints."""

from __future__ import annotations

import pytest

from domain.errors import (
    AuthenticationError,
    BusyError,
    ConflictError,
    DomainError,
    EmailTakenError,
    FieldProblem,
    ForbiddenError,
    InvalidCredentialsError,
    InvalidInputError,
    InvalidTokenError,
    LoginRevokedError,
    NotFoundError,
    PhoneTakenError,
    RateLimitedError,
    UserNotFoundError,
)


@pytest.mark.parametrize(
    ("error", "code", "family"),
    [
        (InvalidInputError.of("email", "bad"), "validation_error", InvalidInputError),
        (UserNotFoundError(7), "not_found", NotFoundError),
        (EmailTakenError(), "email_taken", ConflictError),
        (PhoneTakenError(), "phone_taken", ConflictError),
        (InvalidCredentialsError(), "unauthorized", AuthenticationError),
        (InvalidTokenError(), "unauthorized", AuthenticationError),
        (LoginRevokedError(), "unauthorized", AuthenticationError),
        (ForbiddenError("no"), "forbidden", ForbiddenError),
        (RateLimitedError(3), "rate_limited", RateLimitedError),
        (BusyError(), "busy", BusyError),
    ],
)
def test_every_error_carries_its_stable_wire_code_and_family(
    error: DomainError, code: str, family: type[DomainError]
) -> None:
    assert error.code == code
    assert isinstance(error, family)
    assert isinstance(error, DomainError)
    assert str(error) == error.message


def test_invalid_input_lists_every_problem_in_its_message() -> None:
    error = InvalidInputError(FieldProblem("email", "is bad"), FieldProblem("name", "is empty"))

    assert error.problems == (FieldProblem("email", "is bad"), FieldProblem("name", "is empty"))
    assert error.message == "email: is bad; name: is empty"


def test_invalid_input_without_problems_still_has_a_message() -> None:
    assert InvalidInputError().message == "invalid input"


def test_invalid_input_of_makes_a_single_field_problem() -> None:
    assert InvalidInputError.of("limit", "too big").problems == (FieldProblem("limit", "too big"),)


def test_user_not_found_remembers_the_id() -> None:
    error = UserNotFoundError(42)

    assert error.user_id == 42
    assert "42" in error.message


def test_invalid_credentials_never_says_whether_email_or_password_was_wrong() -> None:
    assert InvalidCredentialsError().message == "invalid email or password"


@pytest.mark.parametrize("error_type", [RateLimitedError, BusyError])
@pytest.mark.parametrize(("given", "expected"), [(-5, 1), (0, 1), (1, 1), (90, 90)])
def test_retry_after_is_at_least_one_second(
    error_type: type[RateLimitedError] | type[BusyError], given: int, expected: int
) -> None:
    assert error_type(given).retry_after_s == expected


def test_busy_defaults_to_retry_after_one_second() -> None:
    assert BusyError().retry_after_s == 1
