"""Atomic snapshots of the vector cache.

The data file is written to a temp file, fsynced and renamed; then the manifest
(which names the data file and its SHA-256) is written the same way, then the folder
is fsynced. A crash at any point leaves either the old pair or the new pair; torn or
flipped bytes fail the checksum. Any doubt means: rebuild from SQL."""

from __future__ import annotations

import hashlib
import io
import json
import logging
import os
import re
import uuid
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO, cast

import numpy as np

from store.clock import utcnow
from store.vector_index import BlockView, Entry

FORMAT_VERSION = 1
MANIFEST = "manifest.json"
MAX_SEQ = (1 << 63) - 1  # a BIGINT: anything larger cannot be a change sequence
MAX_COUNT = 1 << 31
MAX_DIM = 1 << 16
DATA_FILE = re.compile(r"^index-\d{1,19}-[0-9a-f]{8}\.npz$")
SHA256 = re.compile(r"^[0-9a-f]{64}$")

log = logging.getLogger("tailor.index")


class SnapshotInvalid(Exception):
    """The snapshot cannot be trusted; the reason is logged and SQL is the fallback."""


class SnapshotMissing(SnapshotInvalid):
    """No snapshot yet (a fresh install, or one deleted by hand): not an error."""


@dataclass(frozen=True, slots=True)
class Manifest:
    format_version: int
    embedder_id: str
    dim: int
    last_change_seq: int
    data_file: str
    sha256: str
    count: int


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _atomic_write(path: Path, data: bytes | Callable[[BinaryIO], None]) -> None:
    """`data`: the bytes, or a function that writes them to the open temp file."""
    tmp = path.with_name(f".{path.name}.{uuid.uuid4().hex}.tmp")
    try:
        with open(tmp, "wb") as handle:
            if callable(data):
                data(handle)
            else:
                handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)  # a half-written copy must not outlive the failure
        raise


def _arrays_of_entries(entries: Iterable[Entry], dim: int) -> dict[str, np.ndarray]:
    items = list(entries)
    collections = sorted({e.collection for e in items})
    code = {name: i for i, name in enumerate(collections)}
    return {
        "users": np.array([list(e.user_id.bytes) for e in items], dtype=np.uint8).reshape(-1, 16),
        "rows": np.array([list(e.row_id.bytes) for e in items], dtype=np.uint8).reshape(-1, 16),
        "collections": np.array([code[e.collection] for e in items], dtype=np.int16),
        "collection_names": np.array(collections, dtype=str),
        "roles": np.array([e.role for e in items], dtype=np.int16),
        "vectors": np.array([e.vector for e in items], dtype=np.float32).reshape(-1, dim),
        "meta": np.array([e.meta for e in items], dtype=np.int64),
    }


def _arrays_of_views(views: Sequence[BlockView], dim: int) -> dict[str, np.ndarray]:
    """The same arrays from captured blocks, a numpy gather per block: no object per
    vector, so a snapshot of a million vectors costs its copies, not its Python."""
    collections = sorted({v.collection for v in views})
    code = {name: i for i, name in enumerate(collections)}
    parts: dict[str, list[np.ndarray]] = {k: [] for k in ("users", "rows", "collections")}
    parts.update(roles=[], vectors=[], meta=[])
    for view in views:
        owner = view.vector_owner()
        keep = view.alive[owner]
        owner = owner[keep]
        row_bytes = np.frombuffer(
            b"".join(view.row_ids[i].bytes for i in range(len(view.first))), dtype=np.uint8
        ).reshape(-1, 16)
        count = len(owner)
        parts["users"].append(np.tile(np.frombuffer(view.user_id.bytes, np.uint8), (count, 1)))
        parts["rows"].append(row_bytes[owner])
        parts["collections"].append(np.full(count, code[view.collection], dtype=np.int16))
        parts["roles"].append(view.roles[keep])
        parts["vectors"].append(view.vectors[keep])
        parts["meta"].append(view.meta[owner])
    empty: dict[str, np.ndarray] = {
        "users": np.empty((0, 16), np.uint8),
        "rows": np.empty((0, 16), np.uint8),
        "collections": np.empty(0, np.int16),
        "roles": np.empty(0, np.int16),
        "vectors": np.empty((0, dim), np.float32),
        "meta": np.empty(0, np.int64),
    }
    arrays = {k: _joined(v, empty[k]) for k, v in parts.items()}
    arrays["collection_names"] = np.array(collections, dtype=str)
    return arrays


