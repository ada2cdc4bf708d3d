"""`tailor users list|export|delete`: a running service's end users, through the SDK
with a tenant-wide API key, exactly as an app would reach them."""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path
from typing import TYPE_CHECKING

from service.cli_db import CliError
from service.settings import Settings

if TYPE_CHECKING:  # imported when used: `tailor serve` does not need the client
    import tailor_client


def add_commands(
    commands: argparse._SubParsersAction[argparse.ArgumentParser],
    common: argparse.ArgumentParser,
) -> None:
    remote = argparse.ArgumentParser(add_help=False)
    where = remote.add_argument_group("service")
    where.add_argument(
        "--url", help="the service's base URL (default: TAILOR_PUBLIC_URL, else http://HOST:PORT)"
    )
    where.add_argument(
        "--api-key", help="a tenant-wide API key (default: the TAILOR_API_KEY variable)"
    )
    users = commands.add_parser(
        "users",
        parents=[common, remote],
        help="list, export or delete end users of a running service",
        description=__doc__,
    )
    actions = users.add_subparsers(dest="action", required=True)
    listing = actions.add_parser(
        "list", parents=[common, remote], help="one JSON line per user, oldest first"
    )
    listing.add_argument("--limit", type=int, default=None, help="at most this many users")
    export = actions.add_parser(
        "export", parents=[common, remote], help="everything stored about a user, as JSON"
    )
    export.add_argument("user_id")
    export.add_argument("--out", type=Path, help="write to this file (default: standard output)")
    delete = actions.add_parser(
        "delete", parents=[common, remote], help="delete a user and everything about them"
    )
    delete.add_argument("user_id")
    delete.add_argument("--yes", action="store_true", help="confirm: this cannot be undone")


def connect(settings: Settings, args: argparse.Namespace) -> tailor_client.TailorClient:
    key = args.api_key or os.environ.get("TAILOR_API_KEY")
    if not key:
        raise CliError("pass --api-key or set TAILOR_API_KEY (a tenant-wide key)")
    import tailor_client

    return tailor_client.TailorClient(args.url or settings.profile_base_url, key)


def run(settings: Settings, args: argparse.Namespace) -> int:
    if args.action == "delete" and not args.yes:
        raise CliError(f"deleting {args.user_id!r} cannot be undone: add --yes")
    with connect(settings, args) as client:
        if args.action == "list":
            _list(client, args.limit)
        elif args.action == "export":
            document = json.dumps(client.export_user(args.user_id), indent=2)
            if args.out is None:
                print(document)
            else:
                args.out.write_text(document + "\n")
                print(f"wrote {args.out}", file=sys.stderr)
        else:
            client.delete_user(args.user_id)
            print(f"deleted {args.user_id}", file=sys.stderr)
    return 0


def _list(client: tailor_client.TailorClient, limit: int | None) -> None:
    offset, left = 0, limit
    while left is None or left > 0:
        page_size = 500 if left is None else min(500, left)
        page = client.list_users(limit=page_size, offset=offset)
        for user in page["items"]:
            print(json.dumps(user))
        offset += len(page["items"])
        left = None if left is None else left - len(page["items"])
        if not page["items"] or offset >= page["total"]:
            return
