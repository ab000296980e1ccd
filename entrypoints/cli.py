"""The ``p2p-chat`` command: ``serve`` and ``migrate``.

Whatever stops a start is one line on stderr, ``p2p-chat: …``, naming the variable and the fix,
and exit status 2 — never a traceback: an invalid setting (:mod:`entrypoints.settings`), a
database that cannot be reached or is not migrated, a Redis server that does not answer, an
address that cannot be listened on. ``serve`` checks all of them before it creates anything
(the development JWT secret is written only once they passed; a SQLite file that does not exist
is not created).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import socket
import sys
import tempfile
from collections.abc import Coroutine
from importlib.metadata import PackageNotFoundError, version
from typing import Any, TypeVar

from redis.exceptions import RedisError

from adapters.sqlalchemy.migrate import (
    DatabaseUnavailableError,
    SchemaNotCurrentError,
    current_revision,
    ensure_current,
    head_revision,
    upgrade,
)
from entrypoints.container import connect_redis
from entrypoints.logs import configure_logging
from entrypoints.server import uvicorn_options
from entrypoints.settings import Settings, SettingsError, hide_password, read_settings, with_dev_secret

T = TypeVar("T")
EXIT_REFUSED = 2
DATABASE_FIX = "check that the server runs and the URL's host, port, user, password and database (or file path)"


class StartRefusedError(Exception):
    """The start is refused; the message is the one line to print."""


def package_version() -> str:
    try:
        return version("p2p-chat")
    except PackageNotFoundError:  # run from a source tree that was never installed
        return "unknown (not installed: run make install)"


def _database(url: str, work: Coroutine[Any, Any, T]) -> T:
    """Run a coroutine on the database at ``url``; the failures an operator fixes become
    :class:`StartRefusedError`."""
    try:
        return asyncio.run(work)
    except SchemaNotCurrentError as exc:
        raise StartRefusedError(
            f"CHAT_DATABASE_URL: the {exc} (database {hide_password(url)}; `make run` migrates, then serves)"
        ) from None
    except DatabaseUnavailableError as exc:
        raise StartRefusedError(f"CHAT_DATABASE_URL: {exc}: {DATABASE_FIX}") from None


def migrate(settings: Settings) -> int:
    url = settings.database_url
    before = _database(url, current_revision(url))
    head = head_revision()
    if before == head:
        print(f"database {hide_password(url)} is up to date (revision {head})")
        return 0
    print(f"migrating {hide_password(url)} from {before or 'empty'} to {head} …", flush=True)
    _database(url, upgrade(url))
    print(f"done: database is at revision {head}")
    return 0


def _check_redis(url: str) -> None:
    async def ping() -> None:
        client = connect_redis(url, timeout_s=5.0)  # a start-up check may wait longer than a request
        try:
            await client.ping()
        finally:
            await client.aclose()

    try:
        asyncio.run(ping())
    except (RedisError, OSError) as exc:
        reason = " ".join(str(exc).split()) or type(exc).__name__
        raise StartRefusedError(
            f"CHAT_REDIS_URL: Redis at {hide_password(url)} does not answer "
            f"({reason}): check that it is running and the URL's host, port, password and database"
        ) from None


def _check_listen(host: str, port: int) -> None:
    """Bind the address once, as uvicorn will (with ``SO_REUSEADDR``), so an unknown host or a
    port in use is reported before the server starts."""
    try:
        family, kind, proto, _, address = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)[0]
        with socket.socket(family, kind, proto) as sock:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            sock.bind(address)
    except OSError as exc:
        raise StartRefusedError(
            f"cannot listen on CHAT_HOST={host!r} CHAT_PORT={port} ({exc.strerror or exc}): "
            "set CHAT_HOST to an address of this machine and CHAT_PORT to a free port"
        ) from None


def check_serving(settings: Settings) -> Settings:
    """Everything ``serve`` needs, checked in the order an operator fixes it; then the settings
    with their JWT secret (in dev generated now, once nothing refused the start)."""
    _database(settings.database_url, ensure_current(settings.database_url, settings.db_timeout_s))
    if settings.redis_url is not None:
        _check_redis(settings.redis_url)
    _check_listen(settings.host, settings.port)
    return with_dev_secret(settings)


def serve(settings: Settings) -> int:
    import uvicorn

    settings = check_serving(settings)
    if settings.workers > 1:
        # Every worker writes its metrics here; /metrics on any worker sums them (entrypoints/metrics.py).
        os.environ["PROMETHEUS_MULTIPROC_DIR"] = tempfile.mkdtemp(prefix="p2p-chat-metrics-")
    workers = f"{settings.workers} worker{'s' if settings.workers > 1 else ''}"
    presence = "redis" if settings.redis_url else "in-memory"
    print(
        f"p2p-chat serving on http://{settings.host}:{settings.port} "
        f"({workers}, database {hide_password(settings.database_url)}, presence {presence})",
        flush=True,
    )
    uvicorn.run(
        "entrypoints.main:create",
        factory=True,
        host=settings.host,
        port=settings.port,
        workers=settings.workers,
        **uvicorn_options(settings),
    )
    return 0


def _warn(line: str) -> None:
    print(f"p2p-chat: warning: {line}", file=sys.stderr, flush=True)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="p2p-chat", description="One-to-one chat backend.")
    parser.add_argument("--version", action="version", version=f"p2p-chat {package_version()}")
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("serve", help="serve HTTP and WebSocket on CHAT_HOST:CHAT_PORT")
    sub.add_parser("migrate", help="bring the database schema up to date")
    args = parser.parse_args(argv)
    try:
        settings = read_settings(warn=_warn)
        configure_logging(settings.log_level, settings.log_format)
        return migrate(settings) if args.command == "migrate" else serve(settings)
    except (SettingsError, StartRefusedError) as exc:
        print(f"p2p-chat: {exc}", file=sys.stderr)
        return EXIT_REFUSED


if __name__ == "__main__":
    sys.exit(main())
