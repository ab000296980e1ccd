"""What an HTTP operation answers when it does not succeed, stated once for both the answer and
its documentation.

Each operation lists its :class:`Refusal`\\ s (``responses=answers(...)`` on the handler); the
status, problem ``type`` and title of a domain error come from the shared table of
:mod:`application.errors` — the same rows :mod:`entrypoints.http.errors` answers with — and those
of framework-level refusals from :data:`HTTP_TYPES`, which the error handler also uses.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

import msgspec
from litestar.openapi import ResponseSpec
from litestar.openapi.spec import Example

from application.common import MAX_ID
from application.errors import wire_error_of
from application.ports import StoreUnavailableError
from domain.errors import (
    AuthenticationError,
    BusyError,
    DomainError,
    InvalidInputError,
    UserNotFoundError,
)
from entrypoints.http.schemas import FieldError, Problem

PROBLEM_JSON = "application/problem+json"

HTTP_TYPES: dict[int, tuple[str, str]] = {
    400: ("validation_error", "Invalid input"),
    401: ("unauthorized", "Not authenticated"),
    403: ("forbidden", "Forbidden"),
    404: ("not_found", "Not found"),
    405: ("method_not_allowed", "Method not allowed"),
    408: ("request_timeout", "Request timeout"),
    413: ("payload_too_large", "Payload too large"),
    415: ("unsupported_media_type", "Unsupported media type"),
    429: ("rate_limited", "Too many requests"),
    500: ("internal", "Internal server error"),
    503: ("busy", "Service unavailable"),
}
"""Problem ``type`` and title of a refusal the framework (not a use case) makes, by status."""


@dataclass(frozen=True, slots=True)
class Refusal:
    """One way an operation can fail: status, problem ``type`` and title, and when it happens
    (``field``: the ``errors`` entry a 400 names)."""

    status: int
    code: str
    title: str
    when: str
    field: str | None = None

    def example(self) -> dict[str, Any]:
        errors = [FieldError(field=self.field, message=self.when)] if self.field else None
        problem = Problem.of(self.status, self.code, self.title, self.when, errors)
        example: dict[str, Any] = msgspec.to_builtins(problem)
        return example


def refusal(error: type[DomainError], when: str, *, field: str | None = None) -> Refusal:
    """How a use case's ``error`` shows: by the shared error table."""
    row = wire_error_of(error)
    return Refusal(row.status, error.code, row.title, when, field)


def http_refusal(status: int, when: str, *, field: str | None = None) -> Refusal:
    """How a refusal of the framework or of this edge shows: by :data:`HTTP_TYPES`."""
    code, title = HTTP_TYPES[status]
    return Refusal(status, code, title, when, field)


def invalid(field: str, when: str) -> Refusal:
    return refusal(InvalidInputError, when, field=field)


MALFORMED_BODY = http_refusal(
    400, "the body is not JSON, or not the documented object (missing, unknown or mistyped fields)", field="body"
)
BODY_TOO_LARGE = http_refusal(413, "the body is larger than CHAT_MAX_HTTP_BODY_BYTES (64 KiB by default)")
NOT_JSON = http_refusal(415, "the body is not sent as application/json")
JSON_BODY = (MALFORMED_BODY, BODY_TOO_LARGE, NOT_JSON)
"""Every operation that reads a JSON body."""

BAD_TOKEN = refusal(AuthenticationError, "no bearer token, or a malformed, expired or revoked one")
STORE_DOWN = refusal(StoreUnavailableError, "the database is unavailable; nothing was changed, retry after Retry-After")
HASHING_BUSY = refusal(BusyError, "every password-hashing slot stayed busy for 1 s; retry after Retry-After")
UNKNOWN_USER = refusal(UserNotFoundError, "no user has this id")
BAD_LIMIT = http_refusal(400, "a query parameter is out of its documented range", field="limit")
BAD_CURSOR = invalid("cursor", "is not a cursor this server issued")
INT64_ID = {"format": "int64", "maximum": MAX_ID}
"""Published bounds of an id in a path: beyond them no user exists (404), as for any unknown id."""
INTERNAL = http_refusal(500, "a server bug; the body never contains a stack trace")


def answers(*refusals: Refusal | Iterable[Refusal]) -> dict[int, ResponseSpec]:
    """The ``responses`` of an operation that may refuse in these ways (and, like every
    operation, with 500 ``internal`` on a bug): one problem response per status, each way an
    example of it."""
    flat: list[Refusal] = []
    for item in refusals:
        flat.extend([item] if isinstance(item, Refusal) else item)
    flat.append(INTERNAL)
    by_status: dict[int, list[Refusal]] = {}
    for item in flat:
        by_status.setdefault(item.status, []).append(item)
    return {status: _response(group) for status, group in sorted(by_status.items())}


def _response(group: list[Refusal]) -> ResponseSpec:
    lines = "\n".join(f"- `{r.code}`: {r.when}" for r in group)
    return ResponseSpec(
        data_container=Problem,
        media_type=PROBLEM_JSON,
        description=f"{group[0].title} (`application/problem+json`):\n\n{lines}",
        generate_examples=False,
        examples=[Example(id=key, summary=r.when, value=r.example()) for key, r in _keyed(group)],
    )


def _keyed(group: list[Refusal]) -> list[tuple[str, Refusal]]:
    """Each refusal with a distinct example key: its code, numbered from the second on."""
    seen: dict[str, int] = {}
    keyed = []
    for item in group:
        seen[item.code] = seen.get(item.code, 0) + 1
        keyed.append((item.code if seen[item.code] == 1 else f"{item.code}_{seen[item.code]}", item))
    return keyed
