"""Driven ports: what the use cases need from the outside world, as ``typing.Protocol``s.

Adapters implement them (``adapters/``); the composition root (``entrypoints/container.py``)
chooses which. Use cases own transactions through :class:`UnitOfWork`; nothing here commits on
its own unless it says so.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Protocol, Self

from domain.errors import BusyError

if TYPE_CHECKING:
    from collections.abc import Callable, Collection, Iterable, Sequence
    from datetime import datetime
    from types import TracebackType

    from application.events import Event
    from domain.auth import AttemptWindow, Login, RefreshToken
    from domain.delivery import Delivered
    from domain.messages import Message, NewMessage, Pair
    from domain.push import PushTarget, Waiting
    from domain.social import Relation
    from domain.users import User


class Clock(Protocol):
    """The only source of time for the core. Returns aware UTC datetimes."""

    def now(self) -> datetime: ...


class IdGenerator(Protocol):
    """Opaque, unique, roughly time-ordered string ids (logins, messages, token ids)."""

    def new_id(self) -> str: ...


class PasswordHasher(Protocol):
    """Slow, salted password hashing that never blocks the event loop.

    Both methods wait a bounded time for one of a fixed number of hashing slots and raise
    :class:`domain.errors.BusyError` when none frees up.
    """

    async def hash(self, raw: str) -> str: ...

    async def verify(self, raw: str, hashed: str | None) -> bool:
        """``hashed=None`` verifies against a dummy hash and returns False, so an unknown account
        costs the same time as a wrong password."""
        ...


@dataclass(frozen=True, slots=True, kw_only=True)
class AccessClaims:
    """What a verified access token says."""

    user_id: int
    sid: str
    jti: str
    expires_at: datetime


@dataclass(frozen=True, slots=True, kw_only=True)
class IssuedAccess:
    token: str
    expires_at: datetime
    expires_in: int


class TokenService(Protocol):
    """Access tokens (signed, short-lived) and refresh-token secrets (opaque, stored as digests)."""

    def issue_access(self, *, user_id: int, sid: str, now: datetime) -> IssuedAccess: ...

    def verify_access(self, token: str, *, now: datetime) -> AccessClaims:
        """Raise :class:`domain.errors.InvalidTokenError` for anything but a valid, unexpired token."""
        ...

    def new_refresh_secret(self) -> str: ...

    def refresh_digest(self, raw: str) -> str: ...


class AttemptCounter(Protocol):
    """Fixed-window attempt counters shared by every process of the deployment."""

    async def get(self, key: str, *, now: datetime, window_s: int) -> AttemptWindow | None:
        """The open window of ``key`` (``None`` when there is none or it has closed)."""
        ...

    async def hit(self, key: str, *, now: datetime, window_s: int) -> AttemptWindow:
        """Count one attempt atomically and return the window including it."""
        ...

    async def reset(self, key: str) -> None: ...


class UserRepository(Protocol):
    """Accounts. ``add`` assigns the id and raises ``EmailTakenError``/``PhoneTakenError``."""

    async def add(self, user: User) -> None: ...

    async def get(self, user_id: int) -> User | None: ...

    async def lock(self, user_id: int) -> User | None:
        """``get``, the row locked until this transaction ends: what changes an account's logins
        (signing in, changing the password, deleting the account) takes it first, so those
        transactions run one after the other and each sees what the one before did."""
        ...

    async def get_by_email_key(self, email_key: str) -> User | None:
        """The account with this email key (never a deleted one)."""
        ...

    async def get_by_phone(self, phone_number: str) -> User | None:
        """The account with this number (never a deleted one)."""
        ...

    async def get_many(self, user_ids: Iterable[int]) -> dict[int, User]: ...

    async def existing_ids(self, user_ids: Iterable[int]) -> set[int]:
        """Those of ``user_ids`` that are accounts, and not deleted ones."""
        ...

    async def set_last_seen(self, user_id: int, at: datetime) -> None:
        """Record when the user was last online (a no-op for an unknown user)."""
        ...

    async def search(
        self, *, viewer_id: int, name_key: str, email_key: str, phone_number: str | None, limit: int
    ) -> list[User]:
        """Users whose ``name_key`` contains ``name_key`` literally, whose email key equals
        ``email_key`` or whose number equals ``phone_number``; ordered exact email/phone match
        first, then by name, then id; excluding the viewer, deleted accounts and those the viewer
        may not find (:attr:`domain.social.Relation.may_find`, applied by the store)."""
        ...


class LoginRepository(Protocol):
    """Logins (``sid``) and their refresh tokens (digests only)."""

    async def add(self, login: Login) -> None: ...

    async def get(self, login_id: str) -> Login | None: ...

    async def lock(self, login_id: str) -> Login | None:
        """``get``, the row locked until this transaction ends: what is attached to a login (a
        push target) is added under this lock, so a revocation (which deletes the login's
        targets) runs wholly before or after it."""
        ...

    async def active_ids_of(self, user_id: int) -> list[str]: ...

    async def of_user(self, user_id: int, *, active_only: bool) -> list[Login]:
        """The user's logins (only the active ones with ``active_only``), oldest first (by
        ``created_at``, then id)."""
        ...

    async def inactive_among(self, login_ids: Collection[str]) -> set[str]:
        """Which of ``login_ids`` are no longer active: revoked, or not stored at all. One query
        (callers pass at most a few hundred ids at a time)."""
        ...

    async def add_refresh(self, token: RefreshToken) -> None: ...

    async def get_refresh(self, digest: str) -> RefreshToken | None: ...

    async def spend_refresh(self, digest: str, *, now: datetime) -> bool:
        """Mark the token spent if it is not yet; False when another request spent it first."""
        ...


class ContactRepository(Protocol):
    """Who are contacts (each sent the other a non-withheld message) and who blocked whom."""

    async def add_pairs(self, pairs: Iterable[tuple[int, int]]) -> None:
        """Record that each pair's two users are contacts (idempotent, symmetric)."""
        ...

    async def list_contacts(self, user_id: int, *, after_id: int | None, limit: int) -> list[User]:
        """The user's contacts ordered by id, above ``after_id``."""
        ...

    async def relations(self, user_id: int, others: Iterable[int]) -> dict[int, Relation]:
        """The facts between ``user_id`` and each of ``others`` that is no stranger to them
        (a contact, or a block either way); the rules of :mod:`domain.social` decide from them."""
        ...

    async def visible_contact_ids(self, user_id: int) -> list[int]:
        """The user's contacts whose :attr:`~domain.social.Relation.presence_visible` holds, ordered
        by id: who sees the user's presence, so whom presence events about the user go to. The
        store applies that rule itself (one query over all contacts)."""
        ...


