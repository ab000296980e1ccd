"""Authentication rules: logins (sessions, ``sid``), refresh-token rotation, and the attempt limits.

A *login* is one successful sign-in on one device. Access tokens carry its id (``sid``); its
refresh tokens are opaque, stored only as digests, single use. Presenting a spent refresh token
again means it leaked, so the whole login is revoked. Attempt limits use fixed windows that start
at the first counted attempt.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from datetime import datetime, timedelta
from enum import Enum

from domain.errors import InvalidTokenError, LoginRevokedError, RateLimitedError

CLIENT_LABEL_MAX = 100
"""Code points kept of a login's client label (the ``User-Agent`` it signed in with)."""
LAST_USED_PRECISION_S = 60
"""A login's ``last_used_at`` is written at most once per this many seconds (it is that much behind
at most): using a login must not cost a database write per request or frame."""
_UNPRINTABLE = re.compile("[\x00-\x1f\x7f-\x9f\u202a-\u202e\u2066-\u2069\ud800-\udfff]")


def client_label(user_agent: str | None) -> str | None:
    """What a login's client is called in its list of sessions: its ``User-Agent`` with control and
    text-direction characters removed, white space collapsed, at most :data:`CLIENT_LABEL_MAX`
    code points; ``None`` when nothing is left."""
    if user_agent is None:
        return None
    label = " ".join(_UNPRINTABLE.sub(" ", user_agent[: CLIENT_LABEL_MAX * 4]).split())[:CLIENT_LABEL_MAX]
    return label or None


@dataclass(eq=False, kw_only=True)
class Login:
    """One signed-in device of a user. Revocation is final. ``client`` is the label of the client it
    signed in with; ``last_used_at`` when it was last used, to :data:`LAST_USED_PRECISION_S`."""

    id: str
    user_id: int
    created_at: datetime
    revoked_at: datetime | None = None
    client: str | None = None
    last_used_at: datetime | None = None

    @property
    def active(self) -> bool:
        return self.revoked_at is None

    def touch(self, now: datetime) -> bool:
        """Record a use at ``now`` if the last recorded one is :data:`LAST_USED_PRECISION_S` old
        (or none is); True when it changed (the caller then writes it)."""
        last = self.last_used_at or self.created_at
        if self.revoked_at is not None or now - last < timedelta(seconds=LAST_USED_PRECISION_S):
            return False
        self.last_used_at = now
        return True

    def revoke(self, now: datetime) -> None:
        if self.revoked_at is None:
            self.revoked_at = now

    def ensure_active(self) -> None:
        if self.revoked_at is not None:
            raise LoginRevokedError()


class RefreshVerdict(Enum):
    """What presenting a refresh token means."""

    ROTATE = "rotate"  # valid: spend it and issue the next one
    REVOKE_LOGIN = "revoke_login"  # already spent: it leaked, end the whole login
    REJECT = "reject"  # expired or its login is gone


@dataclass(eq=False, kw_only=True)
class RefreshToken:
    """A stored refresh token (its digest only)."""

    digest: str
    login_id: str
    issued_at: datetime
    expires_at: datetime
    spent_at: datetime | None = None

    @classmethod
    def issue(cls, *, digest: str, login_id: str, now: datetime, ttl_s: int) -> RefreshToken:
        return cls(digest=digest, login_id=login_id, issued_at=now, expires_at=now + timedelta(seconds=ttl_s))

    def judge(self, login: Login | None, now: datetime) -> RefreshVerdict:
        if login is None or not login.active:
            return RefreshVerdict.REJECT
        if self.spent_at is not None:
            return RefreshVerdict.REVOKE_LOGIN
        if now >= self.expires_at:
            return RefreshVerdict.REJECT
        return RefreshVerdict.ROTATE

    @staticmethod
    def rejected() -> InvalidTokenError:
        return InvalidTokenError("invalid, expired or already used refresh token")


