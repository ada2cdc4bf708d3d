"""Engine creation and migrations. SQLite gets WAL, synchronous=FULL and foreign keys,
so an acknowledged write survives a crash and cascades work; Postgres needs nothing.
Also what a lock wait that gave up looks like on either database (`lock_contention`)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import sqlalchemy as sa
from alembic import command
from alembic.config import Config
from sqlalchemy.engine import Engine
from sqlalchemy.pool import ConnectionPoolEntry

MIGRATIONS_DIR = Path(__file__).resolve().parent / "migrations"

# SQLite's primary result codes for "another connection holds the lock" (an extended
# code keeps them in its low byte): SQLITE_BUSY, SQLITE_LOCKED.
_SQLITE_BUSY_CODES = {5, 6}
# PostgreSQL: lock_not_available (lock_timeout, NOWAIT), serialization_failure,
# deadlock_detected: the transaction lost to another one and may simply be run again.
_POSTGRES_CONTENTION_STATES = {"55P03", "40001", "40P01"}


def _sqlite_pragmas(dbapi_connection: Any, _record: ConnectionPoolEntry) -> None:
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA synchronous=FULL")
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.execute("PRAGMA busy_timeout=10000")
    cursor.close()


def lock_contention(exc: BaseException) -> str | None:
    """A short name for the lock wait `exc` reports ("SQLITE_BUSY", "55P03"), or None
    when it is something else. Such a failure is expected while another transaction
    holds the database (a bulk write on SQLite waits out `busy_timeout`, then fails) and
    passes once it ends; the name is safe to log, unlike the error's text, which quotes
    the statement's parameters."""
    orig = exc.orig if isinstance(exc, sa.exc.DBAPIError) else exc
    code = getattr(orig, "sqlite_errorcode", None)
    if isinstance(code, int) and code & 0xFF in _SQLITE_BUSY_CODES:
        name = getattr(orig, "sqlite_errorname", None)
        return name if isinstance(name, str) else f"SQLITE_{code}"
    state = getattr(orig, "sqlstate", None)
    if isinstance(state, str) and state in _POSTGRES_CONTENTION_STATES:
        return state
    return None


def failure_text(exc: BaseException) -> str:
    """What a job may keep of an unexpected failure (its `last_error`, which the
    tenant's key can read): a database error without the statement and its parameters
    (profile text, for instance), which SQLAlchemy's message quotes; the driver's own
    first line is kept, as it names the cause ("database is locked", a constraint)."""
    if isinstance(exc, sa.exc.StatementError) and exc.orig is not None:
        first = str(exc.orig).strip().splitlines()[0] if str(exc.orig).strip() else ""
        return f"unexpected {type(exc.orig).__name__}: {first}"[:500]
    return f"unexpected {type(exc).__name__}: {exc}"[:500]


def create_db_engine(url: str) -> Engine:
    if url.startswith("sqlite"):
        path = url.split("///", 1)[-1]
        if path and path != ":memory:":
            Path(path).parent.mkdir(parents=True, exist_ok=True)
        engine = sa.create_engine(url, connect_args={"check_same_thread": False})
        sa.event.listen(engine, "connect", _sqlite_pragmas)
        return engine
    return sa.create_engine(url, pool_pre_ping=True)


def alembic_config(engine: Engine) -> Config:
    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS_DIR))
    cfg.attributes["engine"] = engine
    return cfg


def migrate(engine: Engine) -> None:
    """Bring the schema to head; idempotent, safe on every start."""
    command.upgrade(alembic_config(engine), "head")
