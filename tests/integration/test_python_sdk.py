"""The Python SDK (clients/python, ``p2p_chat_client``) against the real server: the app served
in-process on real sockets, and for the kill test a ``p2p-chat serve`` subprocess killed with SIGKILL
and started again. Timings are shortened (server settings, the SDK's ``Timings``); every wait is
bounded and ends on an event, not on a fixed sleep."""

from __future__ import annotations

import asyncio
import dataclasses
import itertools
import os
import signal
import time
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import asynccontextmanager, contextmanager
from pathlib import Path
from typing import TypeVar

import pytest

from p2p_chat_client import (
    ChatClient,
    Event,
    FileOutbox,
    MessageReceived,
    Presence,
    Read,
    Ready,
    SendRefusedError,
    Sent,
    SignedOutError,
    StateChanged,
    Timings,
    Typing,
)
from p2p_chat_client.models import Delivered
from tests.integration.support import TEST_SECRET, Server, clean_env, make_container, make_settings, serve_async

FAST = Timings(
    backoff_base_s=0.05,
    backoff_cap_s=0.3,
    backoff_floor_s=0.2,
    open_timeout_s=5,
    request_timeout_s=10,
    retry_send_s=0.1,
)
WITHIN = 10.0  # seconds any awaited event may take at most
SERVER_ENV = {
    "CHAT_REGISTER_PER_HOUR": "1000",
    "CHAT_RATE_MSG_PER_S": "10000",
    "CHAT_RATE_MSG_BURST": "10000",
    "CHAT_OFFLINE_GRACE_S": "0.2",
}
_numbers = itertools.count(1)
E = TypeVar("E")


@pytest.fixture
def backend() -> str:
    return "sqlite"


@asynccontextmanager
async def served(migrated_url: str, **env: str) -> AsyncIterator[str]:
    container = make_container(make_settings(migrated_url, {**SERVER_ENV, **env}))
    async with serve_async(container) as url:
        yield url


def credentials(name: str) -> dict[str, str]:
    n = next(_numbers)
    return {
        "name": name,
        "email": f"{name.lower()}-{n}-{os.getpid()}@example.com",
        "phone_number": f"+4477{n:08d}",
        "password": "password123",
    }


async def registered(url: str, name: str, timings: Timings = FAST) -> ChatClient:
    client = ChatClient(url, timings=timings)
    await client.register(**credentials(name))
    return client


async def next_of(client: ChatClient, kind: type[E], where: Callable[[E], bool] = lambda _: True) -> E:
    """The next event of ``kind`` that matches (events of other kinds are skipped)."""
    deadline = time.monotonic() + WITHIN
    while True:
        event = await client.next_event(within=max(0.01, deadline - time.monotonic()))
        if isinstance(event, kind) and where(event):
            return event


async def received_texts(client: ChatClient, count: int) -> list[MessageReceived]:
    return [await next_of(client, MessageReceived) for _ in range(count)]


def pending_events(client: ChatClient) -> list[Event]:
    """Events already queued (read without waiting)."""
    events: list[Event] = []
    queue = client._events  # the test reads what is there without blocking
    while not queue.empty():
        event = queue.get_nowait()
        if event is None:
            queue.put_nowait(None)
            break
        events.append(event)
    return events


