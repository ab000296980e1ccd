"""The asyncio chat client: HTTP calls with automatic token refresh, and one WebSocket kept open by a
reconnect loop (a task) that authenticates with the ``bearer`` subprotocol, re-sends the outbox
after every ``ready``, drains and acknowledges offline batches, de-duplicates messages by id and turns
frames into typed events.

The loop's rules (what a close code means, how long to wait) live in :mod:`p2p_chat_client.policy`;
every wait goes through the injected ``sleep``, every time read through ``clock`` and every random
draw through ``random``, so tests can drive it deterministically.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
import random as random_module
import time
import uuid
from typing import TYPE_CHECKING, Any, Protocol

import httpx
from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed, InvalidHandshake, InvalidStatus
from websockets.typing import Subprotocol

from p2p_chat_client.models import (
    Ack,
    ApiError,
    ChatError,
    Conversation,
    Delivered,
    Error,
    Event,
    HistoryPage,
    Message,
    MessageReceived,
    Page,
    Presence,
    Profile,
    Read,
    Ready,
    SendRefusedError,
    Sent,
    SignedOutError,
    State,
    StateChanged,
    Tokens,
    Typing,
    UserPublic,
    parse_time,
    required_time,
)
from p2p_chat_client.outbox import MemoryOutbox, Outbox, PendingSend
from p2p_chat_client.policy import ABNORMAL, Backoff, CloseAction, Deduper, Timings, close_action, refresh_delay

if TYPE_CHECKING:
    from collections.abc import AsyncIterator, Awaitable, Callable

# Send errors a later resend (same clientMsgId) can cure; every other code removes the send.
RETRYABLE_SEND_ERRORS = frozenset({"rate_limited", "internal"})
# A refused handshake's HTTP status, read as the close code it stands for.
_HANDSHAKE_STATUS = {401: 4401, 403: 4403, 429: 4429, 503: 1013}
_MAX_FRAME = 8 * 1024 * 1024  # offline batches can be a few MiB


class Socket(Protocol):
    """What the client needs of a WebSocket (a ``websockets`` ``ClientConnection``; a fake in tests).
    ``recv`` raises ``websockets.exceptions.ConnectionClosed`` when the socket closes."""

    async def recv(self) -> str | bytes: ...

    async def send(self, message: str) -> None: ...

    async def close(self, code: int = 1000, reason: str = "") -> None: ...


async def open_websocket(url: str, access_token: str, timings: Timings) -> Socket:
    """Open ``url`` offering the subprotocols ``bearer, <access token>`` (no ``auth`` frame needed).
    Raises ``OSError``, ``TimeoutError`` or ``websockets.exceptions.InvalidHandshake``
    (``InvalidStatus`` when the server answered the handshake with an HTTP error)."""
    return await connect(
        url,
        subprotocols=[Subprotocol("bearer"), Subprotocol(access_token)],
        open_timeout=timings.open_timeout_s,
        max_size=_MAX_FRAME,
        proxy=None,
    )


class NotConnectedError(ChatError):
    """A socket-only call (typing, markRead, …) was made while the socket is not ready."""


class ChatClient:
    """One user's connection to a p2p-chat server. Use as ``async with ChatClient(url) as client``.

    ``events()`` has one consumer: events queue up from construction until read.
    """

    def __init__(
        self,
        base_url: str,
        *,
        outbox: Outbox | None = None,
        timings: Timings | None = None,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
        random: Callable[[], float] = random_module.random,
        new_id: Callable[[], str] = lambda: str(uuid.uuid4()),
        http: httpx.AsyncClient | None = None,
        open_socket: Callable[[str, str, Timings], Awaitable[Socket]] = open_websocket,
    ) -> None:
        self.base_url = base_url.rstrip("/")
        self.ws_url = self.base_url.replace("http://", "ws://", 1).replace("https://", "wss://", 1) + "/ws"
        self.outbox: Outbox = outbox if outbox is not None else MemoryOutbox()
        self.timings = timings or Timings()
        self._clock = clock
        self._sleep = sleep
        self._random = random
        self._new_id = new_id
        self._http = http or httpx.AsyncClient(base_url=self.base_url, timeout=self.timings.request_timeout_s)
        self._owns_http = http is None
        self._open_socket = open_socket
        self.tokens: Tokens | None = None
        self.state: State = "signed_out"
        self._events: asyncio.Queue[Event | None] = asyncio.Queue()
        self._seen = Deduper()
        self._acked = Deduper()
        self._acks: dict[str, asyncio.Future[Ack]] = {}
        self._requests: dict[str, asyncio.Future[dict[str, Any]]] = {}
        self._refs = itertools.count(1)
        self._ws: Socket | None = None
        self._ready = False  # the current socket got its first ``ready``
        self._sent_here: set[str] = set()  # clientMsgIds sent on the current socket
        self._send_lock = asyncio.Lock()
        self._run_task: asyncio.Task[None] | None = None
        self._refresh_timer: asyncio.Task[None] | None = None
        self._refreshing: asyncio.Task[None] | None = None
        self._first_ready: asyncio.Future[Ready] | None = None
        self._tasks: set[asyncio.Task[Any]] = set()
        self._stopping = False
        self.duplicates_dropped = 0  # messages received again (re-pushes, repeated batches) and not shown

    async def __aenter__(self) -> ChatClient:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    @property
    def running(self) -> bool:
        """The reconnect loop is running (connected, connecting or waiting to retry)."""
        return self._run_task is not None and not self._run_task.done()

    async def wait_stopped(self) -> None:
        """Wait until the reconnect loop has ended (signed out, or :meth:`disconnect`)."""
        if self._run_task is not None:
            with contextlib.suppress(asyncio.CancelledError):
                await asyncio.shield(self._run_task)

    @property
    def user_id(self) -> int | None:
        return self.tokens.profile.id if self.tokens and self.tokens.profile else None

    # --- accounts (HTTP) ---------------------------------------------------------------------

    async def register(self, *, name: str, email: str, phone_number: str, password: str) -> Profile:
        body = {"name": name, "email": email, "phoneNumber": phone_number, "password": password}
        return self._signed_in(await self._call("POST", "/auth/register", json=body, expect=201))

    async def login(self, *, email: str, password: str) -> Profile:
        return self._signed_in(await self._call("POST", "/auth/login", json={"email": email, "password": password}))

    async def refresh(self) -> None:
        """Trade the refresh token for new tokens (one request at a time, shared by callers) and
        re-authenticate the open socket with the new access token. Raises :class:`SignedOutError` when the
        server refuses the refresh token."""
        if self._refreshing is None or self._refreshing.done():
            self._refreshing = asyncio.create_task(self._refresh())
        await asyncio.shield(self._refreshing)

    async def logout(self) -> None:
        """End this login (``POST /auth/logout``); the socket closes and the state is ``signed_out``."""
        await self._end_login("/auth/logout")

    async def logout_all(self) -> None:
        """End every login of the user (``POST /auth/logout-all``), this one included."""
        await self._end_login("/auth/logout-all")

    async def me(self) -> Profile:
        data = await self._authed("GET", "/users/me")
        return Profile(data["id"], data["name"], data["email"], data["phoneNumber"])

    # --- users and conversations (HTTP) ------------------------------------------------------

    async def search_users(self, query: str, *, limit: int = 20) -> list[UserPublic]:
        data = await self._authed("GET", "/users", params={"q": query, "limit": limit})
        return [UserPublic.from_json(item) for item in data["items"]]

    async def user(self, user_id: int) -> UserPublic:
        return UserPublic.from_json(await self._authed("GET", f"/users/{user_id}"))

    async def contacts(self, *, limit: int = 50, cursor: str | None = None) -> Page[UserPublic]:
        params: dict[str, Any] = {"limit": limit} | ({"cursor": cursor} if cursor else {})
        data = await self._authed("GET", "/users", params=params)
        return Page([UserPublic.from_json(item) for item in data["items"]], data.get("nextCursor"))

    async def conversations(self, *, limit: int = 50, cursor: str | None = None) -> Page[Conversation]:
        params: dict[str, Any] = {"limit": limit} | ({"cursor": cursor} if cursor else {})
        data = await self._authed("GET", "/conversations", params=params)
        return Page([Conversation.from_json(item) for item in data["items"]], data.get("nextCursor"))

    async def history(
        self, peer_id: int, *, before: int | None = None, after: int | None = None, limit: int = 50
    ) -> HistoryPage:
        params: dict[str, Any] = {"limit": limit}
        if before is not None:
            params["before"] = before
        if after is not None:
            params["after"] = after
        data = await self._authed("GET", f"/conversations/{peer_id}/messages", params=params)
        return HistoryPage([Message.from_json(item) for item in data["items"]], data["hasMore"])

    # --- the socket ---------------------------------------------------------------------------

    async def connect(self) -> Ready:
        """Start the reconnect loop (if it is not running) and wait for the socket's ``ready``.
        Raises :class:`SignedOutError` when the loop ends signed out before that (and
        :class:`NotConnectedError` when :meth:`disconnect` ends it)."""
        if self.tokens is None:
            raise SignedOutError("register or log in first")
        if self._ready and self._first_ready is not None and self._first_ready.done():
            return self._first_ready.result()
        if self._first_ready is None or self._first_ready.done():  # else another caller waits for it too
            self._first_ready = asyncio.get_running_loop().create_future()
        if self._run_task is None or self._run_task.done():
            self._stopping = False
            self._run_task = asyncio.create_task(self._run(), name="p2p-chat-client")
        waiter = asyncio.shield(self._first_ready)
        running: asyncio.Future[Any] = self._run_task
        done, _ = await asyncio.wait({waiter, running}, return_when=asyncio.FIRST_COMPLETED)
        if waiter in done:
            return waiter.result()
        waiter.cancel()
        if self.tokens is None:
            raise SignedOutError("the login was refused or revoked")
        raise NotConnectedError("disconnect() was called before the socket was ready")

    async def disconnect(self) -> None:
        """Stop the reconnect loop and close the socket (pending sends stay in the outbox)."""
        self._stopping = True
        if self._ws is not None:
            await self._ws.close()
        if self._run_task is not None:
            self._run_task.cancel()  # it may be waiting out a back-off
            with contextlib.suppress(asyncio.CancelledError):
                await self._run_task
        self._run_task = None
        if self.state != "signed_out":
            self._set_state("offline")

    async def close(self) -> None:
        """Disconnect, stop every timer, close the HTTP client and end :meth:`events`."""
        await self.disconnect()
        for task in [self._refresh_timer, self._refreshing, *self._tasks]:
            if task is not None and not task.done():
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await task
        if self._owns_http:
            await self._http.aclose()
        self._events.put_nowait(None)

    async def events(self) -> AsyncIterator[Event]:
        """Every event in order, until :meth:`close`."""
        while (event := await self._events.get()) is not None:
            yield event

    async def next_event(self, within: float | None = None) -> Event:
        """The next event (``TimeoutError`` after ``within`` seconds); raises :class:`ChatError`
        after :meth:`close`."""
        event = await asyncio.wait_for(self._events.get(), within)
        if event is None:
            self._events.put_nowait(None)
            raise ChatError("the client is closed")
        return event

    async def enqueue(self, to: int, text: str) -> PendingSend:
        """Store a send in the outbox and send it when (or as soon as) the socket is ready; return
        at once. Its ``messageAck`` comes as a :class:`Sent` event."""
        item = PendingSend(self._new_id(), to, text)
        self._acks[item.client_msg_id] = asyncio.get_running_loop().create_future()
        await self.outbox.put(item)
        await self._transmit(item)
        return item

    async def send(self, to: int, text: str) -> Ack:
        """:meth:`enqueue`, then wait for the acknowledgement (across reconnects). Raises
        :class:`SendRefusedError` when the server refuses it for good, :class:`SignedOutError` on sign-out."""
        item = await self.enqueue(to, text)
        return await self._acks[item.client_msg_id]

    async def typing(self, to: int, is_typing: bool = True) -> None:
        await self._send_frame({"type": "typing", "to": to, "isTyping": is_typing})

    async def mark_read(self, peer_id: int, up_to_seq: int) -> None:
        await self._send_frame({"type": "markRead", "peerId": peer_id, "upToSeq": up_to_seq})

    async def online_users(self, user_ids: list[int] | None = None) -> list[int]:
        frame: dict[str, Any] = {"type": "getOnlineUsers"} | ({"userIds": user_ids} if user_ids is not None else {})
        reply = await self._request(frame)
        return list(reply["userIds"])

    async def ping(self) -> None:
        """A ``ping`` round trip: every frame sent before it was processed when it returns."""
        await self._request({"type": "ping"})

    # --- internals: tokens ----------------------------------------------------------------

    def _signed_in(self, data: dict[str, Any]) -> Profile:
        profile = Profile(data["id"], data["name"], data["email"], data["phoneNumber"])
        self._take_tokens(data, profile)
        if self.state == "signed_out":
            self._set_state("offline")
        return profile

    def _take_tokens(self, data: dict[str, Any], profile: Profile | None) -> None:
        expires_in = float(data["expires_in"])
        self.tokens = Tokens(data["access_token"], data["refresh_token"], self._clock() + expires_in, profile)
        self._schedule_refresh(expires_in)

    def _schedule_refresh(self, expires_in: float) -> None:
        current = asyncio.current_task()
        if self._refresh_timer is not None and self._refresh_timer is not current:
            self._refresh_timer.cancel()
        self._refresh_timer = asyncio.create_task(self._refresh_later(refresh_delay(expires_in, self.timings)))

    async def _refresh_later(self, delay: float) -> None:
        await self._sleep(delay)
        backoff = Backoff(self.timings, self._random)
        while self.tokens is not None:
            try:
                await self.refresh()
                return
            except SignedOutError:
                return
            except (httpx.TransportError, ApiError):
                await self._sleep(backoff.next_delay())

    async def _refresh(self) -> None:
        tokens = self.tokens
        if tokens is None:
            raise SignedOutError("not signed in")
        try:
            data = await self._call("POST", "/auth/refresh", json={"refresh_token": tokens.refresh_token})
        except ApiError as exc:
            if exc.status == 401:
                await self._sign_out(None)
                raise SignedOutError(exc.detail) from exc
            raise
        self._take_tokens(data, tokens.profile)
        await self._reauthenticate()

    async def _reauthenticate(self) -> None:
        """Send ``auth`` with the new token on the ready socket and wait for its ``ready``."""
        if not self._ready or self.tokens is None:
            return
        with contextlib.suppress(NotConnectedError, TimeoutError):
            await asyncio.wait_for(
                self._request({"type": "auth", "token": self.tokens.access_token}), self.timings.open_timeout_s
            )

    async def _end_login(self, path: str) -> None:
        try:
            await self._authed("POST", path, expect=204, refresh_on_401=False)
        except ApiError as exc:
            if exc.status != 401:
                raise
        self._stopping = True
        await self._sign_out(None)
        await self.disconnect()

    async def _sign_out(self, code: int | None) -> None:
        if self.tokens is None and self.state == "signed_out":
            return
        self.tokens = None
        current = asyncio.current_task()
        if self._refresh_timer is not None and self._refresh_timer is not current:
            self._refresh_timer.cancel()
        self._refresh_timer = None
        for future in self._acks.values():
            if not future.done():
                future.set_exception(SignedOutError("signed out; the send stays in the outbox"))
                future.exception()  # retrieved: nobody may be waiting
        self._acks.clear()
        self._stopping = True  # the loop ends; a later connect() starts a new one
        if self._ws is not None:
            self._spawn(self._ws.close())
        self._set_state("signed_out", code)

    # --- internals: HTTP ------------------------------------------------------------------

    async def _call(
        self, method: str, path: str, *, expect: int = 200, headers: dict[str, str] | None = None, **kwargs: Any
    ) -> Any:
        response = await self._http.request(method, path, headers=headers, **kwargs)
        if response.status_code != expect:
            raise _api_error(response)
        return response.json() if response.content else None

    async def _authed(
        self, method: str, path: str, *, expect: int = 200, refresh_on_401: bool = True, **kwargs: Any
    ) -> Any:
        try:
            return await self._call(method, path, expect=expect, headers=self._bearer(), **kwargs)
        except ApiError as exc:
            if exc.status != 401 or not refresh_on_401:
                raise
        await self.refresh()  # the access token expired (or was refused): once more with a new one
        return await self._call(method, path, expect=expect, headers=self._bearer(), **kwargs)

    def _bearer(self) -> dict[str, str]:
        if self.tokens is None:
            raise SignedOutError("not signed in")
        return {"Authorization": f"Bearer {self.tokens.access_token}"}

    # --- internals: the reconnect loop ----------------------------------------------------

    async def _run(self) -> None:
        backoff = Backoff(self.timings, self._random)
        while not self._stopping and self.tokens is not None:
            self._set_state("connecting")
            if self._clock() >= self.tokens.expires_at:
                code = 4401  # expired while offline: the server would refuse it
            else:
                code = await self._one_connection(backoff)
            if self._stop_requested():  # disconnect(), logout() meanwhile
                return
            action = close_action(code)
            if action is CloseAction.SIGNED_OUT:
                await self._sign_out(code)
                return
            if action is CloseAction.REFRESH:
                try:
                    await self.refresh()
                except SignedOutError:
                    return
                except (httpx.TransportError, ApiError):
                    delay = backoff.next_delay()
                else:
                    delay = self._first_retry(backoff)
            elif action is CloseAction.BACK_OFF:
                delay = backoff.next_delay(floor=self.timings.backoff_floor_s)
            else:
                delay = self._first_retry(backoff)
            self._set_state("offline", code)
            if delay > 0:
                await self._sleep(delay)

    def _stop_requested(self) -> bool:
        return self._stopping

    @staticmethod
    def _first_retry(backoff: Backoff) -> float:
        """At once after a connection that worked, then with growing back-off."""
        if backoff.attempt == 0:
            backoff.attempt = 1
            return 0.0
        return backoff.next_delay()

    async def _one_connection(self, backoff: Backoff) -> int:
        """Open, authenticate and read one socket until it closes; return the close code."""
        if self.tokens is None:
            return 4403
        try:
            ws = await self._open_socket(self.ws_url, self.tokens.access_token, self.timings)
        except InvalidStatus as exc:
            return _HANDSHAKE_STATUS.get(exc.response.status_code, ABNORMAL)
        except (OSError, InvalidHandshake, TimeoutError):
            return ABNORMAL
        self._ws = ws
        self._sent_here = set()
        watchdog = asyncio.create_task(self._await_ready(ws))
        try:
            while True:
                raw = await ws.recv()
                await self._on_frame(ws, raw, backoff)
        except ConnectionClosed as exc:
            return exc.rcvd.code if exc.rcvd is not None else ABNORMAL
        finally:
            watchdog.cancel()
            self._ws = None
            self._ready = False
            for future in self._requests.values():
                if not future.done():
                    future.set_exception(NotConnectedError("the socket closed"))
                    future.exception()
            self._requests.clear()
            await ws.close()

    async def _await_ready(self, ws: Socket) -> None:
        await self._sleep(self.timings.open_timeout_s)
        if not self._ready:
            await ws.close(4000, "no ready in time")

    # --- internals: frames ----------------------------------------------------------------

    async def _on_frame(self, ws: Socket, raw: str | bytes, backoff: Backoff) -> None:
        frame: dict[str, Any] = json.loads(raw)
        kind = frame.get("type")
        ref = frame.get("ref")
        if kind == "ready":
            ready = Ready(
                frame["userId"],
                frame["connectionId"],
                required_time(frame["serverTime"]),
                frame["heartbeatS"],
                reauthenticated=ref is not None,
            )
            if ref is not None:
                self._resolve(ref, frame)
                self._emit(ready)
                return
            self._ready = True
            backoff.reset()
            self._set_state("online")
            self._emit(ready)
            if self._first_ready is not None and not self._first_ready.done():
                self._first_ready.set_result(ready)
            self._spawn(self._flush())
        elif kind == "offlineMessages":
            await self._receive(ws, [Message.from_json(item) for item in frame["messages"]], offline=True)
        elif kind == "messageReceived":
            await self._receive(ws, [Message.from_json(frame)], offline=False)
        elif kind == "messageAck":
            await self._acknowledged(Ack.from_json(frame))
        elif kind == "messageDelivered":
            self._emit(Delivered(list(frame["ids"]), frame["to"], required_time(frame["deliveredAt"])))
        elif kind == "messagesRead":
            read_at = required_time(frame["readAt"])
            self._emit(Read(frame["by"], frame["peerId"], frame["upToSeq"], read_at))
        elif kind == "userOnline":
            self._emit(Presence(frame["userId"], True))
        elif kind == "userOffline":
            self._emit(Presence(frame["userId"], False, parse_time(frame.get("lastSeenAt"))))
        elif kind == "typing":
            self._emit(Typing(frame["from"], frame["isTyping"]))
        elif kind == "error":
            await self._on_error(frame)
        elif ref is not None:  # pong, onlineUsers, searchResults
            self._resolve(ref, frame)

    async def _receive(self, ws: Socket, messages: list[Message], *, offline: bool) -> None:
        """Show each message once, then acknowledge every one addressed to us (repeats too: the
        next offline batch waits for them)."""
        for message in messages:
            if self._seen.first_time(message.id):
                self._emit(MessageReceived(message, offline=offline))
            else:
                self.duplicates_dropped += 1
        ids = [message.id for message in messages if message.to == self.user_id]
        if ids:
            with contextlib.suppress(ConnectionClosed):
                await ws.send(json.dumps({"type": "ackMessages", "ids": ids}))

    async def _acknowledged(self, ack: Ack) -> None:
        await self.outbox.remove(ack.client_msg_id)
        future = self._acks.pop(ack.client_msg_id, None)
        if future is not None and not future.done():
            future.set_result(ack)
        if self._acked.first_time(ack.client_msg_id):
            self._emit(Sent(ack))

    async def _on_error(self, frame: dict[str, Any]) -> None:
        error = Error(frame["code"], frame.get("message", ""), frame.get("ref"), frame.get("clientMsgId"))
        self._emit(error)
        request = self._requests.pop(error.ref, None) if error.ref is not None else None
        if request is not None and not request.done():
            request.set_exception(ChatError(f"{error.code}: {error.message}"))
            request.exception()
        cid = error.client_msg_id
        if cid is None:
            return
        if error.code in RETRYABLE_SEND_ERRORS:
            self._sent_here.discard(cid)
            self._spawn(self._retry_send(cid))
            return
        await self.outbox.remove(cid)
        future = self._acks.pop(cid, None)
        if future is not None and not future.done():
            future.set_exception(SendRefusedError(cid, error.code, error.message))
            future.exception()  # retrieved: after enqueue() nobody waits for it (the Error event tells)

    async def _retry_send(self, client_msg_id: str) -> None:
        await self._sleep(self.timings.retry_send_s)
        for item in await self.outbox.items():
            if item.client_msg_id == client_msg_id:
                await self._transmit(item)

    async def _flush(self) -> None:
        """Send every pending send not yet sent on this socket, oldest first."""
        async with self._send_lock:
            for item in await self.outbox.items():
                await self._transmit_locked(item)

    async def _transmit(self, item: PendingSend) -> None:
        async with self._send_lock:
            await self._transmit_locked(item)

    async def _transmit_locked(self, item: PendingSend) -> None:
        ws = self._ws
        if ws is None or not self._ready or item.client_msg_id in self._sent_here:
            return
        self._sent_here.add(item.client_msg_id)
        frame = {"type": "sendMessage", "to": item.to, "message": item.text, "clientMsgId": item.client_msg_id}
        with contextlib.suppress(ConnectionClosed):  # it is re-sent after the reconnect
            await ws.send(json.dumps(frame))

    async def _send_frame(self, frame: dict[str, Any]) -> None:
        ws = self._ws
        if ws is None or not self._ready:
            raise NotConnectedError(f"{frame['type']} needs a ready socket")
        try:
            await ws.send(json.dumps(frame))
        except ConnectionClosed as exc:
            raise NotConnectedError("the socket closed") from exc

    async def _request(self, frame: dict[str, Any]) -> dict[str, Any]:
        ref = f"sdk-{next(self._refs)}"
        future: asyncio.Future[dict[str, Any]] = asyncio.get_running_loop().create_future()
        self._requests[ref] = future
        try:
            await self._send_frame({**frame, "ref": ref})
            return await future
        finally:
            self._requests.pop(ref, None)

    def _resolve(self, ref: str, frame: dict[str, Any]) -> None:
        future = self._requests.pop(ref, None)
        if future is not None and not future.done():
            future.set_result(frame)

    # --- internals: events ----------------------------------------------------------------

    def _emit(self, event: Event) -> None:
        self._events.put_nowait(event)

    def _set_state(self, state: State, code: int | None = None) -> None:
        if state != self.state:
            self.state = state
            self._emit(StateChanged(state, code))

    def _spawn(self, coroutine: Awaitable[None]) -> None:
        task = asyncio.ensure_future(coroutine)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)


def _api_error(response: httpx.Response) -> ApiError:
    try:
        body = response.json()
    except ValueError:
        body = {}
    if not isinstance(body, dict):
        body = {}
    return ApiError(
        response.status_code,
        str(body.get("type", "unknown")),
        str(body.get("detail", response.reason_phrase)),
        body.get("errors"),
    )
