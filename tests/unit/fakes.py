"""In-memory fakes of the driven ports of ``application/ports.py``, for unit tests.

No I/O and no real time. Every fake subclasses the Protocol it implements, so mypy checks the
signatures. The stores follow the documented semantics of the ports (unique emails and phone
numbers, search order, presence visibility), and :class:`FakeUnitOfWork` really rolls back: it
works on a copy of the :class:`InMemoryStore` taken when it opens and publishes that copy only on
``commit()``, so whatever a use case changes without committing is gone when the block ends.
"""

from __future__ import annotations

import asyncio
import copy
import dataclasses
import re
from collections.abc import Awaitable, Callable, Collection, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from types import TracebackType
from typing import Self

from application.events import Event
from application.ports import (
    AccessClaims,
    AccountRepository,
    Appended,
    AttemptCounter,
    BlockRepository,
    Clock,
    ContactRepository,
    ConversationRepository,
    ConversationState,
    ConversationSummary,
    DuplicateMessageError,
    IdGenerator,
    IssuedAccess,
    LoginRepository,
    MessageRepository,
    Notifier,
    PasswordHasher,
    PresenceRegistry,
    PresenceRepair,
    PushTargetRepository,
    TokenService,
    UnitOfWork,
    UserRepository,
)
from domain.auth import AttemptWindow, Login, RefreshToken, first_attempt
from domain.delivery import Delivered
from domain.errors import BusyError, EmailTakenError, InvalidInputError, InvalidTokenError, PhoneTakenError
from domain.messages import Message, NewMessage, Pair, contacts_made
from domain.presence import UserPresence
from domain.push import PushTarget
from domain.social import STRANGERS, Relation
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
        self.gate: asyncio.Event | None = None  # when set, verifications wait for it to open
        self.waiting = 0  # verifications waiting at the gate

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
        if self.gate is not None:
            self.waiting += 1
            await self.gate.wait()
            self.waiting -= 1
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
    """The set of online user ids, moved by the rules of :class:`domain.presence.UserPresence`.

    ``connect``/``disconnect``/``settle`` run the domain state machine per user and add to or
    remove from ``online`` on its transitions; tests may also put ids into ``online`` directly
    (online without a connection, which no settle ever removes). Records which ids
    ``online_among`` was asked about.
    """

    def __init__(self, online: Iterable[int] = ()) -> None:
        self.online = set(online)
        self.asked: list[set[int]] = []
        self.states: dict[int, UserPresence] = {}
        self.repair = PresenceRepair()  # what the next ``heal`` reports (then nothing)

    async def heal(self, *, now: datetime) -> PresenceRepair:
        repair, self.repair = self.repair, PresenceRepair()
        return repair

    async def connect(self, user_id: int, connection_id: str, *, now: datetime, limit: int | None = None) -> bool:
        state = self.states.setdefault(user_id, UserPresence(user_id=user_id))
        came_online = state.connect(connection_id, now=now, limit=limit)
        if came_online:
            self.online.add(user_id)
        return came_online

    async def disconnect(self, user_id: int, connection_id: str, *, now: datetime) -> None:
        state = self.states.get(user_id)
        if state is not None:
            state.disconnect(connection_id, now=now)

    async def settle(self, *, now: datetime, grace_s: float) -> list[tuple[int, datetime]]:
        gone: list[tuple[int, datetime]] = []
        for user_id, state in sorted(self.states.items()):
            last_seen_at = state.settle(now=now, grace=timedelta(seconds=grace_s))
            if last_seen_at is not None:
                self.online.discard(user_id)
                gone.append((user_id, last_seen_at))
        return gone

    async def online_among(self, user_ids: Iterable[int]) -> set[int]:
        ids = set(user_ids)
        self.asked.append(ids)
        return ids & self.online


# --------------------------------------------------------------------------------------------
# Fan-out


