"""A small chat client for integration tests: real HTTP and real WebSockets against the served app."""

from __future__ import annotations

import asyncio
import itertools
import json
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import httpx
from dependency_injector import providers
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed

from adapters.sqlalchemy.uow import SqlAlchemyUnitOfWork
from entrypoints.container import Container
from tests.integration.support import make_container, make_settings, serve_async

if TYPE_CHECKING:
    from application.ports import Clock

Frame = dict[str, Any]
_refs = itertools.count(1)
_phones = itertools.count(1000)


def close_code(exc: ConnectionClosed) -> int:
    """The code of the close frame the server sent (-1 when it sent none)."""
    return exc.rcvd.code if exc.rcvd is not None else -1


async def read_until_closed(ws: ClientConnection, within: float = 10) -> int:
    """Read (and discard) until the server closes; return its close code."""
    try:
        while True:
            await asyncio.wait_for(ws.recv(), timeout=within)
    except ConnectionClosed as exc:
        return close_code(exc)


@dataclass
class Account:
    id: int
    name: str
    email: str
    access_token: str
    refresh_token: str

    @property
    def bearer(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.access_token}"}


@dataclass
class Client:
    """One WebSocket of one account; ``ready`` and the first ``offlineMessages`` are kept."""

    ws: ClientConnection
    account: Account
    ready: Frame = field(default_factory=dict)
    offline: Frame = field(default_factory=dict)

    async def send(self, **frame: Any) -> None:
        await self.ws.send(json.dumps(frame))

    async def send_raw(self, data: str | bytes) -> None:
        await self.ws.send(data)

    async def recv(self, within: float = 10) -> Frame:
        raw = await asyncio.wait_for(self.ws.recv(), timeout=within)
        frame: Frame = json.loads(raw)
        return frame

    async def expect(self, frame_type: str, within: float = 10) -> Frame:
        frame = await self.recv(within)
        assert frame["type"] == frame_type, frame
        return frame

    async def barrier(self) -> list[Frame]:
        """Every frame queued for this socket before now (a ping/pong round trip), in order."""
        ref = f"barrier-{next(_refs)}"
        await self.send(type="ping", ref=ref)
        frames: list[Frame] = []
        while True:
            frame = await self.recv()
            if frame == {"type": "pong", "ref": ref}:
                return frames
            frames.append(frame)

    async def send_message(self, to: int, text: str, client_msg_id: str | None = None, **extra: Any) -> Frame:
        """Send and return the ``messageAck`` (frames arriving meanwhile are kept in ``stash``)."""
        ref = f"send-{next(_refs)}"
        cid = client_msg_id or f"c-{next(_refs)}"
        await self.send(type="sendMessage", to=to, message=text, clientMsgId=cid, ref=ref, **extra)
        return await self.reply_to(ref)

    async def reply_to(self, ref: str) -> Frame:
        while True:
            frame = await self.recv()
            if frame.get("ref") == ref:
                return frame
            self.stash.append(frame)

    stash: list[Frame] = field(default_factory=list)

    async def closed_with(self, within: float = 10) -> int:
        """Read until the server closes; return the close code."""
        return await read_until_closed(self.ws, within)

    async def close(self) -> None:
        await self.ws.close()


@dataclass
class Chat:
    base_url: str
    http: httpx.AsyncClient
    container: Container | None = None  # None for a server in another process
    uow: Callable[[], SqlAlchemyUnitOfWork] | None = None
    sockets: list[ClientConnection] = field(default_factory=list)  # every socket opened, to close at the end
    socket_options: dict[str, Any] = field(default_factory=dict)  # for websockets' connect (ssl, local_addr)

    @property
    def ws_url(self) -> str:
        return "ws" + self.base_url.removeprefix("http") + "/ws"

    async def account(self, name: str) -> Account:
        email = f"{name.lower()}-{next(_phones)}@example.com"
        response = await self.http.post(
            "/auth/register",
            json={"name": name, "email": email, "phoneNumber": f"+4420{next(_phones):08d}", "password": "password123"},
        )
        assert response.status_code == 201, response.text
        body = response.json()
        return Account(body["id"], name, email, body["access_token"], body["refresh_token"])

    async def login(self, account: Account) -> Account:
        response = await self.http.post("/auth/login", json={"email": account.email, "password": "password123"})
        assert response.status_code == 200, response.text
        body = response.json()
        return Account(account.id, account.name, account.email, body["access_token"], body["refresh_token"])

    async def open(self, **kwargs: Any) -> ClientConnection:
        ws = await connect(self.ws_url, max_size=None, open_timeout=10, **{**self.socket_options, **kwargs})
        self.sockets.append(ws)
        return ws

    async def close_sockets(self) -> None:
        """Close every socket still open (before a server that waits for their close frames stops)."""
        await asyncio.gather(*(ws.close() for ws in self.sockets), return_exceptions=True)

    async def connect(self, account: Account) -> Client:
        ws = await self.open()
        await ws.send(json.dumps({"type": "auth", "token": account.access_token}))
        client = Client(ws, account)
        client.ready = await client.expect("ready")
        client.offline = await client.expect("offlineMessages")
        return client

    async def get(self, path: str, account: Account, **params: Any) -> Any:
        response = await self.http.get(path, params=params, headers=account.bearer)
        assert response.status_code == 200, response.text
        return response.json()


@asynccontextmanager
async def running_chat(
    url: str,
    uow: Callable[[], SqlAlchemyUnitOfWork],
    env: dict[str, str] | None = None,
    monotonic: Callable[[], float] | None = None,
    clock: Clock | None = None,
) -> AsyncIterator[Chat]:
    """Serve the app on a free port. ``monotonic`` replaces the session's clock (rate limits,
    token expiry timers), ``clock`` the wall clock (token issue and expiry checks, timestamps)."""
    settings = {"CHAT_REGISTER_PER_HOUR": "1000", **(env or {})}
    container = make_container(make_settings(url, settings))
    if monotonic is not None:
        container.monotonic.override(providers.Object(monotonic))
    if clock is not None:
        container.clock.override(providers.Object(clock))
    async with serve_async(container) as base_url, httpx.AsyncClient(base_url=base_url, timeout=30) as http:
        yield Chat(base_url, http, container, uow)
