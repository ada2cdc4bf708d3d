"""Incremental, atomic snapshots of the vector cache: immutable segments + a manifest.

A snapshot is a folder of segment files (store/segments.py: whole blocks, mapped on
load) and `manifest.json`, which lists the live segments with each one's table
checksum, size and dead blocks, and the change sequence the snapshot has seen. A write
puts only the blocks that changed since the last one (their generation moved: see
`_UserIndex.generation`) into new segments, marks the blocks they replace dead, and
rewrites (compacts) a segment that is mostly dead or holds a user who is gone, so a
deleted user's vectors leave the folder with the next snapshot. New segments are
fsynced and renamed first, then the manifest, then the folder is fsynced, and only then
are dropped segments deleted: a crash at any point leaves the old manifest with every
file it names, or the new one. A manifest, header or table that does not check out
rejects the whole snapshot (rebuild from SQL); a block whose bytes do not match its
digest is found when it is verified (store/index_manager.py) and only its user is
rebuilt from SQL."""

from __future__ import annotations

import json
import logging
import os
import re
import uuid
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from store.clock import utcnow
from store.segments import SEGMENT_FILE, BlockData, Segment, SegmentInvalid, write_segment
from store.vector_index import BlockView, Entry

FORMAT_VERSION = 2
MANIFEST = "manifest.json"
MAX_SEQ = (1 << 63) - 1  # a BIGINT: anything larger cannot be a change sequence
MAX_COUNT = 1 << 40
MAX_DIM = 1 << 16
SHA256 = re.compile(r"^[0-9a-f]{64}$")
SEGMENT_BYTES = 64 << 20  # vectors per new segment: a compaction rewrites at most this
COMPACT_BELOW = 0.5  # a segment with less than this share of its vectors live is rewritten

log = logging.getLogger("tailor.index")


class SnapshotInvalid(Exception):
    """The snapshot cannot be trusted; the reason is logged and SQL is the fallback."""


class SnapshotMissing(SnapshotInvalid):
    """No snapshot yet (a fresh install, or one deleted by hand): not an error."""


@dataclass(frozen=True, slots=True)
class BlockRef:
    segment: str
    block: int


@dataclass(frozen=True, slots=True)
class SegmentEntry:
    file: str
    table_sha256: str
    size: int
    dead: frozenset[int]


@dataclass(frozen=True, slots=True)
class Manifest:
    format_version: int
    embedder_id: str
    dim: int
    last_change_seq: int
    count: int
    layout: str = ""
    segments: tuple[SegmentEntry, ...] = ()
    # From a write: per captured block generation, where the block now lives, so the
    # next write keeps it where it is if the block has not changed since.
    placed: Mapping[int, BlockRef] = field(default_factory=dict, compare=False)
    written_blocks: int = 0  # blocks this write put into new segments (incl. compaction)


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _atomic_write(path: Path, data: bytes) -> None:
    tmp = path.with_name(f".{path.name}.{uuid.uuid4().hex}.tmp")
    try:
        with open(tmp, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)  # a half-written copy must not outlive the failure
        raise


def _blocks_of_entries(entries: Iterable[Entry], dim: int) -> list[BlockData]:
    grouped: dict[tuple[uuid.UUID, str], dict[uuid.UUID, tuple[int, list[Entry]]]] = {}
    for e in entries:
        rows = grouped.setdefault((e.user_id, e.collection), {})
        rows.setdefault(e.row_id, (e.meta, []))[1].append(e)
    blocks = []
    for (user_id, collection), rows in grouped.items():
        counts = [len(group) for _, group in rows.values()]
        flat = [e for _, group in rows.values() for e in group]
        blocks.append(
            BlockData(
                user_id,
                collection,
                np.frombuffer(b"".join(r.bytes for r in rows), np.uint8).reshape(-1, 16),
                np.cumsum([0, *counts[:-1]], dtype=np.int64),
                np.array([meta for meta, _ in rows.values()], dtype=np.int64),
                np.array([e.role for e in flat], dtype=np.int16),
                np.array([e.vector for e in flat], dtype=np.float32).reshape(-1, dim),
            )
        )
    return blocks


def block_of_view(view: BlockView) -> BlockData:
    """A captured block's live rows as segment arrays (views of it when none is dead)."""
    owner = view.vector_owner()
    live = view.live_rows()
    rows = len(view.first)
    row_bytes = np.frombuffer(
        b"".join(view.row_ids[i].bytes for i in live.tolist()), np.uint8
    ).reshape(-1, 16)
    if len(live) == rows:  # a block's first row starts at its first vector: 0
        return BlockData(
            view.user_id,
            view.collection,
            row_bytes,
            view.first,
            view.meta,
            view.roles,
            view.vectors,
        )
    keep = view.alive[owner]
    counts = np.bincount(owner[keep], minlength=rows)[live]
    return BlockData(
        view.user_id,
        view.collection,
        row_bytes,
        np.cumsum(np.append(0, counts[:-1]), dtype=np.int64),
        view.meta[live],
        view.roles[keep],
        view.vectors[keep],
    )


