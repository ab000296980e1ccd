"""Account use cases: register, log in, refresh, log out (one login or all), change password,
and authenticate a bearer token. Each opens its own transactions; hashing happens outside them."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from application.common import Principal, UnitOfWorkFactory
from application.events import LoginsRevoked
from domain.auth import (
    AttemptLimit,
    Login,
    LoginThrottle,
    RefreshToken,
    RefreshVerdict,
    account_key,
    address_key,
    attempts_key,
    client_label,
    oldest_beyond,
    pair_key,
    registration_key,
)
from domain.errors import (
    BusyError,
    EmailTakenError,
    InvalidCredentialsError,
    InvalidInputError,
    LoginRevokedError,
    PhoneTakenError,
    RateLimitedError,
    SessionNotFoundError,
    UserNotFoundError,
)
from domain.messages import is_storable
from domain.users import Registration, User, check_password, email_key

if TYPE_CHECKING:
    from collections.abc import Collection
    from datetime import datetime

    from application.ports import (
        AttemptCounter,
        Clock,
        IdGenerator,
        Notifier,
        PasswordHasher,
        TokenService,
        UnitOfWork,
    )

REGISTRATION_WINDOW_S = 3600


@dataclass(frozen=True, slots=True, kw_only=True)
class SignedIn:
    """A signed-in login: the user and a fresh access/refresh token pair."""

    user: User
    sid: str
    access_token: str
    expires_in: int
    refresh_token: str


class LoginIssuer:
    """Starts logins and rotates their refresh tokens, inside the caller's transaction."""

    def __init__(self, tokens: TokenService, ids: IdGenerator, refresh_ttl_s: int) -> None:
        self._tokens = tokens
        self._ids = ids
        self._refresh_ttl_s = refresh_ttl_s

    async def start(self, uow: UnitOfWork, user: User, clock: Clock, user_agent: str | None = None) -> SignedIn:
        now = clock.now()
        login = Login(id=self._ids.new_id(), user_id=user.uid, created_at=now, client=client_label(user_agent))
        await uow.logins.add(login)
        return await self.rotate(uow, user, login, clock)

    async def rotate(self, uow: UnitOfWork, user: User, login: Login, clock: Clock) -> SignedIn:
        now = clock.now()
        login.touch(now)  # a refresh is a use of the login
        raw = self._tokens.new_refresh_secret()
        await uow.logins.add_refresh(
            RefreshToken.issue(
                digest=self._tokens.refresh_digest(raw), login_id=login.id, now=now, ttl_s=self._refresh_ttl_s
            )
        )
        access = self._tokens.issue_access(user_id=user.uid, sid=login.id, now=now)
        return SignedIn(
            user=user,
            sid=login.id,
            access_token=access.token,
            expires_in=access.expires_in,
            refresh_token=raw,
        )


@dataclass(frozen=True, slots=True, kw_only=True)
class Register:
    name: str
    email: str
    phone_number: str
    password: str
    client_address: str
    user_agent: str | None = None


class RegisterUser:
    """Create an account and sign it in. Every attempt counts against the per-address hourly limit.

    Raises InvalidInputError, EmailTakenError, PhoneTakenError, RateLimitedError, BusyError.
    """

    def __init__(
        self,
        uow: UnitOfWorkFactory,
        hasher: PasswordHasher,
        issuer: LoginIssuer,
        counter: AttemptCounter,
        clock: Clock,
        per_hour: int,
    ) -> None:
        self._uow, self._hasher, self._issuer = uow, hasher, issuer
        self._counter, self._clock = counter, clock
        self._limit = AttemptLimit(max_attempts=per_hour, window_s=REGISTRATION_WINDOW_S)

    async def __call__(self, cmd: Register) -> SignedIn:
        now = self._clock.now()
        window = await self._counter.hit(registration_key(cmd.client_address), now=now, window_s=self._limit.window_s)
        if self._limit.exceeded_by(window, now):
            raise RateLimitedError(window.retry_after_s(now, self._limit.window_s), "too many registrations")
        data = Registration.parse(name=cmd.name, email=cmd.email, phone_number=cmd.phone_number, password=cmd.password)
        async with self._uow() as uow:  # cheap early answer; the unique constraints decide races
            if await uow.users.get_by_email_key(email_key(data.email)) is not None:
                raise EmailTakenError()
            if await uow.users.get_by_phone(data.phone_number) is not None:
                raise PhoneTakenError()
        password_hash = await self._hasher.hash(data.password)
        async with self._uow() as uow:
            user = User.register(data, password_hash=password_hash, now=self._clock.now())
            await uow.users.add(user)
            session = await self._issuer.start(uow, user, self._clock, cmd.user_agent)
            await uow.commit()
        return session


