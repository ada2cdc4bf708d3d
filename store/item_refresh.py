"""Applying a user's changes to the vector cache item by item, when the change log says
which items changed, instead of reloading the whole user from SQL.

A write to one item of a 100k-item user used to make every replica read all of the
user's vectors again (seconds), in the change-log follower and in the next turn's
freshness check. Each change-log row names its item (entity, entity_id); a source
that mirrors that entity reads the item's rows back (every version it may hold, to
drop, and the vectors of the ones active now, to put). Re-reading an item gives its
state now whatever the order the changes arrive in, so applying a change twice, or
late, is harmless. A change no source can apply by item (a user-level change, an
entity whose effect on vectors is indirect, such as a preference that starts to
index an edit) falls back to the whole-user reload.

This relies on every write that changes a mirrored row recording a change that names
its item, in the same transaction (the repositories do). A bulk write that does not
must record a change no source applies by item (an entity such as "profile"), so
replicas reload the user whole.

A turn's memory of a large profile's rows (their fields, read from SQL once and kept
with the block: VectorCache.keep_row_fields) follows SQL by the same path: a changed
item's rows are dropped from the block and put back, even when only derived fields
changed in place under the same row id (re-derivation), and a dropped row takes what
was kept of it along."""

from __future__ import annotations

import uuid
from collections.abc import Iterable
from dataclasses import dataclass

from store.changes import Change
from store.vector_index import Entry

MAX_ITEMS = 256  # changed items applied one by one; past it, the whole user is reloaded


@dataclass(frozen=True, slots=True)
class ItemRows:
    """What a source reads back for some changed items of one user."""

    stale: list[uuid.UUID]  # every row of these items the cache may hold, any version
    entries: list[Entry]  # the vectors of their rows that are active now


def changed_items(
    changes: Iterable[Change], entities: frozenset[str]
) -> dict[str, set[uuid.UUID]] | None:
    """The items these changes touched, by entity; None when one of them cannot be
    applied item by item (an entity outside `entities`, no item id, or too many)."""
    items: dict[str, set[uuid.UUID]] = {}
    count = 0
    for change in changes:
        if change.entity not in entities or change.entity_id is None:
            return None
        held = items.setdefault(change.entity, set())
        if change.entity_id not in held:
            held.add(change.entity_id)
            count += 1
            if count > MAX_ITEMS:
                return None
    return items