async def test_register_login_a_conversation_both_ways_search_conversations_and_history(migrated_url: str) -> None:
    async with served(migrated_url) as url:
        ann_login = credentials("Ann")
        async with ChatClient(url, timings=FAST) as ann, await registered(url, "Bob") as bob:
            registered_ann = await ann.register(**ann_login)
            assert registered_ann.email == ann_login["email"]
            async with ChatClient(url, timings=FAST) as ann_again:
                profile = await ann_again.login(email=ann_login["email"], password="password123")
                assert profile.id == registered_ann.id
                assert (await ann_again.me()).name == "Ann"
            assert bob.user_id is not None
            ann_ready = await ann.connect()
            assert ann_ready.user_id == registered_ann.id
            await bob.connect()

            ack = await ann.send(bob.user_id, "hi bob")
            got = await next_of(bob, MessageReceived)
            assert (got.message.text, got.message.id, got.message.sender, got.offline) == (
                "hi bob",
                ack.id,
                ann.user_id,
                False,
            )
            assert (await next_of(ann, Sent)).ack == ack
            delivered = await next_of(ann, Delivered)  # bob's SDK acknowledged it by itself
            assert delivered.ids == [ack.id]

            reply = await bob.send(registered_ann.id, "hi ann")
            assert (await next_of(ann, MessageReceived)).message.id == reply.id

            await bob.mark_read(registered_ann.id, reply.seq)
            read = await next_of(ann, Read)
            assert (read.by, read.peer_id, read.up_to_seq) == (bob.user_id, bob.user_id, reply.seq)

            assert [user.id for user in await ann.search_users("Bob")][:1] == [bob.user_id]
            conversations = await ann.conversations()
            assert [(c.peer.id, c.last_message.id) for c in conversations.items] == [(bob.user_id, reply.id)]
            history = await ann.history(bob.user_id)
            assert [m.text for m in history.items] == ["hi bob", "hi ann"]
            assert not history.has_more
            older = await ann.history(bob.user_id, before=reply.seq, limit=1)
            assert ([m.text for m in older.items], older.has_more) == (["hi bob"], False)
            with pytest.raises(SendRefusedError) as refused:
                await ann.send(registered_ann.id, "to myself")
            assert refused.value.code == "bad_request"
            assert await ann.outbox.items() == []


async def test_offline_batches_are_drained_in_order_and_acknowledged(migrated_url: str) -> None:
    async with served(migrated_url) as url, await registered(url, "Ann") as ann, await registered(url, "Bob") as bob:
        assert bob.user_id is not None
        await ann.connect()
        texts = [f"m{i}" for i in range(130)]  # more than one batch of 100: the second needs the acks
        acks = await asyncio.gather(*(ann.send(bob.user_id, text) for text in texts))
        ann_seqs = {ack.seq: ack.client_msg_id for ack in acks}
        assert len(ann_seqs) == 130

        await bob.connect()
        got = await received_texts(bob, 130)
        assert all(event.offline for event in got)
        assert [event.message.seq for event in got] == sorted(ann_seqs)
        assert sorted(event.message.text for event in got) == sorted(texts)
        delivered: set[str] = set()
        while len(delivered) < 130:
            delivered.update((await next_of(ann, Delivered)).ids)

        await bob.disconnect()  # everything was acknowledged: nothing comes again
        await bob.connect()
        await bob.ping()
        assert [e for e in pending_events(bob) if isinstance(e, MessageReceived)] == []


class Proxy:
    """A TCP relay in front of the server whose client → server direction can be held (a stalled
    uplink): what the client sends waits until :meth:`resume`, what the server sends flows."""

    def __init__(self, target_port: int) -> None:
        self.target_port = target_port
        self.uplink = asyncio.Event()
        self.uplink.set()
        self._tasks: set[asyncio.Task[None]] = set()
        self._server: asyncio.Server | None = None
        self.port = 0

    async def __aenter__(self) -> Proxy:
        self._server = await asyncio.start_server(self._relay, "127.0.0.1", 0)
        self.port = self._server.sockets[0].getsockname()[1]
        return self

    async def __aexit__(self, *exc: object) -> None:
        assert self._server is not None
        self._server.close()
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)

    async def _relay(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        up_reader, up_writer = await asyncio.open_connection("127.0.0.1", self.target_port)
        for task in (
            asyncio.create_task(self._pipe(reader, up_writer, self.uplink)),
            asyncio.create_task(self._pipe(up_reader, writer, None)),
        ):
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)

    @staticmethod
    async def _pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, gate: asyncio.Event | None) -> None:
        try:
            while data := await reader.read(65536):
                if gate is not None:
                    await gate.wait()
                writer.write(data)
                await writer.drain()
        except (ConnectionError, asyncio.CancelledError):
            pass
        finally:
            writer.close()