@dataclass(frozen=True, slots=True, kw_only=True)
class Credentials:
    email: str
    password: str
    client_address: str
    user_agent: str | None = None


class SignIn:
    """Check email and password and start a login.

    Unknown email and wrong password raise the same InvalidCredentialsError after the same work
    (a dummy hash is verified). The limits are :class:`domain.auth.LoginThrottle`'s: failures
    count per (account, client address), per account and per address; every attempt counts per
    (account, address) before any hashing. Over a limit every attempt raises RateLimitedError
    until its window closes, right password or not. While one attempt of an account is being
    hashed, another of the same account (in this process) raises BusyError at once: one account
    never holds more than one of the process's hashing slots, so it cannot starve other users'
    logins. A successful login beyond ``max_logins`` live logins of the user revokes the oldest
    ones (committed with the new login; their connections then hear :class:`LoginsRevoked`).
    """

    def __init__(
        self,
        uow: UnitOfWorkFactory,
        hasher: PasswordHasher,
        issuer: LoginIssuer,
        counter: AttemptCounter,
        clock: Clock,
        throttle: LoginThrottle,
        notifier: Notifier,
        max_logins: int,
    ) -> None:
        self._uow, self._hasher, self._issuer = uow, hasher, issuer
        self._counter, self._clock, self._throttle = counter, clock, throttle
        self._notifier, self._max_logins = notifier, max_logins
        self._hashing: set[str] = set()  # accounts (email keys) with an attempt being hashed here

    async def __call__(self, cmd: Credentials) -> SignedIn:
        key = email_key(cmd.email)
        failures = {
            pair_key(key, cmd.client_address): self._throttle.per_pair,
            account_key(key): self._throttle.per_account,
            address_key(cmd.client_address): self._throttle.per_address,
        }
        await check_attempts(self._counter, failures, self._clock)
        await count_attempt(self._counter, attempts_key(key, cmd.client_address), self._throttle, self._clock)
        if key in self._hashing:
            raise BusyError(1, "another login of this account is being checked, retry shortly")
        self._hashing.add(key)
        try:
            verified = await self._verified(key, cmd.password)
        finally:
            self._hashing.discard(key)
        if verified is None:
            await count_failure(self._counter, failures, self._clock)
            raise InvalidCredentialsError()
        user, password_hash = verified
        await self._counter.reset(pair_key(key, cmd.client_address))
        async with self._uow() as uow:
            # The account may have been deleted, or its password changed, while the password was
            # checked: then this login must not outlive that (the lock orders the two).
            stored = await uow.users.lock(user.uid)
            if stored is None or stored.deleted or stored.password_hash != password_hash:
                raise InvalidCredentialsError()
            revoked = await self._make_room(uow, user.uid)
            session = await self._issuer.start(uow, stored, self._clock, cmd.user_agent)
            await uow.commit()
        publish_revoked(self._notifier, user.uid, revoked)
        return session

    async def _verified(self, key: str, password: str) -> tuple[User, str] | None:
        """The account whose password this is and the hash it matched, or None (after the same
        Argon2 work either way)."""
        async with self._uow() as uow:  # text no database stores belongs to no account
            user = await uow.users.get_by_email_key(key) if is_storable(key) else None
        password_hash = user.password_hash if user else None
        valid = await self._hasher.verify(password, password_hash)
        return (user, password_hash) if user is not None and password_hash is not None and valid else None

    async def _make_room(self, uow: UnitOfWork, user_id: int) -> list[str]:
        """Revoke the user's oldest live logins so that the new one makes at most ``max_logins``."""
        found = [await uow.logins.get(sid) for sid in await uow.logins.active_ids_of(user_id)]
        live = [login for login in found if login is not None]
        oldest = oldest_beyond(live, self._max_logins - 1)
        now = self._clock.now()
        for login in oldest:
            login.revoke(now)
        return [login.id for login in oldest]


