"""In-memory fakes of the driven ports of ``application/ports.py``, for unit tests.

No I/O and no real time. Every fake subclasses the Protocol it implements, so mypy checks the
signatures. The stores follow the documented semantics of the ports (unique emails and phone
numbers, search order, presence visibility), and :class:`FakeUnitOfWork` really rolls back: it
works on a copy of the :class:`InMemoryStore` taken when it opens and publishes that copy only on
``commit()``, so whatever a use case changes without committing is gone when the block ends.
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from types import TracebackType
from typing import Self

from application.ports import (
    AccessClaims,
    AttemptCounter,
    Clock,
    ContactRepository,
    IdGenerator,
    IssuedAccess,
    LoginRepository,
    PasswordHasher,
    PresenceRegistry,
    TokenService,
    UnitOfWork,
    UserRepository,
)
from domain.auth import AttemptWindow, Login, RefreshToken, first_attempt
from domain.errors import BusyError, EmailTakenError, InvalidTokenError, PhoneTakenError
from domain.users import Registration, User

EPOCH = datetime(2026, 1, 1, 12, 0, tzinfo=UTC)
"""Where every :class:`FixedClock` starts unless told otherwise."""

SEED_PASSWORD = "correct horse"
"""The password of users made by :meth:`InMemoryStore.seed_user`."""


# --------------------------------------------------------------------------------------------
# Time and ids


class FixedClock(Clock):
    """A clock that only moves when a test moves it."""

    def __init__(self, now: datetime = EPOCH) -> None:
        self._now = now

    def now(self) -> datetime:
        return self._now

    def set(self, now: datetime) -> None:
        self._now = now

    def advance(self, seconds: float) -> datetime:
        self._now += timedelta(seconds=seconds)
        return self._now


class SequentialIds(IdGenerator):
    """``id-000001``, ``id-000002``, … (unique and ordered, like the real time-ordered ids)."""

    def __init__(self, prefix: str = "id-") -> None:
        self._prefix = prefix
        self._last = 0

    def new_id(self) -> str:
        self._last += 1
        return f"{self._prefix}{self._last:06d}"


# --------------------------------------------------------------------------------------------
# Passwords and tokens


class FakePasswordHasher(PasswordHasher):
    """A "hash" is the password behind a marker, so it is reversible and cheap.

    Counts hashes, records every verification (``None`` = a dummy verification for an unknown
    account), raises :class:`BusyError` from both methods while ``busy`` is set, and calls
    ``before_hash`` (if set) while "hashing" — a hook to simulate what other requests do meanwhile.
    """

    MARKER = "fake-hash:"

    def __init__(self) -> None:
        self.busy = False
        self.hash_calls = 0
        self.verifications: list[str | None] = []
        self.before_hash: Callable[[], None] | None = None

    async def hash(self, raw: str) -> str:
        if self.busy:
            raise BusyError()
        self.hash_calls += 1
        if self.before_hash is not None:
            self.before_hash()
        return self.MARKER + raw

    async def verify(self, raw: str, hashed: str | None) -> bool:
        if self.busy:
            raise BusyError()
        self.verifications.append(hashed)
        return hashed is not None and hashed == self.MARKER + raw

    @property
    def verify_calls(self) -> int:
        return len(self.verifications)

    @property
    def dummy_verifications(self) -> int:
        return sum(1 for hashed in self.verifications if hashed is None)

    @classmethod
    def reveal(cls, hashed: str) -> str:
        """The password a fake hash was made from."""
        if not hashed.startswith(cls.MARKER):
            raise ValueError(f"not a fake hash: {hashed!r}")
        return hashed.removeprefix(cls.MARKER)


class FakeTokenService(TokenService):
    """Deterministic tokens (``access-1``, ``refresh-1``, …).

    Access tokens are only valid when this service issued them (the fake's "signature"), and
    until ``expires_at`` measured against the ``now`` passed to :meth:`verify_access`.
    """

    def __init__(self, access_ttl_s: int = 900) -> None:
        self.access_ttl_s = access_ttl_s
        self._issued: dict[str, AccessClaims] = {}
        self._access_count = 0
        self._refresh_count = 0

    def issue_access(self, *, user_id: int, sid: str, now: datetime) -> IssuedAccess:
        self._access_count += 1
        token = f"access-{self._access_count}"
        expires_at = now + timedelta(seconds=self.access_ttl_s)
        self._issued[token] = AccessClaims(
            user_id=user_id, sid=sid, jti=f"jti-{self._access_count}", expires_at=expires_at
        )
        return IssuedAccess(token=token, expires_at=expires_at, expires_in=self.access_ttl_s)

    def verify_access(self, token: str, *, now: datetime) -> AccessClaims:
        claims = self._issued.get(token)
        if claims is None:
            raise InvalidTokenError()
        if now >= claims.expires_at:
            raise InvalidTokenError("expired token")
        return claims

    def new_refresh_secret(self) -> str:
        self._refresh_count += 1
        return f"refresh-{self._refresh_count}"

    def refresh_digest(self, raw: str) -> str:
        return f"digest({raw})"


# --------------------------------------------------------------------------------------------
# Counters and presence


class InMemoryAttemptCounter(AttemptCounter):
    """Fixed windows per key, with the arithmetic of :class:`domain.auth.AttemptWindow`."""

    def __init__(self) -> None:
        self.windows: dict[str, AttemptWindow] = {}

    async def get(self, key: str, *, now: datetime, window_s: int) -> AttemptWindow | None:
        window = self.windows.get(key)
        if window is None or not window.is_open(now, window_s):
            return None
        return window

    async def hit(self, key: str, *, now: datetime, window_s: int) -> AttemptWindow:
        window = self.windows.get(key)
        counted = first_attempt(now) if window is None else window.after_one_more(now, window_s)
        self.windows[key] = counted
        return counted

    async def reset(self, key: str) -> None:
        self.windows.pop(key, None)


class FakePresence(PresenceRegistry):
    """A set of online user ids; records which ids it was asked about."""

    def __init__(self, online: Iterable[int] = ()) -> None:
        self.online = set(online)
        self.asked: list[set[int]] = []

    async def online_among(self, user_ids: Iterable[int]) -> set[int]:
        ids = set(user_ids)
        self.asked.append(ids)
        return ids & self.online


# --------------------------------------------------------------------------------------------
# The store, its repositories and the unit of work


@dataclass
class StoreData:
    """Everything the database would hold. ``contacts`` are unordered pairs; ``blocks`` are
    ``(blocker, blocked)``."""

    users: dict[int, User] = field(default_factory=dict)
    logins: dict[str, Login] = field(default_factory=dict)
    refresh_tokens: dict[str, RefreshToken] = field(default_factory=dict)
    contacts: set[frozenset[int]] = field(default_factory=set)
    blocks: set[tuple[int, int]] = field(default_factory=set)


class InMemoryStore:
    """The committed state shared by every :class:`FakeUnitOfWork` made from it.

    User ids come from a sequence that, like a database sequence, is not rolled back.
    The ``seed_*``/``connect``/``block`` helpers write committed state directly (test setup).
    """

    def __init__(self) -> None:
        self.data = StoreData()
        self.commits = 0
        self._last_user_id = 0
        self._seeded = 0

    def next_user_id(self) -> int:
        self._last_user_id += 1
        return self._last_user_id

    def unit_of_work(self) -> FakeUnitOfWork:
        """A :data:`application.common.UnitOfWorkFactory`."""
        return FakeUnitOfWork(self)

    def seed_user(
        self,
        name: str,
        *,
        email: str | None = None,
        phone_number: str | None = None,
        password: str = SEED_PASSWORD,
        last_seen_at: datetime | None = None,
        created_at: datetime = EPOCH,
    ) -> User:
        self._seeded += 1
        data = Registration.parse(
            name=name,
            email=email if email is not None else f"seed{self._seeded}@example.com",
            phone_number=phone_number if phone_number is not None else f"+1202555{self._seeded:04d}",
            password=password,
        )
        user = User.register(data, password_hash=FakePasswordHasher.MARKER + password, now=created_at)
        _check_unique(self.data, user)
        user.id = self.next_user_id()
        user.last_seen_at = last_seen_at
        self.data.users[user.id] = user
        return user

    def user(self, user_id: int) -> User:
        return self.data.users[user_id]

    def connect(self, a: int, b: int) -> None:
        """Make ``a`` and ``b`` contacts."""
        if a == b:
            raise ValueError("a user is not their own contact")
        self.data.contacts.add(frozenset((a, b)))

    def block(self, blocker: int, blocked: int) -> None:
        self.data.blocks.add((blocker, blocked))


def _check_unique(data: StoreData, user: User) -> None:
    for other in data.users.values():
        if other.email_key == user.email_key:
            raise EmailTakenError()
        if other.phone_number == user.phone_number:
            raise PhoneTakenError()


class _Transaction:
    """The working copy of one open unit of work; unusable once the unit of work is closed."""

    def __init__(self, store: InMemoryStore, data: StoreData | None) -> None:
        self.store = store
        self._data = data

    @property
    def open(self) -> bool:
        return self._data is not None

    @property
    def data(self) -> StoreData:
        if self._data is None:
            raise RuntimeError("repository used outside an open unit of work")
        return self._data

    def close(self) -> None:
        self._data = None


class InMemoryUserRepository(UserRepository):
    def __init__(self, txn: _Transaction) -> None:
        self._txn = txn

    async def add(self, user: User) -> None:
        data = self._txn.data
        _check_unique(data, user)
        user.id = self._txn.store.next_user_id()
        data.users[user.id] = user

    async def get(self, user_id: int) -> User | None:
        return self._txn.data.users.get(user_id)

    async def get_by_email_key(self, email_key: str) -> User | None:
        return next((u for u in self._txn.data.users.values() if u.email_key == email_key), None)

    async def get_by_phone(self, phone_number: str) -> User | None:
        return next((u for u in self._txn.data.users.values() if u.phone_number == phone_number), None)

    async def search(
        self, *, viewer_id: int, name_key: str, email_key: str, phone_number: str | None, limit: int
    ) -> list[User]:
        data = self._txn.data
        blocked_viewer = {blocker for blocker, blocked in data.blocks if blocked == viewer_id}

        def exact(user: User) -> bool:
            return user.email_key == email_key or (phone_number is not None and user.phone_number == phone_number)

        found = [
            user
            for user in data.users.values()
            if user.uid != viewer_id
            and user.uid not in blocked_viewer
            # ``in`` is a literal substring test: %, _ and \ mean themselves.
            and (exact(user) or name_key in user.name_key)
        ]
        found.sort(key=lambda user: (not exact(user), user.name_key, user.uid))
        return found[:limit]


class InMemoryLoginRepository(LoginRepository):
    def __init__(self, txn: _Transaction) -> None:
        self._txn = txn

    async def add(self, login: Login) -> None:
        logins = self._txn.data.logins
        if login.id in logins:
            raise ValueError(f"duplicate login id {login.id}")
        logins[login.id] = login

    async def get(self, login_id: str) -> Login | None:
        return self._txn.data.logins.get(login_id)

    async def active_ids_of(self, user_id: int) -> list[str]:
        return [login.id for login in self._txn.data.logins.values() if login.user_id == user_id and login.active]

    async def add_refresh(self, token: RefreshToken) -> None:
        tokens = self._txn.data.refresh_tokens
        if token.digest in tokens:
            raise ValueError("duplicate refresh token digest")
        tokens[token.digest] = token

    async def get_refresh(self, digest: str) -> RefreshToken | None:
        return self._txn.data.refresh_tokens.get(digest)

    async def spend_refresh(self, digest: str, *, now: datetime) -> bool:
        token = self._txn.data.refresh_tokens.get(digest)
        if token is None or token.spent_at is not None:
            return False
        token.spent_at = now
        return True


class InMemoryContactRepository(ContactRepository):
    def __init__(self, txn: _Transaction) -> None:
        self._txn = txn

    async def add_pair(self, a: int, b: int) -> None:
        if a == b:
            raise ValueError("a user is not their own contact")
        self._txn.data.contacts.add(frozenset((a, b)))

    async def list_contacts(self, user_id: int, *, after_id: int | None, limit: int) -> list[User]:
        data = self._txn.data
        ids = sorted(
            other
            for pair in data.contacts
            if user_id in pair
            for other in pair
            if other != user_id and (after_id is None or other > after_id)
        )
        return [data.users[uid] for uid in ids[:limit]]

    async def visible_among(self, viewer_id: int, user_ids: Iterable[int]) -> set[int]:
        data = self._txn.data
        return {
            uid
            for uid in user_ids
            if frozenset((viewer_id, uid)) in data.contacts
            and (viewer_id, uid) not in data.blocks
            and (uid, viewer_id) not in data.blocks
        }


class FakeUnitOfWork(UnitOfWork):
    """Snapshot on enter, publish on commit, drop on exit.

    Each transaction sees the store as it was when it opened and, on commit, replaces the
    store's state with its own (good enough for the sequential unit tests; it does not model
    concurrent writers). ``commits`` counts this instance's commits, ``store.commits`` all of them.
    """

    def __init__(self, store: InMemoryStore) -> None:
        self._store = store
        self.commits = 0
        self._bind(_Transaction(store, None))

    def _bind(self, txn: _Transaction) -> None:
        self._txn = txn
        self.users = InMemoryUserRepository(txn)
        self.logins = InMemoryLoginRepository(txn)
        self.contacts = InMemoryContactRepository(txn)

    async def __aenter__(self) -> Self:
        if self._txn.open:
            raise RuntimeError("this unit of work is already in use")
        self._bind(_Transaction(self._store, copy.deepcopy(self._store.data)))
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self._txn.close()

    async def commit(self) -> None:
        self._store.data = copy.deepcopy(self._txn.data)
        self._store.commits += 1
        self.commits += 1
