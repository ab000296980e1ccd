"""PostgreSQL stopped and hung under a real server process while users send to each other (issue
15): every answer comes within the bound docs/operations.md's failure table states, nothing
acknowledged is lost, nothing is stored twice, and once the database is back everything works.

Each test starts its OWN PostgreSQL cluster (tests/integration/own_postgres.py: a temporary
directory, a free port; never the machine's shared server) and one ``p2p-chat serve`` process on
it with ``CHAT_DB_TIMEOUT_S`` short, then stops it (``pg_ctl stop -m immediate``) and starts it
again, or SIGSTOPs the postmaster and every backend and SIGCONTs them."""

from __future__ import annotations

import asyncio
import json
import sys
import time
import uuid
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import httpx
import pytest
from websockets.asyncio.client import ClientConnection, connect

from adapters.sqlalchemy.migrate import upgrade
from tests.integration.chat import Account, read_until_closed
from tests.integration.own_postgres import OwnPostgres, own_postgres, postgres_bin, unusable_reason
from tests.integration.support import Server, clean_env, unavailable
from tests.integration.test_faults import (
    ACKS_BEFORE_FAULT,
    DEADLINE_S,
    IN_FLIGHT,
    UNAVAILABLE,
    Burst,
    accounts,
    authenticated,
    check_durable,
    partner,
    resend_all,
    server_on,
    stored,
)

T = TypeVar("T")

DB_TIMEOUT_S = 0.5  # CHAT_DB_TIMEOUT_S of the server under test
PER_USER = 40  # sends per user; the fault comes after ACKS_BEFORE_FAULT of them are acknowledged
PAUSE_AT = ACKS_BEFORE_FAULT + IN_FLIGHT  # then each user waits for the fault: the rest come after it
# docs/operations.md, failure table: how long an answer takes while PostgreSQL is …
DOWN_BOUND_S = 0.5  # … down: refused connects fail at once
HUNG_REQUEST_BOUND_S = 3 * DB_TIMEOUT_S  # … hung: a pool wait, a pre-ping and a reconnect
HUNG_SEND_BOUND_S = 6 * DB_TIMEOUT_S  # … hung: the write batch under way, then the send's own
READY_BOUND_S = 2.2  # /ready: its 2 s check time, whatever the database does
# The login sweep runs during the outage: its failing reads must not close the sockets.
UNAVAILABLE_DETAIL = "the database is unavailable, retry shortly"
SETTINGS = {"CHAT_DB_TIMEOUT_S": str(DB_TIMEOUT_S), "CHAT_SESSION_CHECK_S": "1"}


@pytest.fixture
def cluster() -> Iterator[OwnPostgres]:
    if (reason := unusable_reason()) is not None:
        unavailable(reason)
    bin_dir = postgres_bin()
    assert bin_dir is not None
    with own_postgres(bin_dir) as pg:
        yield pg


async def within(bound_s: float, work: Awaitable[T]) -> T:
    """``work``'s outcome; fails if it took longer than ``bound_s``."""
    started = time.monotonic()
    outcome = await asyncio.wait_for(work, timeout=bound_s + 10)
    took = time.monotonic() - started
    print(f"  answered in {took:.2f}s (bound {bound_s}s)")
    assert took <= bound_s, f"took {took:.2f}s, bound {bound_s}s"
    return outcome


@dataclass
class Bounds:
    request_s: float  # an HTTP request, a new socket's close
    send_s: float  # a sendMessage's error on an open socket


def registration() -> dict[str, str]:
    email = f"new-{uuid.uuid4().hex[:8]}@example.com"
    return {"name": "New", "email": email, "phoneNumber": f"+4478{time.time_ns() % 10**8:08d}", "password": "pw123456"}


async def unavailable_within(server: Server, account: Account, bounds: Bounds) -> None:
    """What the failure table promises while the database is unavailable, bound by bound."""
    async with httpx.AsyncClient(base_url=server.base_url, timeout=30) as http:
        for request in (
            http.get("/users/me", headers=account.bearer),
            http.post("/auth/login", json={"email": account.email, "password": "password123"}),
            http.get("/conversations", headers=account.bearer),
            http.post("/auth/register", json=registration()),
        ):
            response = await within(bounds.request_s, request)
            assert response.status_code == 503, response.text
            assert (response.json()["type"], response.json()["detail"]) == ("busy", UNAVAILABLE_DETAIL)
            assert response.headers["Retry-After"] == "1"
        ready = await within(READY_BOUND_S, http.get("/ready"))
        assert (ready.status_code, ready.json()["checks"]) == (503, {"database": "unavailable"})

    async def new_socket() -> int:
        ws = await connect(f"ws://127.0.0.1:{server.port}/ws", open_timeout=DEADLINE_S)
        await ws.send(json.dumps({"type": "auth", "token": account.access_token}))
        return await read_until_closed(ws, within=DEADLINE_S)

    assert await within(bounds.request_s, new_socket()) == 1013


