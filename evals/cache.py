"""Resumable runs: every finished item is appended to a JSON-lines file in the output
folder as soon as it is known, keyed by everything that determines it (item, arm,
turns, model, prompt version...). A rerun into the same folder skips what is there,
so a killed nightly job resumes where it stopped; a torn last line is ignored."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any


def cache_key(parts: dict[str, Any]) -> str:
    return hashlib.sha256(json.dumps(parts, sort_keys=True).encode()).hexdigest()[:32]


class ItemCache:
    def __init__(self, path: Path) -> None:
        self.path = path
        self._done: dict[str, dict[str, Any]] = {}
        self.hits = 0
        if path.exists():
            for line in path.read_text(encoding="utf-8").splitlines():
                try:
                    record = json.loads(line)
                except json.JSONDecodeError:
                    continue  # the line being written when the run was killed
                self._done[record["key"]] = record["value"]
        path.parent.mkdir(parents=True, exist_ok=True)
        self._file = path.open("a", encoding="utf-8")

    def __len__(self) -> int:
        return len(self._done)

    def get(self, key: str) -> dict[str, Any] | None:
        found = self._done.get(key)
        self.hits += found is not None
        return found

    def put(self, key: str, value: dict[str, Any]) -> None:
        self._done[key] = value
        self._file.write(json.dumps({"key": key, "value": value}) + "\n")
        self._file.flush()

    def remember(
        self, parts: dict[str, Any], compute: Callable[[], dict[str, Any]]
    ) -> dict[str, Any]:
        """The cached value for `parts`, else `compute()`, stored before it is returned."""
        key = cache_key(parts)
        found = self.get(key)
        if found is None:
            found = compute()
            self.put(key, found)
        return found

    def close(self) -> None:
        self._file.close()
