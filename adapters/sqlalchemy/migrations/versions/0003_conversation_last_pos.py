"""The conversation list without a write per member per message.

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-26

Before, each member row kept the position of the last message visible to its user
(``last_message_pos``), so every message rewrote two member rows and their index. Now the
conversation keeps the position of its last message visible to both (``conversations.last_pos``,
written once per conversation per batch), and a member row keeps only the last message its user
sent that was withheld (``last_withheld_pos``: visible to the sender alone). The last message a
user sees is the later of the two; the conversation list sorts by it.

Written out in full (not imported from ``orm.py``) so that it keeps describing this revision when
the ORM moves on.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision: str = "0003"
down_revision: str | None = "0002"
branch_labels: str | tuple[str, ...] | None = None
depends_on: str | tuple[str, ...] | None = None

OLD_INDEX = "ix_conversation_members_user_id_last_message_pos"
# A member row's conversation, as (low_id, high_id).
_USER_FIRST = "conversation_members.user_id < conversation_members.peer_id"
_LOW = f"CASE WHEN {_USER_FIRST} THEN conversation_members.user_id ELSE conversation_members.peer_id END"
_HIGH = f"CASE WHEN {_USER_FIRST} THEN conversation_members.peer_id ELSE conversation_members.user_id END"


def upgrade() -> None:
    op.add_column("conversations", sa.Column("last_pos", sa.BigInteger(), nullable=True))
    op.execute(
        "UPDATE conversations SET last_pos = (SELECT max(m.pos) FROM messages AS m"
        " WHERE m.low_id = conversations.low_id AND m.high_id = conversations.high_id"
        " AND m.withheld = false)"
    )
    op.drop_index(OLD_INDEX, table_name="conversation_members")
    with op.batch_alter_table("conversation_members") as batch:
        batch.alter_column("last_message_pos", new_column_name="last_withheld_pos")
    # The pair's bounds let the lookup use the (low_id, high_id, seq) index rather than scan all
    # that the member ever sent.
    op.execute(
        "UPDATE conversation_members SET last_withheld_pos = (SELECT max(m.pos) FROM messages AS m"  # noqa: S608 - constants
        f" WHERE m.low_id = {_LOW} AND m.high_id = {_HIGH}"
        " AND m.sender_id = conversation_members.user_id AND m.withheld = true)"
    )


def downgrade() -> None:
    # The last message visible to each member: the later of the conversation's and its own withheld one.
    op.execute(
        "UPDATE conversation_members SET last_withheld_pos = (SELECT max(m.pos) FROM messages AS m"  # noqa: S608 - constants
        f" WHERE m.low_id = {_LOW} AND m.high_id = {_HIGH}"
        " AND (m.withheld = false OR m.sender_id = conversation_members.user_id))"
    )
    with op.batch_alter_table("conversation_members") as batch:
        batch.alter_column("last_withheld_pos", new_column_name="last_message_pos")
    op.create_index(OLD_INDEX, "conversation_members", ["user_id", "last_message_pos"])
    with op.batch_alter_table("conversations") as batch:
        batch.drop_column("last_pos")
