"""The SQL fast path: ONE speed trick of the store, in four modules.

What it bypasses, and why. For the few statements that run for every message (storing a batch of
sent messages, acknowledging, the offline drain, the contacts and blocks of a send), SQLAlchemy's
execution machinery — statement compilation and its cache, parameter and result processing, the
ORM — and, on SQLite, aiosqlite's hop to a worker thread and back for every call cost many times
what the database itself takes for these short, indexed statements. So, for those statements only:

* ``hot_sql`` writes them as constant SQL strings, one per dialect (``?`` on SQLite, ``$n`` on
  PostgreSQL), with a row set bound as one parameter (a JSON array on SQLite, one array per column
  on PostgreSQL);
* ``driver`` runs them on the unit of work's own connection, inside its transaction: straight on
  the ``sqlite3`` connection when SQLite runs inline, otherwise through ``exec_driver_sql`` (no
  compilation, the adapter's transaction handling kept), and raises SQLAlchemy's exception classes
  as ``Connection.execute`` would;
* ``inline_sqlite`` gives SQLAlchemy's ``sqlite+aiosqlite`` dialect a connection with aiosqlite's
  interface whose coroutines call ``sqlite3`` on the event loop's own thread (no thread hop), with
  a thread of its own that copies the write-ahead log into the database file after commits;
* ``memo`` remembers, between units of work, facts that can never stop being true (a member row's
  ``has_sent`` is TRUE), so the send path skips reading them again.

Everything else (accounts, history, search, the conversation list) goes through SQLAlchemy Core as
usual, and so does the engine's set-up (``adapters.sqlalchemy.engine``, which installs the inline
connection and begins SQLite transactions on the ``sqlite3`` connection itself).

Where it is used: ``adapters.sqlalchemy.messaging`` (append a batch, messages by client ids,
pending messages, mark delivered), ``adapters.sqlalchemy.repositories`` (add contacts, blocks among
pairs, live recipients), ``adapters.sqlalchemy.uow`` (the driver is forgotten and the memo learns at commit),
``adapters.sqlalchemy.engine`` (the inline connection) and ``entrypoints.container`` (one
:class:`~adapters.sqlalchemy.fastpath.memo.StoreMemo` per database).

Turning it off, comparing. ``CHAT_SQLITE_DRIVER=thread`` (``Settings.sqlite_driver``,
``create_engine(sqlite_driver="thread")``) serves SQLite through aiosqlite as it comes: no inline
connection, no checkpoint thread, the driver-level statements through ``exec_driver_sql`` in
aiosqlite's worker thread. PostgreSQL always runs them through ``exec_driver_sql`` on asyncpg. The
statements themselves have no SQLAlchemy-built twin to switch to: the store's contract tests
(``tests/integration/test_message_store.py``) run them on all three backends (``sqlite`` inline,
``sqlite-thread``, ``postgres``). To compare: ``make bench`` (scenario (a)) with and without
``CHAT_SQLITE_DRIVER=thread``, and ``python -m bench usecase`` for the time and the statements of
one send and one acknowledgement. The figures are in docs/performance.md (items 3, 4, 9, 13, 16,
17, 20) and the reasons in docs/decisions.md (14, 17, 19, 23).

Upgrade checklist (SQLAlchemy, aiosqlite, sqlite3). SQLAlchemy's aiosqlite adapter
(``sqlalchemy.dialects.sqlite.aiosqlite.AsyncAdapt_aiosqlite_connection`` and the cursor adapter of
``sqlalchemy.connectors.asyncio``) reaches into aiosqlite's connection, so the inline connection
must offer the same private names; a SQLAlchemy or aiosqlite upgrade must keep these true:

* ``_conn`` and ``_tx.put_nowait((future, function))`` — SQLAlchemy sets ``isolation_level`` by
  queueing a function of aiosqlite's ``_conn`` on its request queue ``_tx``
  (``InlineSqliteConnection._conn`` / ``_RunNow``). If the adapter starts using another name,
  setting up a connection fails (every SQLite test, first of all
  ``test_sqlite_connections_are_set_up_for_a_server``).
* ``_connection`` — read by the adapter's ``commit``/``rollback`` (skipped when falsy, i.e. closed)
  and returned by the dialect's ``get_driver_connection``. Missing: commits silently skipped or
  errors on every transaction.
* ``stop()`` — the adapter's forced terminate of an invalidated connection (aiosqlite 0.22.1).
* the error text ``"no active connection"`` of a ``ValueError`` — the dialect's
  ``is_disconnect`` and ``_handle_exception_no_connection`` recognise a closed aiosqlite
  connection by it, so a dead inline connection is invalidated and reported unavailable
  (``test_a_sqlite_connection_that_died_is_store_unavailable_then_replaced``).
* the rest of the connection and cursor the adapter uses (``isolation_level``, ``cursor()``
  awaited or entered, ``commit``, ``rollback``, ``close``, ``create_function``; the cursor's
  ``execute``, ``executemany``, ``fetchall``, ``close``, ``description``, ``rowcount``,
  ``lastrowid``, ``arraysize``) — aiosqlite's public interface, mimicked.
* ``DBAPIError.instance(statement, params, orig, dbapi_base_err, connection_invalidated=,
  dialect=)`` — SQLAlchemy's internal factory of its exception classes, used by
  ``inline_sqlite.sqlalchemy_error`` so a statement run on ``sqlite3`` fails as it would through
  SQLAlchemy (``IntegrityError``, ``OperationalError`` …).
* ``PoolProxiedConnection.driver_connection``, ``AsyncConnection.get_raw_connection`` /
  ``sync_connection`` / ``exec_driver_sql``, ``AsyncSession.info``, the ``async_creator`` argument
  and the ``connect``/``begin`` events — public SQLAlchemy API this relies on.
* ``sqlite3``: only public API (``Connection.interrupt`` from another thread stops the checkpoint
  thread; SQLite 3.35 or later for ``RETURNING``, checked by ``create_engine``).

``tests/integration/test_fastpath_upgrade.py`` reads SQLAlchemy's installed adapter and fails,
naming the attribute, when it touches a name of the driver connection or cursor the inline
connection does not have, or when ``DBAPIError.instance`` loses a parameter; the store's contract
tests and ``tests/integration/test_unit_of_work.py`` check the behaviour.
"""
