"""Push notifications: the logins' push targets and the push outbox.

Revision ID: 0005
Revises: 0004_account_life
Create Date: 2026-12-06

``push_targets``: where the operator's push gateway reaches a login's devices (deleted with their
login's revocation). ``push_jobs``: one job per message that may need a push, written in the
message's own transaction; the dispatcher claims jobs with a lease, sends them and deletes them.

Written out in full (not imported from ``orm.py``) so that it keeps describing this revision when
the ORM moves on.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision: str = "0005"
down_revision: str | None = "0004_account_life"
branch_labels: str | tuple[str, ...] | None = None
depends_on: str | tuple[str, ...] | None = None

_ID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade() -> None:
    op.create_table(
        "push_targets",
        sa.Column("id", sa.String(36), nullable=False),
        sa.Column("user_id", _ID, nullable=False),
        sa.Column("login_id", sa.String(64), nullable=False),
        sa.Column("kind", sa.String(16), nullable=False),
        sa.Column("app_id", sa.String(200), nullable=False),
        sa.Column("token", sa.Text(), nullable=False),
        sa.Column("label", sa.String(100), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(["user_id"], ["users.id"], name=op.f("fk_push_targets_user_id"), ondelete="CASCADE"),
        sa.ForeignKeyConstraint(["login_id"], ["logins.id"], name=op.f("fk_push_targets_login_id"), ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_push_targets")),
        sa.UniqueConstraint("app_id", "token", name=op.f("uq_push_targets_app_id")),
    )
    op.create_index("ix_push_targets_user_id", "push_targets", ["user_id"])
    op.create_index("ix_push_targets_login_id", "push_targets", ["login_id"])
    op.create_table(
        "push_jobs",
        sa.Column("id", _ID, autoincrement=True, nullable=False),
        sa.Column("user_id", _ID, nullable=False),
        sa.Column("message_id", sa.String(36), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("due_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("lease_until", sa.DateTime(timezone=True), nullable=False),
        sa.Column("push_id", sa.String(36), nullable=True),
        sa.Column("attempts", sa.Integer(), server_default=sa.text("0"), nullable=False),
        sa.ForeignKeyConstraint(["user_id"], ["users.id"], name=op.f("fk_push_jobs_user_id"), ondelete="CASCADE"),
        sa.ForeignKeyConstraint(
            ["message_id"], ["messages.id"], name=op.f("fk_push_jobs_message_id"), ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_push_jobs")),
    )
    op.create_index("ix_push_jobs_lease_until", "push_jobs", ["lease_until"])
    op.create_index("ix_push_jobs_user_id", "push_jobs", ["user_id"])
    op.create_index("ix_push_jobs_push_id", "push_jobs", ["push_id"])


def downgrade() -> None:
    op.drop_table("push_jobs")
    op.drop_table("push_targets")
