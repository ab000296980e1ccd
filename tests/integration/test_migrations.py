"""The packaged Alembic migrations, on SQLite and PostgreSQL: stairway, revision checks, no drift."""

from __future__ import annotations

import asyncio
import socket
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import event, insert, inspect, select
from sqlalchemy.engine import Connection
from sqlalchemy.engine.interfaces import ReflectedColumn
from sqlalchemy.pool import Pool

from adapters.sqlalchemy import orm
from adapters.sqlalchemy.engine import create_engine
from adapters.sqlalchemy.migrate import (
    DatabaseUnavailableError,
    SchemaNotCurrentError,
    alembic_config,
    current_revision,
    downgrade,
    ensure_current,
    head_revision,
    upgrade,
)
from tests.integration.support import entries

ACCOUNT_TABLES = {"users", "logins", "refresh_tokens", "contacts", "blocks"}
MESSAGING_TABLES = {"messages", "conversations", "conversation_members"}
PUSH_TABLES = {"push_targets", "push_jobs"}
TABLES = ACCOUNT_TABLES | MESSAGING_TABLES | PUSH_TABLES


async def table_names(url: str) -> set[str]:
    engine = create_engine(url)
    try:
        async with engine.connect() as conn:
            return set(await conn.run_sync(lambda sync: inspect(sync).get_table_names()))
    finally:
        await engine.dispose()


async def schema_drift(url: str) -> list[Any]:
    """What autogenerate would change to make the database match ``orm.metadata``."""

    def compare(conn: Connection) -> list[Any]:
        context = MigrationContext.configure(conn, opts={"compare_type": True})
        return list(compare_metadata(context, orm.metadata))

    engine = create_engine(url)
    try:
        async with engine.connect() as conn:
            return await conn.run_sync(compare)
    finally:
        await engine.dispose()


def test_history_is_one_linear_chain_starting_at_0001() -> None:
    assert head_revision() == "0005"
    script = ScriptDirectory.from_config(alembic_config())
    assert [(r.revision, r.down_revision) for r in script.walk_revisions()] == [
        ("0005", "0004_account_life"),
        ("0004_account_life", "0003"),
        ("0003", "0002"),
        ("0002", "0001"),
        ("0001", None),
    ]


async def test_stairway_upgrade_downgrade_upgrade(database_url: str) -> None:
    assert await table_names(database_url) == set()

    await upgrade(database_url)
    assert await table_names(database_url) == TABLES | {"alembic_version"}
    assert await current_revision(database_url) == head_revision()

    await downgrade(database_url, "base")
    assert await table_names(database_url) - {"alembic_version"} == set()
    assert await current_revision(database_url) is None

    await upgrade(database_url)
    assert await table_names(database_url) == TABLES | {"alembic_version"}
    assert await current_revision(database_url) == head_revision()


async def test_messaging_revision_upgrades_and_downgrades_over_existing_accounts(database_url: str) -> None:
    await upgrade(database_url, "0001")
    assert await table_names(database_url) == ACCOUNT_TABLES | {"alembic_version"}
    engine = create_engine(database_url)
    try:
        async with engine.begin() as conn:
            await conn.execute(
                insert(orm.users).values(
                    name="Ann",
                    name_key="ann",
                    email="ann@example.com",
                    email_key="ann@example.com",
                    phone_number="+14155550001",
                    password_hash="x",
                    created_at=datetime(2026, 11, 24, tzinfo=UTC),
                )
            )
    finally:
        await engine.dispose()

    await upgrade(database_url, "0002")
    assert await table_names(database_url) == ACCOUNT_TABLES | MESSAGING_TABLES | {"alembic_version"}
    assert await current_revision(database_url) == "0002"

    await downgrade(database_url, "0001")
    assert await table_names(database_url) == ACCOUNT_TABLES | {"alembic_version"}
    assert await current_revision(database_url) == "0001"
    engine = create_engine(database_url)
    try:
        async with engine.connect() as conn:
            assert (await conn.execute(select(orm.users.c.name))).scalars().all() == ["Ann"]
    finally:
        await engine.dispose()


