"""selection keys: an instruction's kind (constraint or style), its domains and typical
requests (derived at write time or set by the user), and the typical requests' vectors.
Existing rows keep NULLs: Tailor treats them as unknown until their next write.

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-03
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0004"
down_revision: str | None = "0003"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("instruction", schema=None) as batch_op:
        batch_op.add_column(sa.Column("kind", sa.String(length=16), nullable=True))
        batch_op.add_column(sa.Column("kind_set_by", sa.String(length=16), nullable=True))
        batch_op.add_column(sa.Column("domains", sa.JSON(), nullable=True))
        batch_op.add_column(sa.Column("typical_requests", sa.JSON(), nullable=True))
        batch_op.add_column(sa.Column("applicability_set_by", sa.String(length=16), nullable=True))
        batch_op.add_column(sa.Column("request_embeddings", sa.LargeBinary(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("instruction", schema=None) as batch_op:
        batch_op.drop_column("request_embeddings")
        batch_op.drop_column("applicability_set_by")
        batch_op.drop_column("typical_requests")
        batch_op.drop_column("domains")
        batch_op.drop_column("kind_set_by")
        batch_op.drop_column("kind")