def write_snapshot(
    directory: Path,
    entries: Iterable[Entry] | Sequence[BlockView],
    *,
    embedder_id: str,
    dim: int,
    last_change_seq: int,
    layout: str = "",
    placed: Mapping[int, BlockRef] | None = None,
    segment_bytes: int = SEGMENT_BYTES,
) -> Manifest:
    """`layout` names how rows' meta is packed (store/vector_index.py, `layout_id`); a
    snapshot is only read back under the same one. `entries`: Entry objects, or block
    views captured from the cache (the service's path: VectorCache.capture). `placed`:
    what the last write (or load) returned; a view whose generation it names, in a
    segment the manifest on disk still lists, is kept where it is (not rewritten)."""
    directory.mkdir(parents=True, exist_ok=True)
    items = list(entries)
    views = [v for v in items if isinstance(v, BlockView)]
    fresh: list[tuple[int | None, BlockData]] = []
    if len(views) != len(items):
        plain = [e for e in items if isinstance(e, Entry)]
        fresh = [(None, b) for b in _blocks_of_entries(plain, dim)]
    previous = _previous(directory, embedder_id, dim, layout)
    live: dict[str, set[int]] = {name: set() for name in previous}
    kept: dict[int, BlockRef] = {}
    for view in views:
        ref = (placed or {}).get(view.generation)
        if view.generation and ref is not None and ref.segment in previous:
            segment, entry = previous[ref.segment]
            if ref.block not in entry.dead and ref.block < segment.blocks:
                live[ref.segment].add(ref.block)
                kept[view.generation] = ref
                continue
        fresh.append((view.generation or None, block_of_view(view)))
    present = {v.user_id for v in views} | {b.user_id for _, b in fresh}
    keep_segments: list[SegmentEntry] = []
    dropped: list[str] = []
    generation_of = {ref: generation for generation, ref in kept.items()}
    for name, (segment, entry) in previous.items():
        blocks = live[name]
        total = sum(segment.vectors_of(b) for b in range(segment.blocks))
        alive = sum(segment.vectors_of(b) for b in blocks)
        gone_user = any(segment.users[b] not in present for b in range(segment.blocks))
        if blocks and not gone_user and alive >= COMPACT_BELOW * total:
            dead = frozenset(range(segment.blocks)) - blocks
            keep_segments.append(SegmentEntry(name, entry.table_sha256, entry.size, dead))
            continue
        dropped.append(name)
        for b in sorted(blocks):  # compaction: the same bytes, with their old digest
            generation = generation_of[BlockRef(name, b)]
            del kept[generation]
            fresh.append((generation, segment.block(b)))
    placed_now = dict(kept)
    new_segments: list[SegmentEntry] = []
    for batch in _batches(fresh, segment_bytes):
        name = f"seg-{last_change_seq}-{uuid.uuid4().hex[:8]}.bin"
        written = write_segment(directory / name, [b for _, b in batch], dim)
        new_segments.append(SegmentEntry(name, written.table_sha256, written.size, frozenset()))
        for index, (gen, _) in enumerate(batch):
            if gen is not None:
                placed_now[gen] = BlockRef(name, index)
    if new_segments:
        _fsync_dir(directory)  # the segments' names are durable before a manifest names them
    segments = tuple(keep_segments + new_segments)
    count = sum(len(b.vectors) for _, b in fresh) + sum(
        previous[r.segment][0].vectors_of(r.block) for r in kept.values()
    )
    manifest = Manifest(
        FORMAT_VERSION,
        embedder_id,
        dim,
        last_change_seq,
        count,
        layout,
        segments,
        placed_now,
        len(fresh),
    )
    body = {
        "format_version": FORMAT_VERSION,
        "embedder_id": embedder_id,
        "dim": dim,
        "layout": layout,
        "last_change_seq": last_change_seq,
        "count": count,
        "created_at": utcnow().isoformat(),
        "segments": [
            {"file": s.file, "table_sha256": s.table_sha256, "size": s.size, "dead": sorted(s.dead)}
            for s in segments
        ],
    }
    _atomic_write(directory / MANIFEST, json.dumps(body).encode())
    _fsync_dir(directory)
    named = {s.file for s in segments}
    for path in directory.iterdir():
        if SEGMENT_FILE.match(path.name) and path.name not in named:
            path.unlink(missing_ok=True)
    return manifest