async def test_a_message_pushed_again_is_shown_once(migrated_url: str) -> None:
    """Bob's acknowledgements are held back, so the server pushes the message again after
    CHAT_REDELIVERY_S; the SDK drops the repeat (and acknowledges it)."""
    async with served(migrated_url, CHAT_REDELIVERY_S="0.2") as url, await registered(url, "Ann") as ann:
        port = int(url.rsplit(":", 1)[1])
        async with Proxy(port) as proxy, await registered(f"http://127.0.0.1:{proxy.port}", "Bob") as bob:
            assert bob.user_id is not None
            await ann.connect()
            await bob.connect()
            proxy.uplink.clear()  # bob's ackMessages stays in the relay
            ack = await ann.send(bob.user_id, "once")
            assert (await next_of(bob, MessageReceived)).message.id == ack.id
            deadline = time.monotonic() + WITHIN
            while bob.duplicates_dropped < 2:  # pushed again, and again
                assert time.monotonic() < deadline, "the server did not push the message again"
                await asyncio.sleep(0.05)
            proxy.uplink.set()
            await next_of(ann, Delivered)
            await bob.ping()
            assert [e for e in pending_events(bob) if isinstance(e, MessageReceived)] == []


async def test_typing_presence_and_online_users(migrated_url: str) -> None:
    async with served(migrated_url) as url, await registered(url, "Ann") as ann, await registered(url, "Bob") as bob:
        assert ann.user_id is not None
        assert bob.user_id is not None
        await ann.connect()
        await bob.connect()
        await ann.send(bob.user_id, "hello")  # contacts: a message each way
        await bob.send(ann.user_id, "hello back")
        await next_of(ann, Presence, lambda p: p.user_id == bob.user_id and p.online)

        await ann.typing(bob.user_id, True)
        typing = await next_of(bob, Typing)
        assert (typing.user_id, typing.is_typing) == (ann.user_id, True)
        assert await ann.online_users() == [bob.user_id]

        await bob.disconnect()
        offline = await next_of(ann, Presence, lambda p: p.user_id == bob.user_id)
        assert not offline.online
        assert offline.last_seen_at is not None
        await bob.connect()
        assert (await next_of(ann, Presence, lambda p: p.user_id == bob.user_id)).online


async def test_the_socket_is_reauthenticated_before_the_token_expires(migrated_url: str) -> None:
    async with served(migrated_url, CHAT_ACCESS_TOKEN_TTL_S="2") as url:
        # A 2 s token lives 1–2 s (its ``exp`` is whole seconds): refreshed every 0.5 s.
        early = dataclasses.replace(FAST, refresh_margin_s=1.5, refresh_fraction=0.25)
        async with (
            await registered(url, "Ann", timings=early) as ann,
            await registered(url, "Bob", timings=early) as bob,
        ):
            assert bob.user_id is not None
            await ann.connect()
            first = ann.tokens
            assert not (await next_of(ann, Ready)).reauthenticated  # the socket's first ready
            for _ in range(4):  # past the first token's expiry, on one socket
                assert (await next_of(ann, Ready)).reauthenticated
            assert ann.tokens is not first
            assert ann.state == "online"
            assert [e for e in pending_events(ann) if isinstance(e, StateChanged)] == []
            await ann.send(bob.user_id, "still here")  # the socket is alive and authenticated
            assert (await ann.me()).id == ann.user_id  # and HTTP uses the new token

            await ann.refresh()  # by hand, too
            assert (await next_of(ann, Ready)).reauthenticated


async def test_an_expired_token_is_refreshed_before_reconnecting(migrated_url: str) -> None:
    now = [0.0]
    async with served(migrated_url) as url:
        ann = ChatClient(url, timings=Timings(refresh_margin_s=0, refresh_fraction=1.0), clock=lambda: now[0])
        async with ann:
            await ann.register(**credentials("Ann"))
            old = ann.tokens
            assert old is not None
            now[0] = old.expires_at + 1  # asleep past the expiry: the client's clock says so
            await ann.connect()
            assert ann.tokens is not None
            assert ann.tokens.refresh_token != old.refresh_token


async def test_logout_all_signs_every_socket_out_without_retrying(migrated_url: str) -> None:
    async with served(migrated_url) as url, await registered(url, "Bob") as bob:
        login = credentials("Ann")
        async with ChatClient(url, timings=FAST) as phone, ChatClient(url, timings=FAST) as laptop:
            await phone.register(**login)
            await laptop.login(email=login["email"], password=login["password"])
            await phone.connect()
            await laptop.connect()
            assert bob.user_id is not None
            await phone.send(bob.user_id, "before")

            await laptop.logout_all()
            assert laptop.state == "signed_out"
            signed_out = await next_of(phone, StateChanged, lambda s: s.state == "signed_out")
            assert signed_out.close_code == 4403
            await asyncio.wait_for(phone.wait_stopped(), WITHIN)  # the loop ends, without another attempt
            assert [e for e in pending_events(phone) if isinstance(e, StateChanged)] == []
            assert phone.tokens is None
            with pytest.raises(SignedOutError):
                await phone.connect()
            with pytest.raises(SignedOutError):
                await phone.conversations()


