"""Alembic environment: the engine is handed in by store.db.migrate (or built from
TAILOR_DATABASE_URL when the alembic CLI runs this file directly)."""

from __future__ import annotations

import os

from alembic import context
from sqlmodel import SQLModel

import store.models
from store.db import create_db_engine

config = context.config
engine = config.attributes.get("engine")
if engine is None:
    engine = create_db_engine(os.environ.get("TAILOR_DATABASE_URL", "sqlite:///./data/tailor.db"))

with engine.begin() as connection:
    context.configure(
        connection=connection,
        target_metadata=SQLModel.metadata,
        render_as_batch=connection.dialect.name == "sqlite",
    )
    with context.begin_transaction():
        context.run_migrations()
