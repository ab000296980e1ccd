"""The ``p2p-chat`` command: ``serve`` and ``migrate``."""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
import tempfile

from adapters.sqlalchemy.engine import ensure_sqlite_directory
from adapters.sqlalchemy.migrate import (
    SchemaNotCurrentError,
    current_revision,
    ensure_current,
    head_revision,
    upgrade,
)
from entrypoints.logs import configure_logging
from entrypoints.server import uvicorn_options
from entrypoints.settings import Settings, SettingsError, load_settings


def _redacted(url: str) -> str:
    from sqlalchemy.engine import make_url

    return make_url(url).render_as_string(hide_password=True)


def migrate(settings: Settings) -> int:
    url = settings.database_url
    ensure_sqlite_directory(url)
    before = asyncio.run(current_revision(url))
    head = head_revision()
    if before == head:
        print(f"database {_redacted(url)} is up to date (revision {head})")
        return 0
    print(f"migrating {_redacted(url)} from {before or 'empty'} to {head} …", flush=True)
    asyncio.run(upgrade(url))
    print(f"done: database is at revision {head}")
    return 0


def serve(settings: Settings) -> int:
    import uvicorn

    try:
        asyncio.run(ensure_current(settings.database_url))
    except SchemaNotCurrentError as exc:
        print(f"p2p-chat: {exc}", file=sys.stderr)
        return 2
    if settings.workers > 1:
        # Every worker writes its metrics here; /metrics on any worker sums them (entrypoints/metrics.py).
        os.environ["PROMETHEUS_MULTIPROC_DIR"] = tempfile.mkdtemp(prefix="p2p-chat-metrics-")
    workers = f"{settings.workers} worker{'s' if settings.workers > 1 else ''}"
    presence = "redis" if settings.redis_url else "in-memory"
    print(
        f"p2p-chat serving on http://{settings.host}:{settings.port} "
        f"({workers}, database {_redacted(settings.database_url)}, presence {presence})",
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


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="p2p-chat", description="One-to-one chat backend.")
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("serve", help="serve HTTP and WebSocket on CHAT_HOST:CHAT_PORT")
    sub.add_parser("migrate", help="bring the database schema up to date")
    args = parser.parse_args(argv)
    try:
        settings = load_settings()
    except SettingsError as exc:
        print(f"p2p-chat: {exc}", file=sys.stderr)
        return 2
    configure_logging(settings.log_level)
    if args.command == "migrate":
        return migrate(settings)
    return serve(settings)


if __name__ == "__main__":
    sys.exit(main())