@dataclass(frozen=True, slots=True, kw_only=True)
class Published:
    """One call of :meth:`RecordingNotifier.publish`, with the store's state at that moment:
    how many commits had happened and whether a unit of work was open."""

    user_id: int
    event: Event
    skip_connection: str | None
    commits: int
    in_transaction: bool


class RecordingNotifier(Notifier):
    """Records every publication in order; tells nobody."""

    def __init__(self, store: InMemoryStore | None = None) -> None:
        self._store = store
        self.published: list[Published] = []

    def publish(self, user_id: int, event: Event, *, skip_connection: str | None = None) -> None:
        self.published.append(
            Published(
                user_id=user_id,
                event=event,
                skip_connection=skip_connection,
                commits=self._store.commits if self._store is not None else 0,
                in_transaction=self._store is not None and self._store.open_units > 0,
            )
        )

    @property
    def calls(self) -> list[tuple[int, Event, str | None]]:
        """``(user_id, event, skip_connection)`` of every publication, in order."""
        return [(p.user_id, p.event, p.skip_connection) for p in self.published]

    def events_to(self, user_id: int) -> list[Event]:
        return [p.event for p in self.published if p.user_id == user_id]

    def clear(self) -> None:
        self.published.clear()


# --------------------------------------------------------------------------------------------
# The store, its repositories and the unit of work


@dataclass
class ConversationRow:
    """One user's state of one conversation: the read pointer and the storage position of the
    last message this user may see (None until there is one)."""

    read_seq: int = 0
    last_visible: int | None = None


@dataclass
class StoreData:
    """Everything the database would hold. ``contacts`` are unordered pairs; ``blocks`` are
    ``(blocker, blocked)``; ``messages`` are in storage order (a message's index is its storage
    position); ``seqs`` is the last ``seq`` reserved per conversation; ``conversations`` is keyed
    ``(user, peer)``; ``sent_visible`` holds ``(sender, recipient)`` of every non-withheld message."""

    users: dict[int, User] = field(default_factory=dict)
    logins: dict[str, Login] = field(default_factory=dict)
    refresh_tokens: dict[str, RefreshToken] = field(default_factory=dict)
    contacts: set[frozenset[int]] = field(default_factory=set)
    blocks: set[tuple[int, int]] = field(default_factory=set)
    messages: list[Message] = field(default_factory=list)
    seqs: dict[Pair, int] = field(default_factory=dict)
    conversations: dict[tuple[int, int], ConversationRow] = field(default_factory=dict)
    sent_visible: set[tuple[int, int]] = field(default_factory=set)
    push_targets: dict[str, PushTarget] = field(default_factory=dict)
    push_jobs: list[tuple[str, int, datetime, datetime]] = field(default_factory=list)  # message, user, now, due