async def test_revision_0003_moves_the_last_visible_message_and_back(database_url: str) -> None:
    """At 0002 each member row held the last message its user sees; 0003 keeps the conversation's
    last shared message and each member's last withheld one, and the downgrade rebuilds the first."""
    await upgrade(database_url, "0002")
    engine = create_engine(database_url)

    async def run(*statements: str) -> list[Any]:
        async with engine.begin() as conn:
            result = None
            for statement in statements:
                result = await conn.exec_driver_sql(statement)
            return list(result.all()) if result is not None and result.returns_rows else []

    try:
        for n, name in ((1, "ann"), (2, "bob"), (3, "cid")):
            await run(
                "INSERT INTO users (id, name, name_key, email, email_key, phone_number, password_hash, created_at)"  # noqa: S608 - constants
                f" VALUES ({n}, '{name}', '{name}', '{name}@example.com', '{name}@example.com', '+1415555000{n}',"
                " 'x', '2026-11-24 00:00:00')"
            )
        # Ann-Bob: shared 1, 2, then Ann's withheld 3. Ann-Cid: only Cid's withheld 4.
        for pos, low, high, seq, sender, recipient, withheld in (
            (1, 1, 2, 1, 1, 2, False),
            (2, 1, 2, 2, 2, 1, False),
            (3, 1, 2, 3, 1, 2, True),
            (4, 1, 3, 1, 3, 1, True),
        ):
            await run(
                "INSERT INTO messages (pos, id, low_id, high_id, seq, sender_id, recipient_id, body, client_msg_id,"  # noqa: S608 - constants
                f" created_at, withheld) VALUES ({pos}, 'm{pos}', {low}, {high}, {seq}, {sender}, {recipient},"
                f" 'b', 'c{pos}', '2026-11-24 00:00:00', {str(withheld).lower()})"
            )
        await run(
            "INSERT INTO conversations (low_id, high_id, last_seq) VALUES (1, 2, 3), (1, 3, 1)",
            "INSERT INTO conversation_members (user_id, peer_id, has_sent, last_message_pos)"
            " VALUES (1, 2, true, 3), (2, 1, true, 2), (1, 3, false, NULL), (3, 1, false, 4)",
        )

        await upgrade(database_url)
        assert await run("SELECT low_id, high_id, last_pos FROM conversations ORDER BY 1, 2") == [
            (1, 2, 2),
            (1, 3, None),
        ]
        assert await run("SELECT user_id, peer_id, last_withheld_pos FROM conversation_members ORDER BY 1, 2") == [
            (1, 2, 3),
            (1, 3, None),
            (2, 1, None),
            (3, 1, 4),
        ]

        await downgrade(database_url, "0002")
        assert await run("SELECT user_id, peer_id, last_message_pos FROM conversation_members ORDER BY 1, 2") == [
            (1, 2, 3),
            (1, 3, None),
            (2, 1, 2),
            (3, 1, 4),
        ]
    finally:
        await engine.dispose()


async def test_the_pending_index_is_partial(migrated_url: str) -> None:
    def pending_index(conn: Connection) -> dict[str, Any]:
        found = [ix for ix in inspect(conn).get_indexes("messages") if ix["name"] == "ix_messages_recipient_id_pos"]
        return dict(found[0].get("dialect_options", {}))

    engine = create_engine(migrated_url)
    try:
        async with engine.connect() as conn:
            options = await conn.run_sync(pending_index)
    finally:
        await engine.dispose()
    where = " ".join(str(v) for k, v in options.items() if k.endswith("_where")).lower()
    assert "delivered_at is null" in where
    assert "withheld" in where


async def test_upgrade_at_head_is_a_no_op(migrated_url: str) -> None:
    await upgrade(migrated_url)
    assert await current_revision(migrated_url) == head_revision()


async def test_a_database_never_migrated_is_not_current(database_url: str) -> None:
    assert await current_revision(database_url) is None
    with pytest.raises(SchemaNotCurrentError, match=r"code needs 0005: run `p2p-chat migrate`") as caught:
        await ensure_current(database_url)
    assert caught.value.current is None
    assert caught.value.head == head_revision()


async def test_reading_the_revision_of_a_missing_sqlite_file_creates_nothing(tmp_path: Path) -> None:
    url = f"sqlite+aiosqlite:///{tmp_path}/data/chat.db"
    assert await current_revision(url) is None
    with pytest.raises(SchemaNotCurrentError):
        await ensure_current(url)
    assert entries(tmp_path) == []
    await upgrade(url)  # the migration creates the directory and the file
    await ensure_current(url)


