"""concurrency: one current version per item, promote once, idempotency records

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-03

Before the partial unique indexes are created, items that have more than one current
row (valid_to IS NULL; possible only from the races this revision closes) keep their
newest version current; the older ones are closed as superseded by it, and the count
is logged. Nothing is deleted.
"""

import logging
from collections.abc import Sequence

import sqlalchemy as sa
import sqlmodel
from alembic import op

import store.models

revision: str = "0005"
down_revision: str | None = "0004"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

log = logging.getLogger("alembic.runtime.migration")

CURRENT = sa.text("valid_to IS NULL")


def _versions(table: str, item: str) -> sa.TableClause:
    return sa.table(
        table,
        sa.column("id", sa.Uuid()),
        sa.column(item, sa.Uuid()),
        sa.column("version", sa.Integer()),
        sa.column("valid_from", store.models.UTCDateTime(timezone=True)),
        sa.column("valid_to", store.models.UTCDateTime(timezone=True)),
        sa.column("superseded_by", sa.Uuid()),
    )


def close_duplicate_current_rows(table: str, item: str) -> int:
    """Keep the newest current version of each item current; close the others."""
    t = _versions(table, item)
    bind = op.get_bind()
    duplicated = bind.execute(
        sa.select(t.c[item])
        .where(t.c.valid_to.is_(None))
        .group_by(t.c[item])
        .having(sa.func.count() > 1)
    ).scalars()
    closed = 0
    for item_id in list(duplicated):
        rows = bind.execute(
            sa.select(t.c.id, t.c.valid_from)
            .where(t.c[item] == item_id, t.c.valid_to.is_(None))
            .order_by(t.c.version.desc())
        ).all()
        newest_id, newest_from = rows[0]
        for row_id, _ in rows[1:]:
            bind.execute(
                sa.update(t)
                .where(t.c.id == row_id)
                .values(valid_to=newest_from, superseded_by=newest_id)
            )
            closed += 1
    if closed:
        log.warning("%s: closed %d duplicate current versions (newest kept)", table, closed)
    return closed


def upgrade() -> None:
    close_duplicate_current_rows("instruction", "instruction_id")
    close_duplicate_current_rows("inferred_preference", "preference_id")
    with op.batch_alter_table("instruction", schema=None) as batch_op:
        batch_op.add_column(sa.Column("promoted_from", sa.Uuid(), nullable=True))
        batch_op.create_index(
            "ux_instruction_current",
            ["instruction_id"],
            unique=True,
            sqlite_where=CURRENT,
            postgresql_where=CURRENT,
        )
        batch_op.create_index(
            "ux_instruction_promoted_from",
            ["promoted_from"],
            unique=True,
            sqlite_where=sa.text("version = 1"),
            postgresql_where=sa.text("version = 1"),
        )
    with op.batch_alter_table("inferred_preference", schema=None) as batch_op:
        batch_op.create_index(
            "ux_preference_current",
            ["preference_id"],
            unique=True,
            sqlite_where=CURRENT,
            postgresql_where=CURRENT,
        )

    op.create_table(
        "idempotency_record",
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("tenant_id", sa.Uuid(), nullable=False),
        sa.Column("user_id", sa.Uuid(), nullable=True),
        sa.Column("key", sqlmodel.sql.sqltypes.AutoString(length=255), nullable=False),
        sa.Column("method", sqlmodel.sql.sqltypes.AutoString(length=8), nullable=False),
        sa.Column("path", sqlmodel.sql.sqltypes.AutoString(length=1000), nullable=False),
        sa.Column("request_hash", sqlmodel.sql.sqltypes.AutoString(length=64), nullable=False),
        sa.Column("status", sa.Integer(), nullable=True),
        sa.Column("response_body", sa.Text(), nullable=True),
        sa.Column("response_headers", sa.Text(), nullable=True),
        sa.Column("created_at", store.models.UTCDateTime(timezone=True), nullable=False),
        sa.Column("expires_at", store.models.UTCDateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(["tenant_id"], ["tenant.id"], ondelete="CASCADE"),
        sa.ForeignKeyConstraint(["user_id"], ["app_user.id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("tenant_id", "key", "method", "path"),
    )
    with op.batch_alter_table("idempotency_record", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_idempotency_record_expires_at"), ["expires_at"], unique=False
        )
        batch_op.create_index(
            batch_op.f("ix_idempotency_record_user_id"), ["user_id"], unique=False
        )


def downgrade() -> None:
    with op.batch_alter_table("idempotency_record", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_idempotency_record_user_id"))
        batch_op.drop_index(batch_op.f("ix_idempotency_record_expires_at"))
    op.drop_table("idempotency_record")
    with op.batch_alter_table("inferred_preference", schema=None) as batch_op:
        batch_op.drop_index("ux_preference_current")
    with op.batch_alter_table("instruction", schema=None) as batch_op:
        batch_op.drop_index("ux_instruction_promoted_from")
        batch_op.drop_index("ux_instruction_current")
        batch_op.drop_column("promoted_from")