class InMemoryStore:
    """The committed state shared by every :class:`FakeUnitOfWork` made from it.

    User ids come from a sequence that, like a database sequence, is not rolled back.
    The ``seed_*``/``connect``/``block`` helpers write committed state directly (test setup).

    Test hooks: ``fail_commit`` (raised by every commit while set, which then publishes nothing),
    ``commit_gate`` (every commit waits for this event while set)
    and ``before_append`` (awaited once, by the next ``conversations.append``, before it checks
    for duplicates — a place to let a "concurrent" transaction commit). ``open_units`` counts the
    units of work currently open.
    """

    def __init__(self) -> None:
        self.data = StoreData()
        self.commits = 0
        self.open_units = 0
        self.fail_commit: Exception | None = None
        self.commit_gate: asyncio.Event | None = None
        self.before_append: Callable[[], Awaitable[None]] | None = None
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

    def unblock(self, blocker: int, blocked: int) -> None:
        self.data.blocks.discard((blocker, blocked))

    def message(self, message_id: str) -> Message:
        """The committed state of one message."""
        return next(m for m in self.data.messages if m.id == message_id)

    def messages_between(self, a: int, b: int) -> list[Message]:
        """The committed messages of one conversation, in storage order."""
        pair = Pair.of(a, b)
        return [m for m in self.data.messages if m.pair == pair]


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

    async def lock(self, user_id: int) -> User | None:
        return self._txn.data.users.get(user_id)  # the fake's transactions never overlap

    async def get_by_email_key(self, email_key: str) -> User | None:
        users = self._txn.data.users.values()
        return next((u for u in users if u.email_key == email_key and not u.deleted), None)

    async def get_by_phone(self, phone_number: str) -> User | None:
        users = self._txn.data.users.values()
        return next((u for u in users if u.phone_number == phone_number and not u.deleted), None)

    async def existing_ids(self, user_ids: Iterable[int]) -> set[int]:
        users = self._txn.data.users
        return {uid for uid in user_ids if uid in users and not users[uid].deleted}

    async def get_many(self, user_ids: Iterable[int]) -> dict[int, User]:
        users = self._txn.data.users
        return {uid: users[uid] for uid in user_ids if uid in users}

    async def set_last_seen(self, user_id: int, at: datetime) -> None:
        user = self._txn.data.users.get(user_id)
        if user is not None and not user.deleted:
            user.last_seen_at = at

    async def search(
        self, *, viewer_id: int, name_key: str, email_key: str, phone_number: str | None, limit: int
    ) -> list[User]:
        data = self._txn.data

        def exact(user: User) -> bool:
            return user.email_key == email_key or (phone_number is not None and user.phone_number == phone_number)

        found = [
            user
            for user in data.users.values()
            if user.uid != viewer_id
            and not user.deleted
            and Relation.between(viewer_id, user.uid, data.blocks).may_find
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

    async def lock(self, login_id: str) -> Login | None:
        return self._txn.data.logins.get(login_id)  # the fake's transactions never overlap

    async def active_ids_of(self, user_id: int) -> list[str]:
        return [login.id for login in self._txn.data.logins.values() if login.user_id == user_id and login.active]

    async def of_user(self, user_id: int, *, active_only: bool) -> list[Login]:
        found = [
            login
            for login in self._txn.data.logins.values()
            if login.user_id == user_id and (login.active or not active_only)
        ]
        return sorted(found, key=lambda login: (login.created_at, login.id))

    async def inactive_among(self, login_ids: Collection[str]) -> set[str]:
        logins = self._txn.data.logins
        return {i for i in login_ids if i not in logins or not logins[i].active}

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

    async def add_pairs(self, pairs: Iterable[tuple[int, int]]) -> None:
        for a, b in pairs:
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
            if other != user_id and (after_id is None or other > after_id) and not data.users[other].deleted
        )
        return [data.users[uid] for uid in ids[:limit]]

    async def relations(self, user_id: int, others: Iterable[int]) -> dict[int, Relation]:
        found = {other: self._relation(user_id, other) for other in others}
        return {other: relation for other, relation in found.items() if relation != STRANGERS}

    async def visible_contact_ids(self, user_id: int) -> list[int]:
        data = self._txn.data
        contacts = (other for pair in data.contacts if user_id in pair for other in pair if other != user_id)
        return sorted(uid for uid in contacts if self._relation(user_id, uid).presence_visible)

    def _relation(self, a: int, b: int) -> Relation:
        data = self._txn.data
        return Relation.between(a, b, data.blocks, contacts=a != b and frozenset((a, b)) in data.contacts)


class InMemoryBlockRepository(BlockRepository):
    def __init__(self, txn: _Transaction) -> None:
        self._txn = txn

    async def among(self, pairs: Iterable[tuple[int, int]]) -> set[tuple[int, int]]:
        return set(pairs) & self._txn.data.blocks

    async def block(self, blocker_id: int, blocked_id: int, *, now: datetime) -> None:
        if blocker_id == blocked_id:
            raise ValueError("a user cannot block themself")
        self._txn.data.blocks.add((blocker_id, blocked_id))

    async def unblock(self, blocker_id: int, blocked_id: int) -> None:
        self._txn.data.blocks.discard((blocker_id, blocked_id))

    async def blocked_by(self, blocker_id: int) -> list[User]:
        data = self._txn.data
        return [data.users[uid] for uid in sorted(b for a, b in data.blocks if a == blocker_id)]


