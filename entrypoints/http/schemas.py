"""msgspec schemas of the HTTP edge. Requests forbid unknown fields; keys are camelCase except the
OAuth-style token request/response fields (``access_token``, ``refresh_token`` …).

These types are also the OpenAPI document's schemas (``entrypoints.http.openapi`` has msgspec write
them), so what is published is what is decoded. Upper bounds (``max_length``) are checked here, by
the decoder, with the domain's numbers; the domain checks the other rules (with messages that name
each problem, all at once) and states them as patterns, which are published beside them as
``minLength``/``pattern`` (:func:`documented`): one statement of each rule, checked in one place.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

import msgspec

from domain.push import APP_ID_MAX, APP_ID_PATTERN, LABEL_MAX, TOKEN_MAX, TOKEN_PATTERN, PushTarget, TargetKind
from domain.users import (
    EMAIL_MAX,
    EMAIL_PATTERN,
    NAME_MAX,
    NAME_PATTERN,
    PASSWORD_MAX,
    PASSWORD_MIN,
    PASSWORD_PATTERN,
    PHONE_INPUT_MAX,
    PHONE_PATTERN,
    User,
)
from entrypoints.logs import request_id
from entrypoints.wire import Timestamp, UserPublic, WireMessage, iso_ms

REFRESH_TOKEN_MAX = 512


def documented(*, max_length: int, description: str, examples: list[str], **rules: Any) -> msgspec.Meta:
    """A string field's constraint: ``max_length`` is enforced by the decoder; ``rules``
    (``minLength``, ``pattern``) are the domain's checks, published but enforced by the domain."""
    return msgspec.Meta(max_length=max_length, description=description, examples=examples, extra_json_schema=rules)


Name = Annotated[
    str,
    documented(
        max_length=NAME_MAX,
        description="1–100 characters after trimming white space; no control or text-direction characters",
        examples=["Ann"],
        pattern=NAME_PATTERN,
    ),
]
Email = Annotated[
    str,
    documented(
        max_length=EMAIL_MAX,
        description="trimmed; compared case-insensitively and stored as typed",
        examples=["ann@example.com"],
        pattern=EMAIL_PATTERN,
    ),
]
Phone = Annotated[
    str,
    documented(
        max_length=PHONE_INPUT_MAX,
        description="`+` (or `00`) and 8–15 digits; white space and `-.()` are allowed and removed",
        examples=["+1 415 555 0100"],
        pattern=PHONE_PATTERN,
    ),
]
NewPassword = Annotated[
    str,
    documented(
        max_length=PASSWORD_MAX,
        description="8–128 characters, not only white space; never trimmed",
        examples=["correct horse battery"],
        minLength=PASSWORD_MIN,
        pattern=PASSWORD_PATTERN,
    ),
]
Password = Annotated[
    str,
    msgspec.Meta(max_length=PASSWORD_MAX, description="the account's password", examples=["correct horse battery"]),
]
LoginEmail = Annotated[
    str,
    msgspec.Meta(max_length=EMAIL_MAX, description="the account's email, in any case", examples=["ann@example.com"]),
]
RefreshToken = Annotated[
    str,
    msgspec.Meta(max_length=REFRESH_TOKEN_MAX, description="a refresh token from a token response"),
]


class Request(msgspec.Struct, frozen=True, forbid_unknown_fields=True, rename="camel"):
    """Base of request bodies."""


class RegisterIn(Request, frozen=True):
    """A new account. Every field problem is reported at once, in ``errors``."""

    name: Name
    email: Email
    phone_number: Phone
    password: NewPassword


class LoginIn(Request, frozen=True):
    """Credentials; a wrong email or password get the same 401."""

    email: LoginEmail
    password: Password