def _joined(parts: list[np.ndarray], empty: np.ndarray) -> np.ndarray:
    """np.concatenate, one block per copy: a single copy of a million vectors would
    hold the GIL (and stall every request) for its whole length."""
    if not parts:
        return empty
    out = np.empty((sum(len(p) for p in parts), *parts[0].shape[1:]), dtype=parts[0].dtype)
    at = 0
    for part in parts:
        out[at : at + len(part)] = part
        at += len(part)
    return out


def write_snapshot(
    directory: Path,
    entries: Iterable[Entry] | Sequence[BlockView],
    *,
    embedder_id: str,
    dim: int,
    last_change_seq: int,
    layout: str = "",
) -> Manifest:
    """`layout` names how rows' meta is packed (store/vector_index.py, `layout_id`); a
    snapshot is only read back under the same one. `entries`: Entry objects, or block
    views captured from the cache (the service's path: VectorCache.capture)."""
    directory.mkdir(parents=True, exist_ok=True)
    items = list(entries)
    if items and isinstance(items[0], BlockView):
        arrays = _arrays_of_views(cast(list[BlockView], items), dim)
    else:
        arrays = _arrays_of_entries(cast(list[Entry], items), dim)
    arrays["meta_layout"] = np.array([layout], dtype=str)
    count = len(arrays["vectors"])
    data_file = f"index-{last_change_seq}-{uuid.uuid4().hex[:8]}.npz"
    # Straight to the file, in numpy's chunks, then hashed back in chunks: no copy of
    # the whole snapshot in memory, and no long call holding the GIL (requests run on).
    _atomic_write(
        directory / data_file, lambda handle: np.savez(handle, allow_pickle=False, **arrays)
    )
    digest = hashlib.sha256()
    with open(directory / data_file, "rb") as handle:
        while chunk := handle.read(1 << 22):
            digest.update(chunk)
    manifest = Manifest(
        format_version=FORMAT_VERSION,
        embedder_id=embedder_id,
        dim=dim,
        last_change_seq=last_change_seq,
        data_file=data_file,
        sha256=digest.hexdigest(),
        count=count,
    )
    body = {
        "format_version": manifest.format_version,
        "embedder_id": manifest.embedder_id,
        "dim": manifest.dim,
        "last_change_seq": manifest.last_change_seq,
        "data_file": manifest.data_file,
        "sha256": manifest.sha256,
        "count": manifest.count,
        "created_at": utcnow().isoformat(),
    }
    _atomic_write(directory / MANIFEST, json.dumps(body, indent=2).encode())
    _fsync_dir(directory)
    for old in directory.glob("index-*.npz"):
        if old.name != data_file:
            old.unlink(missing_ok=True)
    return manifest


def read_manifest(directory: Path, *, embedder_id: str, dim: int) -> Manifest:
    path = directory / MANIFEST
    if not path.exists():
        raise SnapshotMissing("no manifest")
    try:
        raw = json.loads(path.read_text())
        if not isinstance(raw, dict):
            raise TypeError("not a JSON object")
        manifest = Manifest(
            format_version=_whole(raw, "format_version", 0, 1 << 16),
            embedder_id=_text(raw, "embedder_id"),
            dim=_whole(raw, "dim", 1, MAX_DIM),
            last_change_seq=_whole(raw, "last_change_seq", 0, MAX_SEQ),
            data_file=_text(raw, "data_file"),
            sha256=_text(raw, "sha256"),
            count=_whole(raw, "count", 0, MAX_COUNT),
        )
    except (ValueError, KeyError, TypeError, OSError) as exc:
        raise SnapshotInvalid(f"unreadable manifest: {exc}") from exc
    if manifest.format_version != FORMAT_VERSION:
        raise SnapshotInvalid(f"format version {manifest.format_version} != {FORMAT_VERSION}")
    if not SHA256.match(manifest.sha256):
        raise SnapshotInvalid("manifest checksum is not a SHA-256 hex digest")
    if manifest.embedder_id != embedder_id or manifest.dim != dim:
        raise SnapshotInvalid(
            f"snapshot is for embedder {manifest.embedder_id!r} dim {manifest.dim}, "
            f"running {embedder_id!r} dim {dim}"
        )
    if not DATA_FILE.match(manifest.data_file):
        raise SnapshotInvalid("manifest names a data file outside the snapshot folder")
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
    """Delete what a killed snapshot write leaves: temp files, and data files the
    manifest does not name. Both may hold vectors of users deleted since, and nothing
    ever reads them, so they would only keep that data on disk. Returns the names."""
    if not directory.is_dir():
        return []
    try:
        named = json.loads((directory / MANIFEST).read_text()).get("data_file")
    except (OSError, ValueError, AttributeError):
        named = None
    removed = []
    for path in directory.iterdir():
        stale = path.name.endswith(".tmp") or (
            path.name.startswith("index-") and path.name.endswith(".npz") and path.name != named
        )
        if stale and path.is_file():
            path.unlink(missing_ok=True)
            removed.append(path.name)
    if removed:
        _fsync_dir(directory)
        log.info("removed %d snapshot leftover(s): %s", len(removed), ", ".join(sorted(removed)))
    return removed


