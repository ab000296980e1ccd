"""The upgrade checklist of the SQL fast path (adapters/sqlalchemy/fastpath/__init__.py), checked
against the installed SQLAlchemy: its aiosqlite adapter reaches into aiosqlite's connection and
cursor, so the inline SQLite connection must offer every name the adapter reads. Read from the
adapter's own source, so an upgrade that starts using another name fails here, naming it, instead
of somewhere inside a transaction."""

from __future__ import annotations

import ast
import contextlib
import inspect
import sqlite3
import textwrap
from typing import Any, cast

from sqlalchemy.dialects.sqlite import aiosqlite as sqlalchemy_aiosqlite
from sqlalchemy.exc import DBAPIError

from adapters.sqlalchemy.fastpath.inline_sqlite import InlineSqliteConnection, _InlineCursor

# Called by the shared asyncio cursor adapter for other dialects only: SQLite has one result set
# per statement (no ``nextset``) and SQLAlchemy's SQLite dialects do not use ``setinputsizes``.
NOT_CALLED_FOR_SQLITE = {"nextset", "setinputsizes"}

# The private names of aiosqlite's connection that the checklist lists (and the inline connection
# mimics): if the adapter reads others, or no longer these, the checklist is out of date.
PRIVATE_NAMES_IN_THE_CHECKLIST = {"_conn", "_connection", "_tx", "_tx.put_nowait"}


def _chain(node: ast.AST) -> list[str]:
    """``self._connection._tx.put_nowait`` → ``["self", "_connection", "_tx", "put_nowait"]``."""
    names: list[str] = []
    while isinstance(node, ast.Attribute):
        names.append(node.attr)
        node = node.value
    if isinstance(node, ast.Name):
        names.append(node.id)
    return names[::-1]


def _read_after(classes: list[type], attribute: str) -> set[str]:
    """The dotted names the methods of ``classes`` read after ``self.<attribute>``."""
    found: set[str] = set()
    for cls in classes:
        for node in ast.walk(ast.parse(textwrap.dedent(inspect.getsource(cls)))):
            chain = _chain(node)
            if len(chain) > 2 and chain[:2] == ["self", attribute]:
                found.add(".".join(chain[2:]))
    return found


def _sqlalchemy_classes(cls: type) -> list[type]:
    return [c for c in cls.__mro__ if c.__module__.startswith("sqlalchemy.")]


def _missing(obj: Any, paths: set[str]) -> set[str]:
    gone = set()
    for path in paths:
        target = obj
        for name in path.split("."):
            if not hasattr(target, name):
                gone.add(path)
                break
            target = getattr(target, name)
    return gone


ADAPTER_CLASSES = _sqlalchemy_classes(sqlalchemy_aiosqlite.AsyncAdapt_aiosqlite_connection) + _sqlalchemy_classes(
    sqlalchemy_aiosqlite.AsyncAdapt_aiosqlite_cursor
)


def test_the_inline_connection_has_every_name_sqlalchemys_adapter_reads() -> None:
    read = _read_after(ADAPTER_CLASSES, "_connection")
    assert {"commit", "rollback", "close"} <= read, "the scan of SQLAlchemy's adapter found nothing"
    with contextlib.closing(sqlite3.connect(":memory:")) as raw:
        connection = InlineSqliteConnection(raw)
        missing = _missing(connection, read)
    assert missing == set(), (
        f"SQLAlchemy's aiosqlite adapter reads {sorted(missing)} of the driver connection, which "
        "InlineSqliteConnection does not have (see the checklist in adapters/sqlalchemy/fastpath/__init__.py)"
    )
    private = {path for path in read if path.startswith("_")}
    assert private == PRIVATE_NAMES_IN_THE_CHECKLIST, (
        f"SQLAlchemy's aiosqlite adapter now reads {sorted(private)} of aiosqlite's connection: update "
        "the upgrade checklist in adapters/sqlalchemy/fastpath/__init__.py and InlineSqliteConnection"
    )


def test_the_inline_cursor_has_every_name_sqlalchemys_adapter_reads() -> None:
    read = _read_after(ADAPTER_CLASSES, "_cursor")
    assert {"execute", "fetchall", "description"} <= read, "the scan of SQLAlchemy's adapter found nothing"
    with contextlib.closing(sqlite3.connect(":memory:")) as raw:
        missing = _missing(_InlineCursor(raw.cursor()), read)
    assert missing - NOT_CALLED_FOR_SQLITE == set(), (
        f"SQLAlchemy's asyncio cursor adapter reads {sorted(missing)} of the driver cursor, which "
        "the inline cursor does not have (see adapters/sqlalchemy/fastpath/__init__.py)"
    )


def test_a_closed_inline_connection_is_a_disconnect_to_the_dialect() -> None:
    """aiosqlite's message for a closed connection is what the dialect recognises: the inline
    connection raises the same, so a dead connection is invalidated and replaced."""
    raw = sqlite3.connect(":memory:")
    connection = InlineSqliteConnection(raw)
    connection.stop()
    try:
        connection.raw  # noqa: B018 - the property raises
    except ValueError as exc:
        error = sqlite3.OperationalError(str(exc))
    else:
        raise AssertionError("a closed inline connection still answered")
    dialect = sqlalchemy_aiosqlite.dialect()
    dialect.dbapi = dialect.import_dbapi()
    assert dialect.is_disconnect(cast("Any", error), None, None)


def test_dbapi_error_instance_still_takes_what_sqlalchemy_error_passes() -> None:
    parameters = inspect.signature(DBAPIError.instance).parameters
    wanted = ("statement", "params", "orig", "dbapi_base_err", "connection_invalidated", "dialect")
    assert [name for name in wanted if name not in parameters] == [], (
        "DBAPIError.instance changed: adapters/sqlalchemy/fastpath/inline_sqlite.py's sqlalchemy_error must follow"
    )
