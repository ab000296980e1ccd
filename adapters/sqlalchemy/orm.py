"""Tables, and the imperative mapping of the domain classes onto them. Alembic uses this MetaData."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from sqlalchemy import (
    BigInteger,
    Boolean,
    Column,
    DateTime,
    Dialect,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    String,
    Table,
    Text,
    TypeDecorator,
    UniqueConstraint,
    false,
    text,
)
from sqlalchemy.orm import registry

from domain.auth import Login, RefreshToken
from domain.users import User

metadata = MetaData(
    naming_convention={
        "pk": "pk_%(table_name)s",
        "fk": "fk_%(table_name)s_%(column_0_name)s",
        "uq": "uq_%(table_name)s_%(column_0_name)s",
        "ix": "ix_%(table_name)s_%(column_0_N_name)s",
        "ck": "ck_%(table_name)s_%(constraint_name)s",
    }
)
mapper_registry = registry(metadata=metadata)

# SQLite only auto-increments a column declared exactly INTEGER PRIMARY KEY.
Id = BigInteger().with_variant(Integer(), "sqlite")

# Names are searched and ordered by ``name_key``: compare it by code point everywhere, as SQLite
# does, rather than by the PostgreSQL database's (locale-dependent) default collation.
NameKey = String(400).with_variant(String(400, collation="C"), "postgresql")


class UtcDateTime(TypeDecorator[datetime]):
    """Aware UTC datetimes in and out, on every backend (SQLite stores them naive)."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime given to the database")
        value = value.astimezone(UTC)
        return value.replace(tzinfo=None) if dialect.name == "sqlite" else value

    def process_result_value(self, value: Any, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if not isinstance(value, datetime):
            raise TypeError(f"expected a datetime from the database, got {type(value).__name__}")
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


users = Table(
    "users",
    metadata,
    Column("id", Id, primary_key=True, autoincrement=True),
    Column("name", String(100), nullable=False),
    Column("name_key", NameKey, nullable=False),
    Column("email", String(254), nullable=False),
    Column("email_key", String(254), nullable=False, unique=True),
    Column("phone_number", String(16), nullable=False, unique=True),
    Column("password_hash", String(255), nullable=False),
    Column("created_at", UtcDateTime(), nullable=False),
    Column("last_seen_at", UtcDateTime(), nullable=True),
    # Set when the account was deleted: the row stays as a tombstone with its profile erased.
    Column("deleted_at", UtcDateTime(), nullable=True),
)

logins = Table(
    "logins",
    metadata,
    Column("id", String(64), primary_key=True),
    Column("user_id", Id, ForeignKey("users.id", ondelete="CASCADE"), nullable=False, index=True),
    Column("created_at", UtcDateTime(), nullable=False),
    Column("revoked_at", UtcDateTime(), nullable=True),
    # The client label (``domain.auth.client_label`` of the User-Agent) and the last use, to a minute.
    Column("client", String(100), nullable=True),
    Column("last_used_at", UtcDateTime(), nullable=True),
)

refresh_tokens = Table(
    "refresh_tokens",
    metadata,
    Column("digest", String(64), primary_key=True),
    Column("login_id", String(64), ForeignKey("logins.id", ondelete="CASCADE"), nullable=False, index=True),
    Column("issued_at", UtcDateTime(), nullable=False),
    Column("expires_at", UtcDateTime(), nullable=False),
    Column("spent_at", UtcDateTime(), nullable=True),
)

# One row per direction: (user_id, contact_id) and (contact_id, user_id).
contacts = Table(
    "contacts",
    metadata,
    Column("user_id", Id, ForeignKey("users.id", ondelete="CASCADE"), primary_key=True),
    Column("contact_id", Id, ForeignKey("users.id", ondelete="CASCADE"), primary_key=True),
)

blocks = Table(
    "blocks",
    metadata,
    Column("blocker_id", Id, ForeignKey("users.id", ondelete="CASCADE"), primary_key=True),
    Column("blocked_id", Id, ForeignKey("users.id", ondelete="CASCADE"), primary_key=True),
    Column("created_at", UtcDateTime(), nullable=False),
    Index("ix_blocks_blocked_id", "blocked_id"),
)

# Messages are Core rows (``domain.messages.Message`` is a frozen snapshot, built by hand).
# ``pos`` is the storage order; ``(low_id, high_id, seq)`` orders a conversation and serves history.
messages = Table(
    "messages",
    metadata,
    Column("pos", Id, primary_key=True, autoincrement=True),
    Column("id", String(36), nullable=False, unique=True),
    Column("low_id", Id, ForeignKey("users.id", ondelete="CASCADE"), nullable=False),
    Column("high_id", Id, ForeignKey("users.id", ondelete="CASCADE"), nullable=False),
    Column("seq", Integer(), nullable=False),
    Column("sender_id", Id, ForeignKey("users.id", ondelete="CASCADE"), nullable=False),
    Column("recipient_id", Id, ForeignKey("users.id", ondelete="CASCADE"), nullable=False),
    Column("body", Text(), nullable=False),
    Column("client_msg_id", String(64), nullable=False),
    Column("created_at", UtcDateTime(), nullable=False),
    Column("delivered_at", UtcDateTime(), nullable=True),
    Column("read_at", UtcDateTime(), nullable=True),
    Column("withheld", Boolean(), nullable=False),
    UniqueConstraint("low_id", "high_id", "seq"),
    UniqueConstraint("sender_id", "client_msg_id"),
)

# The pending messages of a recipient in storage order. The predicate is written the way each
# dialect renders ``delivered_at IS NULL AND NOT withheld`` in queries, so both planners use it.
Index(
    "ix_messages_recipient_id_pos",
    messages.c.recipient_id,
    messages.c.pos,
    sqlite_where=text("delivered_at IS NULL AND withheld = 0"),
    postgresql_where=text("delivered_at IS NULL AND NOT withheld"),
)

# One row per conversation: the highest ``seq`` handed out (withheld messages included) and the
# position of the last message both users see (none while every message was withheld).
conversations = Table(
    "conversations",
    metadata,
    Column("low_id", Id, ForeignKey("users.id", ondelete="CASCADE"), primary_key=True),
    Column("high_id", Id, ForeignKey("users.id", ondelete="CASCADE"), primary_key=True),
    Column("last_seq", Integer(), nullable=False),
    Column("last_pos", BigInteger(), nullable=True),
)

# One row per user and conversation: the read pointer, whether the user has sent the peer a
# message that was not withheld, and the position of the last message the user sent that was
# withheld (only its sender sees it). The last message a user sees in a conversation is the later
# of that and the conversation's ``last_pos``. A row is written when it is new, when ``has_sent``
# turns true or when its user's message is withheld: not for every message (migration 0003).
conversation_members = Table(
    "conversation_members",
    metadata,
    Column("user_id", Id, ForeignKey("users.id", ondelete="CASCADE"), primary_key=True),
    Column("peer_id", Id, ForeignKey("users.id", ondelete="CASCADE"), primary_key=True),
    Column("read_seq", Integer(), nullable=False, server_default=text("0")),
    Column("has_sent", Boolean(), nullable=False, server_default=false()),
    Column("last_withheld_pos", BigInteger(), nullable=True),
)


# Where the push gateway can reach a login's devices (migration 0005). A target belongs to its
# login: when the login is revoked, its targets are deleted in the same transaction
# (``adapters.sqlalchemy.push.drop_targets_of_revoked``). One row per (app, token): registering a
# token again moves it to the calling login.
push_targets = Table(
    "push_targets",
    metadata,
    Column("id", String(36), primary_key=True),
    Column("user_id", Id, ForeignKey("users.id", ondelete="CASCADE"), nullable=False, index=True),
    Column("login_id", String(64), ForeignKey("logins.id", ondelete="CASCADE"), nullable=False, index=True),
    Column("kind", String(16), nullable=False),
    Column("app_id", String(200), nullable=False),
    Column("token", Text(), nullable=False),
    Column("label", String(100), nullable=True),
    Column("created_at", UtcDateTime(), nullable=False),
    UniqueConstraint("app_id", "token"),
)

# The push outbox: one job per message that may need a push, written in the message's
# transaction (only for a recipient with a push target). ``lease_until``: no process takes the
# job before then (a claim's lease, or a retry's backoff); ``push_id``: the notification a claim
# put it in (its idempotency key), kept across retries.
push_jobs = Table(
    "push_jobs",
    metadata,
    Column("id", Id, primary_key=True, autoincrement=True),
    Column("user_id", Id, ForeignKey("users.id", ondelete="CASCADE"), nullable=False),
    Column("message_id", String(36), ForeignKey("messages.id", ondelete="CASCADE"), nullable=False),
    Column("created_at", UtcDateTime(), nullable=False),
    Column("due_at", UtcDateTime(), nullable=False),
    Column("lease_until", UtcDateTime(), nullable=False),
    Column("push_id", String(36), nullable=True),
    Column("attempts", Integer(), nullable=False, server_default=text("0")),
    Index("ix_push_jobs_lease_until", "lease_until"),
    Index("ix_push_jobs_user_id", "user_id"),
    Index("ix_push_jobs_push_id", "push_id"),
)


def start_mappers() -> None:
    """Map the domain classes onto the tables, once per process (idempotent)."""
    if mapper_registry.mappers:
        return
    mapper_registry.map_imperatively(User, users)
    mapper_registry.map_imperatively(Login, logins)
    mapper_registry.map_imperatively(RefreshToken, refresh_tokens)
