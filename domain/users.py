"""Users: the account entity, and the rules for names, emails, phone numbers and passwords.

Lengths are counted in Unicode code points. Emails are trimmed and compared case-insensitively
(``email_key``); phone numbers are normalised to ``+`` and 8–15 digits; names are trimmed and
searched through a stored ``casefold()`` (``name_key``) so every database agrees on case.
"""

from __future__ import annotations

import re
import unicodedata
from dataclasses import dataclass
from typing import TYPE_CHECKING

from domain.errors import FieldProblem, InvalidInputError

if TYPE_CHECKING:
    from datetime import datetime

NAME_MIN, NAME_MAX = 1, 100
PASSWORD_MIN, PASSWORD_MAX = 8, 128
EMAIL_MAX = 254
_EMAIL = re.compile(r"[^@\s]+@[^@\s.]+(\.[^@\s.]+)+")
_PHONE_SEPARATORS = re.compile(r"[\s\-.()]")
# Explicit direction embeddings, overrides and isolates: they let a name display as another.
_BIDI_CONTROLS = frozenset("\u202a\u202b\u202c\u202d\u202e\u2066\u2067\u2068\u2069")
_PHONE = re.compile(r"\+[0-9]{8,15}")


def normalise_name(raw: str, field: str = "name") -> str:
    """A display name, trimmed; 1–100 code points; no control or text-direction characters."""
    name = raw.strip()
    if not NAME_MIN <= len(name) <= NAME_MAX:
        raise InvalidInputError.of(field, f"must be {NAME_MIN}–{NAME_MAX} characters after trimming")
    if any(unicodedata.category(ch) in ("Cc", "Cs") or ch in _BIDI_CONTROLS for ch in name):
        raise InvalidInputError.of(field, "must not contain control or text-direction characters")
    return name


def name_key(name: str) -> str:
    """The form names are searched by: ``casefold()`` of the stored name."""
    return name.casefold()


def normalise_email(raw: str, field: str = "email") -> str:
    """An email address, trimmed; the case is kept for display, compare with :func:`email_key`."""
    email = raw.strip()
    if len(email) > EMAIL_MAX or _EMAIL.fullmatch(email) is None:
        raise InvalidInputError.of(field, "is not a valid email address")
    return email


def email_key(email: str) -> str:
    """The case-insensitive identity of an email address."""
    return email.strip().lower()


def normalise_phone(raw: str, field: str = "phoneNumber") -> str:
    """White space and ``-.()`` removed, a leading ``00`` becomes ``+``; then ``+`` and 8–15 digits."""
    phone = _PHONE_SEPARATORS.sub("", raw)
    if phone.startswith("00"):
        phone = "+" + phone[2:]
    if _PHONE.fullmatch(phone) is None:
        raise InvalidInputError.of(field, "must be + and 8–15 digits (spaces and -.() are allowed)")
    return phone


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
    if not raw.strip():
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
            ("name", normalise_name, name),
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
        self.name = normalise_name(raw)
        self.name_key = name_key(self.name)

    def change_password_hash(self, password_hash: str) -> None:
        self.password_hash = password_hash


@dataclass(frozen=True, slots=True, kw_only=True)
class UserCard:
    """What another user may see of a user: never email, phone or hash.

    ``online``/``last_seen_at`` are ``None`` unless the viewer may see the user's presence.
    """

    id: int
    name: str
    online: bool | None = None
    last_seen_at: datetime | None = None