class BlockRepository(Protocol):
    """Who blocked whom. Blocking is directional; its effects (withholding, hidden presence) are not."""

    async def among(self, pairs: Iterable[tuple[int, int]]) -> set[tuple[int, int]]:
        """Those of the ``(blocker, blocked)`` pairs that are blocks."""
        ...

    async def block(self, blocker_id: int, blocked_id: int, *, now: datetime) -> None:
        """Record that ``blocker_id`` blocked ``blocked_id`` (idempotent: an existing block is kept as is)."""
        ...

    async def unblock(self, blocker_id: int, blocked_id: int) -> None:
        """Remove that block if there is one (idempotent)."""
        ...

    async def blocked_by(self, blocker_id: int) -> list[User]:
        """The users ``blocker_id`` blocked, ordered by id."""
        ...


@dataclass(frozen=True, slots=True, kw_only=True)
class ConversationState:
    """One user's view of one conversation."""

    peer_id: int
    last_seq: int  # the conversation's highest seq (withheld messages included)
    read_seq: int  # how far this user has read
    peer_read_seq: int  # how far the peer has read


@dataclass(frozen=True, slots=True, kw_only=True)
class ConversationSummary:
    """A row of the conversation list: the last message this user may see, and counters."""

    state: ConversationState
    last_message: Message
    unread_count: int
    cursor: str


