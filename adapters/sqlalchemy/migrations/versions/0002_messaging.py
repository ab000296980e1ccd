"""Messaging: messages, conversations and each member's state of a conversation.

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-26

Written out in full (not imported from ``orm.py``) so that it keeps describing this revision when
the ORM moves on. Constraint and index names are the ones the naming convention of
``orm.metadata`` produces.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision: str = "0002"
down_revision: str | None = "0001"
branch_labels: str | tuple[str, ...] | None = None
depends_on: str | tuple[str, ...] | None = None

# SQLite only auto-increments a column declared exactly INTEGER PRIMARY KEY.
ID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")
# Aware timestamps (TIMESTAMP WITH TIME ZONE on PostgreSQL; SQLite stores naive UTC).
TIMESTAMP = sa.DateTime(timezone=True)


def upgrade() -> None:
    op.create_table(
        "messages",
        sa.Column("pos", ID, autoincrement=True, nullable=False),
        sa.Column("id", sa.String(length=36), nullable=False),
        sa.Column("low_id", ID, nullable=False),
        sa.Column("high_id", ID, nullable=False),
        sa.Column("seq", sa.Integer(), nullable=False),
        sa.Column("sender_id", ID, nullable=False),
        sa.Column("recipient_id", ID, nullable=False),
        sa.Column("body", sa.Text(), nullable=False),
        sa.Column("client_msg_id", sa.String(length=64), nullable=False),
        sa.Column("created_at", TIMESTAMP, nullable=False),
        sa.Column("delivered_at", TIMESTAMP, nullable=True),
        sa.Column("read_at", TIMESTAMP, nullable=True),
        sa.Column("withheld", sa.Boolean(), nullable=False),
        sa.ForeignKeyConstraint(["low_id"], ["users.id"], name=op.f("fk_messages_low_id"), ondelete="CASCADE"),
        sa.ForeignKeyConstraint(["high_id"], ["users.id"], name=op.f("fk_messages_high_id"), ondelete="CASCADE"),
        sa.ForeignKeyConstraint(["sender_id"], ["users.id"], name=op.f("fk_messages_sender_id"), ondelete="CASCADE"),
        sa.ForeignKeyConstraint(
            ["recipient_id"], ["users.id"], name=op.f("fk_messages_recipient_id"), ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("pos", name=op.f("pk_messages")),
        sa.UniqueConstraint("id", name=op.f("uq_messages_id")),
        # (low_id, high_id, seq): also the index of a conversation's history.
        sa.UniqueConstraint("low_id", "high_id", "seq", name=op.f("uq_messages_low_id")),
        # (sender_id, client_msg_id): a message is stored once per client id.
        sa.UniqueConstraint("sender_id", "client_msg_id", name=op.f("uq_messages_sender_id")),
    )
    # The pending messages of a recipient in storage order; the predicate as each dialect renders
    # ``delivered_at IS NULL AND NOT withheld`` in queries, so that the planner uses the index.
    op.create_index(
        op.f("ix_messages_recipient_id_pos"),
        "messages",
        ["recipient_id", "pos"],
        sqlite_where=sa.text("delivered_at IS NULL AND withheld = 0"),
        postgresql_where=sa.text("delivered_at IS NULL AND NOT withheld"),
    )
    op.create_table(
        "conversations",
        sa.Column("low_id", ID, nullable=False),
        sa.Column("high_id", ID, nullable=False),
        sa.Column("last_seq", sa.Integer(), nullable=False),
        sa.ForeignKeyConstraint(["low_id"], ["users.id"], name=op.f("fk_conversations_low_id"), ondelete="CASCADE"),
        sa.ForeignKeyConstraint(["high_id"], ["users.id"], name=op.f("fk_conversations_high_id"), ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("low_id", "high_id", name=op.f("pk_conversations")),
    )
    op.create_table(
        "conversation_members",
        sa.Column("user_id", ID, nullable=False),
        sa.Column("peer_id", ID, nullable=False),
        sa.Column("read_seq", sa.Integer(), server_default=sa.text("0"), nullable=False),
        sa.Column("has_sent", sa.Boolean(), server_default=sa.false(), nullable=False),
        sa.Column("last_message_pos", sa.BigInteger(), nullable=True),
        sa.ForeignKeyConstraint(
            ["user_id"], ["users.id"], name=op.f("fk_conversation_members_user_id"), ondelete="CASCADE"
        ),
        sa.ForeignKeyConstraint(
            ["peer_id"], ["users.id"], name=op.f("fk_conversation_members_peer_id"), ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("user_id", "peer_id", name=op.f("pk_conversation_members")),
    )
    op.create_index(
        op.f("ix_conversation_members_user_id_last_message_pos"),
        "conversation_members",
        ["user_id", "last_message_pos"],
    )


def downgrade() -> None:
    op.drop_index(op.f("ix_conversation_members_user_id_last_message_pos"), table_name="conversation_members")
    op.drop_table("conversation_members")
    op.drop_table("conversations")
    op.drop_index(op.f("ix_messages_recipient_id_pos"), table_name="messages")
    op.drop_table("messages")
