"""turn records: the profile items used on each user's recent turns

Revision ID: 0008
Revises: 0007
Create Date: 2026-12-03
"""

from collections.abc import Sequence

import sqlalchemy as sa
import sqlmodel
from alembic import op

import store.models

revision: str = "0008"
down_revision: str | None = "0007"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "turn_record",
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("tenant_id", sa.Uuid(), nullable=False),
        sa.Column("user_id", sa.Uuid(), nullable=False),
        sa.Column("at", store.models.UTCDateTime(timezone=True), nullable=False),
        sa.Column("endpoint", sqlmodel.sql.sqltypes.AutoString(length=16), nullable=False),
        sa.Column("items", sa.JSON(), nullable=False),
        sa.Column("message", sqlmodel.sql.sqltypes.AutoString(length=1000), nullable=True),
        sa.ForeignKeyConstraint(["tenant_id"], ["tenant.id"], ondelete="CASCADE"),
        sa.ForeignKeyConstraint(["user_id"], ["app_user.id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("id"),
    )
    with op.batch_alter_table("turn_record", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_turn_record_tenant_id"), ["tenant_id"], unique=False)
        batch_op.create_index("ix_turn_record_user_at", ["user_id", "at"], unique=False)


def downgrade() -> None:
    with op.batch_alter_table("turn_record", schema=None) as batch_op:
        batch_op.drop_index("ix_turn_record_user_at")
        batch_op.drop_index(batch_op.f("ix_turn_record_tenant_id"))
    op.drop_table("turn_record")
