"""Faults on real processes (issue 15): the server is a subprocess (``p2p-chat serve``) on its own
fresh PostgreSQL database, several users send in a burst, and then the process is stopped
(SIGTERM), killed (SIGKILL) or its database connections are terminated. What must hold: every
acknowledged message is stored, with the acknowledged id; none is stored twice; a resend with the
same ``clientMsgId`` gets the original id; at SIGTERM every committed send is acknowledged before
the close, which is 1001. Each test is bounded (deadlines, no fixed sleeps)."""

from __future__ import annotations

import asyncio
import itertools
import json
import signal
import time
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager, contextmanager, suppress
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import text
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import create_async_engine
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed

from tests.integration.chat import Account, Chat, close_code
from tests.integration.support import TEST_SECRET, Server, clean_env

PAIRS = 3  # six users, each sending to its partner
IN_FLIGHT = 16  # sends a user has unanswered at most
ACKS_BEFORE_FAULT = 10  # per user: the fault comes in the middle of a running burst
DEADLINE_S = 20
UNAVAILABLE = "internal: the database is unavailable, retry shortly"  # nothing was stored: resend


@pytest.fixture
def backend() -> str:
    return "postgres"


@contextmanager
def server_on(database_url: str, cwd: Path, settings: dict[str, str] | None = None) -> Iterator[Server]:
    """A started server on ``database_url`` with the burst's settings (and ``settings``)."""
    env = clean_env()
    env.update(
        {
            "CHAT_DATABASE_URL": database_url,
            "CHAT_JWT_SECRET": TEST_SECRET,
            "CHAT_RATE_MSG_PER_S": "10000",
            "CHAT_RATE_MSG_BURST": "10000",
            "CHAT_REGISTER_PER_HOUR": "1000",
            "CHAT_LOG_LEVEL": "warning",
            **(settings or {}),
        }
    )
    server = Server(env, cwd)
    server.start()
    try:
        yield server
    finally:
        server.stop()


@asynccontextmanager
async def chat_at(server: Server) -> AsyncIterator[Chat]:
    async with httpx.AsyncClient(base_url=server.base_url, timeout=30) as http:
        yield Chat(server.base_url, http)


async def accounts(server: Server) -> list[Account]:
    async with chat_at(server) as chat:
        return [await chat.account(f"U{i}") for i in range(2 * PAIRS)]


def partner(index: int) -> int:
    return index + 1 if index % 2 == 0 else index - 1


async def authenticated(server: Server, account: Account) -> ClientConnection:
    ws = await connect(f"ws://127.0.0.1:{server.port}/ws", open_timeout=DEADLINE_S)
    await ws.send(json.dumps({"type": "auth", "token": account.access_token}))
    for _ in range(2):  # ready, offlineMessages
        json.loads(await asyncio.wait_for(ws.recv(), DEADLINE_S))
    return ws


