"""Helpers for integration tests: settings, a container with cheap Argon2 parameters, and the real
app served by uvicorn on a loopback port in a background thread (real sockets)."""

from __future__ import annotations

import asyncio
import socket
import threading
import time
from collections.abc import AsyncIterator, Iterator, Mapping
from contextlib import asynccontextmanager, contextmanager
from pathlib import Path

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


def free_port() -> int:
    """A TCP port free on 127.0.0.1 right now (for a server started as a subprocess)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def entries(directory: Path) -> list[str]:
    """What ``directory`` holds (for tests that check nothing was created)."""
    return sorted(path.name for path in directory.iterdir())
