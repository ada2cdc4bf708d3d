"""Brings the vector cache up and keeps it equal to SQL, on every replica.

Start: remove what a killed snapshot write left, map the snapshot's segments (the
manifest and each segment's table are checked; no vector is read: blocks are views of
the mapped files), replay the users changed since its change sequence, and report
ready. Two checks then run in the background (before ready when the snapshot is small,
or when its change sequence is ahead of the database's, i.e. the database was restored
from a backup): every block's bytes against its digest, and every user's rows against
SQL by a digest of their row ids (an edit writes a new row id but keeps the count);
users that fail either are rebuilt from SQL. Until its blocks are verified, a user's
first turn (`ensure_fresh`) verifies them first, so a flipped bit is never served, and
a snapshot write verifies a changed user's old blocks before it persists them. A
snapshot that cannot be trusted at all (missing,
torn, flipped, absurd, other embedder) → rebuild everything from SQL. A load that fails
for any other reason (the database is not reachable yet, a lock timeout) is retried
with backoff, the last tries as a plain rebuild, until it succeeds: until then the
service reports not-ready, never empty-and-healthy.

Running: every user's cache entry carries a stamp, the user's latest change sequence
read *before* its rows were. A turn compares the stamp with the database (one indexed
read) and rebuilds the user first if the database moved on, so a write through any
replica shows in the next turn on every replica. A follower polls the change log in
the background, so users who make no turns, and deleted users, converge too (and the
next snapshot holds SQL's truth), within about one poll interval."""

from __future__ import annotations

import logging
import threading
import time
import uuid
from collections.abc import Callable, Iterator, Sequence
from enum import StrEnum
from pathlib import Path
from typing import Protocol

from store.change_follower import ChangeFollower, FollowedChanges
from store.changes import Change, ChangeLogReader
from store.errors import NotReady
from store.item_refresh import MAX_ITEMS, ItemRows, changed_items
from store.snapshot import (
    BlockRef,
    LoadedSnapshot,
    Manifest,
    SnapshotInvalid,
    SnapshotMissing,
    load_snapshot,
    remove_leftovers,
    write_snapshot,
)
from store.vector_index import DIGEST_MOD, Entry, VectorCache, row_digest

log = logging.getLogger("tailor.index")

MAX_BACKOFF_S = 30.0
FOLLOW_LOOKBACK = 1000  # seqs below the load point that may still have been in flight


class VectorSource(Protocol):
    """A SQL table whose active rows carry embeddings the cache mirrors."""

    collection: str
    item_entity: str  # the change-log entity whose items `item_rows` reads back

    def entries(self, user_ids: set[uuid.UUID] | None, *, model: str) -> Iterator[Entry]: ...

    def row_ids(self, *, model: str) -> Iterator[tuple[uuid.UUID, uuid.UUID]]: ...

    def item_rows(self, user_id: uuid.UUID, item_ids: set[uuid.UUID], *, model: str) -> ItemRows:
        """The rows of some changed items of one user (store/item_refresh.py)."""
        ...


class IndexState(StrEnum):
    starting = "starting"
    loading = "loading_snapshot"
    rebuilding = "rebuilding"
    retrying = "retrying"  # a load failed; the next try comes after a backoff
    ready = "ready"