async def refused_then_resent(
    server: Server, account: Account, to: int, bounds: Bounds, fail: Callable[[], Any], back: Callable[[], Any]
) -> str:
    """On a socket opened before the database fails: a send gets ``error internal`` within the
    bound and the socket stays open (a ping is answered); nothing was stored, and once the
    database is back the same send is acknowledged on the same socket. Returns its clientMsgId."""
    ws = await authenticated(server, account)
    cid = f"probe-{uuid.uuid4().hex[:8]}"
    frame = json.dumps({"type": "sendMessage", "to": to, "message": cid, "clientMsgId": cid, "ref": cid})

    async def send() -> dict[str, Any]:
        await ws.send(frame)
        answer: dict[str, Any] = json.loads(await ws.recv())
        return answer

    await asyncio.to_thread(fail)
    try:
        refused = await within(bounds.send_s, send())
        assert refused == {
            "type": "error",
            "ref": cid,
            "code": "internal",
            "message": "the database is unavailable, retry shortly",
            "clientMsgId": cid,
        }
        search = {"type": "searchUsers", "query": "U1", "ref": "search"}
        await ws.send(json.dumps(search))
        found = await within(bounds.send_s, ws.recv())
        assert json.loads(found) == {
            "type": "error",
            "ref": "search",
            "code": "internal",
            "message": "the database is unavailable, retry shortly",
        }
        await ws.send(json.dumps({"type": "ping", "ref": "still-open"}))
        assert json.loads(await asyncio.wait_for(ws.recv(), DEADLINE_S)) == {"type": "pong", "ref": "still-open"}
    finally:
        await asyncio.to_thread(back)
    acked = await within(DEADLINE_S, send())
    assert (acked["type"], acked["clientMsgId"]) == ("messageAck", cid), acked
    await ws.close()
    return cid


async def outage(
    server: Server, users: list[Account], begin: Callable[[], Any], end: Callable[[], Any], bounds: Bounds
) -> tuple[list[Burst], float]:
    """Users send to each other; the database fails (``begin``) mid-burst; every send is answered
    within ``bounds.send_s``, every request and new socket as the table says; then ``end`` brings
    the database back. Returns the bursts and the seconds from ``end`` to the first request served."""
    bursts = [Burst(account, users[partner(i)].id) for i, account in enumerate(users)]
    sockets = [await authenticated(server, account) for account in users]
    faulted = asyncio.Event()  # the sends after the first PAUSE_AT of each user wait for the fault
    runs = [
        asyncio.create_task(b.run(ws, limit=PER_USER, pause=(PAUSE_AT, faulted)))
        for b, ws in zip(bursts, sockets, strict=True)
    ]
    deadline = time.monotonic() + DEADLINE_S
    while min(len(burst.acked) for burst in bursts) < ACKS_BEFORE_FAULT:
        assert time.monotonic() < deadline, "the burst did not get going"
        await asyncio.sleep(0.01)
    failed_at = time.monotonic()
    await asyncio.to_thread(begin)  # pg_ctl waits: the clients keep reading meanwhile
    faulted.set()
    try:
        await asyncio.wait_for(asyncio.gather(*runs), DEADLINE_S)
        refused = sum(len(burst.errors) for burst in bursts)
        print(f"{refused} of {len(users) * PER_USER} sends refused; the slowest answer {max_wait(bursts):.2f}s")
        for burst in bursts:
            assert burst.closed is None  # every socket stayed open
            assert set(burst.errors) <= {UNAVAILABLE}, burst.errors
            assert len(burst.acked) + len(burst.errors) == PER_USER
            assert max(burst.waits) <= bounds.send_s, f"a send waited {max(burst.waits):.2f}s"
        assert refused > 0, "the fault came after every send"
        await unavailable_within(server, users[0], bounds)
        await kept_by_the_login_sweep(server, sockets)
        print(f"the database was unavailable for {time.monotonic() - failed_at:.1f}s")
    finally:
        await asyncio.to_thread(end)
    back_at = time.monotonic()
    async with httpx.AsyncClient(base_url=server.base_url, timeout=30) as http:
        response = await http.get("/users/me", headers=users[0].bearer)
        assert response.status_code == 200, response.text  # the first request after it is back
    recovered_s = time.monotonic() - back_at
    for ws in sockets:
        await ws.close()
    return bursts, recovered_s


