"""Behind a real proxy (issue 18): Debian's nginx runs ``deploy/nginx.conf`` itself — only its
ports, certificate paths and log path substituted — terminating TLS in front of two server
processes on PostgreSQL + Redis. A conversation runs through it over HTTPS and WSS from two client
addresses (127.0.0.5 and 127.0.0.6: all of 127/8 is loopback), and the servers must see, log and
rate-limit by those addresses, not by nginx's. Without nginx or openssl the test is skipped, or
fails with ``CI=true`` (``.ci/run`` installs nginx with apt when it is missing)."""

from __future__ import annotations

import asyncio
import re
import shutil
import ssl
import subprocess
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager, contextmanager, suppress
from pathlib import Path

import httpx
import pytest

from tests.integration.chat import Chat, Client
from tests.integration.support import TEST_SECRET, Server, clean_env, forget_redis_keys, free_port, unavailable

pytestmark = pytest.mark.redis

ROOT = Path(__file__).resolve().parents[2]
SITE = ROOT / "deploy" / "nginx.conf"
ANN_ADDRESS, DAN_ADDRESS = "127.0.0.5", "127.0.0.6"  # two clients; nginx itself connects from 127.0.0.1
REGISTRATIONS_PER_ADDRESS = 3
DEADLINE_S = 20


@pytest.fixture
def backend() -> str:
    return "postgres"


def require(*programs: str) -> dict[str, str]:
    """The paths of ``programs``; skipped (or failed with ``CI=true``) when one is missing."""
    paths = {name: shutil.which(name) or shutil.which(name, path="/usr/sbin:/sbin") for name in programs}
    missing = [name for name, path in paths.items() if path is None]
    if missing:
        unavailable(f"{', '.join(missing)} not installed (apt-get install {' '.join(missing)}; .ci/run does)")
    return {name: path for name, path in paths.items() if path is not None}


def site_config(https_port: int, http_port: int, upstreams: list[int], directory: Path) -> str:
    """``deploy/nginx.conf`` with this test's ports and paths. Every substitution must apply: a
    changed deploy file fails here rather than being tested half."""
    substitutions = [
        ("listen 443 ssl http2;", f"listen 127.0.0.1:{https_port} ssl http2;"),
        ("listen [::]:443 ssl http2;", ""),
        ("listen 80;", f"listen 127.0.0.1:{http_port};"),
        ("listen [::]:80;", ""),
        ("server 127.0.0.1:8001 ", f"server 127.0.0.1:{upstreams[0]} "),
        ("server 127.0.0.1:8002 ", f"server 127.0.0.1:{upstreams[1]} "),
        ("/etc/ssl/p2p-chat/fullchain.pem", str(directory / "cert.pem")),
        ("/etc/ssl/p2p-chat/privkey.pem", str(directory / "key.pem")),
        ("/var/log/nginx/p2p-chat.access.log", str(directory / "access.log")),
    ]
    text = SITE.read_text()
    for old, new in substitutions:
        assert text.count(old) == 1, f"deploy/nginx.conf no longer has exactly one {old!r}"
        text = text.replace(old, new)
    return text


@contextmanager
def nginx(site: str, directory: Path, nginx_path: str) -> Iterator[None]:
    (directory / "site.conf").write_text(site)
    temp = directory / "temp"
    temp.mkdir()
    (directory / "nginx.conf").write_text(
        f"""
worker_processes 1;
pid {directory}/nginx.pid;
error_log {directory}/error.log warn;
events {{ worker_connections 256; }}
http {{
    client_body_temp_path {temp}/body;
    proxy_temp_path {temp}/proxy;
    fastcgi_temp_path {temp}/fastcgi;
    uwsgi_temp_path {temp}/uwsgi;
    scgi_temp_path {temp}/scgi;
    include {directory}/site.conf;
}}
"""
    )
    command = [nginx_path, "-p", str(directory), "-c", str(directory / "nginx.conf")]
    checked = subprocess.run([*command, "-t"], capture_output=True, text=True, check=False)
    assert checked.returncode == 0, checked.stderr
    process = subprocess.Popen([*command, "-g", "daemon off;"], stderr=subprocess.PIPE)
    try:
        yield
    finally:
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()


def self_signed(directory: Path, openssl: str) -> ssl.SSLContext:
    """A certificate for 127.0.0.1 (what an operator's real one stands for), and a client context
    that trusts it — verification stays on."""
    subprocess.run(
        [
            openssl, "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1", "-subj", "/CN=127.0.0.1",
            "-addext", "subjectAltName=IP:127.0.0.1",
            "-keyout", str(directory / "key.pem"), "-out", str(directory / "cert.pem"),
        ],
        check=True,
        capture_output=True,
    )  # fmt: skip
    return ssl.create_default_context(cafile=directory / "cert.pem")


@asynccontextmanager
async def client_at(base_url: str, address: str, context: ssl.SSLContext) -> AsyncIterator[Chat]:
    """A chat client whose HTTP requests and sockets come from ``address``."""
    transport = httpx.AsyncHTTPTransport(local_address=address, verify=context)
    async with httpx.AsyncClient(base_url=base_url, transport=transport, timeout=DEADLINE_S) as http:
        chat = Chat(base_url, http, socket_options={"ssl": context, "local_addr": (address, 0)})
        try:
            yield chat
        finally:
            await chat.close_sockets()