# --- a real server process, killed and started again -----------------------------------------


@contextmanager
def server_process(database_url: str, cwd: Path) -> Iterator[Server]:
    env = clean_env()
    env |= SERVER_ENV | {"CHAT_DATABASE_URL": database_url, "CHAT_JWT_SECRET": TEST_SECRET, "CHAT_LOG_LEVEL": "warning"}
    server = Server(env, cwd)
    server.start()
    try:
        yield server
    finally:
        server.stop()


async def test_a_server_killed_and_restarted_mid_conversation_loses_nothing_and_shows_nothing_twice(
    migrated_url: str, tmp_path: Path
) -> None:
    """Ann sends a burst and the server is killed (SIGKILL; stopped first for the burst's second
    half, so those sends are surely unanswered) while it is in flight; Ann queues two
    more while it is down, and Ann's program itself restarts (a new client on the same
    :class:`FileOutbox`). After the server is back, Bob has every message exactly once, the server
    stored each once, and Ann's outbox is empty."""
    outbox_file = tmp_path / "ann-outbox.json"
    with server_process(migrated_url, tmp_path) as server:
        login = credentials("Ann")
        bob = await registered(server.base_url, "Bob")
        ann = ChatClient(server.base_url, timings=FAST, outbox=FileOutbox(outbox_file))
        async with bob:
            assert bob.user_id is not None
            await ann.register(**login)
            assert ann.user_id is not None
            await ann.connect()
            await bob.connect()
            await ann.send(bob.user_id, "a0")
            await bob.send(ann.user_id, "b0")

            ids: dict[str, str] = {}  # text -> the clientMsgId it was given
            for i in range(1, 5):  # a burst racing the kill: some stored and acked, maybe some stored only
                ids[f"a{i}"] = (await ann.enqueue(bob.user_id, f"a{i}")).client_msg_id
            server.signal(signal.SIGSTOP)  # a5..a8 are surely on the wire, unanswered, at the kill
            for i in range(5, 9):
                ids[f"a{i}"] = (await ann.enqueue(bob.user_id, f"a{i}")).client_msg_id
            await asyncio.to_thread(server.stop)
            await next_of(ann, StateChanged, lambda s: s.state == "offline")
            for text in ("a9", "a10"):  # typed while the server is down
                ids[text] = (await ann.enqueue(bob.user_id, text)).client_msg_id
            await ann.close()  # Ann's program stops too: its pending sends are in the file

            await asyncio.to_thread(server.start)
            async with ChatClient(server.base_url, timings=FAST, outbox=FileOutbox(outbox_file)) as ann_again:
                left = {item.text for item in await ann_again.outbox.items()}
                assert {"a5", "a6", "a7", "a8", "a9", "a10"} <= left
                await ann_again.login(email=login["email"], password=login["password"])
                await ann_again.connect()  # re-sends the outbox with the same clientMsgIds
                while await ann_again.outbox.items():
                    await next_of(ann_again, Sent)

                texts = {f"a{i}" for i in range(11)}
                shown: list[str] = []
                while set(shown) != texts:
                    shown.append((await next_of(bob, MessageReceived)).message.text)
                await bob.ping()
                shown += [e.message.text for e in pending_events(bob) if isinstance(e, MessageReceived)]
                assert sorted(shown) == sorted(texts)  # each once
                assert bob.state == "online"

                history = await ann_again.history(bob.user_id, limit=100)
                stored = [m.text for m in history.items if m.sender == ann_again.user_id]
                assert sorted(stored) == sorted(texts)  # stored once each
                resent = {m.text: m.client_msg_id for m in history.items if m.text in ids}
                assert resent == ids  # with the clientMsgIds they were first given
                assert stored[0] == "a0"
                assert stored[-2:] == ["a9", "a10"]
