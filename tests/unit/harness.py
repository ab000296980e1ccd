"""Every use case of the core wired to the fakes of :mod:`tests.unit.fakes`, plus small helpers."""

from __future__ import annotations

import asyncio

from application.account_life import DeleteAccount, ExportAccount
from application.accounts import (
    Authenticate,
    ChangePassword,
    Credentials,
    EndSession,
    ListSessions,
    LoginIssuer,
    PasswordConfirmation,
    RefreshLogin,
    Register,
    RegisterUser,
    SignedIn,
    SignIn,
    SignOut,
    SignOutEverywhere,
)
from application.common import Principal
from application.group_commit import GroupCommit
from application.messaging import (
    AcknowledgeDelivery,
    History,
    ListConversations,
    MarkRead,
    PendingFor,
    Read,
    Send,
    SendMessage,
    SendResult,
    StillPending,
)
from application.presence import Connect, Disconnect, SettlePresence, VisibleOnline
from application.social import BlockUser, ListBlocked, RelayTyping, UnblockUser
from application.users import CardMaker, GetProfile, GetUser, ListContacts, RenameUser, SearchUsers
from domain.auth import LoginThrottle
from domain.messages import Message
from tests.unit.fakes import (
    FakePasswordHasher,
    FakePresence,
    FakeTokenService,
    FixedClock,
    InMemoryAttemptCounter,
    InMemoryStore,
    RecordingNotifier,
    SequentialIds,
)

PASSWORD = "correct horse"
ADDRESS = "203.0.113.7"
OTHER_ADDRESS = "198.51.100.9"


