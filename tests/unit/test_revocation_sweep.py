"""The process's login sweep (issue 15, finding 2): every ``CHAT_SESSION_CHECK_S`` one batched
store read closes, 4403, exactly the live connections whose login is no longer active, even when
the logout's broadcast was lost."""

from __future__ import annotations

import logging
from collections.abc import Collection
from datetime import timedelta

import pytest

from application.accounts import RevokedAmong
from application.common import Principal
from application.events import Event
from application.live.actions import CloseCode, CloseRequest
from application.live.revocation import RevocationSweep
from domain.auth import Login
from tests.unit.fakes import EPOCH, FakeUnitOfWork, InMemoryLoginRepository, InMemoryStore
from tests.unit.live_session_support import USER, Driver

REVOKED = CloseRequest(CloseCode.REVOKED, "login revoked")


class Live:
    """A live connection of the process: a real session behind the driver's ``deliver``."""

    def __init__(self, sid: str) -> None:
        self.driver = Driver(sid=sid)
        self.driver.start()

    @property
    def sid(self) -> str:
        return self.driver.session.principal.sid

    def deliver(self, event: Event) -> None:
        self.driver.session.event_published(event, self.driver.now)

    def closed(self) -> CloseRequest | None:
        return self.driver.closed()


def store_with(**logins: bool) -> InMemoryStore:
    """A store holding these logins (name → still active)."""
    store = InMemoryStore()
    for sid, active in logins.items():
        login = Login(id=sid, user_id=USER, created_at=EPOCH)
        if not active:
            login.revoke(EPOCH + timedelta(seconds=1))
        store.data.logins[sid] = login
    return store


async def test_exactly_the_connections_of_revoked_or_missing_logins_close_4403() -> None:
    store = store_with(active=True, revoked=False)
    kept, revoked, revoked_too, missing = Live("active"), Live("revoked"), Live("revoked"), Live("gone")
    sweep = RevocationSweep(RevokedAmong(store.unit_of_work))

    assert await sweep([kept, revoked, revoked_too, missing]) == {"revoked", "gone"}

    assert kept.closed() is None
    assert revoked.closed() == revoked_too.closed() == missing.closed() == REVOKED


async def test_a_connection_reauthenticated_with_another_login_meanwhile_stays() -> None:
    """The sweep delivers the revocation of the login it read; the session closes only if that is
    still its login."""
    store = store_with(old=False, new=True)
    live = Live("old")

    async def revoked_among(sids: Collection[str]) -> set[str]:
        found = await RevokedAmong(store.unit_of_work)(sids)
        live.driver.session.principal = Principal(user_id=USER, sid="new")  # a re-auth during the read
        return found

    assert await RevocationSweep(revoked_among)([live]) == {"old"}
    assert live.closed() is None


async def test_no_connections_no_read() -> None:
    async def revoked_among(sids: Collection[str]) -> set[str]:
        raise AssertionError("no read without connections")

    assert await RevocationSweep(revoked_among)([]) == set()


async def test_one_query_per_chunk_in_one_unit_of_work(monkeypatch: pytest.MonkeyPatch) -> None:
    store = store_with(a=True, b=False, c=True, d=True, e=False)
    queries: list[list[str]] = []
    real = InMemoryLoginRepository.inactive_among

    async def counted(self: InMemoryLoginRepository, login_ids: Collection[str]) -> set[str]:
        queries.append(sorted(login_ids))
        return await real(self, login_ids)

    monkeypatch.setattr(InMemoryLoginRepository, "inactive_among", counted)
    units = 0

    def unit_of_work() -> FakeUnitOfWork:
        nonlocal units
        units += 1
        return store.unit_of_work()

    revoked_among = RevokedAmong(unit_of_work, chunk=2)
    # Repeated sids (two sockets of one login) are asked once.
    assert await revoked_among(["e", "d", "c", "b", "a", "a", "missing"]) == {"b", "e", "missing"}
    assert queries == [["a", "b"], ["c", "d"], ["e", "missing"]]
    assert units == 1
    assert await revoked_among([]) == set()
    assert len(queries) == 3  # nothing asked for nothing


async def test_a_failed_read_keeps_every_socket_warns_and_the_next_round_closes(
    caplog: pytest.LogCaptureFixture,
) -> None:
    store = store_with(revoked=False)
    live = Live("revoked")
    real = RevokedAmong(store.unit_of_work)
    calls = 0

    async def down_once(sids: Collection[str]) -> set[str]:
        nonlocal calls
        calls += 1
        if calls == 1:
            raise ConnectionError("the store is down")
        return await real(sids)

    sweep = RevocationSweep(down_once)
    with caplog.at_level(logging.WARNING, logger="p2p_chat.ws"):
        assert await sweep([live]) == set()
    assert live.closed() is None
    assert [r.levelno for r in caplog.records] == [logging.WARNING]
    assert "ConnectionError" in caplog.text
    assert "tried again next interval" in caplog.text

    assert await sweep([live]) == {"revoked"}
    assert live.closed() == REVOKED