_CURSOR = re.compile(r"at-([0-9]{1,9})")


def conversation_cursor(position: int) -> str:
    """The cursor :class:`InMemoryConversationRepository` issues for a storage position."""
    return f"at-{position}"


class InMemoryConversationRepository(ConversationRepository):
    """Conversations as the port describes them; ``summaries`` are ordered by the storage position
    of each conversation's last visible message, which is also what the cursor holds. A cursor it
    did not issue is an InvalidInputError on ``cursor``."""

    def __init__(self, txn: _Transaction) -> None:
        self._txn = txn

    async def append(self, drafts: Sequence[NewMessage]) -> list[Appended]:
        txn = self._txn
        store = txn.store
        hook, store.before_append = store.before_append, None
        if hook is not None:
            await hook()
        data = txn.data
        stored: list[Message] = []
        for draft in drafts:
            for existing in (*data.messages, *store.data.messages, *stored):
                if existing.sender_id == draft.sender_id and existing.client_msg_id == draft.client_msg_id:
                    raise DuplicateMessageError(draft.client_msg_id)
                if existing.id == draft.id:
                    raise ValueError(f"duplicate message id {draft.id}")
            data.seqs[draft.pair] = data.seqs.get(draft.pair, 0) + 1
            stored.append(draft.stored(data.seqs[draft.pair]))
        has_sent = dict.fromkeys(data.sent_visible, True)
        made = contacts_made(stored, has_sent)
        data.sent_visible = {key for key, sent in has_sent.items() if sent}
        for message in stored:
            position = len(data.messages)
            data.messages.append(message)
            sender, recipient = message.sender_id, message.recipient_id
            data.conversations.setdefault((sender, recipient), ConversationRow()).last_visible = position
            recipient_row = data.conversations.setdefault((recipient, sender), ConversationRow())
            if not message.withheld:
                recipient_row.last_visible = position
        return [Appended(message=m, became_contacts=b) for m, b in zip(stored, made, strict=True)]

    async def state(self, user_id: int, peer_id: int) -> ConversationState | None:
        """None until the conversation has a message (like the SQL adapter, also for a recipient who
        was only sent withheld ones)."""
        data = self._txn.data
        if user_id == peer_id or (last_seq := data.seqs.get(Pair.of(user_id, peer_id))) is None:
            return None
        row = data.conversations.get((user_id, peer_id))
        peer_row = data.conversations.get((peer_id, user_id))
        return ConversationState(
            peer_id=peer_id,
            last_seq=last_seq,
            read_seq=row.read_seq if row is not None else 0,
            peer_read_seq=peer_row.read_seq if peer_row is not None else 0,
        )

    async def peers_of(self, user_id: int, *, after_id: int | None, limit: int) -> list[int]:
        peers = sorted(
            peer
            for owner, peer in self._txn.data.conversations
            if owner == user_id and (after_id is None or peer > after_id)
        )
        return peers[:limit]

    async def set_read_seq(self, user_id: int, peer_id: int, seq: int) -> None:
        """Never moves the pointer backwards, like the SQL store."""
        row = self._txn.data.conversations.setdefault((user_id, peer_id), ConversationRow())
        row.read_seq = max(row.read_seq, seq)

    async def summaries(self, user_id: int, *, before: str | None, limit: int) -> list[ConversationSummary]:
        data = self._txn.data
        below = _parse_cursor(before)
        rows = sorted(
            (
                (row.last_visible, peer_id)
                for (owner, peer_id), row in data.conversations.items()
                if owner == user_id and row.last_visible is not None and (below is None or row.last_visible < below)
            ),
            reverse=True,
        )
        found: list[ConversationSummary] = []
        for position, peer_id in rows[:limit]:
            state = await self.state(user_id, peer_id)
            if state is None:  # pragma: no cover - rows above all have a visible message
                raise AssertionError("summary without state")
            unread = sum(
                1
                for m in data.messages
                if m.recipient_id == user_id and m.sender_id == peer_id and not m.withheld and m.seq > state.read_seq
            )
            found.append(
                ConversationSummary(
                    state=state,
                    last_message=data.messages[position],
                    unread_count=unread,
                    cursor=conversation_cursor(position),
                )
            )
        return found