class World:
    """A fresh core with fakes; settings are small so limits are reached in few steps."""

    def __init__(
        self,
        *,
        max_failures: int = 3,
        login_window_s: int = 900,
        max_logins: int = 20,
        registrations_per_hour: int = 100,
        access_ttl_s: int = 900,
        refresh_ttl_s: int = 86_400,
        max_body_chars: int = 20,
        grace_s: float = 3,
    ) -> None:
        self.store = InMemoryStore()
        self.clock = FixedClock()
        self.ids = SequentialIds()
        self.hasher = FakePasswordHasher()
        self.tokens = FakeTokenService(access_ttl_s=access_ttl_s)
        self.counter = InMemoryAttemptCounter()
        self.presence = FakePresence()
        self.notifier = RecordingNotifier(self.store)
        self.throttle = LoginThrottle(max_failures=max_failures, window_s=login_window_s)
        self.access_ttl_s = access_ttl_s
        self.refresh_ttl_s = refresh_ttl_s
        self.max_body_chars = max_body_chars
        self.grace_s = grace_s
        self._phones = 0
        self._client_msg_ids = 0

        uow = self.store.unit_of_work
        issuer = LoginIssuer(self.tokens, self.ids, refresh_ttl_s)
        self.register = RegisterUser(uow, self.hasher, issuer, self.counter, self.clock, registrations_per_hour)
        self.sign_in = SignIn(
            uow, self.hasher, issuer, self.counter, self.clock, self.throttle, self.notifier, max_logins
        )
        self.refresh = RefreshLogin(uow, self.tokens, issuer, self.clock, self.notifier)
        self.authenticate = Authenticate(uow, self.tokens, self.clock)
        self.sign_out = SignOut(uow, self.clock, self.notifier)
        self.sign_out_everywhere = SignOutEverywhere(uow, self.clock, self.notifier)
        confirm = PasswordConfirmation(uow, self.hasher, self.counter, self.clock, self.throttle)
        self.change_password = ChangePassword(uow, self.hasher, confirm, self.clock, self.notifier)
        self.list_sessions = ListSessions(uow)
        self.end_session = EndSession(uow, self.clock, self.notifier)
        self.delete_account = DeleteAccount(uow, confirm, self.clock, self.notifier)
        self.export_account = ExportAccount(uow, self.clock, page=2)  # small pages: paging is exercised
        self.cards = cards = CardMaker(self.presence)
        self.get_profile = GetProfile(uow)
        self.rename = RenameUser(uow)
        self.get_user = GetUser(uow, cards)
        self.list_contacts = ListContacts(uow, cards)
        self.search = SearchUsers(uow, cards)
        self.writes = GroupCommit(uow)
        self.send_message = SendMessage(self.writes, self.notifier, self.presence, self.clock, self.ids, max_body_chars)
        self.acknowledge = AcknowledgeDelivery(self.writes, self.notifier, self.clock)
        self.mark_read = MarkRead(uow, self.notifier, self.clock)
        self.pending_for = PendingFor(uow)
        self.still_pending = StillPending(uow)
        self.history = History(uow)
        self.list_conversations = ListConversations(uow, cards)
        self.connect = Connect(uow, self.presence, self.notifier, self.clock)
        self.disconnect = Disconnect(self.presence, self.clock)
        self.settle_presence = SettlePresence(uow, self.presence, self.notifier, self.clock, grace_s)
        self.visible_online = VisibleOnline(uow, self.presence)
        self.block_user = BlockUser(uow, self.clock)
        self.unblock_user = UnblockUser(uow)
        self.list_blocked = ListBlocked(uow)
        self.relay_typing = RelayTyping(uow, self.notifier)

    def registration(
        self,
        name: str = "Alice",
        *,
        email: str | None = None,
        phone_number: str | None = None,
        password: str = PASSWORD,
        address: str = ADDRESS,
    ) -> Register:
        """A valid registration (unique phone number, email derived from the name) unless overridden."""
        if phone_number is None:
            self._phones += 1
            phone_number = f"+1415555{self._phones:04d}"
        return Register(
            name=name,
            email=email if email is not None else f"{name.lower()}@example.com",
            phone_number=phone_number,
            password=password,
            client_address=address,
        )

    async def sign_up(
        self, name: str = "Alice", *, email: str | None = None, password: str = PASSWORD, address: str = ADDRESS
    ) -> SignedIn:
        return await self.register(self.registration(name, email=email, password=password, address=address))

    async def signed_in(self, email: str, password: str = PASSWORD, address: str = ADDRESS) -> SignedIn:
        return await self.sign_in(Credentials(email=email, password=password, client_address=address))

    def seed_users(self, *names: str) -> list[int]:
        """Committed users with these names; their ids."""
        return [self.store.seed_user(name).uid for name in names]

    def next_client_msg_id(self) -> str:
        self._client_msg_ids += 1
        return f"c{self._client_msg_ids}"

    async def send(
        self,
        sender: int,
        to: int,
        body: str = "hi",
        *,
        client_msg_id: str | None = None,
        connection: str | None = None,
    ) -> SendResult:
        """Send through :class:`SendMessage` with a fresh ``clientMsgId`` unless one is given."""
        return await self.send_message(
            principal_of(sender),
            Send(
                to=to,
                body=body,
                client_msg_id=client_msg_id if client_msg_id is not None else self.next_client_msg_id(),
                connection_id=connection,
            ),
        )

    async def exchange(self, a: int, b: int, count: int) -> list[Message]:
        """``count`` messages alternating a→b, b→a, …; the stored messages in order."""
        sent: list[Message] = []
        for i in range(count):
            sender, to = (a, b) if i % 2 == 0 else (b, a)
            sent.append((await self.send(sender, to, f"m{i + 1}")).message)
        return sent

    async def read(self, reader: int, peer: int, up_to_seq: int, *, connection: str | None = None) -> int | None:
        return await self.mark_read(
            principal_of(reader), Read(peer_id=peer, up_to_seq=up_to_seq, connection_id=connection)
        )


def principal_of(who: SignedIn | int) -> Principal:
    """The actor use cases take (no token expiry): a session's, or for a seeded user's id, a
    principal with a made-up login ``sid-<id>``."""
    if isinstance(who, SignedIn):
        return Principal(user_id=who.user.uid, sid=who.sid)
    return Principal(user_id=who, sid=f"sid-{who}")


def login_of(who: Principal | SignedIn) -> tuple[int, str]:
    """Which user and which login (``sid``), ignoring a principal's token expiry."""
    if isinstance(who, SignedIn):
        return (who.user.uid, who.sid)
    return (who.user_id, who.sid)


async def hashing(world: World, count: int) -> None:
    """Let the event loop run until ``count`` verifications wait at the hasher's gate (bounded)."""
    for _ in range(1000):
        if world.hasher.waiting >= count:
            return
        await asyncio.sleep(0)
    raise AssertionError(f"{count} verifications never started")