async def check_attempts(counter: AttemptCounter, limits: dict[str, AttemptLimit], clock: Clock) -> None:
    """Raise RateLimitedError if any limit is full, with the longest wait among the full ones."""
    now = clock.now()
    refusals: list[RateLimitedError] = []
    for key, limit in limits.items():
        try:
            limit.check(await counter.get(key, now=now, window_s=limit.window_s), now)
        except RateLimitedError as exc:
            refusals.append(exc)
    if refusals:
        raise max(refusals, key=lambda exc: exc.retry_after_s)


async def count_attempt(counter: AttemptCounter, key: str, throttle: LoginThrottle, clock: Clock) -> None:
    """Count one login attempt of an (account, address) pair; RateLimitedError when over the limit."""
    limit, now = throttle.attempts_per_pair, clock.now()
    window = await counter.hit(key, now=now, window_s=limit.window_s)
    if limit.exceeded_by(window, now):
        raise RateLimitedError(window.retry_after_s(now, limit.window_s), "too many logins, retry later")


async def count_failure(counter: AttemptCounter, limits: dict[str, AttemptLimit], clock: Clock) -> None:
    now = clock.now()
    for key, limit in limits.items():
        await counter.hit(key, now=now, window_s=limit.window_s)


def publish_revoked(notifier: Notifier, user_id: int, sids: list[str]) -> None:
    """After the commit: the connections of these logins close (4403), on every process."""
    if sids:
        notifier.publish(user_id, LoginsRevoked(sids=frozenset(sids)))


@dataclass(frozen=True, slots=True, kw_only=True)
class Refresh:
    refresh_token: str


class RefreshLogin:
    """Exchange a refresh token for a new pair (rotation). A spent token presented again revokes
    its whole login (committed, then its connections hear :class:`LoginsRevoked`). Raises
    InvalidTokenError for every refusal (unknown, expired, spent, revoked)."""

    def __init__(
        self, uow: UnitOfWorkFactory, tokens: TokenService, issuer: LoginIssuer, clock: Clock, notifier: Notifier
    ) -> None:
        self._uow, self._tokens, self._issuer, self._clock = uow, tokens, issuer, clock
        self._notifier = notifier

    async def __call__(self, cmd: Refresh) -> SignedIn:
        outcome = await self._exchange(self._tokens.refresh_digest(cmd.refresh_token), self._clock.now())
        if isinstance(outcome, Login):  # reuse: the login was revoked (committed)
            publish_revoked(self._notifier, outcome.user_id, [outcome.id])
            raise RefreshToken.rejected()
        return outcome

    async def _exchange(self, digest: str, now: datetime) -> SignedIn | Login:
        """The next session, or the login that this reuse just revoked; raises for other refusals."""
        async with self._uow() as uow:
            token = await uow.logins.get_refresh(digest)
            if token is None:
                raise RefreshToken.rejected()
            login = await uow.logins.get(token.login_id)
            verdict = token.judge(login, now)
            if verdict is RefreshVerdict.ROTATE and not await uow.logins.spend_refresh(digest, now=now):
                verdict = RefreshVerdict.REVOKE_LOGIN  # a concurrent request spent it: that is reuse too
            if verdict is RefreshVerdict.REVOKE_LOGIN and login is not None:
                login.revoke(now)
                await uow.commit()
                return login
            if verdict is not RefreshVerdict.ROTATE or login is None:
                raise RefreshToken.rejected()
            user = await uow.users.get(login.user_id)
            if user is None or user.deleted:
                raise RefreshToken.rejected()
            session = await self._issuer.rotate(uow, user, login, self._clock)
            await uow.commit()
        return session


