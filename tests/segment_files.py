"""Where an array lies in a segment file (store/segments.py), for tests that damage one."""

from __future__ import annotations

import json


def array_offset(raw: bytes, name: str) -> int:
    """The byte offset of array `name` (block_rows, row_ids, vectors...) in a segment."""
    length = int.from_bytes(raw[8:16], "little")
    header = json.loads(raw[16 : 16 + length])
    return int(header["arrays"][name][0])
