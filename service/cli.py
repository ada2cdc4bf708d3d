"""`tailor serve | bootstrap | migrate | link | rederive`: run the service, create a tenant
and its first key (printed once), bring the schema to head, print a profile-page link, or
bring stored instructions' derived kind and domains to the current derivation."""

from __future__ import annotations

import argparse
import json
import sys

from service.settings import Settings


def _serve(settings: Settings) -> int:
    import uvicorn

    from service.app import create_app

    uvicorn.run(create_app(settings), host=settings.host, port=settings.port, log_level="info")
    return 0


def _bootstrap(settings: Settings, name: str) -> int:
    from store.db import create_db_engine, migrate
    from store.keys import KeyRepository

    engine = create_db_engine(settings.sqlalchemy_url)
    migrate(engine)
    tenant, issued = KeyRepository(engine).create_tenant(name)
    print(json.dumps({"tenant_id": str(tenant.id), "name": tenant.name, "api_key": issued.secret}))
    print("Store this key now: it is not shown again.", file=sys.stderr)
    return 0


def _migrate(settings: Settings) -> int:
    from store.db import create_db_engine, migrate

    migrate(create_db_engine(settings.sqlalchemy_url))
    return 0


def _link(settings: Settings, user_id: str, tenant_id: str | None) -> int:
    """Mint a profile-page session the way POST /v1/users/{id}/sessions does, straight
    on the database (like bootstrap), creating the user if the tenant has none by that id."""
    import uuid

    from sqlmodel import Session, select

    from service.routes.sessions import mint_session
    from store.db import create_db_engine, migrate
    from store.errors import NotFound
    from store.keys import KeyRepository
    from store.models import Tenant
    from store.scope import TenantScope
    from store.users import UserRepository

    try:
        wanted = uuid.UUID(tenant_id) if tenant_id is not None else None
    except ValueError:
        print("--tenant takes the tenant_id that bootstrap printed", file=sys.stderr)
        return 2
    engine = create_db_engine(settings.sqlalchemy_url)
    migrate(engine)
    with Session(engine) as session:
        query = select(Tenant.id)
        if wanted is not None:
            query = query.where(Tenant.id == wanted)
        tenants = session.exec(query.limit(2)).all()
    if len(tenants) != 1:
        problem = "no such tenant" if tenant_id else "no tenant yet: run `tailor bootstrap`"
        if len(tenants) > 1:
            problem = "several tenants: pass --tenant <tenant_id>"
        print(problem, file=sys.stderr)
        return 2
    scope = TenantScope(tenant_id=tenants[0])
    users = UserRepository(engine)
    try:
        users.get(scope, user_id)
    except NotFound:
        users.create(scope, user_id)
        print(f"created user {user_id!r}", file=sys.stderr)
    created = mint_session(KeyRepository(engine), scope, settings, user_id)
    print(created.url)
    print(f"expires at {created.expires_at.isoformat()}", file=sys.stderr)
    return 0


def _rederive(settings: Settings, force: bool) -> int:
    """What every start does once per derivation version; `force` runs it again."""
    from personalization.applicability import (
        ApplicabilityModel,
        derivation_version,
        rederive_stored,
    )
    from service.ports import configured_embedder
    from store.db import create_db_engine, migrate

    engine = create_db_engine(settings.sqlalchemy_url)
    migrate(engine)
    model = ApplicabilityModel(configured_embedder(settings))
    version = derivation_version(model)
    updated = rederive_stored(model, engine, force=force)
    print(json.dumps({"derivation": version, "updated": updated}))
    if updated is None:
        print("already done for this derivation (--force runs it again)", file=sys.stderr)
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="tailor", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)
    commands.add_parser("serve", help="run the HTTP service (settings from TAILOR_* env)")
    boot = commands.add_parser("bootstrap", help="create a tenant and print its first API key")
    boot.add_argument("--name", required=True, help="tenant (app) name")
    commands.add_parser("migrate", help="apply database migrations")
    link = commands.add_parser("link", help="print a short-lived link to a user's profile page")
    link.add_argument("--user", required=True, help="the app's id for the end user")
    link.add_argument("--tenant", help="tenant id (needed only when there are several)")
    again = commands.add_parser(
        "rederive", help="re-derive stored instructions' kind and domains (once per version)"
    )
    again.add_argument("--force", action="store_true", help="even if done for this version")
    args = parser.parse_args(argv)
    settings = Settings()
    if args.command == "serve":
        return _serve(settings)
    if args.command == "bootstrap":
        return _bootstrap(settings, args.name)
    if args.command == "link":
        return _link(settings, args.user, args.tenant)
    if args.command == "rederive":
        return _rederive(settings, args.force)
    return _migrate(settings)


if __name__ == "__main__":
    raise SystemExit(main())