def _position_of(data: StoreData, message_id: str) -> int:
    for position, message in enumerate(data.messages):
        if message.id == message_id:
            return position
    raise LookupError(f"message {message_id} is not stored")


def _parse_cursor(cursor: str | None) -> int | None:
    if cursor is None:
        return None
    match = _CURSOR.fullmatch(cursor)
    if match is None:
        raise InvalidInputError.of("cursor", "is not a cursor this server issued")
    return int(match.group(1))


class InMemoryMessageRepository(MessageRepository):
    """Messages in storage order. ``(sender, clientMsgId)`` is unique against this transaction and
    against what others committed meanwhile (like a unique index); so are ids and ``(pair, seq)``."""

    def __init__(self, txn: _Transaction) -> None:
        self._txn = txn

    async def by_client_ids(self, keys: Iterable[tuple[int, str]]) -> dict[tuple[int, str], Message]:
        wanted = set(keys)
        return {key: m for m in self._txn.data.messages if (key := (m.sender_id, m.client_msg_id)) in wanted}

    async def pending_for(self, recipient_id: int, *, limit: int, excluding: Collection[str] = ()) -> list[Message]:
        pending = (m for m in self._txn.data.messages if _pending(m, recipient_id) and m.id not in excluding)
        return [m for _, m in zip(range(limit), pending, strict=False)]

    async def still_pending(self, recipient_id: int, ids: Iterable[str]) -> set[str]:
        wanted = set(ids)
        return {m.id for m in self._txn.data.messages if m.id in wanted and _pending(m, recipient_id)}

    async def mark_delivered(
        self, acks: Sequence[tuple[int, Iterable[str]]], *, now: datetime
    ) -> list[list[Delivered]]:
        found: list[list[Delivered]] = []
        for recipient_id, ids in acks:
            order = {message_id: i for i, message_id in enumerate(dict.fromkeys(ids))}

            def acknowledged(m: Message, r: int = recipient_id, o: dict[str, int] = order) -> bool:
                return m.id in o and _pending(m, r)

            delivered = self._update(acknowledged, lambda m: dataclasses.replace(m, delivered_at=now))
            found.append(sorted(delivered, key=lambda d: order[d.id]))
        return found

    async def mark_read(self, recipient_id: int, pair: Pair, up_to_seq: int, *, now: datetime) -> list[Delivered]:
        def matches(m: Message) -> bool:
            return m.recipient_id == recipient_id and not m.withheld and m.pair == pair and m.seq <= up_to_seq

        return self._update(
            matches,
            lambda m: dataclasses.replace(m, delivered_at=m.delivered_at or now, read_at=m.read_at or now),
        )

    def _update(self, matches: Callable[[Message], bool], change: Callable[[Message], Message]) -> list[Delivered]:
        messages = self._txn.data.messages
        delivered: list[Delivered] = []
        for position, message in enumerate(messages):
            if not matches(message):
                continue
            if message.delivered_at is None:
                delivered.append(
                    Delivered(id=message.id, sender_id=message.sender_id, recipient_id=message.recipient_id)
                )
            messages[position] = change(message)
        return delivered

    async def history(
        self, viewer_id: int, pair: Pair, *, before: int | None, after: int | None, limit: int
    ) -> list[Message]:
        visible = sorted(
            (m for m in self._txn.data.messages if m.pair == pair and m.visible_to(viewer_id)), key=lambda m: m.seq
        )
        if after is not None:
            return [m for m in visible if m.seq > after][:limit]
        return [m for m in reversed(visible) if before is None or m.seq < before][:limit]


