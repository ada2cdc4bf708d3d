"""`tailor`: run the service and operate it. `serve`, `migrate`, `bootstrap` (a tenant
and its first key), `link` (a profile-page link), `keys` (on the database, no key
needed), `users` (through a running service), `doctor` (can this configuration
serve?) and `rederive` (bring stored instructions' derived kind and domains to the
current derivation). Settings come from TAILOR_* variables (or .env); the options below override
them for one command."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from service import cli_keys, cli_users
from service.cli_db import CliError, describe_database, open_database, resolve_tenant
from service.settings import Settings


def _serve(settings: Settings) -> int:
    """With TAILOR_WORKERS > 1, uvicorn runs that many processes on one socket, each
    building the app from the environment (so the options above are passed on through
    it); the schema is migrated here first, once, not by every worker at the same time."""
    import os

    import uvicorn

    from service.app import create_app

    if settings.workers == 1:
        uvicorn.run(create_app(settings), host=settings.host, port=settings.port, log_level="info")
        return 0
    open_database(settings)
    os.environ["TAILOR_DATA_DIR"] = str(settings.data_dir)
    if settings.database_url:
        os.environ["TAILOR_DATABASE_URL"] = settings.database_url
    uvicorn.run(
        "service.app:create_app",
        factory=True,
        workers=settings.workers,
        host=settings.host,
        port=settings.port,
        log_level="info",
    )
    return 0


def _bootstrap(settings: Settings, name: str) -> int:
    """The database is named in the output: a relative data dir depends on where the
    command runs, and a key written to another database is refused with 401."""
    from store.keys import KeyRepository

    engine = open_database(settings)
    tenant, issued = KeyRepository(engine).create_tenant(name)
    database = describe_database(settings.sqlalchemy_url)
    print(
        json.dumps(
            {
                "tenant_id": str(tenant.id),
                "name": tenant.name,
                "api_key": issued.secret,
                "database": database,
            }
        )
    )
    print(
        f"Store this key now: it is not shown again. It works for a service on {database}.",
        file=sys.stderr,
    )
    return 0


def _migrate(settings: Settings) -> int:
    open_database(settings)
    return 0


def _link(settings: Settings, user_id: str, tenant_id: str | None) -> int:
    """Mint a profile-page session the way POST /v1/users/{id}/sessions does, straight
    on the database (like bootstrap), creating the user if the tenant has none by that id."""
    from service.routes.sessions import mint_session
    from store.errors import NotFound
    from store.keys import KeyRepository
    from store.scope import TenantScope
    from store.users import UserRepository

    engine = open_database(settings, announce=False)
    scope = TenantScope(tenant_id=resolve_tenant(engine, tenant_id))
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
    from service.ports import load_embedder
    from store.db import create_db_engine, migrate

    engine = create_db_engine(settings.sqlalchemy_url)
    migrate(engine)
    model = ApplicabilityModel(load_embedder(settings))
    version = derivation_version(model)
    updated = rederive_stored(model, engine, force=force)
    print(json.dumps({"derivation": version, "updated": updated}))
    if updated is None:
        print("already done for this derivation (--force runs it again)", file=sys.stderr)
    return 0


def _common_options() -> argparse.ArgumentParser:
    """Accepted before and after the command. SUPPRESS: an option left out sets nothing,
    so a subcommand's default cannot undo a value given before it."""
    common = argparse.ArgumentParser(add_help=False, argument_default=argparse.SUPPRESS)
    where = common.add_argument_group("settings (each overrides its TAILOR_* variable)")
    where.add_argument("--host", help="address to listen on, or to reach (TAILOR_HOST)")
    where.add_argument("--port", type=int, help="port to listen on, or to reach (TAILOR_PORT)")
    where.add_argument(
        "--data-dir",
        type=Path,
        help="SQLite file and index snapshots (TAILOR_DATA_DIR, default ./data)",
    )
    where.add_argument(
        "--database-url",
        help="SQLAlchemy URL, e.g. postgresql+psycopg://... (TAILOR_DATABASE_URL; "
        "default sqlite:///DATA_DIR/tailor.db)",
    )
    return common


def build_parser() -> argparse.ArgumentParser:
    common = _common_options()
    parser = argparse.ArgumentParser(prog="tailor", description=__doc__, parents=[common])
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    commands.add_parser(
        "serve",
        parents=[common],
        help="run the HTTP service",
        description="Serve the API, /ui/ and /docs on HOST:PORT.",
    )
    boot = commands.add_parser(
        "bootstrap",
        parents=[common],
        help="create a tenant and print its first API key and the database it wrote to",
        description=_bootstrap.__doc__,
    )
    boot.add_argument("--name", required=True, help="tenant (app) name")
    commands.add_parser("migrate", parents=[common], help="bring the database schema to head")
    link = commands.add_parser(
        "link",
        parents=[common],
        help="print a short-lived link to a user's profile page",
        description=_link.__doc__,
    )
    link.add_argument("--user", required=True, help="the app's id for the end user")
    link.add_argument("--tenant", help="tenant id (needed only when there are several)")
    cli_keys.add_commands(commands, common)
    cli_users.add_commands(commands, common)
    doctor = commands.add_parser(
        "doctor",
        parents=[common],
        help="check the database, the models, the index folder and the chat backend",
        description="One line per check, ok or fail; exits 1 when any fails. Reads only.",
    )
    doctor.add_argument(
        "--skip",
        action="append",
        default=[],
        choices=["database", "embedder", "index", "backend"],
        help="leave a check out (repeatable)",
    )
    again = commands.add_parser(
        "rederive",
        parents=[common],
        help="re-derive stored instructions' kind and domains (once per derivation version)",
        description=_rederive.__doc__,
    )
    again.add_argument("--force", action="store_true", help="even if done for this version")
    return parser


def _settings(args: argparse.Namespace) -> Settings:
    overrides: dict[str, Any] = {
        name: getattr(args, name)
        for name in ("host", "port", "data_dir", "database_url")
        if getattr(args, name, None) is not None
    }
    return Settings(**overrides)


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        settings = _settings(args)
    except ValueError as exc:  # pydantic's ValidationError: a bad option or variable
        print(f"tailor: invalid settings: {exc}", file=sys.stderr)
        return 2
    try:
        return _dispatch(settings, args)
    except CliError as exc:
        print(f"tailor {args.command}: {exc}", file=sys.stderr)
        return 2
    except Exception as exc:
        if _is_refusal(exc):
            print(f"tailor {args.command}: {exc}", file=sys.stderr)
            return 1
        raise


def _is_refusal(exc: Exception) -> bool:
    """An error the service or the store answered with: one line, not a traceback."""
    from store.errors import TailorError as StoreError

    if isinstance(exc, StoreError):
        return True
    client = sys.modules.get("tailor_client")  # loaded only by the commands that use it
    return client is not None and isinstance(exc, client.TailorError)


def _dispatch(settings: Settings, args: argparse.Namespace) -> int:
    if args.command == "serve":
        return _serve(settings)
    if args.command == "bootstrap":
        return _bootstrap(settings, args.name)
    if args.command == "link":
        return _link(settings, args.user, args.tenant)
    if args.command == "keys":
        return cli_keys.run(settings, args)
    if args.command == "users":
        return cli_users.run(settings, args)
    if args.command == "doctor":
        from service.doctor import doctor

        return doctor(settings, frozenset(args.skip))
    if args.command == "rederive":
        return _rederive(settings, args.force)
    return _migrate(settings)


if __name__ == "__main__":
    raise SystemExit(main())
