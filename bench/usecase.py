"""The messaging use cases alone, no WebSocket: what one send + one acknowledgement cost.

``python -m bench usecase [--database sqlite|postgres] [--count 200]`` wires the project's
container on a fresh database, sends ``count`` messages one after the other (each acknowledged by
the recipient, as a client would), and reports wall and CPU time per pair and the SQL statements
each use case issues. With ``--profile`` it prints the top functions of a ``cProfile`` run.
"""

from __future__ import annotations

import asyncio
import cProfile
import io
import pstats
import resource
import shutil
import tempfile
import time
from collections import Counter
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from sqlalchemy import event, insert

from adapters.sqlalchemy.fastpath.inline_sqlite import InlineSqliteConnection
from adapters.sqlalchemy.orm import logins, push_targets
from application.common import Principal
from application.messaging import Acknowledge, Send
from bench.fixture import drop_database, fresh_database, new_secret, seed_users
from entrypoints.container import Container, start, stop
from entrypoints.settings import Settings

if TYPE_CHECKING:
    import sqlite3

WARM_UP = 20


async def measure(database: str, postgres_url: str, count: int, profile: bool, push: str = "off") -> dict[str, Any]:
    workdir = Path(tempfile.mkdtemp(prefix="p2p-chat-usecase-"))
    db = await fresh_database(database, workdir, postgres_url)
    try:
        secret = new_secret()
        users = await seed_users(db.url, 2, secret, 3600)
        a, b = (Principal(user_id=u.id, sid="bench") for u in users)  # these use cases read the user id only
        # With --push, a gateway nobody listens at, polled once an hour: only the send path's cost shows.
        pushing = {"push_gateway_url": "http://127.0.0.1:9/", "push_secret": secret, "push_poll_s": 3600.0}
        container = Container(
            settings=Settings(database_url=db.url, jwt_secret=secret, **(pushing if push != "off" else {}))
        )
        await start(container)
        if push == "target":
            await _push_target(container, b.user_id)
        send, ack = container.send_message(), container.acknowledge()
        for i in range(WARM_UP):
            await send(a, Send(to=b.user_id, body="warm-up", client_msg_id=f"w{i}"))
        statements: Counter[str] = Counter()

        def tally(sql: str) -> None:
            statements[sql.split(None, 1)[0].upper()] += 1

        def count_statement(*args: Any) -> None:
            tally(args[2])

        # Inline SQLite runs some statements on the sqlite3 connection itself
        # (adapters/sqlalchemy/fastpath/driver.py), which SQLAlchemy does not see: there SQLite's own trace
        # counts every statement (an executemany once per row); elsewhere SQLAlchemy's events.
        raw = await _inline_sqlite(container)
        if raw is not None:
            raw.set_trace_callback(tally)
        else:
            event.listen(container.engine().sync_engine, "before_cursor_execute", count_statement)
        result = await send(a, Send(to=b.user_id, body="counted", client_msg_id="counted"))
        per_send = dict(statements)
        statements.clear()
        await ack(b, Acknowledge(ids=[result.message.id]))
        per_ack = dict(statements)
        if raw is not None:
            raw.set_trace_callback(None)
        else:
            event.remove(container.engine().sync_engine, "before_cursor_execute", count_statement)

        profiler = cProfile.Profile() if profile else None
        wall, before = time.perf_counter(), resource.getrusage(resource.RUSAGE_SELF)
        if profiler is not None:
            profiler.enable()
        for i in range(count):
            result = await send(a, Send(to=b.user_id, body="x" * 64, client_msg_id=f"m{i}"))
            await ack(b, Acknowledge(ids=[result.message.id]))
        if profiler is not None:
            profiler.disable()
        wall, after = time.perf_counter() - wall, resource.getrusage(resource.RUSAGE_SELF)
        user, system = after.ru_utime - before.ru_utime, after.ru_stime - before.ru_stime
        await stop(container)
        report: dict[str, Any] = {
            "database": database,
            "pairs": count,
            "wall_ms_per_pair": wall / count * 1000,
            "cpu_ms_per_pair": (user + system) / count * 1000,
            "user_ms_per_pair": user / count * 1000,
            "system_ms_per_pair": system / count * 1000,
            "statements_per_send": per_send,
            "statements_per_ack": per_ack,
        }
        if profiler is not None:
            out = io.StringIO()
            pstats.Stats(profiler, stream=out).sort_stats("tottime").print_stats(15)
            report["profile"] = out.getvalue()
        return report
    finally:
        await drop_database(db)
        shutil.rmtree(workdir, ignore_errors=True)


async def _push_target(container: Container, user_id: int) -> None:
    """A login and a push target of ``user_id``, so that every send to them writes an outbox job."""
    async with container.engine().begin() as conn:
        now = datetime.now(UTC)
        await conn.execute(insert(logins).values(id="bench-push", user_id=user_id, created_at=now))
        await conn.execute(
            insert(push_targets).values(
                id="bench-push",
                user_id=user_id,
                login_id="bench-push",
                kind="fcm",
                app_id="bench",
                token="bench",  # noqa: S106 - a push token, not a password
                created_at=now,
            )
        )


async def _inline_sqlite(container: Container) -> sqlite3.Connection | None:
    """The pooled sqlite3 connection when the engine runs SQLite inline (one pooled connection)."""
    async with container.engine().connect() as conn:
        driver_connection = (await conn.get_raw_connection()).driver_connection
    return driver_connection.raw if isinstance(driver_connection, InlineSqliteConnection) else None


def run(database: str, postgres_url: str, count: int, profile: bool, push: str = "off") -> None:
    report = asyncio.run(measure(database, postgres_url, count, profile, push))
    print(
        f"{report['database']}: {report['pairs']} send+ack pairs, one at a time: "
        f"{report['wall_ms_per_pair']:.2f} ms wall, {report['cpu_ms_per_pair']:.2f} ms CPU per pair "
        f"({report['user_ms_per_pair']:.2f} user + {report['system_ms_per_pair']:.2f} system)"
    )
    print(f"  statements per send: {report['statements_per_send']}")
    print(f"  statements per ack:  {report['statements_per_ack']}")
    if "profile" in report:
        print(report["profile"])