@dataclass(frozen=True, slots=True, kw_only=True)
class AttemptWindow:
    """A fixed counting window: ``count`` attempts since ``started_at``."""

    count: int
    started_at: datetime

    def ends_at(self, window_s: int) -> datetime:
        return self.started_at + timedelta(seconds=window_s)

    def is_open(self, now: datetime, window_s: int) -> bool:
        return now < self.ends_at(window_s)

    def after_one_more(self, now: datetime, window_s: int) -> AttemptWindow:
        """The window after counting one attempt at ``now`` (a closed window starts afresh)."""
        if self.is_open(now, window_s):
            return AttemptWindow(count=self.count + 1, started_at=self.started_at)
        return AttemptWindow(count=1, started_at=now)

    def retry_after_s(self, now: datetime, window_s: int) -> int:
        return max(1, math.ceil((self.ends_at(window_s) - now).total_seconds()))


def first_attempt(now: datetime) -> AttemptWindow:
    return AttemptWindow(count=1, started_at=now)


@dataclass(frozen=True, slots=True, kw_only=True)
class AttemptLimit:
    """At most ``max_attempts`` per ``window_s`` seconds for one key."""

    max_attempts: int
    window_s: int

    def check(self, window: AttemptWindow | None, now: datetime) -> None:
        """Raise :class:`RateLimitedError` while ``window`` is open and already full."""
        if window is not None and window.is_open(now, self.window_s) and window.count >= self.max_attempts:
            raise RateLimitedError(window.retry_after_s(now, self.window_s))

    def exceeded_by(self, window: AttemptWindow, now: datetime) -> bool:
        """True when ``window`` (that already counts the current attempt) is over the limit."""
        return window.is_open(now, self.window_s) and window.count > self.max_attempts


ACCOUNT_FAILURES_FACTOR = 20  # failures of one account, from every address together
ADDRESS_FAILURES_FACTOR = 20  # failures from one address, over every account together
PAIR_ATTEMPTS_FACTOR = 4  # attempts of one (account, address), successes included


@dataclass(frozen=True, slots=True, kw_only=True)
class LoginThrottle:
    """The login limits, each over one window of ``window_s`` seconds; N is ``max_failures``.

    * :attr:`per_pair` — N failures of one account from one client address. A guesser is
      stopped where they guess; the owner, from their own address, is not.
    * :attr:`per_account` — 20·N failures of one account from all addresses together: only a
      guess spread over many addresses reaches it (and then it locks the account as a whole).
    * :attr:`per_address` — 20·N failures from one address over all accounts: a stuffing run. One
      user behind a shared (NAT) address stops at N, far from it.
    * :attr:`attempts_per_pair` — 4·N attempts of one account from one address, successes
      included, counted before the password is hashed: logging in over and over costs Argon2
      work and stores logins, so it is limited too (never by a stranger's attempts).
    """

    max_failures: int
    window_s: int

    def _limit(self, factor: int) -> AttemptLimit:
        return AttemptLimit(max_attempts=factor * self.max_failures, window_s=self.window_s)

    @property
    def per_pair(self) -> AttemptLimit:
        return self._limit(1)

    @property
    def per_account(self) -> AttemptLimit:
        return self._limit(ACCOUNT_FAILURES_FACTOR)

    @property
    def per_address(self) -> AttemptLimit:
        return self._limit(ADDRESS_FAILURES_FACTOR)

    @property
    def attempts_per_pair(self) -> AttemptLimit:
        return self._limit(PAIR_ATTEMPTS_FACTOR)


def account_key(email_key: str) -> str:
    return f"login:account:{email_key}"


def address_key(address: str) -> str:
    return f"login:address:{address}"


def pair_key(email_key: str, source: str) -> str:
    """Failures of one account from one source (a client address, or one login for a password
    change); the source's length first, so no two pairs share a key."""
    return f"login:pair:{len(source)}:{source}:{email_key}"


def attempts_key(email_key: str, address: str) -> str:
    """Every attempt of one account from one address."""
    return f"login:tries:{len(address)}:{address}:{email_key}"


def oldest_beyond(logins: list[Login], keep: int) -> list[Login]:
    """The logins to revoke so that at most ``keep`` stay: the oldest (by start, then id) first."""
    ordered = sorted(logins, key=lambda login: (login.created_at, login.id))
    return ordered[: max(0, len(ordered) - keep)]


def registration_key(address: str) -> str:
    return f"register:address:{address}"
