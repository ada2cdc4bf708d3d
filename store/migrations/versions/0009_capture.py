"""capture: conversation jobs, suggestions, and how often an instruction was restated

Revision ID: 0009
Revises: 0008
Create Date: 2026-12-03
"""

from collections.abc import Sequence

import sqlalchemy as sa
import sqlmodel
from alembic import op

import store.models

revision: str = "0009"
down_revision: str | None = "0008"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_UTC = store.models.UTCDateTime(timezone=True)


def _text(length: int) -> sqlmodel.sql.sqltypes.AutoString:
    return sqlmodel.sql.sqltypes.AutoString(length=length)


def upgrade() -> None:
    with op.batch_alter_table("instruction", schema=None) as batch_op:
        batch_op.add_column(
            sa.Column("seen_count", sa.Integer(), server_default="0", nullable=False)
        )
        batch_op.add_column(sa.Column("last_seen_at", _UTC, nullable=True))
        batch_op.add_column(sa.Column("capture_id", sa.Uuid(), nullable=True))
        batch_op.add_column(sa.Column("capture_quote", _text(300), nullable=True))

    op.create_table(
        "capture_job",
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("tenant_id", sa.Uuid(), nullable=False),
        sa.Column("user_id", sa.Uuid(), nullable=False),
        sa.Column("conversation_id", _text(200), nullable=True),
        sa.Column("user_messages", sa.JSON(), nullable=False),
        sa.Column("created_by_key", sa.Uuid(), nullable=True),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("next_attempt_at", _UTC, nullable=False),
        sa.Column("last_error", _text(500), nullable=True),
        sa.Column("suggestion_ids", sa.JSON(), nullable=False),
        sa.Column("lease_owner", _text(64), nullable=True),
        sa.Column("lease_expires_at", _UTC, nullable=True),
        sa.Column("created_at", _UTC, nullable=False),
        sa.Column("updated_at", _UTC, nullable=False),
        sa.ForeignKeyConstraint(["tenant_id"], ["tenant.id"], ondelete="CASCADE"),
        sa.ForeignKeyConstraint(["user_id"], ["app_user.id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("id"),
    )
    with op.batch_alter_table("capture_job", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_capture_job_tenant_id"), ["tenant_id"], unique=False)
        batch_op.create_index(batch_op.f("ix_capture_job_user_id"), ["user_id"], unique=False)
        batch_op.create_index("ix_capture_job_queue", ["status", "next_attempt_at"], unique=False)
        batch_op.create_index("ix_capture_job_lease", ["status", "lease_expires_at"], unique=False)

    op.create_table(
        "suggestion",
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("tenant_id", sa.Uuid(), nullable=False),
        sa.Column("user_id", sa.Uuid(), nullable=False),
        sa.Column("text", _text(1000), nullable=False),
        sa.Column("text_key", _text(200), nullable=False),
        sa.Column("quote", _text(300), nullable=False),
        sa.Column("conversation_id", _text(200), nullable=True),
        sa.Column("capture_id", sa.Uuid(), nullable=True),
        sa.Column("confidence", sa.Float(), nullable=False),
        sa.Column("action", sa.String(length=16), nullable=False),
        sa.Column("target_instruction_id", sa.Uuid(), nullable=True),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("instruction_id", sa.Uuid(), nullable=True),
        sa.Column("seen_count", sa.Integer(), nullable=False),
        sa.Column("last_seen_at", _UTC, nullable=False),
        sa.Column("embedding_model", _text(200), nullable=False),
        sa.Column("embedding_dim", sa.Integer(), nullable=False),
        sa.Column("text_embedding", sa.LargeBinary(), nullable=False),
        sa.Column("created_at", _UTC, nullable=False),
        sa.Column("decided_at", _UTC, nullable=True),
        sa.ForeignKeyConstraint(["tenant_id"], ["tenant.id"], ondelete="CASCADE"),
        sa.ForeignKeyConstraint(["user_id"], ["app_user.id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("id"),
    )
    with op.batch_alter_table("suggestion", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_suggestion_user_id"), ["user_id"], unique=False)
        batch_op.create_index(
            "ix_suggestion_scope_status", ["tenant_id", "user_id", "status"], unique=False
        )
        batch_op.create_index(
            "ux_suggestion_open_text",
            ["user_id", "text_key"],
            unique=True,
            sqlite_where=sa.text("status <> 'accepted'"),
            postgresql_where=sa.text("status <> 'accepted'"),
        )


def downgrade() -> None:
    op.drop_table("suggestion")
    op.drop_table("capture_job")
    with op.batch_alter_table("instruction", schema=None) as batch_op:
        batch_op.drop_column("capture_quote")
        batch_op.drop_column("capture_id")
        batch_op.drop_column("last_seen_at")
        batch_op.drop_column("seen_count")
