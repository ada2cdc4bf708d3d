"""The Alembic migrations create exactly the schema the models describe, and applying
them again is a no-op."""

from __future__ import annotations

from pathlib import Path

import sqlalchemy as sa
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlmodel import SQLModel

import store.models  # noqa: F401
from store.db import create_db_engine, migrate


def test_migrations_match_models_and_are_idempotent(tmp_path: Path) -> None:
    engine = create_db_engine(f"sqlite:///{tmp_path / 't.db'}")
    migrate(engine)
    migrate(engine)
    with engine.connect() as conn:
        diff = compare_metadata(MigrationContext.configure(conn), SQLModel.metadata)
        assert diff == []
        version = conn.execute(sa.text("select version_num from alembic_version")).scalar()
        assert version == "0004"
        assert conn.execute(sa.text("pragma journal_mode")).scalar() == "wal"
        assert conn.execute(sa.text("pragma synchronous")).scalar() == 2  # FULL
        assert conn.execute(sa.text("pragma foreign_keys")).scalar() == 1
