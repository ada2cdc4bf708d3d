"""`tailor keys create|list|revoke`: API keys straight on the database, with no running
service and no key needed, so a tenant that revoked its last key can get a new one."""

from __future__ import annotations

import argparse
import json
import sys
import uuid
from datetime import timedelta
from typing import Any

from service.cli_db import CliError, open_database, resolve_tenant
from service.settings import Settings
from store.models import ApiKey


def add_commands(
    commands: argparse._SubParsersAction[argparse.ArgumentParser],
    common: argparse.ArgumentParser,
) -> None:
    keys = commands.add_parser(
        "keys",
        parents=[common],
        help="create, list or revoke API keys on the database (works with no valid key)",
        description=__doc__,
    )
    actions = keys.add_subparsers(dest="action", required=True)
    tenant = argparse.ArgumentParser(add_help=False)
    tenant.add_argument("--tenant", help="tenant id (needed only when there are several)")

    create = actions.add_parser(
        "create", parents=[common, tenant], help="issue a key; prints its secret once"
    )
    create.add_argument("--name", default="cli", help="a label for the key (default: cli)")
    create.add_argument("--user", help="bind the key to this end user (default: tenant-wide)")
    create.add_argument(
        "--expires-in-days", type=int, metavar="DAYS", help="expire after DAYS (default: never)"
    )
    actions.add_parser("list", parents=[common, tenant], help="list the tenant's keys")
    revoke = actions.add_parser("revoke", parents=[common, tenant], help="revoke a key by id")
    revoke.add_argument("key_id", help="the key's id (from `tailor keys list`)")


def run(settings: Settings, args: argparse.Namespace) -> int:
    from store.clock import utcnow
    from store.keys import KeyRepository
    from store.scope import TenantScope

    engine = open_database(settings)
    scope = TenantScope(tenant_id=resolve_tenant(engine, args.tenant))
    keys = KeyRepository(engine)
    if args.action == "create":
        if args.expires_in_days is not None and args.expires_in_days < 1:
            raise CliError("--expires-in-days must be at least 1")
        expires_at = (
            utcnow() + timedelta(days=args.expires_in_days) if args.expires_in_days else None
        )
        issued = keys.issue(
            scope, name=args.name, external_user_id=args.user, expires_at=expires_at
        )
        created = {**_public(issued.key, args.user), "key": issued.secret}
        print(json.dumps(created))
        print("Store this key now: it is not shown again.", file=sys.stderr)
    elif args.action == "list":
        for key, external in keys.list_keys(scope):
            print(json.dumps(_public(key, external)))
    else:
        try:
            key_id = uuid.UUID(args.key_id)
        except ValueError:
            raise CliError("key_id is the id from `tailor keys list`") from None
        keys.revoke(scope, key_id)
        print(f"revoked {key_id}", file=sys.stderr)
    return 0


def _public(key: ApiKey, external_user_id: str | None) -> dict[str, Any]:
    """A key as GET /v1/keys shows it: never its secret or hash."""
    from service.routes.tenants import key_public

    return key_public(key, external_user_id).model_dump(mode="json")
