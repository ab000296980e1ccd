"""Users: the account entity, and the rules for names, emails, phone numbers and passwords.

Lengths are counted in Unicode code points. Emails are trimmed and compared case-insensitively
(``email_key``); phone numbers are normalised to ``+`` and 8–15 digits; names are trimmed and
searched through a stored ``casefold()`` (``name_key``) so every database agrees on case.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import TYPE_CHECKING

from domain.errors import FieldProblem, InvalidInputError

if TYPE_CHECKING:
    from datetime import datetime

NAME_MIN, NAME_MAX = 1, 100
PASSWORD_MIN, PASSWORD_MAX = 8, 128
EMAIL_MAX = 254
PHONE_INPUT_MAX = 64  # as typed, separators included
DELETED_NAME = "Deleted account"
"""The name a deleted account shows to others (its conversations stay with its peers)."""

# The rules below are regular expressions written in the subset that Python's ``re`` and JSON
# Schema (ECMA-262) read alike — explicit character classes only, no ``\s`` or ``\d`` — so the
# HTTP edge can publish them as ``pattern``s that mean exactly what is checked here.
WHITESPACE = r"\t-\r\x1c-\x20\x85\xa0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000"
"""Character-class body of what ``str.strip()`` removes (``str.isspace()``), for patterns."""
CONTROLS = r"\x00-\x1f\x7f-\x9f"
"""Character-class body of the control characters (Unicode category Cc)."""
# Explicit direction embeddings, overrides and isolates: they let a name display as another.
BIDI_CONTROLS = r"\u202a-\u202e\u2066-\u2069"
_SPACE = f"[{WHITESPACE}]"
_NAME_CHAR = f"[^{CONTROLS}{BIDI_CONTROLS}]"
_NAME_EDGE = f"[^{WHITESPACE}{CONTROLS}{BIDI_CONTROLS}]"
NAME_PATTERN = f"^{_SPACE}*{_NAME_EDGE}(?:{_NAME_CHAR}*{_NAME_EDGE})?{_SPACE}*$"
"""A display name as sent: not blank, no control or text-direction characters; white space around
it is trimmed. With at most :data:`NAME_MAX` characters as sent, this is :func:`normalise_name`."""
_EMAIL_PART = f"[^@.{WHITESPACE}{CONTROLS}]+"
EMAIL_PATTERN = f"^{_SPACE}*[^@{WHITESPACE}{CONTROLS}]+@{_EMAIL_PART}(?:\\.{_EMAIL_PART})+{_SPACE}*$"
"""An email address as sent (white space around it is trimmed), at most :data:`EMAIL_MAX` characters."""
_PHONE_SEPARATOR = f"[{WHITESPACE}\\-.()]"
PHONE_PATTERN = (
    f"^{_PHONE_SEPARATOR}*(?:\\+|0{_PHONE_SEPARATOR}*0)(?:{_PHONE_SEPARATOR}*[0-9]){{8,15}}{_PHONE_SEPARATOR}*$"
)
"""A phone number as sent: ``+`` (or ``00``) and 8–15 digits, with white space and ``-.()`` anywhere."""
PASSWORD_PATTERN = f"[^{WHITESPACE}]"
"""A password contains a character that is not white space (8–128 characters, never trimmed)."""
_NAME = re.compile(NAME_PATTERN)
_EMAIL = re.compile(EMAIL_PATTERN)
_PHONE = re.compile(PHONE_PATTERN)
_PHONE_SEPARATORS = re.compile(_PHONE_SEPARATOR)
_PASSWORD = re.compile(PASSWORD_PATTERN)
# Lone surrogates cannot travel in JSON (the decoder refuses them) nor be stored; a caller that
# builds a string in Python still must not get one through.
_SURROGATES = re.compile("[\ud800-\udfff]")


def normalise_name(raw: str, field: str = "name") -> str:
    """A display name, trimmed; 1–100 code points; no control or text-direction characters."""
    name = raw.strip()
    if not NAME_MIN <= len(name) <= NAME_MAX:
        raise InvalidInputError.of(field, f"must be {NAME_MIN}–{NAME_MAX} characters after trimming")
    if _NAME.fullmatch(raw) is None or _SURROGATES.search(raw) is not None:
        raise InvalidInputError.of(field, "must not contain control or text-direction characters")
    return name


def account_name(raw: str, field: str = "name") -> str:
    """A user's name: :func:`normalise_name`, and not :data:`DELETED_NAME` in any case, so that
    nobody can pass for a deleted account."""
    name = normalise_name(raw, field)
    if name_key(name) == name_key(DELETED_NAME):
        raise InvalidInputError.of(field, f'"{DELETED_NAME}" is reserved: it is how a deleted account is shown')
    return name


def name_key(name: str) -> str:
    """The form names are searched by: ``casefold()`` of the stored name."""
    return name.casefold()


def normalise_email(raw: str, field: str = "email") -> str:
    """An email address, trimmed; the case is kept for display, compare with :func:`email_key`."""
    email = raw.strip()
    if len(email) > EMAIL_MAX or _EMAIL.fullmatch(raw) is None:
        raise InvalidInputError.of(field, "is not a valid email address")
    return email


def email_key(email: str) -> str:
    """The case-insensitive identity of an email address."""
    return email.strip().lower()


def normalise_phone(raw: str, field: str = "phoneNumber") -> str:
    """White space and ``-.()`` removed, a leading ``00`` becomes ``+``; then ``+`` and 8–15 digits."""
    if _PHONE.fullmatch(raw) is None:
        raise InvalidInputError.of(field, "must be + and 8–15 digits (spaces and -.() are allowed)")
    phone = _PHONE_SEPARATORS.sub("", raw)
    return "+" + phone[2:] if phone.startswith("00") else phone


def try_normalise_phone(raw: str) -> str | None:
    """The normalised number, or ``None`` when ``raw`` is not a phone number (for search)."""
    try:
        return normalise_phone(raw)
    except InvalidInputError:
        return None


def check_password(raw: str, field: str = "password") -> str:
    """A new password: 8–128 code points, not only whitespace. Returned unchanged (never trimmed)."""
    if not PASSWORD_MIN <= len(raw) <= PASSWORD_MAX:
        raise InvalidInputError.of(field, f"must be {PASSWORD_MIN}–{PASSWORD_MAX} characters")
    if _PASSWORD.search(raw) is None:
        raise InvalidInputError.of(field, "must not be only whitespace")
    return raw


@dataclass(frozen=True, slots=True, kw_only=True)
class Registration:
    """Validated registration data; every problem is reported at once."""

    name: str
    email: str
    phone_number: str
    password: str

    @classmethod
    def parse(cls, *, name: str, email: str, phone_number: str, password: str) -> Registration:
        problems: list[FieldProblem] = []
        values: dict[str, str] = {}
        for key, check, raw in (
            ("name", account_name, name),
            ("email", normalise_email, email),
            ("phone_number", normalise_phone, phone_number),
            ("password", check_password, password),
        ):
            try:
                values[key] = check(raw)
            except InvalidInputError as exc:
                problems.extend(exc.problems)
        if problems:
            raise InvalidInputError(*problems)
        return cls(**values)


@dataclass(eq=False, kw_only=True)
class User:
    """An account. ``id`` is assigned by the store on insert."""

    id: int | None = None
    name: str
    name_key: str
    email: str
    email_key: str
    phone_number: str
    password_hash: str
    created_at: datetime
    last_seen_at: datetime | None = None
    deleted_at: datetime | None = None

    @classmethod
    def register(cls, data: Registration, *, password_hash: str, now: datetime) -> User:
        return cls(
            name=data.name,
            name_key=name_key(data.name),
            email=data.email,
            email_key=email_key(data.email),
            phone_number=data.phone_number,
            password_hash=password_hash,
            created_at=now,
        )

    @property
    def uid(self) -> int:
        """The id of a stored user (raises if the user was never stored)."""
        if self.id is None:
            raise RuntimeError("user has no id before it is stored")
        return self.id

    def rename(self, raw: str) -> None:
        self.name = account_name(raw)
        self.name_key = name_key(self.name)

    def change_password_hash(self, password_hash: str) -> None:
        self.password_hash = password_hash

    @property
    def deleted(self) -> bool:
        return self.deleted_at is not None

    def erase(self, now: datetime) -> None:
        """Delete the account: its profile is erased and the row stays as a tombstone, so the
        peers' conversations keep their other user. The name becomes :data:`DELETED_NAME`; the
        email and phone number become ``~<id>`` — no email or number a registration accepts, so
        both are free for a new account — and the password hash is emptied (no password matches)."""
        self.name = DELETED_NAME
        self.name_key = ""
        self.email = ""
        self.email_key = self.phone_number = f"~{self.uid}"
        self.password_hash = ""
        self.last_seen_at = None
        self.deleted_at = now


@dataclass(frozen=True, slots=True, kw_only=True)
class UserCard:
    """What another user may see of a user: never email, phone or hash.

    ``online``/``last_seen_at`` are ``None`` unless the viewer may see the user's presence.
    """

    id: int
    name: str
    online: bool | None = None
    last_seen_at: datetime | None = None