def read_snapshot(
    directory: Path, *, embedder_id: str, dim: int, layout: str | None = None
) -> tuple[Manifest, list[Entry]]:
    """Entries as objects (tests, tools); the service loads `read_snapshot_arrays`."""
    manifest, arrays = read_snapshot_arrays(
        directory, embedder_id=embedder_id, dim=dim, layout=layout
    )
    return manifest, list(_entries(arrays))


def read_snapshot_arrays(
    directory: Path, *, embedder_id: str, dim: int, layout: str | None = None
) -> tuple[Manifest, dict[str, np.ndarray]]:
    """The checked arrays of the snapshot. `layout`: when given, a snapshot whose rows'
    meta was packed under another one (another domain list) is not trusted."""
    manifest = read_manifest(directory, embedder_id=embedder_id, dim=dim)
    path = directory / manifest.data_file
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise SnapshotInvalid(f"data file unreadable: {exc}") from exc
    if hashlib.sha256(data).hexdigest() != manifest.sha256:
        raise SnapshotInvalid("data file checksum mismatch")
    try:
        arrays = _decode(data, dim, layout)
    except (ValueError, KeyError, OSError) as exc:
        raise SnapshotInvalid(f"data file undecodable: {exc}") from exc
    if len(arrays["vectors"]) != manifest.count:
        raise SnapshotInvalid(
            f"data file holds {len(arrays['vectors'])} vectors, manifest says {manifest.count}"
        )
    return manifest, arrays


def _decode(data: bytes, dim: int, layout: str | None) -> dict[str, np.ndarray]:
    with np.load(io.BytesIO(data), allow_pickle=False) as file:
        arrays = {name: file[name] for name in file.files}
    held = str(arrays["meta_layout"][0]) if "meta_layout" in arrays else ""
    if layout is not None and held != layout:
        raise ValueError(f"rows' meta packed as {held!r}, this process packs {layout!r}")
    vectors = arrays["vectors"]
    if vectors.ndim != 2 or vectors.shape[1] != dim:
        raise ValueError(f"vectors have shape {vectors.shape}, expected (n, {dim})")
    count = len(vectors)
    arrays.setdefault("meta", np.zeros(count, np.int64))
    names = arrays["collection_names"]
    for name, shape in (("users", (count, 16)), ("rows", (count, 16))):
        if arrays[name].shape != shape or arrays[name].dtype != np.uint8:
            raise ValueError(f"{name} have shape {arrays[name].shape}, expected {shape}")
    for name in ("collections", "roles", "meta"):
        if arrays[name].shape != (count,):
            raise ValueError(f"{name} have shape {arrays[name].shape}, expected ({count},)")
    codes = arrays["collections"]
    if count and (codes.min() < 0 or codes.max() >= len(names)):
        raise ValueError("a collection code names no collection")
    return arrays


def _entries(arrays: dict[str, np.ndarray]) -> Iterator[Entry]:
    users, rows = arrays["users"], arrays["rows"]
    codes, names = arrays["collections"], [str(n) for n in arrays["collection_names"]]
    roles, vectors, metas = arrays["roles"], arrays["vectors"], arrays["meta"]
    for i in range(vectors.shape[0]):
        yield Entry(
            user_id=uuid.UUID(bytes=bytes(users[i])),
            collection=names[int(codes[i])],
            row_id=uuid.UUID(bytes=bytes(rows[i])),
            role=int(roles[i]),
            vector=vectors[i].astype(np.float32),
            meta=int(metas[i]),
        )
