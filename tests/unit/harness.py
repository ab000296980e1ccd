"""Every use case of the core wired to the fakes of :mod:`tests.unit.fakes`, plus small helpers."""

from __future__ import annotations

from application.accounts import (
    Authenticate,
    ChangePassword,
    Credentials,
    LogIn,
    LoginIssuer,
    LogOut,
    LogOutEverywhere,
    RefreshLogin,
    Register,
    RegisterUser,
    Session,
)
from application.common import Principal
from application.users import CardMaker, GetProfile, GetUser, ListContacts, RenameUser, SearchUsers
from domain.auth import LoginThrottle
from tests.unit.fakes import (
    FakePasswordHasher,
    FakePresence,
    FakeTokenService,
    FixedClock,
    InMemoryAttemptCounter,
    InMemoryStore,
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
        registrations_per_hour: int = 100,
        access_ttl_s: int = 900,
        refresh_ttl_s: int = 86_400,
    ) -> None:
        self.store = InMemoryStore()
        self.clock = FixedClock()
        self.ids = SequentialIds()
        self.hasher = FakePasswordHasher()
        self.tokens = FakeTokenService(access_ttl_s=access_ttl_s)
        self.counter = InMemoryAttemptCounter()
        self.presence = FakePresence()
        self.throttle = LoginThrottle(max_failures=max_failures, window_s=login_window_s)
        self.access_ttl_s = access_ttl_s
        self.refresh_ttl_s = refresh_ttl_s
        self._phones = 0

        uow = self.store.unit_of_work
        issuer = LoginIssuer(self.tokens, self.ids, refresh_ttl_s)
        self.register = RegisterUser(uow, self.hasher, issuer, self.counter, self.clock, registrations_per_hour)
        self.log_in = LogIn(uow, self.hasher, issuer, self.counter, self.clock, self.throttle)
        self.refresh = RefreshLogin(uow, self.tokens, issuer, self.clock)
        self.authenticate = Authenticate(uow, self.tokens, self.clock)
        self.log_out = LogOut(uow, self.clock)
        self.log_out_everywhere = LogOutEverywhere(uow, self.clock)
        self.change_password = ChangePassword(uow, self.hasher, self.counter, self.clock, self.throttle)
        cards = CardMaker(self.presence)
        self.get_profile = GetProfile(uow)
        self.rename = RenameUser(uow)
        self.get_user = GetUser(uow, cards)
        self.list_contacts = ListContacts(uow, cards)
        self.search = SearchUsers(uow, cards)

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
    ) -> Session:
        return await self.register(self.registration(name, email=email, password=password, address=address))

    async def sign_in(self, email: str, password: str = PASSWORD, address: str = ADDRESS) -> Session:
        return await self.log_in(Credentials(email=email, password=password, client_address=address))


def principal_of(session: Session) -> Principal:
    return Principal(user_id=session.user.uid, sid=session.sid)
