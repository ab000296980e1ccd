"""msgspec schemas of the HTTP edge. Requests forbid unknown fields; keys are camelCase except the
OAuth-style token request/response fields (``access_token``, ``refresh_token`` …)."""

from __future__ import annotations

from typing import Annotated

import msgspec

from domain.users import User
from entrypoints.wire import UserPublic, iso_ms

# Upper bounds here only stop absurd inputs early; the domain states and checks the real rules.
Text = Annotated[str, msgspec.Meta(max_length=1000)]
Secret = Annotated[str, msgspec.Meta(max_length=1024)]


class Request(msgspec.Struct, frozen=True, forbid_unknown_fields=True, rename="camel"):
    """Base of request bodies."""


class RegisterIn(Request, frozen=True):
    name: Text
    email: Text
    phone_number: Text
    password: Secret


class LoginIn(Request, frozen=True):
    email: Text
    password: Secret


class RefreshIn(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    refresh_token: Secret


class PasswordIn(Request, frozen=True):
    current_password: Secret
    new_password: Secret


class RenameIn(Request, frozen=True):
    name: Text


class TokenOut(msgspec.Struct, frozen=True):
    """A superset of the original service's ``UserToken``."""

    access_token: str
    refresh_token: str
    expires_in: int
    id: int
    name: str
    email: str
    phone_number: str = msgspec.field(name="phoneNumber")
    token_type: str = "bearer"  # noqa: S105 - the OAuth token type, not a secret


class ProfileOut(msgspec.Struct, frozen=True, rename="camel"):
    id: int
    name: str
    email: str
    phone_number: str
    created_at: str

    @classmethod
    def of(cls, user: User) -> ProfileOut:
        return cls(
            id=user.uid,
            name=user.name,
            email=user.email,
            phone_number=user.phone_number,
            created_at=iso_ms(user.created_at),
        )


class UserPage(msgspec.Struct, frozen=True, rename="camel"):
    items: list[UserPublic]
    next_cursor: str | None


class BlockedPage(msgspec.Struct, frozen=True):
    items: list[UserPublic]


class FieldError(msgspec.Struct, frozen=True):
    field: str
    message: str


class Problem(msgspec.Struct, frozen=True, omit_defaults=True):
    """RFC 9457 problem details; ``type`` is a stable machine code."""

    type: str
    title: str
    status: int
    detail: str | None = None
    errors: list[FieldError] | None = None


class Health(msgspec.Struct, frozen=True):
    status: str
    checks: dict[str, str] = msgspec.field(default_factory=dict)
