"""Every error the model and the use cases raise on purpose.

Each class carries a stable machine ``code`` that the edges put on the wire (problem ``type`` over
HTTP, ``error.code`` over WebSocket); the edges map classes to statuses in one table.

    DomainError
    ├── InvalidInputError            validation_error   one or more fields are malformed
    ├── NotFoundError                not_found
    │   └── UserNotFoundError
    ├── ConflictError                conflict
    │   ├── EmailTakenError          email_taken
    │   └── PhoneTakenError          phone_taken
    ├── AuthenticationError          unauthorized       who you are could not be established
    │   ├── InvalidCredentialsError                     wrong email or password (never says which)
    │   ├── InvalidTokenError                           bad, expired or tampered token
    │   └── LoginRevokedError                           the token's login (sid) was revoked
    ├── ForbiddenError               forbidden
    ├── RateLimitedError             rate_limited       carries ``retry_after_s``
    └── BusyError                    busy               a bounded resource is exhausted; ``retry_after_s``
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class FieldProblem:
    """One malformed input field: its wire name and what is wrong with it."""

    field: str
    message: str


class DomainError(Exception):
    """Root of every deliberate error; ``code`` is the stable wire code."""

    code = "domain_error"

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class InvalidInputError(DomainError):
    code = "validation_error"

    def __init__(self, *problems: FieldProblem) -> None:
        super().__init__("; ".join(f"{p.field}: {p.message}" for p in problems) or "invalid input")
        self.problems = problems

    @classmethod
    def of(cls, field: str, message: str) -> InvalidInputError:
        return cls(FieldProblem(field, message))


class NotFoundError(DomainError):
    code = "not_found"


class UserNotFoundError(NotFoundError):
    def __init__(self, user_id: int) -> None:
        super().__init__(f"user {user_id} does not exist")
        self.user_id = user_id


class SessionNotFoundError(NotFoundError):
    def __init__(self) -> None:
        super().__init__("you have no such session")


class ConflictError(DomainError):
    code = "conflict"


class EmailTakenError(ConflictError):
    code = "email_taken"

    def __init__(self) -> None:
        super().__init__("an account with this email already exists")


class PhoneTakenError(ConflictError):
    code = "phone_taken"

    def __init__(self) -> None:
        super().__init__("an account with this phone number already exists")


class AuthenticationError(DomainError):
    code = "unauthorized"


class InvalidCredentialsError(AuthenticationError):
    def __init__(self) -> None:
        super().__init__("invalid email or password")


class InvalidTokenError(AuthenticationError):
    def __init__(self, message: str = "invalid or expired token") -> None:
        super().__init__(message)


class LoginRevokedError(AuthenticationError):
    def __init__(self) -> None:
        super().__init__("this login has been revoked")


class ForbiddenError(DomainError):
    code = "forbidden"


class RateLimitedError(DomainError):
    code = "rate_limited"

    def __init__(self, retry_after_s: int, message: str = "too many attempts, retry later") -> None:
        super().__init__(message)
        self.retry_after_s = max(1, retry_after_s)


class BusyError(DomainError):
    code = "busy"

    def __init__(self, retry_after_s: int = 1, message: str = "the server is busy, retry shortly") -> None:
        super().__init__(message)
        self.retry_after_s = max(1, retry_after_s)