def _batches(
    blocks: list[tuple[int | None, BlockData]], limit: int
) -> Iterator[list[tuple[int | None, BlockData]]]:
    batch: list[tuple[int | None, BlockData]] = []
    size = 0
    for item in blocks:
        batch.append(item)
        size += item[1].vectors.nbytes
        if size >= limit:
            yield batch
            batch, size = [], 0
    if batch:
        yield batch


def _previous(
    directory: Path, embedder_id: str, dim: int, layout: str
) -> dict[str, tuple[Segment, SegmentEntry]]:
    """The segments of the snapshot on disk that a new one may keep: none when it is
    missing, untrusted, or of another embedder or layout (then everything is written)."""
    try:
        manifest = read_manifest(directory, embedder_id=embedder_id, dim=dim)
        if manifest.layout != layout:
            return {}
        return {s.file: (_open(directory, s, dim), s) for s in manifest.segments}
    except (SnapshotInvalid, SegmentInvalid):
        return {}


def _open(directory: Path, entry: SegmentEntry, dim: int) -> Segment:
    return Segment(
        directory / entry.file, table_sha256=entry.table_sha256, size=entry.size, dim=dim
    )


def read_manifest(directory: Path, *, embedder_id: str, dim: int) -> Manifest:
    path = directory / MANIFEST
    if not path.exists():
        raise SnapshotMissing("no manifest")
    try:
        raw = json.loads(path.read_text())
        if not isinstance(raw, dict):
            raise TypeError("not a JSON object")
        version = _whole(raw, "format_version", 0, 1 << 16)
        if version != FORMAT_VERSION:
            raise SnapshotInvalid(f"format version {version} != {FORMAT_VERSION}")
        segments = []
        for item in raw["segments"]:
            if not isinstance(item, dict):
                raise TypeError("a segment is not a JSON object")
            name, sha = _text(item, "file"), _text(item, "table_sha256")
            if not SEGMENT_FILE.match(name):
                raise ValueError("manifest names a file outside the snapshot folder")
            if not SHA256.match(sha):
                raise ValueError("a segment checksum is not a SHA-256 hex digest")
            dead = item["dead"]
            if not isinstance(dead, list) or not all(type(d) is int and d >= 0 for d in dead):
                raise ValueError("dead blocks are not a list of block numbers")
            segments.append(
                SegmentEntry(name, sha, _whole(item, "size", 16, 1 << 48), frozenset(dead))
            )
        manifest = Manifest(
            format_version=version,
            embedder_id=_text(raw, "embedder_id"),
            dim=_whole(raw, "dim", 1, MAX_DIM),
            last_change_seq=_whole(raw, "last_change_seq", 0, MAX_SEQ),
            count=_whole(raw, "count", 0, MAX_COUNT),
            layout=_text(raw, "layout"),
            segments=tuple(segments),
        )
    except (ValueError, KeyError, TypeError, OSError) as exc:
        raise SnapshotInvalid(f"unreadable manifest: {exc}") from exc
    if len({s.file for s in manifest.segments}) != len(manifest.segments):
        raise SnapshotInvalid("manifest names a segment twice")
    if manifest.embedder_id != embedder_id or manifest.dim != dim:
        raise SnapshotInvalid(
            f"snapshot is for embedder {manifest.embedder_id!r} dim {manifest.dim}, "
            f"running {embedder_id!r} dim {dim}"
        )
    return manifest


def _whole(raw: dict[str, object], name: str, low: int, high: int) -> int:
    """An integer field in range: a bool, float, string or 10**30 makes the whole
    snapshot untrusted (never an OverflowError later, in a database query)."""
    value = raw[name]
    if type(value) is not int or not low <= value <= high:
        raise ValueError(f"{name} is {value!r}, not an integer in [{low}, {high}]")
    return value


def _text(raw: dict[str, object], name: str) -> str:
    value = raw[name]
    if not isinstance(value, str):
        raise ValueError(f"{name} is {value!r}, not a string")
    return value


def remove_leftovers(directory: Path) -> list[str]:
    """Delete what a killed snapshot write leaves: temp files, segments the manifest
    does not name, and files of the older one-file format. They may hold vectors of
    users deleted since, and nothing ever reads them. Returns the names."""
    if not directory.is_dir():
        return []
    try:
        listed = json.loads((directory / MANIFEST).read_text()).get("segments")
        named = {s.get("file") for s in listed if isinstance(s, dict)}
    except (OSError, ValueError, AttributeError, TypeError):
        named = set()
    removed = []
    for path in directory.iterdir():
        stale = (
            path.name.endswith(".tmp")
            or (SEGMENT_FILE.match(path.name) is not None and path.name not in named)
            or (path.name.startswith("index-") and path.name.endswith(".npz"))
        )
        if stale and path.is_file():
            path.unlink(missing_ok=True)
            removed.append(path.name)
    if removed:
        _fsync_dir(directory)
        log.info("removed %d snapshot leftover(s): %s", len(removed), ", ".join(sorted(removed)))
    return removed