@dataclass
class Burst:
    """One user sending to ``to`` until its socket closes: what was sent, acknowledged, refused."""

    account: Account
    to: int
    sent: list[str] = field(default_factory=list)  # clientMsgIds, in order
    acked: dict[str, str] = field(default_factory=dict)  # clientMsgId → message id
    errors: list[str] = field(default_factory=list)  # the error frames: "code: message"
    closed: int | None = None
    waits: list[float] = field(default_factory=list)  # seconds from each send to its answer
    _refs: itertools.count[int] = field(default_factory=itertools.count)
    _sent_at: dict[str, float] = field(default_factory=dict)

    async def run(
        self, ws: ClientConnection, limit: int | None = None, pause: tuple[int, asyncio.Event] | None = None
    ) -> None:
        """Send with up to :data:`IN_FLIGHT` unanswered, read the answers, until the socket closes
        (or ``limit`` sends were answered). ``pause``: after that many sends, wait for the event
        before the next (so that sends surely come after a fault)."""
        room = asyncio.Semaphore(IN_FLIGHT)

        async def send() -> None:
            while limit is None or len(self.sent) < limit:
                if pause is not None and len(self.sent) == pause[0]:
                    await pause[1].wait()
                await room.acquire()
                cid = f"{self.account.id}-{next(self._refs)}"
                self.sent.append(cid)
                self._sent_at[cid] = time.monotonic()
                frame = {"type": "sendMessage", "to": self.to, "message": cid, "clientMsgId": cid, "ref": cid}
                await ws.send(json.dumps(frame))

        sender = asyncio.create_task(send())
        try:
            while limit is None or len(self.acked) + len(self.errors) < limit:
                frame = json.loads(await asyncio.wait_for(ws.recv(), DEADLINE_S))
                if frame["type"] == "messageAck":
                    self.acked[frame["clientMsgId"]] = frame["id"]
                elif frame["type"] == "error" and frame.get("ref") is not None:
                    self.errors.append(f"{frame['code']}: {frame['message']}")
                else:
                    continue
                if (sent_at := self._sent_at.pop(frame["ref"], None)) is not None:
                    self.waits.append(time.monotonic() - sent_at)
                room.release()
        except ConnectionClosed as exc:
            self.closed = close_code(exc)
        finally:
            sender.cancel()
            with suppress(asyncio.CancelledError, ConnectionClosed):
                await sender


async def bursts_until(server: Server, users: list[Account], fault: Any) -> list[Burst]:
    """Every user's burst; ``fault()`` once each has :data:`ACKS_BEFORE_FAULT` acks; returns when
    every socket has closed."""
    bursts = [Burst(account, users[partner(i)].id) for i, account in enumerate(users)]
    sockets = [await authenticated(server, account) for account in users]
    runs = [asyncio.create_task(burst.run(ws)) for burst, ws in zip(bursts, sockets, strict=True)]
    deadline = time.monotonic() + DEADLINE_S
    while min(len(burst.acked) for burst in bursts) < ACKS_BEFORE_FAULT:
        assert time.monotonic() < deadline, "the burst did not get going"
        await asyncio.sleep(0.01)
    await fault()
    await asyncio.wait_for(asyncio.gather(*runs), DEADLINE_S)
    return bursts


async def stored(database_url: str) -> list[tuple[str, str]]:
    """(clientMsgId, id) of every stored message."""
    engine = create_async_engine(database_url)
    try:
        async with engine.connect() as connection:
            rows = await connection.execute(text("SELECT client_msg_id, id FROM messages"))
            return [(str(row[0]), str(row[1])) for row in rows]
    finally:
        await engine.dispose()


async def resend_all(server: Server, bursts: list[Burst]) -> dict[str, str]:
    """Send every clientMsgId again (after the fault) until each is acknowledged: cid → id."""
    answers: dict[str, str] = {}
    for burst in bursts:
        ws = await authenticated(server, burst.account)
        try:
            for start in range(0, len(burst.sent), IN_FLIGHT):
                chunk = burst.sent[start : start + IN_FLIGHT]
                for cid in chunk:
                    frame = {"type": "sendMessage", "to": burst.to, "message": cid, "clientMsgId": cid, "ref": cid}
                    await ws.send(json.dumps(frame))
                while not set(chunk) <= answers.keys():
                    frame = json.loads(await asyncio.wait_for(ws.recv(), DEADLINE_S))
                    if frame["type"] == "messageAck":
                        answers[frame["clientMsgId"]] = frame["id"]
                    assert frame["type"] != "error", frame
        finally:
            await ws.close()
    return answers


def check_durable(bursts: list[Burst], before: list[tuple[str, str]], after: list[tuple[str, str]]) -> None:
    """0 acknowledged lost, 0 stored twice, every resend answered with the original id."""
    stored_before = dict(before)
    assert len(stored_before) == len(before)  # nothing stored twice
    acked = {cid: mid for burst in bursts for cid, mid in burst.acked.items()}
    assert {cid: stored_before.get(cid) for cid in acked} == acked  # every ack is stored, as acked
    sent = {cid for burst in bursts for cid in burst.sent}
    assert len(after) == len(dict(after)) == len(sent)  # after the resends: each sent one, once


