"""Account life: logins show their client and last use; accounts can be deleted.

Revision ID: 0004_account_life
Revises: 0003
Create Date: 2026-12-06

``logins.client`` (the User-Agent label it signed in with) and ``logins.last_used_at`` (to a
minute) serve ``GET /auth/sessions``; ``users.deleted_at`` marks a deleted account, whose row stays
as a tombstone (its profile erased) so that its peers keep their conversations.

Written out in full (not imported from ``orm.py``) so that it keeps describing this revision when
the ORM moves on.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision: str = "0004_account_life"
down_revision: str | None = "0003"
branch_labels: str | tuple[str, ...] | None = None
depends_on: str | tuple[str, ...] | None = None

TIMESTAMP = sa.DateTime(timezone=True)


def upgrade() -> None:
    op.add_column("logins", sa.Column("client", sa.String(length=100), nullable=True))
    op.add_column("logins", sa.Column("last_used_at", TIMESTAMP, nullable=True))
    op.add_column("users", sa.Column("deleted_at", TIMESTAMP, nullable=True))


def downgrade() -> None:
    # Plain DROP COLUMN (SQLite 3.35+, the oldest this code runs on): a batch copy of ``users``
    # on SQLite would drop the table, and with it, through ON DELETE CASCADE, every row that
    # refers to an account. Deleted accounts stay tombstones (erased profiles, placeholder email
    # and number, no logins).
    op.execute("ALTER TABLE users DROP COLUMN deleted_at")
    op.execute("ALTER TABLE logins DROP COLUMN last_used_at")
    op.execute("ALTER TABLE logins DROP COLUMN client")