class ConversationRepository(Protocol):
    """Per-conversation sequence and per-user state (read pointer, last visible message)."""

    async def append(self, drafts: Sequence[NewMessage]) -> list[Appended]:
        """Store these messages, in this order, each with the next ``seq`` of its conversation
        (reserved atomically for concurrent writers; creating the conversation), and update both
        users' state for each: the sender's last message always, the recipient's unless withheld.
        ``became_contacts`` as :func:`domain.messages.contacts_made` decides it. Raises
        :class:`DuplicateMessageError` when a ``(sender, clientMsgId)`` is stored already; the
        transaction must then be rolled back."""
        ...

    async def state(self, user_id: int, peer_id: int) -> ConversationState | None: ...

    async def peers_of(self, user_id: int, *, after_id: int | None, limit: int) -> list[int]:
        """The peers of the user's conversations (every conversation the user sent or received a
        message in), ordered by id, above ``after_id``: a keyset page."""
        ...

    async def set_read_seq(self, user_id: int, peer_id: int, seq: int) -> None: ...

    async def summaries(self, user_id: int, *, before: str | None, limit: int) -> list[ConversationSummary]:
        """Conversations with a message visible to ``user_id``, most recent first, below the keyset
        ``before`` (a ``cursor`` of an earlier summary)."""
        ...


class MessageRepository(Protocol):
    """Stored messages. Ordering of pending messages is storage order."""

    async def by_client_ids(self, keys: Iterable[tuple[int, str]]) -> dict[tuple[int, str], Message]:
        """The stored messages of these ``(sender, clientMsgId)`` keys, by key (missing: not stored)."""
        ...

    async def pending_for(self, recipient_id: int, *, limit: int, excluding: Collection[str] = ()) -> list[Message]:
        """The oldest pending (not withheld, not delivered) messages to ``recipient_id``, in storage
        order, leaving out the ids in ``excluding``."""
        ...

    async def still_pending(self, recipient_id: int, ids: Iterable[str]) -> set[str]: ...

    async def mark_delivered(
        self, acks: Sequence[tuple[int, Iterable[str]]], *, now: datetime
    ) -> list[list[Delivered]]:
        """For each ``(recipient_id, ids)``: mark delivered those of ``ids`` addressed to
        ``recipient_id``, not withheld and not yet delivered, and return exactly those (the newly
        delivered), in the order of ``ids``. An id in two acknowledgements of one call counts for
        the first."""
        ...

    async def mark_read(self, recipient_id: int, pair: Pair, up_to_seq: int, *, now: datetime) -> list[Delivered]:
        """Mark read (and delivered, where not yet) every visible message to ``recipient_id`` in the
        conversation with ``seq <= up_to_seq``; return the newly *delivered* ones."""
        ...

    async def history(
        self, viewer_id: int, pair: Pair, *, before: int | None, after: int | None, limit: int
    ) -> list[Message]:
        """Up to ``limit`` messages visible to ``viewer_id``: with ``after`` the lowest seqs above it
        (ascending); otherwise the highest seqs below ``before`` (or overall), descending."""
        ...


@dataclass(frozen=True, slots=True, kw_only=True)
class Appended:
    """A message :meth:`ConversationRepository.append` stored, and whether it made its users contacts."""

    message: Message
    became_contacts: bool


class StoreUnavailableError(BusyError):
    """The database cannot be reached or is locked by someone else: nothing about the data is
    wrong, and trying each write of a batch on its own would only wait longer. Units of work raise
    it for such failures (HTTP answers 503)."""

    def __init__(self, detail: str) -> None:
        super().__init__(retry_after_s=1, message="the database is unavailable, retry shortly")
        self.detail = detail


class ConcurrentWriteError(Exception):
    """A concurrent transaction committed the same unique key first. The transaction must be rolled
    back; running it again sees that commit."""


class DuplicateMessageError(ConcurrentWriteError):
    """A message with the same ``(sender, clientMsgId)`` is already stored (a concurrent resend)."""


class Subscriber(Protocol):
    """One live connection as the fan-out sees it. ``deliver`` must not block or raise."""

    @property
    def connection_id(self) -> str: ...

    @property
    def user_id(self) -> int: ...

    def deliver(self, event: Event) -> None: ...