async def test_a_database_that_cannot_be_reached_is_one_line_without_the_password() -> None:
    with socket.socket() as sock:  # a port nothing listens on
        sock.bind(("127.0.0.1", 0))
        unused_port = sock.getsockname()[1]
    url = f"postgresql+asyncpg://chat:hunter2@127.0.0.1:{unused_port}/chat"
    for reach in (current_revision, ensure_current, upgrade):
        with pytest.raises(DatabaseUnavailableError) as caught:
            await reach(url)
        message = str(caught.value)
        assert message.startswith(
            f"cannot open the database postgresql+asyncpg://chat:***@127.0.0.1:{unused_port}/chat: "
        )
        assert "\n" not in message
        assert "hunter2" not in message


async def test_a_database_behind_head_is_not_current(database_url: str) -> None:
    await upgrade(database_url)
    await downgrade(database_url, "base")
    with pytest.raises(SchemaNotCurrentError, match="run `p2p-chat migrate`"):
        await ensure_current(database_url)


async def test_a_migrated_database_is_current(migrated_url: str) -> None:
    await ensure_current(migrated_url)


async def test_migrated_schema_matches_the_orm_metadata(migrated_url: str) -> None:
    assert await schema_drift(migrated_url) == []


async def test_an_unmigrated_schema_differs_from_the_orm_metadata(database_url: str) -> None:
    """Guards the drift check itself: it does see missing tables."""
    drift = await schema_drift(database_url)
    assert {diff[1].name for diff in drift if diff[0] == "add_table"} == TABLES


async def test_constraint_and_index_names_follow_the_naming_convention(migrated_url: str) -> None:
    def names(conn: Connection) -> dict[str, set[str | None]]:
        inspector = inspect(conn)
        found: dict[str, set[str | None]] = {}
        for table in TABLES:
            found[table] = {
                inspector.get_pk_constraint(table)["name"],
                *(fk["name"] for fk in inspector.get_foreign_keys(table)),
                *(uq["name"] for uq in inspector.get_unique_constraints(table)),
                *(ix["name"] for ix in inspector.get_indexes(table)),
            }
        return found

    engine = create_engine(migrated_url)
    try:
        async with engine.connect() as conn:
            found = await conn.run_sync(names)
    finally:
        await engine.dispose()

    assert found == {
        "users": {"pk_users", "uq_users_email_key", "uq_users_phone_number"},
        "logins": {"pk_logins", "fk_logins_user_id", "ix_logins_user_id"},
        "refresh_tokens": {"pk_refresh_tokens", "fk_refresh_tokens_login_id", "ix_refresh_tokens_login_id"},
        "contacts": {"pk_contacts", "fk_contacts_user_id", "fk_contacts_contact_id"},
        "blocks": {"pk_blocks", "fk_blocks_blocker_id", "fk_blocks_blocked_id", "ix_blocks_blocked_id"},
        "messages": {
            "pk_messages",
            "fk_messages_low_id",
            "fk_messages_high_id",
            "fk_messages_sender_id",
            "fk_messages_recipient_id",
            "uq_messages_id",
            "uq_messages_low_id",
            "uq_messages_sender_id",
            "ix_messages_recipient_id_pos",
        },
        "conversations": {"pk_conversations", "fk_conversations_low_id", "fk_conversations_high_id"},
        "conversation_members": {
            "pk_conversation_members",
            "fk_conversation_members_user_id",
            "fk_conversation_members_peer_id",
        },
        "push_targets": {
            "pk_push_targets",
            "fk_push_targets_user_id",
            "fk_push_targets_login_id",
            "uq_push_targets_app_id",
            "ix_push_targets_user_id",
            "ix_push_targets_login_id",
        },
        "push_jobs": {
            "pk_push_jobs",
            "fk_push_jobs_user_id",
            "fk_push_jobs_message_id",
            "ix_push_jobs_lease_until",
            "ix_push_jobs_user_id",
            "ix_push_jobs_push_id",
        },
    }


