"""The benchmark's data: a fresh, migrated database per run, users and logins written straight
into it (one precomputed Argon2 hash for all: no thousands of registrations), access tokens minted
with the server's secret by the project's own token adapter, and pending messages for the drain.

Rows are built from the domain objects (``Registration``/``User``, ``Login``) and written with
Core inserts through the project's tables, so they are exactly what the server would store.
"""

from __future__ import annotations

import secrets
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

from sqlalchemy import func, insert, select, text
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import create_async_engine
from sqlalchemy.pool import NullPool

from adapters.auth.tokens import PyJwtTokenService
from adapters.sqlalchemy.engine import create_engine
from adapters.sqlalchemy.migrate import upgrade
from adapters.sqlalchemy.orm import conversation_members, conversations, logins, messages, users
from adapters.system.ids import Uuid7Ids, uuid7
from domain.auth import Login
from domain.messages import Pair
from domain.users import Registration, User

if TYPE_CHECKING:
    from pathlib import Path

    from sqlalchemy import Table

BENCH_PASSWORD = "bench password 1"  # noqa: S105 - every seeded user has it; the hash is computed once
CHUNK = 1000  # rows per INSERT


@dataclass(frozen=True, slots=True)
class BenchUser:
    id: int
    token: str


@dataclass(frozen=True, slots=True)
class Database:
    """A database made for one run; :func:`drop_database` removes it (PostgreSQL) — SQLite files
    live in the run's temporary directory."""

    url: str
    kind: str
    admin_url: str | None = None
    name: str | None = None


def new_secret() -> str:
    return secrets.token_urlsafe(48)


def _password_hash() -> str:
    from pwdlib import PasswordHash

    return PasswordHash.recommended().hash(BENCH_PASSWORD)


async def _admin(admin_url: str, *statements: str) -> None:
    engine = create_async_engine(admin_url, isolation_level="AUTOCOMMIT", poolclass=NullPool)
    try:
        async with engine.connect() as connection:
            for statement in statements:
                await connection.execute(text(statement))
    finally:
        await engine.dispose()


async def fresh_database(kind: str, workdir: Path, postgres_url: str) -> Database:
    """An empty database migrated to the head revision: a SQLite file under ``workdir``, or a new
    PostgreSQL database on the server of ``postgres_url``."""
    if kind == "sqlite":
        database = Database(url=f"sqlite+aiosqlite:///{workdir}/chat.db", kind=kind)
    elif kind == "postgres":
        name = f"bench_{uuid.uuid4().hex[:16]}"
        await _admin(postgres_url, f'CREATE DATABASE "{name}"')
        url = make_url(postgres_url).set(database=name).render_as_string(hide_password=False)
        database = Database(url=url, kind=kind, admin_url=postgres_url, name=name)
    else:
        raise ValueError(f"unknown database kind {kind!r}")
    await upgrade(database.url)
    return database


async def drop_database(database: Database) -> None:
    if database.kind != "postgres" or database.admin_url is None or database.name is None:
        return
    await _admin(
        database.admin_url,
        "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "  # noqa: S608 - a name we generated
        f"WHERE datname = '{database.name}' AND pid <> pg_backend_pid()",
        f'DROP DATABASE IF EXISTS "{database.name}"',
    )


def _row(entity: object, table: Table) -> dict[str, Any]:
    """The column values of a mapped domain object (the store assigns ``id``/``pos``)."""
    values = {c.name: getattr(entity, c.name) for c in table.c if hasattr(entity, c.name)}
    return {name: value for name, value in values.items() if not (table.c[name].primary_key and value is None)}


async def seed_users(url: str, count: int, secret: str, token_ttl_s: int) -> list[BenchUser]:
    """``count`` users, one login each, and an access token per login (valid ``token_ttl_s``)."""
    password_hash = _password_hash()
    now = datetime.now(UTC)
    people = [
        User.register(
            Registration.parse(
                name=f"Bench User {i}",
                email=f"bench{i}@bench.example",
                phone_number=f"+1555{i:07d}",
                password=BENCH_PASSWORD,
            ),
            password_hash=password_hash,
            now=now,
        )
        for i in range(1, count + 1)
    ]
    engine = create_engine(url)
    try:
        async with engine.begin() as connection:
            for start in range(0, count, CHUNK):
                await connection.execute(insert(users), [_row(u, users) for u in people[start : start + CHUNK]])
            found = await connection.execute(select(users.c.id, users.c.email_key).order_by(users.c.id))
            ids = {row.email_key: row.id for row in found}
            sessions = [Login(id=str(uuid7()), user_id=ids[u.email_key], created_at=now) for u in people]
            for start in range(0, count, CHUNK):
                await connection.execute(insert(logins), [_row(s, logins) for s in sessions[start : start + CHUNK]])
    finally:
        await engine.dispose()
    tokens = PyJwtTokenService(secret=secret, access_ttl_s=token_ttl_s, ids=Uuid7Ids())
    return [
        BenchUser(id=s.user_id, token=tokens.issue_access(user_id=s.user_id, sid=s.id, now=now).token) for s in sessions
    ]


async def seed_pending(url: str, recipient: int, senders: list[int], count: int, body_bytes: int) -> None:
    """``count`` messages to ``recipient``, round-robin from ``senders``, none delivered: exactly
    what an offline user finds when reconnecting. Conversations and members are filled in too."""
    start = datetime.now(UTC) - timedelta(milliseconds=count + 1000)
    seqs = dict.fromkeys(senders, 0)
    rows: list[dict[str, Any]] = []
    for n in range(count):
        sender = senders[n % len(senders)]
        seqs[sender] += 1
        pair = Pair.of(sender, recipient)
        rows.append(
            {
                "id": str(uuid7()),
                "low_id": pair.low,
                "high_id": pair.high,
                "seq": seqs[sender],
                "sender_id": sender,
                "recipient_id": recipient,
                "body": f"pending {n} ".ljust(body_bytes, "x"),
                "client_msg_id": f"seed-{n}",
                "created_at": start + timedelta(milliseconds=n),
                "delivered_at": None,
                "read_at": None,
                "withheld": False,
            }
        )
    engine = create_engine(url)
    try:
        async with engine.begin() as connection:
            for offset in range(0, len(rows), CHUNK):
                await connection.execute(insert(messages), rows[offset : offset + CHUNK])
            for sender, last_seq in seqs.items():
                pair = Pair.of(sender, recipient)
                last_pos = (
                    select(func.max(messages.c.pos))
                    .where(messages.c.low_id == pair.low, messages.c.high_id == pair.high)
                    .scalar_subquery()
                )
                await connection.execute(
                    insert(conversations).values(
                        low_id=pair.low, high_id=pair.high, last_seq=last_seq, last_pos=last_pos
                    )
                )
                await connection.execute(
                    insert(conversation_members),
                    [
                        {"user_id": sender, "peer_id": recipient, "read_seq": 0, "has_sent": True},
                        {"user_id": recipient, "peer_id": sender, "read_seq": 0, "has_sent": False},
                    ],
                )
    finally:
        await engine.dispose()


async def count_pending(url: str, recipient: int) -> int:
    """Messages to ``recipient`` not yet delivered (after a drain this should be 0)."""
    engine = create_engine(url)
    try:
        async with engine.connect() as connection:
            stmt = select(func.count()).where(messages.c.recipient_id == recipient, messages.c.delivered_at.is_(None))
            return int((await connection.execute(stmt)).scalar_one())
    finally:
        await engine.dispose()