class Authenticate:
    """Turn a bearer access token into a :class:`Principal`; the token's login must be active
    (a deleted account has no logins left). Records the login's use when the last recorded one is
    :data:`~domain.auth.LAST_USED_PRECISION_S` old: at most one write per login per minute, however
    many requests and sockets use it.

    Raises InvalidTokenError or LoginRevokedError.
    """

    def __init__(self, uow: UnitOfWorkFactory, tokens: TokenService, clock: Clock) -> None:
        self._uow, self._tokens, self._clock = uow, tokens, clock

    async def __call__(self, token: str) -> Principal:
        now = self._clock.now()
        claims = self._tokens.verify_access(token, now=now)
        async with self._uow() as uow:
            login = await uow.logins.get(claims.sid)
            if login is None or login.user_id != claims.user_id:
                raise LoginRevokedError()
            login.ensure_active()
            if login.touch(now):
                await uow.commit()
        return Principal(user_id=claims.user_id, sid=claims.sid, expires_at=claims.expires_at)


class RevokedAmong:
    """Which of the given logins are no longer active (revoked, or not stored): what each process
    asks every ``CHAT_SESSION_CHECK_S`` about the logins of its open sockets, so a revocation whose
    broadcast was lost (pub/sub delivers at most once) still ends them. One transaction, one query
    per ``chunk`` logins (bounded statements); raises only when the store fails."""

    def __init__(self, uow: UnitOfWorkFactory, chunk: int = 500) -> None:
        self._uow, self._chunk = uow, chunk

    async def __call__(self, sids: Collection[str]) -> set[str]:
        ordered = sorted(set(sids))
        if not ordered:
            return set()
        revoked: set[str] = set()
        async with self._uow() as uow:
            for at in range(0, len(ordered), self._chunk):
                revoked |= await uow.logins.inactive_among(ordered[at : at + self._chunk])
        return revoked


class SignOut:
    """Revoke the caller's login: its refresh token and every access token with its ``sid``.

    Commits, then (if the login was still active) its connections hear :class:`LoginsRevoked`.
    """

    def __init__(self, uow: UnitOfWorkFactory, clock: Clock, notifier: Notifier) -> None:
        self._uow, self._clock, self._notifier = uow, clock, notifier

    async def __call__(self, actor: Principal) -> list[str]:
        revoked: list[str] = []
        async with self._uow() as uow:
            login = await uow.logins.get(actor.sid)
            if login is not None and login.user_id == actor.user_id and login.active:
                login.revoke(self._clock.now())
                revoked.append(login.id)
            await uow.commit()
        publish_revoked(self._notifier, actor.user_id, revoked)
        return [actor.sid]


class SignOutEverywhere:
    """Revoke every login of the caller; commits, then their connections hear
    :class:`LoginsRevoked`. Returns the revoked login ids."""

    def __init__(self, uow: UnitOfWorkFactory, clock: Clock, notifier: Notifier) -> None:
        self._uow, self._clock, self._notifier = uow, clock, notifier

    async def __call__(self, actor: Principal) -> list[str]:
        async with self._uow() as uow:
            revoked = await revoke_logins(uow, self._clock.now(), actor.user_id, keep=None)
            await uow.commit()
        publish_revoked(self._notifier, actor.user_id, revoked)
        return revoked


async def revoke_logins(uow: UnitOfWork, now: datetime, user_id: int, keep: str | None) -> list[str]:
    """Revoke the user's active logins but ``keep``, in the caller's transaction; their ids."""
    revoked: list[str] = []
    for sid in await uow.logins.active_ids_of(user_id):
        login = await uow.logins.get(sid)
        if login is not None and sid != keep:
            login.revoke(now)
            revoked.append(sid)
    return revoked