@pytest.mark.postgres
@pytest.mark.parametrize("backend", ["postgres"], indirect=True)
async def test_postgres_column_types(migrated_url: str) -> None:
    """BIGINT ids, aware timestamps, and names compared by code point whatever the server's locale."""

    def columns(conn: Connection) -> dict[tuple[str, str], ReflectedColumn]:
        inspector = inspect(conn)
        return {(t, c["name"]): c for t in TABLES for c in inspector.get_columns(t)}

    engine = create_engine(migrated_url)
    try:
        async with engine.connect() as conn:
            cols = await conn.run_sync(columns)
    finally:
        await engine.dispose()

    for key in [
        ("users", "id"),
        ("logins", "user_id"),
        ("contacts", "contact_id"),
        ("blocks", "blocked_id"),
        ("messages", "pos"),
        ("messages", "sender_id"),
        ("conversations", "high_id"),
        ("conversations", "last_pos"),
        ("conversation_members", "last_withheld_pos"),
    ]:
        assert type(cols[key]["type"]).__name__ == "BIGINT", key
    for key in [
        ("users", "created_at"),
        ("refresh_tokens", "expires_at"),
        ("blocks", "created_at"),
        ("messages", "created_at"),
        ("messages", "delivered_at"),
        ("messages", "read_at"),
    ]:
        assert getattr(cols[key]["type"], "timezone", False) is True, key
    assert getattr(cols["users", "name_key"]["type"], "collation", None) == "C"


async def test_sqlite_migration_runs_inside_the_engines_begin_immediate(tmp_path: Any) -> None:
    """The SQLite engine issues its own ``BEGIN IMMEDIATE``; the DDL must run in that transaction
    (not in autocommit mode, not in a nested ``BEGIN``) and be committed at the end."""
    url = f"sqlite+aiosqlite:///{tmp_path}/chat.db"
    statements: list[str] = []

    def record(statement: str) -> None:
        statements.append(" ".join(statement.split()).upper())

    def trace(dbapi_connection: Any, _record: Any) -> None:  # what SQLite itself runs
        dbapi_connection.driver_connection.raw.set_trace_callback(record)

    event.listen(Pool, "connect", trace)
    try:
        await upgrade(url)
    finally:
        event.remove(Pool, "connect", trace)

    begins = [i for i, s in enumerate(statements) if s.startswith("BEGIN")]
    creates = [i for i, s in enumerate(statements) if s.startswith("CREATE TABLE")]
    assert [statements[i] for i in begins] == ["BEGIN IMMEDIATE"]
    assert creates
    assert begins[0] < min(creates)
    # Committed: a fresh engine sees the schema at head.
    assert await current_revision(url) == head_revision()
    assert await table_names(url) >= TABLES


async def test_env_py_connects_by_itself_without_a_shared_connection(database_url: str) -> None:
    """Plain Alembic usage (only ``sqlalchemy.url`` set): env.py builds its own async engine."""
    config = alembic_config(url=database_url)
    await asyncio.to_thread(command.upgrade, config, "head")
    assert await current_revision(database_url) == head_revision()
    await asyncio.to_thread(command.downgrade, config, "base")
    assert await current_revision(database_url) is None


async def test_revision_0004_adds_nullable_columns_and_its_downgrade_keeps_every_row(database_url: str) -> None:
    """0004 adds the logins' client and last use and the users' deletion time; the downgrade drops
    the columns in place (a copy of ``users`` on SQLite would cascade into every referring row)."""
    await upgrade(database_url, "0003")
    engine = create_engine(database_url)

    async def run(statement: str) -> list[Any]:
        async with engine.begin() as conn:
            result = await conn.exec_driver_sql(statement)
            return list(result.all()) if result.returns_rows else []

    try:
        for n, name in ((1, "ann"), (2, "bob")):
            await run(
                "INSERT INTO users (id, name, name_key, email, email_key, phone_number, password_hash, created_at)"  # noqa: S608 - constants
                f" VALUES ({n}, '{name}', '{name}', '{name}@example.com', '{name}@example.com', '+1415555000{n}',"
                " 'x', '2026-11-24 00:00:00')"
            )
        await run("INSERT INTO logins (id, user_id, created_at) VALUES ('s1', 1, '2026-11-24 00:00:00')")
        await run("INSERT INTO contacts (user_id, contact_id) VALUES (1, 2), (2, 1)")

        await upgrade(database_url)
        assert await run("SELECT id, client, last_used_at FROM logins") == [("s1", None, None)]
        assert await run("SELECT id, deleted_at FROM users ORDER BY id") == [(1, None), (2, None)]

        await downgrade(database_url, "0003")
        assert await run("SELECT id FROM logins") == [("s1",)]
        assert await run("SELECT user_id, contact_id FROM contacts ORDER BY 1") == [(1, 2), (2, 1)]
        assert await run("SELECT count(*) FROM users") == [(2,)]
    finally:
        await engine.dispose()