def _pending(message: Message, recipient_id: int) -> bool:
    return message.recipient_id == recipient_id and not message.withheld and message.delivered_at is None


class InMemoryAccountRepository(AccountRepository):
    def __init__(self, txn: _Transaction) -> None:
        self._txn = txn

    async def forget(self, user_id: int, *, erase_bodies: bool) -> None:
        data = self._txn.data
        gone = {sid for sid, login in data.logins.items() if login.user_id == user_id}
        data.logins = {sid: login for sid, login in data.logins.items() if sid not in gone}
        data.refresh_tokens = {d: t for d, t in data.refresh_tokens.items() if t.login_id not in gone}
        data.contacts = {pair for pair in data.contacts if user_id not in pair}
        data.blocks = {pair for pair in data.blocks if user_id not in pair}
        data.push_targets = {i: t for i, t in data.push_targets.items() if t.user_id != user_id}
        data.push_jobs = [job for job in data.push_jobs if job[1] != user_id]
        for position, m in enumerate(data.messages):
            if _pending(m, user_id):
                m = dataclasses.replace(m, withheld=True)
            if erase_bodies and m.sender_id == user_id:
                m = dataclasses.replace(m, body="")
            data.messages[position] = m


class InMemoryPushTargetRepository(PushTargetRepository):
    """Targets of a login that is revoked are gone, as the SQL store deletes them with the revocation."""

    def __init__(self, txn: _Transaction) -> None:
        self._txn = txn

    def _live(self) -> list[PushTarget]:
        data = self._txn.data
        return [
            t for t in data.push_targets.values() if t.login_id not in data.logins or data.logins[t.login_id].active
        ]

    async def add(self, target: PushTarget) -> PushTarget:
        targets = self._txn.data.push_targets
        same = next((t for t in targets.values() if (t.app_id, t.token) == (target.app_id, target.token)), None)
        if same is not None:
            target = dataclasses.replace(target, id=same.id)
        targets[target.id] = target
        return target

    async def of_user(self, user_id: int) -> list[PushTarget]:
        return sorted((t for t in self._live() if t.user_id == user_id), key=lambda t: (t.created_at, t.id))

    async def count_of_login(self, login_id: str) -> int:
        return sum(1 for t in self._live() if t.login_id == login_id)

    async def remove(self, user_id: int, target_id: str) -> bool:
        targets = self._txn.data.push_targets
        if target_id in targets and targets[target_id].user_id == user_id:
            del targets[target_id]
            return True
        return False

    async def queue_pushes(self, jobs: Sequence[tuple[str, int]], *, now: datetime, due: datetime) -> None:
        having = {t.user_id for t in self._live()}
        self._txn.data.push_jobs.extend((m, u, now, due) for m, u in jobs if u in having)


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
        self.blocks = InMemoryBlockRepository(txn)
        self.conversations = InMemoryConversationRepository(txn)
        self.messages = InMemoryMessageRepository(txn)
        self.accounts = InMemoryAccountRepository(txn)
        self.push = InMemoryPushTargetRepository(txn)

    async def __aenter__(self) -> Self:
        if self._txn.open:
            raise RuntimeError("this unit of work is already in use")
        self._bind(_Transaction(self._store, copy.deepcopy(self._store.data)))
        self._store.open_units += 1
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        if self._txn.open:
            self._store.open_units -= 1
        self._txn.close()

    async def commit(self) -> None:
        if self._store.commit_gate is not None:
            await self._store.commit_gate.wait()
        if self._store.fail_commit is not None:
            raise self._store.fail_commit
        self._store.data = copy.deepcopy(self._txn.data)
        self._store.commits += 1
        self.commits += 1