@dataclass(frozen=True, slots=True)
class LoadedSnapshot:
    """A checked manifest and its mapped segments; blocks are not verified yet."""

    manifest: Manifest
    segments: dict[str, Segment]

    def live_blocks(self) -> Iterator[tuple[BlockRef, BlockData]]:
        for entry in self.manifest.segments:
            segment = self.segments[entry.file]
            for index in range(segment.blocks):
                if index not in entry.dead:
                    yield BlockRef(entry.file, index), segment.block(index)

    def verify(self, ref: BlockRef) -> bool:
        return self.segments[ref.segment].verify(ref.block)


def load_snapshot(
    directory: Path, *, embedder_id: str, dim: int, layout: str | None = None
) -> LoadedSnapshot:
    """Map every segment and check the manifest, headers and tables (a few KB each):
    any doubt → SnapshotInvalid. Reads no vector."""
    manifest = read_manifest(directory, embedder_id=embedder_id, dim=dim)
    if layout is not None and manifest.layout != layout:
        raise SnapshotInvalid(
            f"rows' meta packed as {manifest.layout!r}, this process packs {layout!r}"
        )
    try:
        segments = {s.file: _open(directory, s, dim) for s in manifest.segments}
    except SegmentInvalid as exc:
        raise SnapshotInvalid(str(exc)) from exc
    seen: set[tuple[uuid.UUID, str]] = set()
    count = 0
    for entry in manifest.segments:
        segment = segments[entry.file]
        if any(d >= segment.blocks for d in entry.dead):
            raise SnapshotInvalid(f"segment {entry.file}: a dead block it does not have")
        for index in range(segment.blocks):
            if index in entry.dead:
                continue
            key = (segment.users[index], segment.collections[index])
            if key in seen:
                raise SnapshotInvalid("a block is live in two segments")
            seen.add(key)
            count += segment.vectors_of(index)
    if count != manifest.count:
        raise SnapshotInvalid(f"segments hold {count} live vectors, manifest says {manifest.count}")
    return LoadedSnapshot(manifest, segments)


def read_snapshot(
    directory: Path, *, embedder_id: str, dim: int, layout: str | None = None
) -> tuple[Manifest, list[Entry]]:
    """Every live vector as an object, every block verified (tests, tools)."""
    loaded = _verified(directory, embedder_id, dim, layout)
    entries = []
    for _, block in loaded.live_blocks():
        ends = [*block.first[1:].tolist(), len(block.vectors)]
        for r, (start, end) in enumerate(zip(block.first.tolist(), ends, strict=True)):
            row_id = uuid.UUID(bytes=bytes(block.row_ids[r]))
            for v in range(start, end):
                entries.append(
                    Entry(
                        block.user_id,
                        block.collection,
                        row_id,
                        int(block.roles[v]),
                        np.array(block.vectors[v], dtype=np.float32),
                        int(block.meta[r]),
                    )
                )
    return loaded.manifest, entries


def read_snapshot_arrays(
    directory: Path, *, embedder_id: str, dim: int, layout: str | None = None
) -> tuple[Manifest, dict[str, np.ndarray]]:
    """The one-array-per-field form (`VectorCache.load_arrays`), every block verified:
    tools and tests; the service maps segments instead (`load_snapshot`)."""
    manifest, entries = read_snapshot(directory, embedder_id=embedder_id, dim=dim, layout=layout)
    names = sorted({e.collection for e in entries})
    return manifest, {
        "users": np.array([list(e.user_id.bytes) for e in entries], np.uint8).reshape(-1, 16),
        "rows": np.array([list(e.row_id.bytes) for e in entries], np.uint8).reshape(-1, 16),
        "collections": np.array([names.index(e.collection) for e in entries], np.int16),
        "collection_names": np.array(names, dtype=str),
        "roles": np.array([e.role for e in entries], np.int16),
        "vectors": np.array([e.vector for e in entries], np.float32).reshape(-1, dim),
        "meta": np.array([e.meta for e in entries], np.int64),
    }


def _verified(directory: Path, embedder_id: str, dim: int, layout: str | None) -> LoadedSnapshot:
    loaded = load_snapshot(directory, embedder_id=embedder_id, dim=dim, layout=layout)
    for name, segment in loaded.segments.items():
        if not segment.padding_is_clean():
            raise SnapshotInvalid(f"segment {name}: damaged between arrays")
        dead = next(s.dead for s in loaded.manifest.segments if s.file == name)
        for index in range(segment.blocks):
            if index not in dead and not segment.verify(index):
                raise SnapshotInvalid(f"segment {name}: block {index} checksum mismatch")
    return loaded
