"""Scale-out: two real server processes on different ports sharing PostgreSQL and Redis
(contract §6–§7). Each test starts its own pair with its own database and Redis key prefix."""

from __future__ import annotations

import asyncio
import json
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager, contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
import redis.asyncio as aioredis

from tests.integration.chat import Chat, Client, read_until_closed, running_chat
from tests.integration.support import TEST_SECRET, clean_env, forget_redis_keys, free_port, wait_until_up

pytestmark = pytest.mark.redis

TIMINGS = {
    "CHAT_PRESENCE_TTL_S": "1",
    "CHAT_OFFLINE_GRACE_S": "0.5",
    "CHAT_REDELIVERY_S": "0.5",
    "CHAT_RATE_MSG_PER_S": "10000",
    "CHAT_RATE_MSG_BURST": "10000",
    "CHAT_REGISTER_PER_HOUR": "1000",
    "CHAT_LOG_LEVEL": "warning",
}


@pytest.fixture
def backend() -> str:
    return "postgres"


@dataclass
class Node:
    process: subprocess.Popen[bytes]
    base_url: str


@contextmanager
def start_nodes(count: int, env: dict[str, str], cwd: Path) -> Iterator[list[Node]]:
    """Start ``count`` server processes at once and wait until each is ready."""
    nodes = []
    for _ in range(count):
        port = free_port()
        process = subprocess.Popen(
            [sys.executable, "-m", "entrypoints.cli", "serve"],
            env={**env, "CHAT_PORT": str(port)},
            cwd=cwd,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        nodes.append(Node(process, f"http://127.0.0.1:{port}"))
    try:
        for node in nodes:
            wait_until_up(node.process, node.base_url, within=30)
        yield nodes
    finally:
        for node in nodes:
            if node.process.poll() is None:
                node.process.send_signal(signal.SIGTERM)
        for node in nodes:
            try:
                node.process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                node.process.kill()


@dataclass
class Cluster:
    one: Chat
    two: Chat
    nodes: list[Node]
    redis_url: str
    prefix: str


@asynccontextmanager
async def cluster_of(migrated_url: str, redis_url: str, tmp_path: Path) -> AsyncIterator[Cluster]:
    prefix = f"t{uuid.uuid4().hex[:12]}"
    env = clean_env()
    env.update(
        {
            "CHAT_DATABASE_URL": migrated_url,
            "CHAT_REDIS_URL": redis_url,
            "CHAT_REDIS_PREFIX": prefix,
            "CHAT_JWT_SECRET": TEST_SECRET,
            **TIMINGS,
        }
    )
    with start_nodes(2, env, tmp_path) as (n1, n2):
        async with (
            httpx.AsyncClient(base_url=n1.base_url, timeout=30) as h1,
            httpx.AsyncClient(base_url=n2.base_url, timeout=30) as h2,
        ):
            one, two = Chat(n1.base_url, h1), Chat(n2.base_url, h2)
            try:
                yield Cluster(one, two, [n1, n2], redis_url, prefix)
            finally:  # the nodes stop with this loop blocked: their sockets must be closed first
                await one.close_sockets()
                await two.close_sockets()
    await forget_redis_keys(redis_url, prefix)


@pytest.fixture
async def cluster(migrated_url: str, redis_url: str, tmp_path: Path) -> AsyncIterator[Cluster]:
    async with cluster_of(migrated_url, redis_url, tmp_path) as value:
        yield value


async def befriend(a: Client, b: Client) -> None:
    await a.send_message(b.account.id, "hi")
    await b.send_message(a.account.id, "hello")
    await a.barrier()
    await b.barrier()


async def expect_within(client: Client, frame_type: str, within: float) -> dict[str, object]:
    """The next frame of ``frame_type``, skipping others, within ``within`` seconds."""
    deadline = time.monotonic() + within
    while True:
        frame = await client.recv(within=max(0.01, deadline - time.monotonic()))
        if frame["type"] == frame_type:
            return frame


async def test_messages_acks_and_receipts_cross_processes(cluster: Cluster) -> None:
    ann, bob = await cluster.one.account("Ann"), await cluster.one.account("Bob")
    a1, a2 = await cluster.one.connect(ann), await cluster.two.connect(ann)
    b2, b1 = await cluster.two.connect(bob), await cluster.one.connect(bob)

    ack = await a1.send_message(bob.id, "across")
    for device in (b2, b1, a2):
        frame = await expect_within(device, "messageReceived", 10)
        assert frame["id"] == ack["id"]
    scrape = (await cluster.two.http.get("/metrics")).text.splitlines()  # the process it crossed to
    lag = next(line for line in scrape if line.startswith("chat_fanout_lag_seconds_count "))
    assert float(lag.split()[1]) >= 1
    await b2.send(type="ackMessages", ids=[ack["id"]])
    for device in (a1, a2):
        delivered = await expect_within(device, "messageDelivered", 10)
        assert delivered["ids"] == [ack["id"]]
    await b2.send(type="markRead", peerId=ann.id, upToSeq=1)
    for device in (a1, a2):
        read = await expect_within(device, "messagesRead", 10)
        assert (read["by"], read["upToSeq"]) == (bob.id, 1)


async def test_seq_is_gap_free_under_concurrent_sends_through_both_processes(cluster: Cluster) -> None:
    ann, bob = await cluster.one.account("Ann"), await cluster.one.account("Bob")
    senders = [await cluster.one.connect(ann) for _ in range(3)] + [await cluster.two.connect(bob) for _ in range(3)]

    async def burst(device: Client) -> list[int]:
        peer = bob.id if device.account.id == ann.id else ann.id
        return [int((await device.send_message(peer, "x"))["seq"]) for _ in range(15)]

    seqs = [s for batch in await asyncio.gather(*(burst(d) for d in senders)) for s in batch]
    assert sorted(seqs) == list(range(1, 91))


async def test_presence_crosses_processes_and_a_killed_process_goes_offline_once(cluster: Cluster) -> None:
    ann, bob = await cluster.one.account("Ann"), await cluster.one.account("Bob")
    a = await cluster.one.connect(ann)
    b = await cluster.two.connect(bob)
    await befriend(a, b)
    await a.send(type="getOnlineUsers", ref="o")
    assert (await expect_within(a, "onlineUsers", 10))["userIds"] == [bob.id]

    started = time.monotonic()
    cluster.nodes[1].process.send_signal(signal.SIGKILL)  # no cleanup of any kind
    offline = await expect_within(a, "userOffline", 15)
    assert offline["userId"] == bob.id
    assert time.monotonic() - started < 1 + 0.5 + 5  # TTL + grace + sweep and heartbeat periods
    await asyncio.sleep(2)  # an observation window: a second report would come from later settle rounds
    assert [f for f in await a.barrier() if f["type"] in ("userOffline", "userOnline")] == []


async def test_delivery_survives_killed_redis_connections(cluster: Cluster) -> None:
    ann, bob = await cluster.one.account("Ann"), await cluster.one.account("Bob")
    a = await cluster.one.connect(ann)
    b = await cluster.two.connect(bob)
    acked: list[str] = []
    for i in range(20):
        acked.append(str((await a.send_message(bob.id, f"before-{i}"))["id"]))  # noqa: PERF401
    killer = aioredis.Redis.from_url(cluster.redis_url)
    try:
        await killer.execute_command("CLIENT", "KILL", "TYPE", "pubsub")  # type: ignore[no-untyped-call]
        await killer.execute_command(  # type: ignore[no-untyped-call]
            "CLIENT", "KILL", "TYPE", "normal", "SKIPME", "yes"
        )
    finally:
        await killer.aclose()
    for i in range(20):
        acked.append(str((await a.send_message(bob.id, f"after-{i}"))["id"]))  # noqa: PERF401

    seen: set[str] = set()
    deadline = time.monotonic() + 20
    while not set(acked) <= seen and time.monotonic() < deadline:
        frame = await b.recv(within=max(0.01, deadline - time.monotonic()))
        if frame["type"] == "messageReceived":
            seen.add(str(frame["id"]))
        elif frame["type"] == "offlineMessages":
            seen.update(str(m["id"]) for m in frame["messages"])
    assert set(acked) <= seen  # by pub/sub or by re-push from the database; dedupe by id


async def test_logout_on_one_process_closes_the_socket_on_the_other(cluster: Cluster) -> None:
    ann = await cluster.one.account("Ann")
    b = await cluster.two.connect(ann)
    response = await cluster.one.http.post("/auth/logout", headers=ann.bearer)
    assert response.status_code == 204
    assert await b.closed_with(within=10) == 4403


async def test_ending_a_session_or_the_account_on_one_process_reaches_the_other(cluster: Cluster) -> None:
    ann, bob = await cluster.one.account("Ann"), await cluster.two.account("Bob")
    phone = await cluster.two.login(ann)
    on_phone, b = await cluster.two.connect(phone), await cluster.two.connect(bob)
    await b.send_message(ann.id, "hi")  # process two has sent to ann: nothing it remembers may outlive her
    sessions = (await cluster.one.http.get("/auth/sessions", headers=ann.bearer)).json()["items"]
    (phone_sid,) = [s["id"] for s in sessions if not s["current"]]
    assert (await cluster.one.http.delete(f"/auth/sessions/{phone_sid}", headers=ann.bearer)).status_code == 204
    assert await on_phone.closed_with(within=10) == 4403

    a = await cluster.two.connect(ann)
    deleted = await cluster.one.http.request(
        "DELETE", "/users/me", json={"password": "password123"}, headers=ann.bearer
    )
    assert deleted.status_code == 204
    assert await a.closed_with(within=10) == 4403
    failed = await b.send_message(ann.id, "still there?")
    assert (failed["type"], failed["code"]) == ("error", "not_found")


async def test_login_failures_are_counted_across_processes(cluster: Cluster) -> None:
    ann = await cluster.one.account("Ann")
    for i in range(5):
        chat = cluster.one if i % 2 else cluster.two
        wrong = await chat.http.post("/auth/login", json={"email": ann.email, "password": "wrong password"})
        assert wrong.status_code == 401
    right = await cluster.one.http.post("/auth/login", json={"email": ann.email, "password": "password123"})
    assert right.status_code == 429


async def test_ready_reports_redis_and_the_database(cluster: Cluster) -> None:
    ready = await cluster.one.http.get("/ready")
    assert ready.json()["checks"] == {"database": "ok", "redis": "ok"}


async def test_several_workers_on_one_port_share_delivery_and_metrics(
    migrated_url: str, redis_url: str, tmp_path: Path
) -> None:
    prefix = f"t{uuid.uuid4().hex[:12]}"
    env = clean_env()
    env.update(
        {
            "CHAT_DATABASE_URL": migrated_url,
            "CHAT_REDIS_URL": redis_url,
            "CHAT_REDIS_PREFIX": prefix,
            "CHAT_JWT_SECRET": TEST_SECRET,
            "CHAT_WORKERS": "2",
            **TIMINGS,
        }
    )
    with start_nodes(1, env, tmp_path) as (node,):
        async with httpx.AsyncClient(base_url=node.base_url, timeout=30) as http:
            chat = Chat(node.base_url, http)
            ann, bob = await chat.account("Ann"), await chat.account("Bob")
            anns = [await chat.connect(ann) for _ in range(3)]
            bobs = [await chat.connect(bob) for _ in range(3)]
            ack = await anns[0].send_message(bob.id, "one port, two processes")
            for device in [*bobs, *anns[1:]]:
                assert (await expect_within(device, "messageReceived", 10))["id"] == ack["id"]
            for _ in range(6):  # whichever worker answers, the figures are the sum of both
                text = (await http.get("/metrics")).text
                lines = text.splitlines()
                line = next(x for x in text.splitlines() if x.startswith("chat_connections "))
                assert float(line.split()[1]) == 6
                assert "chat_ws_opens_total 6.0" in lines
                assert 'chat_http_requests_total{method="POST",route="/auth/register",status="201"} 2.0' in lines
                assert any(x.startswith("process_resident_memory_bytes ") for x in lines)  # the answering worker's


async def test_the_per_user_connection_cap_holds_across_processes(
    migrated_url: str, uow_factory: Any, redis_url: str, redis_client: aioredis.Redis
) -> None:
    """Two app instances on one Redis (in this process, for speed): CHAT_MAX_CONNECTIONS_PER_USER
    counts the user's connections on both."""
    prefix = f"t{uuid.uuid4().hex[:12]}"
    env = {"CHAT_REDIS_URL": redis_url, "CHAT_REDIS_PREFIX": prefix, "CHAT_MAX_CONNECTIONS_PER_USER": "2"}
    async with running_chat(migrated_url, uow_factory, env) as one, running_chat(migrated_url, uow_factory, env) as two:
        ann, bob = await one.account("Ann"), await one.account("Bob")
        on_one, on_two = await one.connect(ann), await two.connect(ann)  # one each: two in all

        for chat in (one, two):
            ws = await chat.open()
            await ws.send(json.dumps({"type": "auth", "token": ann.access_token}))
            assert await read_until_closed(ws) == 4430
        assert (await two.connect(bob)).ready["userId"] == bob.id  # per user
        assert await on_one.barrier() == await on_two.barrier() == []  # the others stay

        await on_one.close()
        connections = f"{prefix}:presence:user:{ann.id}:connections"
        for _ in range(200):  # until the server has unregistered it (10 s at most)
            if await redis_client.hlen(connections) == 1:
                break
            await asyncio.sleep(0.05)
        assert (await two.connect(ann)).ready["userId"] == ann.id  # room again