class Notifier(Protocol):
    """Fan-out of events to users' live connections (everywhere in the deployment).

    Fire-and-forget, called only after commit, never blocks. Delivery to a connection is at most
    once; the durable store plus re-push make messages at least once.
    """

    def publish(self, user_id: int, event: Event, *, skip_connection: str | None = None) -> None: ...


class ConnectionHub(Protocol):
    """Where live connections of this process register to receive what :class:`Notifier` publishes."""

    def attach(self, subscriber: Subscriber) -> None: ...

    def detach(self, subscriber: Subscriber) -> None: ...

    async def synced(self) -> None:
        """Wait until events published anywhere reach every attached subscriber (e.g. the pub/sub
        subscription is confirmed). Callers bound the wait; returns at once in one process."""
        ...


@dataclass(frozen=True, slots=True)
class PresenceRepair:
    """What :meth:`PresenceRegistry.heal` found: users who came online by the re-registration,
    and users who left (at the time given) while the registry could not record it."""

    came_online: Sequence[int] = ()
    went_offline: Sequence[tuple[int, datetime]] = ()


class PresenceRegistry(Protocol):
    """Who is online, decided by the server only, with the rules of :mod:`domain.presence`.

    A user is online from their first live connection until the last one closed and a grace period
    passed without a reconnect; each transition is reported exactly once. The in-memory adapter
    applies the rules in one process; the Redis adapter must implement the same semantics
    atomically across processes: :meth:`connect` returns True in exactly one process for a
    user coming online, :meth:`settle` reports a user going offline in exactly one process
    deployment-wide, and a crashed process's connections expire (per-process heartbeat with a TTL)
    so they do not keep their users online forever. Nothing here publishes events or touches the
    database; the use cases of :mod:`application.presence` do that. Reads never reveal anything by
    themselves — callers filter by visibility first.
    """

    async def connect(self, user_id: int, connection_id: str, *, now: datetime, limit: int | None = None) -> bool:
        """Register a live connection (idempotent per id); True iff this made the user come online.

        A reconnect while the user's leave is unsettled cancels it and returns False. With
        ``limit``, a user who already holds ``limit`` other connections anywhere in the deployment
        is refused with :class:`~domain.presence.TooManyConnectionsError` and nothing changes;
        the check and the registration are one atomic step (concurrent connects cannot both pass).
        """
        ...

    async def disconnect(self, user_id: int, connection_id: str, *, now: datetime) -> None:
        """Forget a connection (unknown ids are ignored); closing the last one starts the grace
        period at ``now``."""
        ...

    async def settle(self, *, now: datetime, grace_s: float) -> list[tuple[int, datetime]]:
        """Mark offline every user whose last connection closed at least ``grace_s`` before ``now``
        with no reconnect since, and return them with their ``last_seen_at`` (when that connection
        closed). Each such transition is returned once, deployment-wide, in no particular order."""
        ...

    async def online_among(self, user_ids: Iterable[int]) -> set[int]:
        """Those of ``user_ids`` that are online (including a leave whose grace is unsettled)."""
        ...

    async def heal(self, *, now: datetime) -> PresenceRepair:
        """After a shared registry was unreachable or lost its data: register again this process's
        live connections, forget those that closed meanwhile, and say which transitions the
        contacts missed. Nothing to do (an empty repair) when nothing was lost."""
        ...


class AccountRepository(Protocol):
    """What an account's deletion does to the data beyond its own row (which the use case erases
    through the mapped :class:`~domain.users.User`)."""

    async def forget(self, user_id: int, *, erase_bodies: bool) -> None:
        """In this transaction: delete the user's logins and refresh tokens, contacts and blocks
        (both directions); drop the messages pending to the user (they become withheld: never
        delivered, still in their senders' history); with ``erase_bodies`` blank the body of every
        message the user sent (``""``). The conversations, their seqs and the peers' read pointers
        stay. This is the one place to drop anything else the deployment keeps per account (push
        targets, queued push jobs)."""


