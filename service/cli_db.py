"""What the CLI's database commands share: open the configured database (saying which
one, since a relative data dir makes it depend on where the command runs) and find
the tenant a command is about."""

from __future__ import annotations

import sys
import uuid

from sqlalchemy.engine import Engine, make_url

from service.settings import Settings


class CliError(Exception):
    """A problem to print as one line (no traceback), with exit status 2."""


def describe_database(url: str) -> str:
    """The URL with any password hidden: safe to print and to log."""
    return make_url(url).render_as_string(hide_password=True)


def open_database(settings: Settings, *, announce: bool = True) -> Engine:
    """The configured database at the schema head (migrating it, as `serve` does)."""
    from store.db import create_db_engine, migrate

    if announce:
        print(f"database: {describe_database(settings.sqlalchemy_url)}", file=sys.stderr)
    engine = create_db_engine(settings.sqlalchemy_url)
    migrate(engine)
    return engine


def resolve_tenant(engine: Engine, tenant_id: str | None) -> uuid.UUID:
    """The tenant named, or the only one there is; a clear error otherwise."""
    from sqlmodel import Session, select

    from store.models import Tenant

    try:
        wanted = uuid.UUID(tenant_id) if tenant_id is not None else None
    except ValueError:
        raise CliError("--tenant takes the tenant_id that bootstrap printed") from None
    with Session(engine) as session:
        query = select(Tenant.id)
        if wanted is not None:
            query = query.where(Tenant.id == wanted)
        tenants = session.exec(query.limit(2)).all()
    if len(tenants) == 1:
        return tenants[0]
    if len(tenants) > 1:
        raise CliError("several tenants: pass --tenant <tenant_id>")
    raise CliError("no such tenant" if tenant_id else "no tenant yet: run `tailor bootstrap`")
