"""Push notifications: the devices API's use cases, and the dispatcher that sends the outbox's due
jobs to the operator's push gateway.

The outbox's jobs are written by the send path itself (``_StoreMessages`` in
:mod:`application.messaging`, in the message's transaction); everything after is here.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass
from datetime import timedelta
from typing import TYPE_CHECKING

from domain.errors import ConflictError, LoginRevokedError, NotFoundError
from domain.push import (
    TARGETS_PER_LOGIN_MAX,
    NewTarget,
    Outcome,
    PushTarget,
    backoff_s,
    fresh_due,
    needs_presence,
    outcome_of,
)

if TYPE_CHECKING:
    from collections.abc import Callable

    from application.common import Principal, UnitOfWorkFactory
    from application.ports import Clock, IdGenerator, Notification, PresenceRegistry, PushGateway, PushOutbox

log = logging.getLogger("p2p_chat.push")


class RegisterDevice:
    """Register a push target for the caller's login. The same ``(appId, token)`` registered
    again (by any login) is moved to this login. Raises InvalidInputError, ConflictError (over
    the per-login limit), LoginRevokedError (the login ended meanwhile: a target never outlives
    its login)."""

    def __init__(self, uow: UnitOfWorkFactory, clock: Clock, ids: IdGenerator) -> None:
        self._uow, self._clock, self._ids = uow, clock, ids

    async def __call__(self, actor: Principal, cmd: NewTarget) -> PushTarget:
        checked = cmd.checked()
        async with self._uow() as uow:
            login = await uow.logins.lock(actor.sid)  # ended since the request was authenticated?
            if login is None or not login.active:
                raise LoginRevokedError()
            if await uow.push.count_of_login(actor.sid) >= TARGETS_PER_LOGIN_MAX:
                raise ConflictError(f"a login has at most {TARGETS_PER_LOGIN_MAX} push targets: delete one first")
            stored = await uow.push.add(
                PushTarget(
                    id=self._ids.new_id(),
                    user_id=actor.user_id,
                    login_id=actor.sid,
                    kind=checked.kind,
                    token=checked.token,
                    app_id=checked.app_id,
                    label=checked.label,
                    created_at=self._clock.now(),
                )
            )
            await uow.commit()
        return stored


class ListDevices:
    """The caller's push targets, of every login of theirs, oldest first."""

    def __init__(self, uow: UnitOfWorkFactory) -> None:
        self._uow = uow

    async def __call__(self, actor: Principal) -> list[PushTarget]:
        async with self._uow() as uow:
            return await uow.push.of_user(actor.user_id)


class DeleteDevice:
    """Delete one of the caller's push targets. Raises NotFoundError."""

    def __init__(self, uow: UnitOfWorkFactory) -> None:
        self._uow = uow

    async def __call__(self, actor: Principal, target_id: str) -> None:
        async with self._uow() as uow:
            if not await uow.push.remove(actor.user_id, target_id):
                raise NotFoundError("no such device")
            await uow.commit()


@dataclass(slots=True)
class PushCounts:
    """What the dispatcher did, as plain numbers (the metrics read them)."""

    sent: int = 0  # notifications the gateway took
    retried: int = 0  # failed attempts that will be tried again
    given_up: int = 0  # notifications dropped after the last attempt or refused
    rejected_targets: int = 0  # targets deleted because the gateway rejected their token


@dataclass(frozen=True, slots=True, kw_only=True)
class PushPolicy:
    coalesce_s: float
    lease_s: float
    max_attempts: int
    retry_base_s: float
    retry_max_s: float
    batch: int = 200  # recipients looked at per round
    concurrency: int = 16  # gateway requests in flight, and recipients claimed per round


class PushDispatcher:
    """Sends the outbox's due pushes: each round (:meth:`run_once`) looks at the recipients with
    free jobs, asks presence about those whose push depends on it, claims the due ones (a lease),
    sends one notification per recipient and settles each by the gateway's answer."""

    def __init__(
        self,
        outbox: PushOutbox,
        gateway: PushGateway,
        presence: PresenceRegistry,
        clock: Clock,
        ids: IdGenerator,
        policy: PushPolicy,
        random: Callable[[], float],
    ) -> None:
        self._outbox, self._gateway, self._presence = outbox, gateway, presence
        self._clock, self._ids, self._policy, self._random = clock, ids, policy, random
        self.counts = PushCounts()

    async def run_once(self) -> int:
        """One round; returns how many notifications it attempted."""
        policy = self._policy
        now = self._clock.now()
        waiting = await self._outbox.waiting(
            now=now, fresh_before=now - timedelta(seconds=policy.coalesce_s), limit=policy.batch
        )
        if not waiting:
            return 0
        ask = needs_presence(waiting, now=now, coalesce_s=policy.coalesce_s)
        online = await self._presence.online_among(ask) if ask else set()
        fresh = fresh_due(waiting, online, now=now, coalesce_s=policy.coalesce_s)
        retry = [w.user_id for w in waiting if w.retry]
        # No more claims than requests that go out at once: a claim never waits for a free slot
        # while its lease runs out (another process would then send it too). The rest: next round.
        retry = retry[: policy.concurrency]
        fresh = fresh[: policy.concurrency - len(retry)]
        if not fresh and not retry:
            return 0
        claimed = await self._outbox.claim(
            fresh=fresh,
            retry=retry,
            now=now,
            lease_until=now + timedelta(seconds=policy.lease_s),
            new_id=self._ids.new_id,
        )
        slots = asyncio.Semaphore(policy.concurrency)

        async def one(notification: Notification) -> None:
            async with slots:
                await self._send(notification)

        for outcome in await asyncio.gather(*(one(n) for n in claimed), return_exceptions=True):
            if isinstance(outcome, Exception):  # settling failed (the store): the lease brings it back
                log.warning("push settling failed: %s: %s", type(outcome).__name__, outcome)
        return len(claimed)

    async def _send(self, notification: Notification) -> None:
        answer = await self._gateway.send(notification)
        outcome = outcome_of(answer.status)
        if outcome is Outcome.SENT:
            self.counts.sent += 1
            self.counts.rejected_targets += await self._outbox.sent(
                notification.id, lease_until=notification.lease_until, rejected=answer.rejected
            )
            return
        attempt = notification.attempts + 1
        if outcome is Outcome.RETRY and attempt < self._policy.max_attempts:
            delay = backoff_s(
                attempt, base_s=self._policy.retry_base_s, max_s=self._policy.retry_max_s, random=self._random
            )
            self.counts.retried += 1
            at = self._clock.now() + timedelta(seconds=delay)
            await self._outbox.retry(notification.id, lease_until=notification.lease_until, at=at)
            return
        self.counts.given_up += 1
        log.warning(
            "push %s to user %d given up after %d attempt(s): the gateway answered %s",
            notification.id,
            notification.user_id,
            attempt,
            answer.status if answer.status is not None else "nothing",
        )
        await self._outbox.drop(notification.id, lease_until=notification.lease_until)

    async def run(self, poll_s: float) -> None:
        """Rounds every ``poll_s`` seconds until cancelled; a failing round (the store down) is
        logged and the next one tries again."""
        while True:
            attempted = 0
            try:
                attempted = await self.run_once()
            except Exception as exc:  # the store or presence failing: the next round retries
                log.warning("push round failed: %s: %s", type(exc).__name__, exc)
            if attempted < self._policy.concurrency:  # a full round: more may be due at once
                await asyncio.sleep(poll_s)