class PushTargetRepository(Protocol):
    """The logins' push targets, and the push outbox's writes in a message's transaction."""

    async def add(self, target: PushTarget) -> PushTarget:
        """Store ``target``; a target with the same ``(app_id, token)`` is replaced (moved to this
        login and user). Returns what is stored."""
        ...

    async def of_user(self, user_id: int) -> list[PushTarget]:
        """The user's targets, oldest first."""
        ...

    async def count_of_login(self, login_id: str) -> int: ...

    async def remove(self, user_id: int, target_id: str) -> bool:
        """Delete the user's target ``target_id``; False when the user has no such target."""
        ...

    async def queue_pushes(self, jobs: Sequence[tuple[str, int]], *, now: datetime, due: datetime) -> None:
        """Outbox jobs for these ``(message_id, recipient_id)`` — only for recipients that have a
        push target (the store checks, in the same statement). One statement, on the send path."""
        ...


@dataclass(frozen=True, slots=True, kw_only=True)
class PushMessage:
    id: str
    sender_id: int
    sender_name: str
    created_at: datetime
    body: str


@dataclass(frozen=True, slots=True, kw_only=True)
class Notification:
    """One push: a recipient's claimed jobs, sent to all of their targets in one gateway request.
    ``id`` is its idempotency key, the same on every attempt; ``attempts``: failed ones before;
    ``lease_until``: the claim's lease, which settling it checks."""

    id: str
    user_id: int
    attempts: int
    lease_until: datetime
    messages: list[PushMessage]  # oldest first
    targets: list[PushTarget]
    unread: int  # the recipient's messages no device acknowledged yet


class PushOutbox(Protocol):
    """The push outbox, for the dispatcher. Each method is its own transaction. Several processes
    may call them at once: a job is claimed by one of them at a time (PostgreSQL ``FOR UPDATE
    SKIP LOCKED``; SQLite serialises writers), and a claim is a lease that runs out."""

    async def waiting(self, *, now: datetime, fresh_before: datetime, limit: int) -> list[Waiting]:
        """Recipients with jobs no lease holds that may go out now — a claimed push (a retry), or
        fresh jobs created before ``fresh_before`` (the coalescing window) — at most ``limit``,
        those with the earliest due job first."""
        ...

    async def claim(
        self,
        *,
        fresh: Collection[int],
        retry: Collection[int],
        now: datetime,
        lease_until: datetime,
        new_id: Callable[[], str],
    ) -> list[Notification]:
        """Lease the free jobs of ``fresh`` recipients (all unclaimed jobs, as one new
        notification each) and the free claimed jobs of ``retry`` recipients (each notification
        as it was claimed), until ``lease_until``. Jobs whose message was acknowledged meanwhile,
        and recipients without targets, are dropped, not returned."""
        ...

    # Settling touches the push's jobs only while they still carry the claim's ``lease_until``:
    # a process whose lease ran out (another one claimed the push since) changes nothing.

    async def sent(self, push_id: str, *, lease_until: datetime, rejected: Collection[str]) -> int:
        """The gateway took the push: delete its jobs and the recipient's targets whose token it
        rejected. Returns how many targets were deleted."""
        ...

    async def retry(self, push_id: str, *, lease_until: datetime, at: datetime) -> None:
        """The push failed: count the attempt, take it up again at ``at``."""
        ...

    async def drop(self, push_id: str, *, lease_until: datetime) -> None:
        """Give the push up: delete its jobs."""
        ...


@dataclass(frozen=True, slots=True, kw_only=True)
class GatewayAnswer:
    status: int | None  # None: no answer (refused, timed out, reset)
    rejected: list[str]  # the tokens the gateway says are no longer valid


class PushGateway(Protocol):
    """The operator's push gateway (one HTTP request per notification)."""

    async def send(self, notification: Notification) -> GatewayAnswer:
        """Never raises for a network or gateway failure: the answer says it."""
        ...


class UnitOfWork(Protocol):
    """One transaction. ``async with uow:`` opens it, :meth:`commit` ends it, leaving rolls back.

    An instance may be reused one transaction after another but never by two tasks at once.
    """

    users: UserRepository
    logins: LoginRepository
    contacts: ContactRepository
    blocks: BlockRepository
    conversations: ConversationRepository
    messages: MessageRepository
    accounts: AccountRepository
    push: PushTargetRepository

    async def __aenter__(self) -> Self: ...

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None: ...

    async def commit(self) -> None: ...
