"""The statements of the send, acknowledgement and drain paths, as plain SQL per dialect
(run by :class:`adapters.sqlalchemy.fastpath.driver.Driver`).

A row set travels as one parameter: on SQLite a JSON array of arrays, read with ``json_each``
(``json_extract(k.value, '$[n]')`` is the n-th column: ``->>`` would need SQLite 3.38, this runs
from 3.35, the first with ``RETURNING``); on PostgreSQL one array per column, read with ``unnest``.
Looking up many composite keys joins that row set to the table's index: one probe per key.
Constant strings only; every value is bound.
"""

from __future__ import annotations

from adapters.sqlalchemy.fastpath.driver import Sql

_COLUMNS = (
    "m.id, m.seq, m.sender_id, m.recipient_id, m.body, m.client_msg_id,"
    " m.created_at, m.delivered_at, m.read_at, m.withheld"
)
"""The message columns in the order ``adapters.sqlalchemy.messaging._message`` reads them."""

# (sender_id, client_msg_id) → the stored messages with those keys.
BY_CLIENT_IDS = Sql(
    sqlite=f"SELECT {_COLUMNS} FROM json_each(?) AS k JOIN messages AS m"  # noqa: S608 - constant SQL
    " ON m.sender_id = json_extract(k.value, '$[0]') AND m.client_msg_id = json_extract(k.value, '$[1]')",
    postgresql=f"SELECT {_COLUMNS} FROM unnest($1::bigint[], $2::varchar[]) AS k(a, b) JOIN messages AS m"  # noqa: S608
    " ON m.sender_id = k.a AND m.client_msg_id = k.b",
)

# user ids → those that are accounts, not deleted ones (the recipients of a send batch).
LIVE_USERS_AMONG = Sql(
    sqlite="SELECT u.id FROM json_each(?) AS k JOIN users AS u ON u.id = json_extract(k.value, '$[0]')"
    " WHERE u.deleted_at IS NULL",
    postgresql="SELECT u.id FROM unnest($1::bigint[]) AS k(a) JOIN users AS u ON u.id = k.a WHERE u.deleted_at IS NULL",
)

# (blocker_id, blocked_id) → those that exist.
BLOCKS_AMONG = Sql(
    sqlite="SELECT b.blocker_id, b.blocked_id FROM json_each(?) AS k JOIN blocks AS b"
    " ON b.blocker_id = json_extract(k.value, '$[0]') AND b.blocked_id = json_extract(k.value, '$[1]')",
    postgresql="SELECT b.blocker_id, b.blocked_id FROM unnest($1::bigint[], $2::bigint[]) AS k(a, b) JOIN blocks AS b"
    " ON b.blocker_id = k.a AND b.blocked_id = k.b",
)

# (low_id, high_id, count) → each conversation's new last_seq, its row locked (PostgreSQL) in
# pair order, so concurrent batches queue instead of deadlocking.
RESERVE_SEQS = Sql(
    sqlite="INSERT INTO conversations (low_id, high_id, last_seq)"
    " SELECT json_extract(k.value, '$[0]'), json_extract(k.value, '$[1]'), json_extract(k.value, '$[2]')"
    " FROM json_each(?) AS k WHERE true"
    " ON CONFLICT (low_id, high_id) DO UPDATE SET last_seq = conversations.last_seq + excluded.last_seq"
    " RETURNING low_id, high_id, last_seq",
    postgresql="INSERT INTO conversations (low_id, high_id, last_seq)"
    " SELECT a, b, n FROM unnest($1::bigint[], $2::bigint[], $3::int[]) AS k(a, b, n) ORDER BY a, b"
    " ON CONFLICT (low_id, high_id) DO UPDATE SET last_seq = conversations.last_seq + excluded.last_seq"
    " RETURNING low_id, high_id, last_seq",
)

# (user_id, peer_id) → has_sent of the member rows that exist.
MEMBERS_HAS_SENT = Sql(
    sqlite="SELECT m.user_id, m.peer_id, m.has_sent FROM json_each(?) AS k JOIN conversation_members AS m"
    " ON m.user_id = json_extract(k.value, '$[0]') AND m.peer_id = json_extract(k.value, '$[1]')",
    postgresql="SELECT m.user_id, m.peer_id, m.has_sent FROM unnest($1::bigint[], $2::bigint[]) AS k(a, b)"
    " JOIN conversation_members AS m ON m.user_id = k.a AND m.peer_id = k.b",
)

# (id, low_id, high_id, seq, sender_id, recipient_id, body, client_msg_id, created_at, withheld)
# → (id, pos), positions given in the rows' order. PostgreSQL only: see INSERT_MESSAGES_AT.
INSERT_MESSAGES = Sql(
    sqlite="",
    postgresql="INSERT INTO messages (id, low_id, high_id, seq, sender_id, recipient_id, body, client_msg_id,"
    " created_at, delivered_at, read_at, withheld)"
    " SELECT i, lo, hi, s, f, t, b, c, w, NULL, NULL, h FROM unnest($1::varchar[], $2::bigint[], $3::bigint[],"
    " $4::int[], $5::bigint[], $6::bigint[], $7::text[], $8::varchar[], $9::timestamptz[], $10::bool[])"
    " WITH ORDINALITY AS k(i, lo, hi, s, f, t, b, c, w, h, n) ORDER BY n RETURNING id, pos",
)