class IndexManager:
    def __init__(
        self,
        cache: VectorCache,
        sources: Sequence[VectorSource],
        changes: ChangeLogReader,
        snapshot_dir: Path,
        *,
        embedder_id: str,
        load_retries: int = 3,
        load_backoff_s: float = 1.0,
        follow_gap_timeout_s: float = 30.0,
        meta_layout: str = "",
        verify_at_start_bytes: int = 64 << 20,
    ) -> None:
        self.cache = cache
        self._sources = sources
        self._changes = changes
        self._dir = snapshot_dir
        self._embedder_id = embedder_id
        self._layout = meta_layout  # how rows' meta is packed (vector_index.layout_id)
        self._load_retries = load_retries
        self._load_backoff_s = load_backoff_s
        self.state = IndexState.starting
        self.last_load: str = ""
        self.load_attempts = 0
        self._unready_since: float | None = time.monotonic()
        self._snapshot_version = -1  # cache.version at the last snapshot written or loaded
        # Held across "commit to SQL + update the cache", across a user's refresh and
        # across snapshot capture, so a snapshot's contents match its change sequence.
        self.write_lock = threading.RLock()
        self._snapshot_lock = threading.Lock()  # one snapshot write at a time, in order
        self._stamps: dict[uuid.UUID, int] = {}
        self._loaded_at = 0  # the stamp of every user not refreshed since the load
        self._follower = ChangeFollower(changes, gap_timeout_s=follow_gap_timeout_s)
        self._stopping = threading.Event()
        # Rows read from SQL by refreshes (whole users and single items alike): what a
        # test asserts to tell a one-item refresh from a whole-user reload.
        self.rows_read = 0
        # Called with a deleted user's id, so other per-user memory forgets it too.
        self.forget_hooks: list[Callable[[uuid.UUID], None]] = []
        # Snapshots smaller than this are verified block by block before ready.
        self._verify_at_start_bytes = verify_at_start_bytes
        self._loaded: LoadedSnapshot | None = None  # the mapped snapshot blocks come from
        self._unverified: dict[uuid.UUID, list[BlockRef]] = {}  # loaded, not yet checked
        self._placed: dict[int, BlockRef] = {}  # block generation -> where it is on disk
        # Users with vectors in the snapshot on disk: a deletion the follower sees must
        # rewrite the snapshot whenever the user is there, held in memory or not.
        self._on_disk: set[uuid.UUID] = set()
        self._sql_checked = True
        self.corrupt_blocks = 0  # snapshot blocks found corrupt (their users rebuilt)
        self.checked = threading.Event()  # set when the background checks are done

    # -- readiness -------------------------------------------------------------------

    @property
    def ready(self) -> bool:
        return self.state == IndexState.ready

    def require_ready(self) -> None:
        if not self.ready:
            raise NotReady(f"the vector index is {self.state}; retry shortly")

    def unready_for_s(self) -> float:
        """Seconds since the index was last ready (or since start); 0 when ready."""
        since = self._unready_since
        return 0.0 if since is None else time.monotonic() - since

    def _set_state(self, state: IndexState) -> None:
        if state == IndexState.ready:
            self._unready_since = None
        elif self._unready_since is None:
            self._unready_since = time.monotonic()
        self.state = state

    # -- loading ---------------------------------------------------------------------

    def start_background(self) -> threading.Thread:
        thread = threading.Thread(target=self.load, name="tailor-index-load", daemon=True)
        thread.start()
        return thread

    def stop(self) -> None:
        self._stopping.set()

    def load(self) -> None:
        """Until ready (or stopped): the first `load_retries` tries trust the snapshot
        when it checks out, later ones rebuild from SQL. Backoff doubles up to 30 s."""
        while not self._stopping.is_set():
            self.load_attempts += 1
            try:
                self._load_once(trust_snapshot=self.load_attempts <= self._load_retries)
                return
            except Exception as exc:
                self._set_state(IndexState.retrying)
                delay = min(self._load_backoff_s * 2 ** (self.load_attempts - 1), MAX_BACKOFF_S)
                log.error(
                    "vector index load failed (try %d: %s: %s); retrying in %.1fs",
                    self.load_attempts,
                    type(exc).__name__,
                    str(exc).splitlines()[0] if str(exc) else "",
                    delay,
                )
                log.debug("vector index load failure", exc_info=True)
                self._stopping.wait(delay)

    def _load_once(self, *, trust_snapshot: bool) -> None:
        remove_leftovers(self._dir)
        if trust_snapshot:
            self._set_state(IndexState.loading)
            try:
                self._load_snapshot_and_check()
                self.last_load = "snapshot"
            except SnapshotInvalid as exc:
                if isinstance(exc, SnapshotMissing):
                    log.info("no vector snapshot; building the index from SQL")
                else:
                    log.error("vector snapshot rejected (%s); rebuilding from SQL", exc)
                self._set_state(IndexState.rebuilding)
                self.rebuild_all()
                self.last_load = f"rebuilt: {exc}"
        else:
            log.warning(
                "rebuilding the vector index from SQL after %d failed loads", self._load_retries
            )
            self._set_state(IndexState.rebuilding)
            self.rebuild_all()
            self.last_load = f"rebuilt: after {self._load_retries} failed loads"
        if self.last_load != "snapshot" or self.cache.version != self._snapshot_version:
            # Replace the rejected, missing or replayed snapshot before reporting ready:
            # a known-bad file, or one still holding users deleted while this replica
            # was down, should not outlive the load that corrected it.
            self._write_snapshot()
        self._set_state(IndexState.ready)
        log.info("vector index ready (%s, %d vectors)", self.last_load, self.cache.count())
        if self._unverified or not self._sql_checked:
            threading.Thread(
                target=self._check_in_background, name="tailor-index-check", daemon=True
            ).start()
        else:
            self.checked.set()

    def _load_snapshot_and_check(self) -> None:
        loaded = load_snapshot(
            self._dir, embedder_id=self._embedder_id, dim=self.cache.dim, layout=self._layout
        )
        manifest = loaded.manifest
        with self.write_lock:
            loaded_at = self._changes.last_seq()
            restored = manifest.last_change_seq > loaded_at
            if restored:
                log.warning(
                    "the snapshot has seen change %d, the database ends at %d (restored "
                    "from a backup?); every user is checked against SQL",
                    manifest.last_change_seq,
                    loaded_at,
                )
            self.cache.clear()
            self._unverified, self._placed, self._on_disk = {}, {}, set()
            for ref, block in loaded.live_blocks():
                generation = self.cache.load_block(block)
                self._placed[generation] = ref
                self._unverified.setdefault(block.user_id, []).append(ref)
                self._on_disk.add(block.user_id)
            self._loaded = loaded
            self._snapshot_version = self.cache.version
            self._begin(loaded_at)
            if sum(s.size for s in manifest.segments) <= self._verify_at_start_bytes:
                self._verify_users(set(self._unverified))
            self.refresh_users(self._changes.users_changed_since(manifest.last_change_seq))
            self._sql_checked = restored
            if restored:
                self._refresh_unlike_sql(self.users_unlike_sql())

    def _verify_users(self, user_ids: set[uuid.UUID]) -> None:
        """Check these users' loaded blocks against their digests; rebuild from SQL the
        users whose blocks fail. Reads the blocks' bytes (pages fault in)."""
        loaded = self._loaded
        with self.write_lock:
            pending = {u: self._unverified[u] for u in user_ids if u in self._unverified}
            if loaded is None or not pending:
                return
            bad: set[uuid.UUID] = set()
            for user_id, refs in pending.items():
                failed = [ref for ref in refs if not loaded.verify(ref)]
                if failed:
                    self.corrupt_blocks += len(failed)
                    bad.add(user_id)
            if bad:
                log.error(
                    "%d snapshot block(s) of %d user(s) failed their checksum; those users "
                    "are rebuilt from SQL",
                    sum(len(pending[u]) for u in bad),
                    len(bad),
                )
                self.refresh_users(bad)
            for user_id in pending:
                self._unverified.pop(user_id, None)

    def _check_in_background(self) -> None:
        """After ready: verify the blocks no turn has verified yet, then compare every
        user's rows with SQL. A failure is logged; turns still verify their user."""
        try:
            for user_id in list(self._unverified):
                if self._stopping.is_set():
                    return
                self._verify_users({user_id})
            if not self._sql_checked and not self._stopping.is_set():
                self._refresh_unlike_sql(self.users_unlike_sql(unlocked=True))
                self._sql_checked = True
        except Exception as exc:
            log.warning("background index check failed: %s: %s", type(exc).__name__, exc)
        finally:
            self.checked.set()

    def _refresh_unlike_sql(self, differ: set[uuid.UUID]) -> None:
        if differ:
            log.warning("%d user(s) in the snapshot differ from SQL; rebuilding them", len(differ))
            self.refresh_users(differ)

    def rebuild_all(self) -> None:
        with self.write_lock:
            loaded_at = self._changes.last_seq()  # before the rows: see refresh_users
            self.cache.clear()
            self._unverified, self._placed, self._sql_checked = {}, {}, True
            for source in self._sources:
                self.cache.load(source.entries(None, model=self._embedder_id))
            self._begin(loaded_at)

    def _begin(self, loaded_at: int) -> None:
        self._stamps.clear()
        self._loaded_at = loaded_at
        self._follower.start_at(loaded_at, lookback=FOLLOW_LOOKBACK)

    def users_unlike_sql(self, *, unlocked: bool = False) -> set[uuid.UUID]:
        """Users whose cached rows are not the rows SQL has: per user, a digest of the
        (collection, row id) pairs on each side. Reads ids only, never vectors.
        `unlocked`: the cache lock is taken per block (a background check)."""
        in_sql: dict[uuid.UUID, int] = {}
        for source in self._sources:
            for user_id, row_id in source.row_ids(model=self._embedder_id):
                share = row_digest(source.collection, row_id)
                in_sql[user_id] = (in_sql.get(user_id, 0) + share) % DIGEST_MOD
        cached = self.cache.user_digests_unlocked() if unlocked else self.cache.user_digests()
        return {u for u in in_sql.keys() | cached.keys() if in_sql.get(u) != cached.get(u)}

    # -- following the database ------------------------------------------------------

    def refresh_users(self, user_ids: set[uuid.UUID]) -> None:
        """Make these users' indexes equal to SQL (deleted users end with none). The
        stamps are read before the rows: a write landing in between leaves a stamp
        below the database's, so the next check refreshes again (never the reverse)."""
        if not user_ids:
            return
        with self.write_lock:
            stamps = self._changes.user_seqs(user_ids)
            entries: list[Entry] = []
            for source in self._sources:
                entries.extend(source.entries(user_ids, model=self._embedder_id))
            self.rows_read += len({(e.collection, e.row_id) for e in entries})
            self.cache.replace_users(user_ids, entries)
            for user_id in user_ids:
                self._stamps[user_id] = stamps.get(user_id, 0)
                self._unverified.pop(user_id, None)  # its blocks come from SQL now

    def apply_changes(self, user_id: uuid.UUID, changes: Sequence[Change]) -> bool:
        """Bring one user's changed items up to SQL, item by item, when the changes say
        which (store/item_refresh.py); False when they cannot, and nothing is done. The
        changes are read before the rows, so the stamp, their highest seq, never runs
        ahead of what the cache holds."""
        by_source = {source.item_entity: source for source in self._sources}
        items = changed_items(changes, frozenset(by_source))
        if items is None or not changes:
            return False
        with self.write_lock:
            for entity, item_ids in items.items():
                source = by_source[entity]
                rows = source.item_rows(user_id, item_ids, model=self._embedder_id)
                self.rows_read += len({e.row_id for e in rows.entries})
                self.cache.replace_rows(user_id, source.collection, rows.stale, rows.entries)
            held = self._stamps.get(user_id, self._loaded_at)
            self._stamps[user_id] = max(held, max(change.seq for change in changes))
        return True

    def ensure_fresh(self, user_id: uuid.UUID, latest: int | None = None) -> None:
        """Called by every turn before it searches: a user whose snapshot blocks are not
        verified yet is verified first (once); then one indexed range read of the user's
        changes past its stamp (none, nearly always); the changed items are read back,
        or the whole user when the changes do not say which items they touched.
        `latest`: the user's latest change sequence when the caller already read it
        (with the user, in one query): at or below the stamp, no read at all."""
        if user_id in self._unverified:
            self._verify_users({user_id})
        held = self._stamps.get(user_id, self._loaded_at)
        if latest is not None and latest <= held:
            return
        changes = self._changes.user_changes_after(user_id, held, limit=MAX_ITEMS + 1)
        if changes and not self.apply_changes(user_id, changes):
            self.refresh_users({user_id})

    def stamp(self, user_id: uuid.UUID) -> int:
        """The change sequence the user's cached entry reflects (after `ensure_fresh`):
        per-user memory derived from SQL keys itself on it to stay coherent too."""
        return self._stamps.get(user_id, self._loaded_at)

    def forget_user(self, user_id: uuid.UUID) -> None:
        """A deleted user leaves this replica's memory (the vectors and every hook's)."""
        with self.write_lock:
            self.cache.drop_user(user_id)
            self._stamps.pop(user_id, None)
            self._unverified.pop(user_id, None)
        for forget in self.forget_hooks:
            forget(user_id)

    def follow(self) -> FollowedChanges:
        """One poll of the change log: refresh the users other replicas (or this one)
        changed, forget deleted users and, if one was held in memory or is in the
        snapshot on disk, snapshot at once so their vectors leave the disk too."""
        if not self.ready:
            return FollowedChanges()
        with self.write_lock:  # the follower's state, like the cache, changes under it
            found = self._follower.poll()
            held = [u for u in found.deleted if self.cache.has_user(u) or u in self._on_disk]
            for user_id in found.deleted:
                self.forget_user(user_id)
            by_user: dict[uuid.UUID, list[Change]] = {}
            for change in found.changes:
                if change.user_id is not None:
                    by_user.setdefault(change.user_id, []).append(change)
            whole = {
                user_id
                for user_id in found.changed - found.deleted
                if not self.apply_changes(user_id, by_user.get(user_id, []))
            }
            self.refresh_users(whole)
        if held:
            self.snapshot(force=True)
        return found

    # -- snapshots -------------------------------------------------------------------

    def snapshot(self, *, force: bool = False) -> Manifest | None:
        """Write a snapshot if the cache changed since the last one (or if forced)."""
        if not self.ready or not (force or self.cache.version != self._snapshot_version):
            return None
        return self._write_snapshot()

    def _write_snapshot(self) -> Manifest | None:
        """Never called with `write_lock` held (the lock order is snapshot, then write)."""
        with self._snapshot_lock:
            with self.write_lock:
                # Changes up to the follower's watermark are all in the cache; above it
                # some may not be, so a load replays from there (and checks digests).
                last_seq = self._follower.watermark
                entries = self.cache.capture()  # O(blocks): encoded below, unlocked
                # A changed block of a user not verified yet holds bytes read from the
                # snapshot: check them before they are written under a new digest.
                doubtful = {
                    v.user_id
                    for v in entries
                    if v.user_id in self._unverified and v.generation not in self._placed
                }
                if doubtful:
                    self._verify_users(doubtful)
                    entries = self.cache.capture()
                version = self.cache.version
            try:
                manifest = write_snapshot(
                    self._dir,
                    entries,
                    embedder_id=self._embedder_id,
                    dim=self.cache.dim,
                    last_change_seq=last_seq,
                    layout=self._layout,
                    placed=self._placed,
                )
            except OSError:
                log.exception("writing the vector snapshot failed; SQL remains the truth")
                return None
            self._placed = dict(manifest.placed)
            self._on_disk = {v.user_id for v in entries}
            self._snapshot_version = version
            return manifest
