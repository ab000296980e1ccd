"""A database error never carries the statement's parameters — message bodies, emails, device
tokens — in its text: errors are logged (with their traceback) and their text is what the log
shows. Checked on both backends through the engine the server uses, and on the inline SQLite
driver's own wrapping."""

from __future__ import annotations

import sqlite3
import traceback

import pytest
from sqlalchemy import text
from sqlalchemy.exc import DBAPIError

from adapters.sqlalchemy.engine import create_engine
from adapters.sqlalchemy.fastpath.inline_sqlite import sqlalchemy_error

SECRET = "a message body nobody may log"


async def test_a_failed_statement_does_not_show_its_parameters(migrated_url: str) -> None:
    engine = create_engine(migrated_url, timeout_s=5)
    try:
        async with engine.connect() as conn:
            with pytest.raises(DBAPIError) as caught:
                await conn.execute(text("INSERT INTO no_such_table (body) VALUES (:body)"), {"body": SECRET})
    finally:
        await engine.dispose()
    shown = str(caught.value) + "".join(traceback.format_exception(caught.value))
    assert "no_such_table" in shown  # the statement is there, to find the bug
    assert SECRET not in shown


def test_the_inline_sqlite_driver_hides_parameters_too() -> None:
    error = sqlalchemy_error(None, "INSERT INTO messages (body) VALUES (?)", (SECRET,), sqlite3.OperationalError("x"))
    assert "INSERT INTO messages" in str(error)
    assert SECRET not in str(error)