async def test_sigterm_acknowledges_every_committed_send_before_closing_1001(migrated_url: str, tmp_path: Path) -> None:
    """Finding 11: the acks of committed sends go out before the sockets close, and they close
    1001 (uvicorn alone closed 1012 at once, under the queued acks)."""
    with server_on(migrated_url, tmp_path) as server:
        users = await accounts(server)

        async def sigterm() -> None:
            server.signal(signal.SIGTERM)

        bursts = await bursts_until(server, users, sigterm)
        assert server.wait() in (0, -signal.SIGTERM)  # uvicorn re-raises the signal once it has shut down
        committed = dict(await stored(migrated_url))
        for burst in bursts:
            mine = {cid: mid for cid, mid in committed.items() if cid in set(burst.sent)}
            assert len(burst.acked) == len(mine)  # every committed send acknowledged
            assert burst.acked == mine  # with its id
            assert (burst.closed, burst.errors) == (1001, [])
        server.start()  # and a resend after the restart gets the original id
        answers = await resend_all(server, bursts)
        assert {cid: answers[cid] for cid in committed} == committed


async def test_kill_9_mid_burst_loses_no_acknowledged_message(migrated_url: str, tmp_path: Path) -> None:
    with server_on(migrated_url, tmp_path) as server:
        users = await accounts(server)

        async def kill() -> None:
            server.signal(signal.SIGKILL)

        bursts = await bursts_until(server, users, kill)
        assert server.wait() == -signal.SIGKILL
        assert {burst.closed for burst in bursts} == {-1}  # no close frame: the process is gone
        before = await stored(migrated_url)
        server.start()
        answers = await resend_all(server, bursts)
        check_durable(bursts, before, await stored(migrated_url))
        assert {cid: answers[cid] for cid, _ in before} == dict(before)  # resends: the original ids


async def test_terminated_database_backends_lose_nothing_and_fail_boundedly(migrated_url: str, tmp_path: Path) -> None:
    """pg_terminate_backend on every connection of the server's database, again and again while
    users send: some sends are refused (typed errors, the socket stays open), none is lost or
    stored twice, and once the database is back every send succeeds."""
    name = make_url(migrated_url).database
    admin = create_async_engine(migrated_url, isolation_level="AUTOCOMMIT")
    terminate = text(
        "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity "
        "WHERE datname = :name AND pid <> pg_backend_pid()"
    )
    with server_on(migrated_url, tmp_path) as server:
        users = await accounts(server)
        bursts = [Burst(account, users[partner(i)].id) for i, account in enumerate(users)]
        sockets = [await authenticated(server, account) for account in users]
        per_user = 150
        runs = [asyncio.create_task(b.run(ws, limit=per_user)) for b, ws in zip(bursts, sockets, strict=True)]
        terminated = 0
        try:
            async with admin.connect() as connection:
                while not all(run.done() for run in runs):
                    terminated += (await connection.execute(terminate, {"name": name})).scalar_one()
                    await asyncio.sleep(0.05)
            await asyncio.wait_for(asyncio.gather(*runs), DEADLINE_S)
        finally:
            await admin.dispose()
        assert terminated > 0
        for burst in bursts:
            assert burst.closed is None  # every socket stayed open
            assert set(burst.errors) <= {UNAVAILABLE}, burst.errors
            assert len(burst.acked) + len(burst.errors) == per_user
        before = await stored(migrated_url)
        answers = await resend_all(server, bursts)
        check_durable(bursts, before, await stored(migrated_url))
        assert {cid: answers[cid] for cid, _ in before} == dict(before)
        print(f"terminated {terminated} backends; refused {sum(len(b.errors) for b in bursts)} of {6 * per_user}")
