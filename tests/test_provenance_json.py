"""A used item's JSON (what a turn record and the chat response's profile items carry)
names every field of the item, with the id as text, whatever the item's kind."""

from __future__ import annotations

import json
import uuid
from dataclasses import asdict, fields

import pytest

from personalization.provenance import UsedItem


@pytest.mark.parametrize(
    "item",
    [
        UsedItem(uuid.uuid4(), "standing_instruction", 3, "always_on", 0.8125),
        UsedItem(uuid.uuid4(), "preference_example", 1, "nearest_prompt", -0.25),
        UsedItem(uuid.uuid4(), "inferred_preference", None, "nearest_edit_context", None),
    ],
)
def test_as_json_is_every_field_with_the_id_as_text(item: UsedItem) -> None:
    out = item.as_json()
    assert list(out) == [f.name for f in fields(UsedItem)]
    assert out == {**asdict(item), "id": str(item.id)}
    assert json.loads(json.dumps(out)) == out
    assert uuid.UUID(out["id"]) == item.id
