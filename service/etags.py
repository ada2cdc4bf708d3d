"""`ETag` and `If-Match` for versioned items (instructions, inferred preferences).

An item's entity tag names its id and version, `"<id>:<version>"`: strong, since one
version always has the same representation. `If-Match` on PATCH, DELETE or promote
becomes the set of versions the client is willing to change; the repository checks
it against the version it then closes conditionally, so the check and the write are
one step as far as other writers are concerned. Absent or `*`: no condition (a lost
race still answers 409). A weak tag (`W/"..."`, as some proxies rewrite it) is
compared by its opaque part, since the tag never depends on the encoding."""

from __future__ import annotations

import uuid
from typing import Annotated, Any

from fastapi import Header

ETAG_HEADERS: dict[str, Any] = {
    "ETag": {
        "description": 'the version read or written, `"<id>:<version>"`; send it back '
        "in If-Match to change only that version",
        "schema": {"type": "string", "example": '"0b7c6f1e-8d3a-4c55-9f55-2d0f6c1a9e11:3"'},
    }
}

IfMatch = Annotated[
    str | None,
    Header(
        alias="If-Match",
        max_length=2000,
        description="change only if the item is still at this ETag (else 412); `*` or "
        "absent: no condition",
        examples=['"0b7c6f1e-8d3a-4c55-9f55-2d0f6c1a9e11:3"'],
    ),
]


def etag(item_id: uuid.UUID, version: int) -> str:
    return f'"{item_id}:{version}"'


def etag_header(item_id: uuid.UUID, version: int) -> dict[str, str]:
    return {"ETag": etag(item_id, version)}


def expected_versions(if_match: str | None, item_id: uuid.UUID) -> frozenset[int] | None:
    """The versions of `item_id` that `If-Match` accepts; None means any. A tag of
    another item, or one that does not parse, matches no version (412)."""
    if if_match is None or if_match.strip() == "*":
        return None
    versions: set[int] = set()
    for raw in if_match.split(","):
        tag = raw.strip().removeprefix("W/").strip('"')
        tag_id, _, version = tag.rpartition(":")
        if tag_id == str(item_id) and version.isdigit() and len(version) < 10:
            versions.add(int(version))
    return frozenset(versions)
