"""change log: index on (user_id, seq)

Every turn reads its user's latest change sequence to know whether this replica's
cached vectors are current; with this index that is one short backward index scan
instead of a walk over all of the user's change rows.

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-03
"""

from collections.abc import Sequence

from alembic import op

revision: str = "0007"
down_revision: str | None = "0006"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("change_log", schema=None) as batch_op:
        batch_op.create_index("ix_change_log_user_seq", ["user_id", "seq"], unique=False)


def downgrade() -> None:
    with op.batch_alter_table("change_log", schema=None) as batch_op:
        batch_op.drop_index("ix_change_log_user_seq")