class RefreshIn(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    """A refresh token to exchange; it is spent, presenting it again revokes its login."""

    refresh_token: RefreshToken


class PasswordIn(Request, frozen=True):
    """A password change: your current password, and the new one."""

    current_password: Password
    new_password: NewPassword


class RenameIn(Request, frozen=True):
    """Your new display name."""

    name: Name


class DeleteAccountIn(Request, frozen=True):
    """Your password, and whether the bodies of the messages you sent are blanked for everyone."""

    password: Password
    erase: Annotated[
        bool,
        msgspec.Meta(description='true: the messages you sent keep their place but their `message` becomes ""'),
    ] = False


class DeviceIn(Request, frozen=True):
    """A push target of this login: where the operator's push gateway reaches this device."""

    kind: Annotated[
        TargetKind,
        msgspec.Meta(description="the push service the gateway uses: FCM, APNs, Web Push, or a plain webhook"),
    ]
    token: Annotated[
        str,
        documented(
            max_length=TOKEN_MAX,
            description="the FCM registration token, APNs device token, or (webpush, webhook) the https:// "
            "endpoint URL; printable ASCII without spaces. Registering a token again moves it to this login",
            examples=["dGhpcyBpcyBhbiBGQ00gdG9rZW4"],
            pattern=TOKEN_PATTERN,
        ),
    ]
    app_id: Annotated[
        str,
        documented(
            max_length=APP_ID_MAX,
            description="the app the token belongs to (e.g. its bundle id), passed on to the gateway",
            examples=["com.example.chat.ios"],
            pattern=APP_ID_PATTERN,
        ),
    ]
    label: (
        Annotated[
            str,
            documented(
                max_length=LABEL_MAX,
                description="a name for the device, shown back in GET /devices; 1–100 characters after trimming "
                "white space, no control or text-direction characters",
                examples=["Ann's phone"],
                pattern=NAME_PATTERN,
            ),
        ]
        | None
    ) = None


class DeviceOut(msgspec.Struct, frozen=True, rename="camel"):
    """A registered push target. The token is not echoed back."""

    id: str
    kind: TargetKind
    app_id: str
    label: str | None
    login_id: Annotated[str, msgspec.Meta(description="the login (`sid`) it belongs to; its logout removes it")]
    current: Annotated[bool, msgspec.Meta(description="it belongs to the login making this request")]
    created_at: Timestamp

    @classmethod
    def of(cls, target: PushTarget, current_sid: str) -> DeviceOut:
        return cls(
            id=target.id,
            kind=target.kind,
            app_id=target.app_id,
            label=target.label,
            login_id=target.login_id,
            current=target.login_id == current_sid,
            created_at=iso_ms(target.created_at),
        )


class DevicePage(msgspec.Struct, frozen=True):
    """Your push targets, of all your logins, oldest first."""

    items: list[DeviceOut]


class TokenOut(msgspec.Struct, frozen=True):
    """A signed-in session: tokens, and the account (a superset of the original ``UserToken``)."""

    access_token: Annotated[str, msgspec.Meta(description="JWT for `Authorization: Bearer`")]
    refresh_token: Annotated[str, msgspec.Meta(description="single use; exchange at /auth/refresh")]
    expires_in: Annotated[int, msgspec.Meta(description="seconds until the access token expires")]
    id: int
    name: str
    email: str
    phone_number: str = msgspec.field(name="phoneNumber")
    token_type: Literal["bearer"] = "bearer"  # noqa: S105 - the OAuth token type, not a secret


class ProfileOut(msgspec.Struct, frozen=True, rename="camel"):
    """Your own account."""

    id: int
    name: str
    email: str
    phone_number: str
    created_at: Timestamp

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
    """A page of users; pass ``nextCursor`` back as ``cursor`` for the next one (null: no more)."""

    items: list[UserPublic]
    next_cursor: str | None


class SessionOut(msgspec.Struct, frozen=True, rename="camel"):
    """One of your live logins (a device or client that signed in)."""

    id: Annotated[str, msgspec.Meta(description="the login's id: `DELETE /auth/sessions/{id}` ends it")]
    created_at: Annotated[Timestamp, msgspec.Meta(description="when it signed in")]
    last_used_at: Annotated[
        Timestamp,
        msgspec.Meta(description="when it was last used (a request, a socket, a refresh), to a minute"),
    ]
    client: Annotated[str | None, msgspec.Meta(description="its User-Agent when it signed in (at most 100 characters)")]
    current: Annotated[bool, msgspec.Meta(description="true for the login of the token of this request")]


class SessionPage(msgspec.Struct, frozen=True):
    """Your live logins, oldest first."""

    items: list[SessionOut]


class ExportProfile(msgspec.Struct, frozen=True, rename="camel"):
    id: int
    name: str
    email: str
    phone_number: str
    created_at: Timestamp
    last_seen_at: Timestamp | None


class ExportLogin(msgspec.Struct, frozen=True, rename="camel"):
    id: str
    created_at: Timestamp
    last_used_at: Timestamp | None
    revoked_at: Timestamp | None
    client: str | None


class ExportDevice(msgspec.Struct, frozen=True, rename="camel"):
    """A push target of one of your live logins (as `GET /devices` shows it: no token)."""

    id: str
    kind: TargetKind
    app_id: str
    label: str | None
    login_id: str
    created_at: Timestamp


class ExportPerson(msgspec.Struct, frozen=True):
    id: int
    name: str


class ExportConversation(msgspec.Struct, frozen=True, rename="camel"):
    """A conversation: the peer, the counters, every message you may see in it ascending by seq."""

    peer: ExportPerson
    last_seq: int
    read_seq: int
    peer_read_seq: int
    messages: list[WireMessage]


class AccountExport(msgspec.Struct, frozen=True, rename="camel"):
    """Everything your account holds (`GET /users/me/export`), written as it is read."""

    format: Annotated[str, msgspec.Meta(description="`p2p-chat-export/1`")]
    exported_at: Timestamp
    profile: ExportProfile
    logins: Annotated[list[ExportLogin], msgspec.Meta(description="every login, revoked ones too")]
    devices: Annotated[list[ExportDevice], msgspec.Meta(description="the push targets of your live logins")]
    contacts: list[ExportPerson]
    blocks: Annotated[list[ExportPerson], msgspec.Meta(description="the users you blocked")]
    conversations: Annotated[list[ExportConversation], msgspec.Meta(description="by peer id")]


class BlockedPage(msgspec.Struct, frozen=True):
    """The users you blocked (never with presence)."""

    items: list[UserPublic]


class FieldError(msgspec.Struct, frozen=True):
    """One malformed input: its wire name (``body`` for the body as a whole) and what is wrong."""

    field: str
    message: str


class Problem(msgspec.Struct, frozen=True):
    """An RFC 9457 problem (``application/problem+json``). ``type`` is a stable machine code
    (``validation_error``, ``email_taken`` …: each response lists its own)."""

    type: Annotated[str, msgspec.Meta(description="stable machine code of the error", examples=["validation_error"])]
    title: Annotated[str, msgspec.Meta(description="short human summary of the type")]
    status: Annotated[int, msgspec.Meta(ge=400, le=599, description="the HTTP status")]
    # Absent rather than null when there is nothing to say (UNSET is never encoded).
    detail: Annotated[str, msgspec.Meta(description="what went wrong this time")] | msgspec.UnsetType = msgspec.UNSET
    errors: Annotated[list[FieldError], msgspec.Meta(description="every malformed field (400 only)")] | (
        msgspec.UnsetType
    ) = msgspec.UNSET
    request_id: (
        Annotated[
            str,
            msgspec.Meta(description="the request's id, as in the X-Request-ID response header and the server's log"),
        ]
        | msgspec.UnsetType
    ) = msgspec.field(default=msgspec.UNSET, name="requestId")

    @classmethod
    def of(cls, status: int, code: str, title: str, detail: str | None, errors: list[FieldError] | None) -> Problem:
        return cls(
            type=code,
            title=title,
            status=status,
            detail=msgspec.UNSET if detail is None else detail,
            errors=errors or msgspec.UNSET,
            request_id=request_id.get() or msgspec.UNSET,
        )


CheckState = Literal["ok", "unavailable"]


class Health(msgspec.Struct, frozen=True):
    """Liveness or readiness, with each dependency's state."""

    status: CheckState
    checks: dict[str, CheckState]
