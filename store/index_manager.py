"""Brings the vector cache up and keeps it honest.

Start: load the snapshot, check its manifest, replay the users changed since its
change sequence from SQL, and check the row counts against SQL. Anything off (missing,
torn, flipped, other embedder, counts disagree) → log why and rebuild everything from
SQL. Until one of those finishes the service reports not-ready: it never comes up
empty and calls itself healthy."""

from __future__ import annotations

import logging
import threading
import uuid
from collections.abc import Iterator, Sequence
from enum import StrEnum
from pathlib import Path
from typing import Protocol

from store.changes import ChangeLogReader
from store.errors import NotReady
from store.snapshot import (
    Manifest,
    SnapshotInvalid,
    SnapshotMissing,
    read_snapshot,
    write_snapshot,
)
from store.vector_index import Entry, VectorCache

log = logging.getLogger("tailor.index")


class VectorSource(Protocol):
    """A SQL table whose active rows carry embeddings the cache mirrors."""

    collection: str

    def entries(self, user_ids: set[uuid.UUID] | None, *, model: str) -> Iterator[Entry]: ...

    def count_rows(self, *, model: str) -> int: ...


class IndexState(StrEnum):
    starting = "starting"
    loading = "loading_snapshot"
    rebuilding = "rebuilding"
    ready = "ready"
    failed = "failed"


class IndexManager:
    def __init__(
        self,
        cache: VectorCache,
        sources: Sequence[VectorSource],
        changes: ChangeLogReader,
        snapshot_dir: Path,
        *,
        embedder_id: str,
    ) -> None:
        self.cache = cache
        self._sources = sources
        self._changes = changes
        self._dir = snapshot_dir
        self._embedder_id = embedder_id
        self.state = IndexState.starting
        self.last_load: str = ""
        self._snapshot_version = -1  # cache.version at the last snapshot written or loaded
        # Held across "commit to SQL + update the cache" and across snapshot capture, so a
        # snapshot's change sequence always matches its contents.
        self.write_lock = threading.RLock()

    @property
    def ready(self) -> bool:
        return self.state == IndexState.ready

    def require_ready(self) -> None:
        if not self.ready:
            raise NotReady(f"the vector index is {self.state}; retry shortly")

    def start_background(self) -> threading.Thread:
        thread = threading.Thread(target=self.load, name="tailor-index-load", daemon=True)
        thread.start()
        return thread

    def load(self) -> None:
        try:
            self.state = IndexState.loading
            try:
                self._load_snapshot_and_replay()
                self.last_load = "snapshot"
            except SnapshotInvalid as exc:
                if isinstance(exc, SnapshotMissing):
                    log.info("no vector snapshot; building the index from SQL")
                else:
                    log.error("vector snapshot rejected (%s); rebuilding from SQL", exc)
                self.state = IndexState.rebuilding
                self.rebuild_all()
                self.last_load = f"rebuilt: {exc}"
            if self.last_load != "snapshot":
                # Replace the rejected (or missing) snapshot before reporting ready: a
                # known-bad file should not outlive the rebuild that replaced it.
                self._write_snapshot()
            self.state = IndexState.ready
            log.info("vector index ready (%s, %d vectors)", self.last_load, self.cache.count())
        except Exception:
            self.state = IndexState.failed
            log.exception("vector index failed to load")
            raise

    def _load_snapshot_and_replay(self) -> None:
        manifest, entries = read_snapshot(
            self._dir, embedder_id=self._embedder_id, dim=self.cache.dim
        )
        with self.write_lock:
            self.cache.clear()
            self.cache.load(entries)
            self._snapshot_version = self.cache.version
            changed = self._changes.users_changed_since(manifest.last_change_seq)
            self.refresh_users(changed)
            for source in self._sources:
                in_sql = source.count_rows(model=self._embedder_id)
                in_cache = self.cache.row_count(source.collection)
                if in_sql != in_cache:
                    raise SnapshotInvalid(
                        f"{source.collection}: {in_cache} rows in cache after replay, "
                        f"{in_sql} in SQL"
                    )

    def rebuild_all(self) -> None:
        with self.write_lock:
            self.cache.clear()
            for source in self._sources:
                self.cache.load(source.entries(None, model=self._embedder_id))

    def refresh_users(self, user_ids: set[uuid.UUID]) -> None:
        """Make these users' indexes equal to SQL (deleted users end with none)."""
        if not user_ids:
            return
        with self.write_lock:
            entries: list[Entry] = []
            for source in self._sources:
                entries.extend(source.entries(user_ids, model=self._embedder_id))
            self.cache.replace_users(user_ids, entries)

    def snapshot(self, *, force: bool = False) -> Manifest | None:
        """Write a snapshot if the cache changed since the last one (or if forced)."""
        if not self.ready or not (force or self.cache.version != self._snapshot_version):
            return None
        return self._write_snapshot()

    def _write_snapshot(self) -> Manifest | None:
        with self.write_lock:
            last_seq = self._changes.last_seq()
            version = self.cache.version
            entries = list(self.cache.entries())
        try:
            manifest = write_snapshot(
                self._dir,
                entries,
                embedder_id=self._embedder_id,
                dim=self.cache.dim,
                last_change_seq=last_seq,
            )
        except OSError:
            log.exception("writing the vector snapshot failed; SQL remains the truth")
            return None
        self._snapshot_version = version
        return manifest