def connections(server: Server) -> float:
    """``chat_connections`` of one process, asked directly (not through nginx)."""
    metrics = httpx.get(f"{server.base_url}/metrics").text
    match = re.search(r"^chat_connections (\S+)$", metrics, re.MULTILINE)
    assert match, metrics
    return float(match.group(1))


async def wait_until(condition: str, check: object) -> None:
    deadline = time.monotonic() + DEADLINE_S
    while not check():  # type: ignore[operator]
        assert time.monotonic() < deadline, condition
        await asyncio.sleep(0.05)


async def test_a_conversation_through_nginx_in_front_of_two_processes(
    migrated_url: str, redis_url: str, tmp_path: Path
) -> None:
    tools = require("nginx", "openssl")
    context = self_signed(tmp_path, tools["openssl"])
    prefix = f"t{uuid.uuid4().hex[:12]}"
    env = clean_env()
    env.update(
        {
            "CHAT_DATABASE_URL": migrated_url,
            "CHAT_REDIS_URL": redis_url,
            "CHAT_REDIS_PREFIX": prefix,
            "CHAT_JWT_SECRET": TEST_SECRET,
            "CHAT_TRUSTED_PROXIES": "127.0.0.1",
            "CHAT_REGISTER_PER_HOUR": str(REGISTRATIONS_PER_ADDRESS),
            "CHAT_LOG_LEVEL": "info",
        }
    )
    servers = []
    for name in ("one", "two"):
        (tmp_path / name).mkdir()
        servers.append(Server(env, tmp_path / name))
    https_port = free_port()
    site = site_config(https_port, free_port(), [s.port for s in servers], tmp_path)
    try:
        for server in servers:
            server.start()
        with nginx(site, tmp_path, tools["nginx"]):
            base_url = f"https://127.0.0.1:{https_port}"
            await wait_for_proxy(base_url, context)
            async with (
                client_at(base_url, ANN_ADDRESS, context) as there,
                client_at(base_url, DAN_ADDRESS, context) as elsewhere,
            ):
                await converse(there, elsewhere, servers)
    finally:
        for server in servers:
            server.stop()
        await forget_redis_keys(redis_url, prefix)
    # The processes logged each registration under the client's address, never nginx's.
    logged = [
        line.split(' - "')[0].split()[-1]
        for server in servers
        for line in (server.cwd / "server.log").read_text().splitlines()
        if '"POST /auth/register' in line
    ]
    assert sorted(logged) == sorted([f"{ANN_ADDRESS}:0"] * 4 + [f"{DAN_ADDRESS}:0"]), logged


async def wait_for_proxy(base_url: str, context: ssl.SSLContext) -> None:
    deadline = time.monotonic() + DEADLINE_S
    async with httpx.AsyncClient(verify=context) as http:
        while True:
            with suppress(httpx.TransportError):
                if (await http.get(f"{base_url}/ready")).status_code == 200:
                    return
            assert time.monotonic() < deadline, "nginx did not come up"
            await asyncio.sleep(0.05)


async def converse(there: Chat, elsewhere: Chat, servers: list[Server]) -> None:
    # The registration limit counts per forwarded address: Ann's address uses it up, Dan's is
    # untouched (by nginx's address, both would share one count).
    ann, bob, cy = [await there.account(name) for name in ("Ann", "Bob", "Cy")]
    refused = await there.http.post(
        "/auth/register",
        json={"name": "Eve", "email": "eve@example.com", "phoneNumber": "+442000009999", "password": "password123"},
    )
    assert refused.status_code == 429, refused.text
    assert refused.headers["content-type"] == "application/problem+json"
    dan = await elsewhere.account("Dan")

    # Two sockets through nginx land on the two processes (least_conn), so the conversation
    # crosses processes through Redis.
    a: Client = await there.connect(ann)
    b: Client = await elsewhere.connect(bob)
    await wait_until("one socket on each process", lambda: [connections(s) for s in servers] == [1, 1])

    ack = await a.send_message(bob.id, "through the proxy")
    received = await expect(b, "messageReceived")
    assert (received["id"], received["from"], received["message"]) == (ack["id"], ann.id, "through the proxy")
    await b.send(type="ackMessages", ids=[ack["id"]])
    assert (await expect(a, "messageDelivered"))["ids"] == [ack["id"]]
    reply = await b.send_message(ann.id, "and back")
    assert (await expect(a, "messageReceived"))["id"] == reply["id"]
    await a.send(type="typing", to=bob.id, isTyping=True)
    assert (await expect(b, "typing"))["from"] == ann.id
    await a.send(type="markRead", peerId=bob.id, upToSeq=int(reply["seq"]))
    assert (await expect(b, "messagesRead"))["upToSeq"] == reply["seq"]

    history = await there.get(f"/conversations/{bob.id}/messages", ann)
    assert [m["message"] for m in history["items"]] == ["through the proxy", "and back"]
    assert cy.id != dan.id


async def expect(client: Client, frame_type: str) -> dict[str, object]:
    """The next frame of ``frame_type``, skipping others (presence, receipts)."""
    while True:
        frame = await client.recv(within=DEADLINE_S)
        if frame["type"] == frame_type:
            return frame
