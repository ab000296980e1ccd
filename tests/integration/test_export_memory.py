"""The export of an account with 100,000 messages is streamed in bounded memory (SQLite and
PostgreSQL): the server's peak allocation while it writes the whole document stays under
:data:`BOUND`, a fraction of the document's size, and the document parses and holds every message.

The app runs in this process (a uvicorn thread), so ``tracemalloc`` sees every Python allocation
the export makes — the store's rows, the domain objects, the encoded pages — and those of the test's
client, which writes the body to a file as it arrives. The figures of a run are printed (``-s``).
"""

from __future__ import annotations

import json
import tracemalloc
from collections.abc import AsyncIterator, Callable
from pathlib import Path

import pytest
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from adapters.sqlalchemy.uow import SqlAlchemyUnitOfWork
from tests.integration.chat import Chat, running_chat

MESSAGES = 100_000
BOUND = 8 * 2**20  # bytes of peak allocation while exporting (measured: 2.3 MiB for a 21.7 MiB document)
FAST = {"CHAT_RATE_MSG_PER_S": "10000", "CHAT_RATE_MSG_BURST": "10000"}

_COLUMNS = "id, low_id, high_id, seq, sender_id, recipient_id, body, client_msg_id, created_at, delivered_at, withheld"
# Seqs 3.. (the conversation's first two messages were sent over the socket), alternating senders.
_LOW, _HIGH = "CAST(:low AS BIGINT)", "CAST(:high AS BIGINT)"
_ROW = (
    f"'bulk-' || i, {_LOW}, {_HIGH}, i, CASE i % 2 WHEN 0 THEN {_LOW} ELSE {_HIGH} END,"
    f" CASE i % 2 WHEN 0 THEN {_HIGH} ELSE {_LOW} END, 'bulk message number ' || i || ' with some text in it',"
    " 'bulk-' || i, {at}, {at}, {no}"
)
SQLITE_ROW = _ROW.format(at="'2026-12-01 00:00:00.000000'", no="0")
POSTGRES_ROW = _ROW.format(at="TIMESTAMPTZ '2026-12-01 00:00:00+00'", no="false")
BULK_INSERT = {
    "sqlite": "WITH RECURSIVE n(i) AS (SELECT 3 UNION ALL SELECT i + 1 FROM n WHERE i < :last)"  # noqa: S608 - constants
    f" INSERT INTO messages ({_COLUMNS}) SELECT {SQLITE_ROW} FROM n",
    "postgres": f"INSERT INTO messages ({_COLUMNS}) SELECT {POSTGRES_ROW} FROM generate_series(3, :last) AS i",  # noqa: S608
}


@pytest.fixture
async def chat(migrated_url: str, uow_factory: Callable[[], SqlAlchemyUnitOfWork]) -> AsyncIterator[Chat]:
    async with running_chat(migrated_url, uow_factory, FAST) as value:
        yield value
        await value.close_sockets()


async def test_the_export_of_100000_messages_streams_in_bounded_memory(
    chat: Chat, backend: str, session_factory: async_sessionmaker[AsyncSession], tmp_path: Path
) -> None:
    ann, bob = await chat.account("Ann"), await chat.account("Bob")
    a, b = await chat.connect(ann), await chat.connect(bob)
    await a.send_message(bob.id, "first")
    await b.send_message(ann.id, "second")
    await a.close()
    await b.close()
    last = MESSAGES
    async with session_factory() as session:
        await session.execute(text(BULK_INSERT[backend]), {"low": ann.id, "high": bob.id, "last": last})
        await session.execute(
            text("UPDATE conversations SET last_seq = :last WHERE low_id = :low AND high_id = :high"),
            {"low": ann.id, "high": bob.id, "last": last},
        )
        await session.commit()

    target = tmp_path / "export.json"
    tracemalloc.start()
    try:
        tracemalloc.reset_peak()
        before, _ = tracemalloc.get_traced_memory()
        async with chat.http.stream("GET", "/users/me/export", headers=ann.bearer) as response:
            assert response.status_code == 200
            with target.open("wb") as file:
                async for chunk in response.aiter_raw():
                    file.write(chunk)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    growth = peak - before
    size = target.stat().st_size
    print(
        f"\nexport of {MESSAGES} messages on {backend}: {size / 2**20:.1f} MiB written,"
        f" peak growth {growth / 2**20:.2f} MiB"
    )

    assert growth < BOUND
    assert size > 2 * BOUND  # the document never was in memory whole
    document = json.loads(target.read_bytes())
    (conversation,) = document["conversations"]
    messages = conversation["messages"]
    assert len(messages) == MESSAGES
    assert [m["seq"] for m in messages] == list(range(1, MESSAGES + 1))
    assert messages[-1]["message"] == f"bulk message number {MESSAGES} with some text in it"