class PasswordConfirmation:
    """The caller typing their password again (to change it, to delete the account). It counts as
    a login of the account from the caller's login: a wrong one is a failure of that (account,
    login) pair and of the account as a whole, so a stolen access token cannot be used to guess the
    password, and N failures lock that login out of it (429). Returns the caller's user; raises
    InvalidInputError on ``field`` for a wrong password."""

    def __init__(
        self,
        uow: UnitOfWorkFactory,
        hasher: PasswordHasher,
        counter: AttemptCounter,
        clock: Clock,
        throttle: LoginThrottle,
    ) -> None:
        self._uow, self._hasher, self._counter, self._clock, self._throttle = uow, hasher, counter, clock, throttle

    async def __call__(self, actor: Principal, password: str, field: str, wrong: str) -> User:
        async with self._uow() as uow:
            user = await uow.users.get(actor.user_id)
        if user is None or user.deleted:
            raise UserNotFoundError(actor.user_id)
        limits = {
            pair_key(user.email_key, f"login {actor.sid}"): self._throttle.per_pair,
            account_key(user.email_key): self._throttle.per_account,
        }
        await check_attempts(self._counter, limits, self._clock)
        if not await self._hasher.verify(password, user.password_hash):
            await count_failure(self._counter, limits, self._clock)
            raise InvalidInputError.of(field, wrong)
        return user


@dataclass(frozen=True, slots=True, kw_only=True)
class PasswordChange:
    current_password: str
    new_password: str


class ChangePassword:
    """Replace the caller's password after checking the current one, and revoke every other login.

    A wrong current password counts as a failed login of the account from this login (so a stolen
    access token cannot be used to guess it: its login is locked out of password changes after N,
    and the failures count toward the account's whole limit) and raises InvalidInputError on
    ``currentPassword``. The new hash
    and the revocations commit together (or neither does); after the commit the revoked logins'
    connections hear :class:`LoginsRevoked`. Returns their ids.
    """

    def __init__(
        self,
        uow: UnitOfWorkFactory,
        hasher: PasswordHasher,
        confirm: PasswordConfirmation,
        clock: Clock,
        notifier: Notifier,
    ) -> None:
        self._uow, self._hasher, self._confirm, self._clock, self._notifier = uow, hasher, confirm, clock, notifier

    async def __call__(self, actor: Principal, cmd: PasswordChange) -> list[str]:
        new_password = check_password(cmd.new_password, "newPassword")
        user = await self._confirm(actor, cmd.current_password, "currentPassword", "is not your current password")
        new_hash = await self._hasher.hash(new_password)
        async with self._uow() as uow:  # one transaction: never a new password with old logins alive
            stored = await uow.users.lock(user.uid)
            if stored is None:
                raise UserNotFoundError(user.uid)
            stored.change_password_hash(new_hash)
            revoked = await revoke_logins(uow, self._clock.now(), user.uid, keep=actor.sid)
            await uow.commit()
        publish_revoked(self._notifier, user.uid, revoked)
        return revoked


@dataclass(frozen=True, slots=True, kw_only=True)
class SessionView:
    """One of the caller's live logins, as ``GET /auth/sessions`` lists it."""

    login: Login
    current: bool


class ListSessions:
    """The caller's live logins, oldest first; ``current`` marks the one the caller's token belongs to."""

    def __init__(self, uow: UnitOfWorkFactory) -> None:
        self._uow = uow

    async def __call__(self, actor: Principal) -> list[SessionView]:
        async with self._uow() as uow:
            found = await uow.logins.of_user(actor.user_id, active_only=True)
        return [SessionView(login=login, current=login.id == actor.sid) for login in found]


@dataclass(frozen=True, slots=True, kw_only=True)
class EndLogin:
    session_id: str


class EndSession:
    """End one of the caller's logins, as logout does for the current one: its refresh token and
    access tokens stop working, and after the commit its connections hear :class:`LoginsRevoked`
    (closed 4403 on every process). Raises SessionNotFoundError for a login that is not the
    caller's or is no longer live (one answer for both: another user's login ids are not revealed)."""

    def __init__(self, uow: UnitOfWorkFactory, clock: Clock, notifier: Notifier) -> None:
        self._uow, self._clock, self._notifier = uow, clock, notifier

    async def __call__(self, actor: Principal, cmd: EndLogin) -> None:
        async with self._uow() as uow:
            login = await uow.logins.get(cmd.session_id) if is_storable(cmd.session_id) else None
            if login is None or login.user_id != actor.user_id or not login.active:
                raise SessionNotFoundError()
            login.revoke(self._clock.now())
            await uow.commit()
        publish_revoked(self._notifier, actor.user_id, [login.id])
