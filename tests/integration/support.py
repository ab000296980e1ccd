"""Helpers for integration tests: settings, a container with cheap Argon2 parameters, and the real
app served by uvicorn on a loopback port in a background thread (real sockets)."""

from __future__ import annotations

import asyncio
import os
import socket
import subprocess
import sys
import threading
import time
from collections.abc import AsyncIterator, Iterator, Mapping
from contextlib import asynccontextmanager, contextmanager, suppress
from dataclasses import dataclass, field
from pathlib import Path
from typing import NoReturn

import httpx
import pytest
import redis.asyncio as aioredis
import uvicorn
from dependency_injector import providers
from pwdlib.hashers.argon2 import Argon2Hasher

from adapters.auth.passwords import Argon2PasswordHasher
from entrypoints.app import create_app
from entrypoints.container import Container
from entrypoints.server import uvicorn_options
from entrypoints.settings import Settings, load_settings

TEST_SECRET = "integration-test-secret-0123456789abcdef"
# The cheapest Argon2id parameters: the real adapter and algorithm, a fraction of the CPU.
CHEAP_ARGON2 = Argon2Hasher(time_cost=1, memory_cost=8, parallelism=1)


def make_settings(database_url: str, env: Mapping[str, str] | None = None, secret_file: Path | None = None) -> Settings:
    values = {"CHAT_DATABASE_URL": database_url, "CHAT_JWT_SECRET": TEST_SECRET, **(env or {})}
    if secret_file is not None:
        return load_settings(values, secret_file=secret_file)
    return load_settings(values)


def make_container(settings: Settings, *, cheap_hashing: bool = True) -> Container:
    container = Container(settings=settings)
    if cheap_hashing:
        container.password_hasher.override(
            providers.Singleton(
                Argon2PasswordHasher,
                concurrency=settings.hash_concurrency,
                hasher=CHEAP_ARGON2,
            )
        )
    return container


@contextmanager
def serve(container: Container, *, startup_timeout_s: float = 15.0) -> Iterator[str]:
    """Serve the real app on 127.0.0.1 (a free port) until the block ends; yields the base URL.
    For tests whose clients run on an event loop use :func:`serve_async`: this one blocks the
    caller's thread while the server stops, so such clients could not answer its close frames."""
    server, thread, url = _start(container, startup_timeout_s)
    try:
        yield url
    finally:
        server.should_exit = True
        thread.join(timeout=15)


@asynccontextmanager
async def serve_async(container: Container, *, startup_timeout_s: float = 15.0) -> AsyncIterator[str]:
    """:func:`serve` for async tests: while the server stops (it closes open sockets 1001 and
    waits for the clients' close frames), the test's event loop keeps running its clients."""
    server, thread, url = _start(container, startup_timeout_s)
    try:
        yield url
    finally:
        server.should_exit = True
        await asyncio.to_thread(thread.join, 15)


def _start(container: Container, startup_timeout_s: float) -> tuple[uvicorn.Server, threading.Thread, str]:
    app = create_app(container)
    options = {**uvicorn_options(container.settings()), "log_level": "warning"}
    config = uvicorn.Config(app, host="127.0.0.1", port=0, **options)
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, name="uvicorn-test", daemon=True)
    thread.start()
    deadline = time.monotonic() + startup_timeout_s
    while not server.started:
        if not thread.is_alive() or time.monotonic() > deadline:
            raise RuntimeError("the test server did not start")
        time.sleep(0.01)
    port = server.servers[0].sockets[0].getsockname()[1]
    return server, thread, f"http://127.0.0.1:{port}"


def clean_env() -> dict[str, str]:
    """This process's environment without any ``CHAT_*`` variable: a server subprocess then has
    only the settings its test gives it."""
    return {k: v for k, v in os.environ.items() if not k.startswith("CHAT_")}


def unavailable(reason: str) -> NoReturn:
    """A test's tool or service is missing: skip with ``reason`` — or fail with ``CI=true``, where
    everything a test needs must be there (``.ci/run`` installs what it can)."""
    if os.environ.get("CI") == "true":
        pytest.fail(reason, pytrace=False)
    pytest.skip(f"{reason}; with CI=true this fails")


def free_port() -> int:
    """A TCP port free on 127.0.0.1 right now (for a server started as a subprocess)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def entries(directory: Path) -> list[str]:
    """What ``directory`` holds (for tests that check nothing was created)."""
    return sorted(path.name for path in directory.iterdir())


SERVER_DEADLINE_S = 20  # to start, and to exit after a signal


def wait_until_up(
    process: subprocess.Popen[bytes], base_url: str, path: str = "/ready", within: float = SERVER_DEADLINE_S
) -> None:
    """Poll ``base_url + path`` until it answers 200; RuntimeError if ``process`` exits first or
    ``within`` seconds pass."""
    deadline = time.monotonic() + within
    while True:
        with suppress(httpx.TransportError):
            if httpx.get(f"{base_url}{path}").status_code == 200:
                return
        if process.poll() is not None or time.monotonic() > deadline:
            raise RuntimeError(f"the server on {base_url} did not come up")
        time.sleep(0.05)


@dataclass
class Server:
    """One ``p2p-chat serve`` process, a real subprocess with ``env`` as its whole environment, logging
    to ``cwd/server.log``: :meth:`start` (again after a kill) on the same port, :meth:`stop` kills it."""

    env: dict[str, str]
    cwd: Path
    port: int = field(default_factory=free_port)
    process: subprocess.Popen[bytes] | None = None

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> None:
        with (self.cwd / "server.log").open("ab") as log:  # what it logged, for a failing test
            self.process = subprocess.Popen(
                [sys.executable, "-m", "entrypoints.cli", "serve"],
                env={**self.env, "CHAT_PORT": str(self.port)},
                cwd=self.cwd,
                stdout=log,
                stderr=log,
            )
        wait_until_up(self.process, self.base_url)

    def signal(self, signum: int) -> None:
        assert self.process is not None
        self.process.send_signal(signum)

    def wait(self) -> int:
        assert self.process is not None
        return self.process.wait(timeout=SERVER_DEADLINE_S)

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.kill()
            self.process.wait(timeout=SERVER_DEADLINE_S)


async def forget_redis_keys(redis_url: str, prefix: str) -> None:
    """Delete the keys a test's server processes left under ``prefix`` in the shared Redis."""
    client = aioredis.Redis.from_url(redis_url)
    try:
        keys = [key async for key in client.scan_iter(match=f"{prefix}:*")]
        if keys:
            await client.delete(*keys)
    finally:
        await client.aclose()