# SQLite: the highest position, and the insert at positions chosen after it. A SQLite write
# transaction holds the database's write lock from its start (BEGIN IMMEDIATE), so no other
# writer can take those positions; the rows are bound one by one (executemany), which costs
# SQLite less than reading ten values per row out of JSON.
LAST_POSITION = Sql(sqlite="SELECT coalesce(max(pos), 0) FROM messages", postgresql="")
INSERT_MESSAGES_AT = Sql(
    sqlite="INSERT INTO messages (pos, id, low_id, high_id, seq, sender_id, recipient_id, body, client_msg_id,"
    " created_at, delivered_at, read_at, withheld) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, NULL, NULL, ?)",
    postgresql="",
)

# (user_id, peer_id, has_sent, last_withheld_pos or null): create the member rows that are new,
# update those whose has_sent turned true or whose user's message was withheld (``Driver.many``).
UPSERT_MEMBERS = Sql(
    sqlite="INSERT INTO conversation_members (user_id, peer_id, has_sent, last_withheld_pos) VALUES (?, ?, ?, ?)"
    " ON CONFLICT (user_id, peer_id) DO UPDATE SET has_sent = excluded.has_sent,"
    " last_withheld_pos = coalesce(excluded.last_withheld_pos, conversation_members.last_withheld_pos)",
    postgresql="INSERT INTO conversation_members (user_id, peer_id, has_sent, last_withheld_pos)"
    " SELECT u, p, s, q FROM unnest($1::bigint[], $2::bigint[], $3::bool[], $4::bigint[]) AS k(u, p, s, q)"
    " ORDER BY u, p ON CONFLICT (user_id, peer_id) DO UPDATE SET has_sent = excluded.has_sent,"
    " last_withheld_pos = coalesce(excluded.last_withheld_pos, conversation_members.last_withheld_pos)",
)

# (last_pos, low_id, high_id): the last message both users see, per conversation of the batch
# (``Driver.many``; the rows were locked by RESERVE_SEQS in this transaction).
SET_LAST_POS = Sql(
    sqlite="UPDATE conversations SET last_pos = ? WHERE low_id = ? AND high_id = ?",
    postgresql="UPDATE conversations AS c SET last_pos = k.p"
    " FROM unnest($1::bigint[], $2::bigint[], $3::bigint[]) AS k(p, a, b) WHERE c.low_id = k.a AND c.high_id = k.b",
)

# now, (message id, recipient_id) → the newly delivered (id, sender_id, recipient_id). Locked in
# storage order (as mark_read locks them, so the two never deadlock) and re-checked on each locked
# row: of two concurrent acknowledgements of one message only one returns it.
MARK_DELIVERED = Sql(
    sqlite="UPDATE messages SET delivered_at = ? WHERE pos IN (SELECT m.pos FROM json_each(?) AS k"
    " JOIN messages AS m ON m.id = json_extract(k.value, '$[0]') AND m.recipient_id = json_extract(k.value, '$[1]')"
    " WHERE m.delivered_at IS NULL AND m.withheld = 0) RETURNING id, sender_id, recipient_id",
    postgresql="UPDATE messages SET delivered_at = $1 WHERE pos IN (SELECT m.pos FROM"
    " unnest($2::varchar[], $3::bigint[]) AS k(a, b) JOIN messages AS m ON m.id = k.a AND m.recipient_id = k.b"
    " WHERE m.delivered_at IS NULL AND NOT m.withheld ORDER BY m.pos FOR UPDATE OF m)"
    " RETURNING id, sender_id, recipient_id",
)

# (user_id, contact_id): both directions given by the caller; existing rows are kept
# (``Driver.many``).
ADD_CONTACTS = Sql(
    sqlite="INSERT INTO contacts (user_id, contact_id) VALUES (?, ?) ON CONFLICT (user_id, contact_id) DO NOTHING",
    postgresql="INSERT INTO contacts (user_id, contact_id) SELECT a, b FROM unnest($1::bigint[], $2::bigint[])"
    " AS k(a, b) ORDER BY a, b ON CONFLICT (user_id, contact_id) DO NOTHING",
)

# recipient_id, ids to leave out, limit → the oldest pending messages (the partial index's
# predicate is written as it is declared, so both planners use it).
PENDING_FOR = Sql(
    sqlite=f"SELECT {_COLUMNS} FROM messages AS m WHERE m.recipient_id = ?"  # noqa: S608 - constant SQL
    " AND m.delivered_at IS NULL AND m.withheld = 0"
    " AND m.id NOT IN (SELECT json_extract(k.value, '$[0]') FROM json_each(?) AS k)"
    " ORDER BY m.pos LIMIT ?",
    postgresql=f"SELECT {_COLUMNS} FROM messages AS m WHERE m.recipient_id = $1"  # noqa: S608
    " AND m.delivered_at IS NULL AND NOT m.withheld AND m.id <> ALL($2::varchar[])"
    " ORDER BY m.pos LIMIT $3",
)

# now, due, now, (message id, recipient_id) → a push outbox job for each message whose recipient has a
# push target (one probe of ix_push_targets_user_id per message; none inserted when nobody has one).
QUEUE_PUSHES = Sql(
    sqlite="INSERT INTO push_jobs (user_id, message_id, created_at, due_at, lease_until, attempts)"
    " SELECT json_extract(k.value, '$[1]'), json_extract(k.value, '$[0]'), ?, ?, ?, 0 FROM json_each(?) AS k"
    " WHERE EXISTS (SELECT 1 FROM push_targets AS t WHERE t.user_id = json_extract(k.value, '$[1]'))",
    postgresql="INSERT INTO push_jobs (user_id, message_id, created_at, due_at, lease_until, attempts)"
    " SELECT k.u, k.m, $1, $2, $3, 0 FROM unnest($4::varchar[], $5::bigint[]) AS k(m, u)"
    " WHERE EXISTS (SELECT 1 FROM push_targets AS t WHERE t.user_id = k.u)",
)