async def kept_by_the_login_sweep(server: Server, sockets: list[ClientConnection]) -> None:
    """Once the login sweep (every CHAT_SESSION_CHECK_S) has failed to read the database, every
    open socket is still open and answers."""
    log = server.cwd / "server.log"
    deadline = time.monotonic() + DEADLINE_S
    while "live logins failed" not in log.read_text():
        assert time.monotonic() < deadline, "the login sweep did not run during the outage"
        await asyncio.sleep(0.05)
    for ws in sockets:
        await ws.send(json.dumps({"type": "ping", "ref": "after-sweep"}))
        while json.loads(await asyncio.wait_for(ws.recv(), DEADLINE_S)) != {"type": "pong", "ref": "after-sweep"}:
            pass  # pushes and answers the burst left unread


def nothing_logged_as_an_error(cwd: Path) -> None:
    """An unavailable database is an expected condition: warnings, no ERROR line, no 500."""
    errors = [line for line in (cwd / "server.log").read_text().splitlines() if " ERROR " in line]
    assert errors == []


def max_wait(bursts: list[Burst]) -> float:
    return max(wait for burst in bursts for wait in burst.waits)


async def lose_nothing(database_url: str, server: Server, bursts: list[Burst]) -> None:
    """0 acknowledged lost, 0 stored twice, every resend answered with the original id."""
    before = await stored(database_url)
    answers = await resend_all(server, bursts)
    sent = {cid for burst in bursts for cid in burst.sent}
    check_durable(bursts, before, [row for row in await stored(database_url) if row[0] in sent])
    assert {cid: answers[cid] for cid, _ in before if cid in sent} == {cid: mid for cid, mid in before if cid in sent}


async def test_postgres_stopped_then_started(cluster: OwnPostgres, tmp_path: Path) -> None:
    await upgrade(cluster.url)
    bounds = Bounds(request_s=DOWN_BOUND_S, send_s=DOWN_BOUND_S)
    with server_on(cluster.url, tmp_path, SETTINGS) as server:
        users = await accounts(server)
        bursts, recovered_s = await outage(server, users, cluster.crash, cluster.start, bounds)
        await lose_nothing(cluster.url, server, bursts)
        probe = await refused_then_resent(server, users[0], users[1].id, bounds, cluster.crash, cluster.start)
        assert [cid for cid, _ in await stored(cluster.url)].count(probe) == 1  # stored once, after the resend
        print(f"served again {recovered_s:.2f}s after the restart")
    nothing_logged_as_an_error(tmp_path)


async def test_postgres_hung_then_resumed(cluster: OwnPostgres, tmp_path: Path) -> None:
    await upgrade(cluster.url)
    bounds = Bounds(request_s=HUNG_REQUEST_BOUND_S, send_s=HUNG_SEND_BOUND_S)
    with server_on(cluster.url, tmp_path, SETTINGS) as server:
        users = await accounts(server)
        stopped: list[int] = []

        def hang() -> None:
            stopped[:] = cluster.hang()

        def resume() -> None:
            cluster.resume(stopped)

        bursts, recovered_s = await outage(server, users, hang, resume, bounds)
        await lose_nothing(cluster.url, server, bursts)
        probe = await refused_then_resent(server, users[0], users[1].id, bounds, hang, resume)
        assert [cid for cid, _ in await stored(cluster.url)].count(probe) == 1  # stored once, after the resend
        print(f"served again {recovered_s:.2f}s after the resume")
    nothing_logged_as_an_error(tmp_path)


async def test_serve_refuses_a_hung_database_within_its_timeout(cluster: OwnPostgres, tmp_path: Path) -> None:
    """The start-up check is bounded too: one line naming the variable, exit status 2, within
    about CHAT_DB_TIMEOUT_S (before: asyncpg's 60 s connect timeout)."""
    await upgrade(cluster.url)
    env = clean_env()
    env.update({**SETTINGS, "CHAT_DATABASE_URL": cluster.url, "CHAT_JWT_SECRET": "s" * 40, "CHAT_PORT": "0"})
    stopped = await asyncio.to_thread(cluster.hang)
    started = time.monotonic()
    serve = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "entrypoints.cli", "serve", env=env, cwd=tmp_path, stderr=asyncio.subprocess.PIPE
    )
    try:
        _, stderr = await asyncio.wait_for(serve.communicate(), DEADLINE_S)
        took = time.monotonic() - started
    finally:
        if serve.returncode is None:
            serve.kill()
            await serve.wait()
        await asyncio.to_thread(cluster.resume, stopped)
    assert serve.returncode == 2
    assert stderr.decode().startswith("p2p-chat: CHAT_DATABASE_URL: cannot open the database"), stderr
    assert took < 10, took  # the interpreter's start and one connect timeout
