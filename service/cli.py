"""`tailor serve | bootstrap | migrate`: run the service, create a tenant and its first
key (printed once), or bring the schema to head."""

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


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="tailor", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)
    commands.add_parser("serve", help="run the HTTP service (settings from TAILOR_* env)")
    boot = commands.add_parser("bootstrap", help="create a tenant and print its first API key")
    boot.add_argument("--name", required=True, help="tenant (app) name")
    commands.add_parser("migrate", help="apply database migrations")
    args = parser.parse_args(argv)
    settings = Settings()
    if args.command == "serve":
        return _serve(settings)
    if args.command == "bootstrap":
        return _bootstrap(settings, args.name)
    return _migrate(settings)


if __name__ == "__main__":
    raise SystemExit(main())
