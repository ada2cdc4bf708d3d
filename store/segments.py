"""Immutable segment files: the blocks of a vector snapshot, read by memory mapping.

A segment holds whole blocks (one user's rows of one collection): a small table first
(per block its user, collection, row and vector offsets and a BLAKE2b digest of the
block's bytes), then the rows' ids, first vectors and meta, the vectors' roles, and the
float32 vectors. Opening one maps the file and checks the table against the SHA-256
the manifest gives for it: that reads a few kilobytes, not the vectors, so a start
costs the table, and a block's pages fault in when the block is first used (the OS
shares them between processes and evicts them under pressure).

A block's bytes are checked against its digest before anything is served from it
(`Segment.verify`), lazily: the first turn of its user, or a background pass, pays
for it, never the whole snapshot before /readyz. A copy of an unchanged block into a
new segment carries its old digest, so a flipped bit is never blessed by a rewrite."""

from __future__ import annotations

import hashlib
import itertools
import json
import mmap
import os
import re
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

import numpy as np
import numpy.typing as npt

MAGIC = b"TLRSEG01"
ALIGN = 64
SEGMENT_FILE = re.compile(r"^seg-\d{1,19}-[0-9a-f]{8}\.bin$")
MAX_HEADER = 1 << 20
TABLE = ("block_users", "block_collections", "block_rows", "block_vectors", "block_digests")
BODY = ("row_ids", "first", "meta", "roles", "vectors")


class SegmentInvalid(Exception):
    """A segment's header or table does not check out: none of it can be trusted."""


@dataclass(frozen=True, slots=True)
class BlockData:
    """One block's arrays, rows in order; `first` is each row's first vector, counted
    from the block's start. `digest`: carried over from the segment it was read from
    (an unchanged block), or None to compute it from these bytes (a block from memory)."""

    user_id: uuid.UUID
    collection: str
    row_ids: npt.NDArray[np.uint8]  # (rows, 16)
    first: npt.NDArray[np.int64]
    meta: npt.NDArray[np.int64]
    roles: npt.NDArray[np.int16]
    vectors: npt.NDArray[np.float32]
    digest: bytes | None = None


def block_digest(
    row_ids: npt.NDArray[np.uint8],
    first: npt.NDArray[np.int64],
    meta: npt.NDArray[np.int64],
    roles: npt.NDArray[np.int16],
    vectors: npt.NDArray[np.float32],
) -> bytes:
    digest = hashlib.blake2b(digest_size=16)
    for part in (row_ids, first, meta, roles, vectors):
        digest.update(np.ascontiguousarray(part).data)
    return digest.digest()


@dataclass(frozen=True, slots=True)
class WrittenSegment:
    file: str
    table_sha256: str
    size: int
    digests: list[bytes]  # per block, in the order written


def _aligned(at: int) -> int:
    return (at + ALIGN - 1) // ALIGN * ALIGN


def write_segment(path: Path, blocks: Sequence[BlockData], dim: int) -> WrittenSegment:
    """Write the blocks to `path` (a temp name, fsynced, then renamed into place) and
    return what the manifest records of it. One array at a time, block by block: no
    copy of the whole segment in memory and no long call holding the GIL."""
    collections = sorted({b.collection for b in blocks})
    code = {name: i for i, name in enumerate(collections)}
    rows = np.cumsum([0] + [len(b.row_ids) for b in blocks], dtype=np.int64)
    vecs = np.cumsum([0] + [len(b.vectors) for b in blocks], dtype=np.int64)
    digests = [
        b.digest or block_digest(b.row_ids, b.first, b.meta, b.roles, b.vectors) for b in blocks
    ]
    table: dict[str, npt.NDArray[np.generic]] = {
        "block_users": np.frombuffer(b"".join(b.user_id.bytes for b in blocks), np.uint8).reshape(
            -1, 16
        ),
        "block_collections": np.array([code[b.collection] for b in blocks], dtype=np.int16),
        "block_rows": rows,
        "block_vectors": vecs,
        "block_digests": np.frombuffer(b"".join(digests), np.uint8).reshape(-1, 16),
    }
    shapes: dict[str, tuple[str, tuple[int, ...]]] = {
        name: (array.dtype.str, array.shape) for name, array in table.items()
    }
    total_rows, total_vecs = int(rows[-1]), int(vecs[-1])
    shapes.update(
        row_ids=("|u1", (total_rows, 16)),
        first=("<i8", (total_rows,)),
        meta=("<i8", (total_rows,)),
        roles=("<i2", (total_vecs,)),
        vectors=("<f4", (total_vecs, dim)),
    )
    header, offsets, end = _header(shapes, dim, collections)
    parts: dict[str, list[npt.NDArray[np.generic]]] = {
        "row_ids": [b.row_ids for b in blocks],
        "first": [b.first for b in blocks],
        "meta": [b.meta for b in blocks],
        "roles": [b.roles for b in blocks],
        "vectors": [b.vectors for b in blocks],
    }
    table_hash = hashlib.sha256(header)

    def write(handle: BinaryIO) -> None:
        handle.write(header)
        for name in (*TABLE, *BODY):
            pad = _pad_to(handle, offsets[name])
            if name in table or name == "row_ids":
                table_hash.update(pad)  # the whole prefix before the rows is the table's
            dtype = np.dtype(shapes[name][0])
            chunks = [table[name]] if name in table else parts[name]
            for chunk in chunks:
                data = np.ascontiguousarray(chunk, dtype=dtype).data
                handle.write(data)
                if name in table:
                    table_hash.update(data)
        _pad_to(handle, end)

    tmp = path.with_name(f".{path.name}.{uuid.uuid4().hex}.tmp")
    try:
        with open(tmp, "wb") as handle:
            write(handle)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return WrittenSegment(path.name, table_hash.hexdigest(), path.stat().st_size, digests)


def _pad_to(handle: BinaryIO, offset: int) -> bytes:
    pad = b"\0" * max(0, offset - handle.tell())
    handle.write(pad)
    return pad


def _header(
    shapes: dict[str, tuple[str, tuple[int, ...]]], dim: int, collections: list[str]
) -> tuple[bytes, dict[str, int], int]:
    """The header bytes and each array's offset: the offsets live in the header, whose
    length depends on them, so lay out once with a generous length, then fix it."""
    length = 4096
    while True:
        offsets: dict[str, int] = {}
        at = _aligned(16 + length)
        for name in (*TABLE, *BODY):
            offsets[name] = at
            dtype, shape = shapes[name]
            at = _aligned(at + int(np.prod(shape, dtype=np.int64)) * np.dtype(dtype).itemsize)
        body = {
            "dim": dim,
            "collections": collections,
            "arrays": {n: [offsets[n], shapes[n][0], list(shapes[n][1])] for n in offsets},
            "end": at,
        }
        text = json.dumps(body).encode()
        if len(text) <= length:
            text = text.ljust(length)
            return MAGIC + len(text).to_bytes(8, "little") + text, offsets, at
        length *= 2


class Segment:
    """A mapped segment whose table checked out; blocks are views into the mapping."""

    def __init__(self, path: Path, *, table_sha256: str, size: int, dim: int) -> None:
        self.name = path.name
        try:
            with open(path, "rb") as handle:
                actual = os.fstat(handle.fileno()).st_size
                if actual != size or size < 16:
                    raise SegmentInvalid(f"segment {path.name} has {actual} bytes, expected {size}")
                self._map = mmap.mmap(handle.fileno(), 0, access=mmap.ACCESS_READ)
        except OSError as exc:
            raise SegmentInvalid(f"segment {path.name} unreadable: {exc}") from exc
        self._buf = np.frombuffer(self._map, dtype=np.uint8)
        self._arrays = self._check(table_sha256, dim)
        names = self._collections
        users = self._arrays["block_users"]
        codes = self._arrays["block_collections"]
        self.blocks = len(codes)
        self.users = [uuid.UUID(bytes=bytes(users[i])) for i in range(self.blocks)]
        self.collections = [names[int(c)] for c in codes]
        self.rows = self._arrays["block_rows"]
        self.vecs = self._arrays["block_vectors"]

    def _check(self, table_sha256: str, dim: int) -> dict[str, npt.NDArray[np.generic]]:
        buf = self._buf
        if bytes(buf[:8]) != MAGIC:
            raise SegmentInvalid(f"segment {self.name}: not a segment file")
        length = int.from_bytes(bytes(buf[8:16]), "little")
        if not 0 < length <= MAX_HEADER or 16 + length > len(buf):
            raise SegmentInvalid(f"segment {self.name}: header length {length}")
        try:
            head = json.loads(bytes(buf[16 : 16 + length]))
            if head["dim"] != dim or head["end"] != len(buf):
                raise ValueError(f"dim {head['dim']}, end {head['end']} of {len(buf)} bytes")
            self._collections = [str(c) for c in head["collections"]]
            layout = {
                n: (int(o), str(d), tuple(int(s) for s in sh))
                for n, (o, d, sh) in head["arrays"].items()
            }
        except (ValueError, KeyError, TypeError) as exc:
            raise SegmentInvalid(f"segment {self.name}: unreadable header: {exc}") from exc
        arrays: dict[str, npt.NDArray[np.generic]] = {}
        self._spans: list[tuple[int, int]] = []
        try:
            for name in (*TABLE, *BODY):
                offset, dtype, shape = layout[name]
                count = int(np.prod(shape, dtype=np.int64))
                end = offset + count * np.dtype(dtype).itemsize
                if offset < 16 + length or end > len(buf):
                    raise ValueError(f"{name} lies outside the file")
                arrays[name] = buf[offset:end].view(np.dtype(dtype)).reshape(shape)
                self._spans.append((offset, end))
            prefix = layout["row_ids"][0]
        except (ValueError, KeyError, TypeError) as exc:
            raise SegmentInvalid(f"segment {self.name}: bad layout: {exc}") from exc
        if hashlib.sha256(buf[:prefix].data).hexdigest() != table_sha256:
            raise SegmentInvalid(f"segment {self.name}: table checksum mismatch")
        blocks = len(arrays["block_collections"])
        codes = np.asarray(arrays["block_collections"], dtype=np.int64)
        rows, vecs = arrays["block_rows"], arrays["block_vectors"]
        shapes_ok = (
            arrays["block_users"].shape == (blocks, 16)
            and arrays["block_digests"].shape == (blocks, 16)
            and rows.shape == vecs.shape == (blocks + 1,)
            and rows[0] == 0
            and vecs[0] == 0
            and bool(np.all(np.diff(rows) > 0))
            and bool(np.all(np.diff(vecs) >= np.diff(rows)))
            and arrays["row_ids"].shape == (int(rows[-1]), 16)
            and arrays["first"].shape == arrays["meta"].shape == (int(rows[-1]),)
            and arrays["roles"].shape == (int(vecs[-1]),)
            and arrays["vectors"].shape == (int(vecs[-1]), dim)
            and bool(np.all(codes >= 0))
            and bool(np.all(codes < len(self._collections)))
        )
        if not shapes_ok:
            raise SegmentInvalid(f"segment {self.name}: inconsistent table")
        return arrays

    def block(self, index: int) -> BlockData:
        """Block `index` as views into the mapping (no bytes read until used), with the
        digest it was written with. Not verified: see `verify`."""
        r0, r1 = int(self.rows[index]), int(self.rows[index + 1])
        v0, v1 = int(self.vecs[index]), int(self.vecs[index + 1])
        a = self._arrays
        return BlockData(
            self.users[index],
            self.collections[index],
            a["row_ids"][r0:r1],  # type: ignore[arg-type]
            a["first"][r0:r1],  # type: ignore[arg-type]
            a["meta"][r0:r1],  # type: ignore[arg-type]
            a["roles"][v0:v1],  # type: ignore[arg-type]
            a["vectors"][v0:v1],  # type: ignore[arg-type]
            bytes(a["block_digests"][index]),
        )

    def vectors_of(self, index: int) -> int:
        return int(self.vecs[index + 1] - self.vecs[index])

    def verify(self, index: int) -> bool:
        """Whether block `index` still has the bytes it was written with (reads them)."""
        b = self.block(index)
        first_ok = len(b.first) == 0 or (
            int(b.first[0]) == 0
            and bool(np.all(np.diff(b.first) > 0))
            and int(b.first[-1]) < len(b.vectors)
        )
        return first_ok and block_digest(b.row_ids, b.first, b.meta, b.roles, b.vectors) == b.digest

    def padding_is_clean(self) -> bool:
        """Bytes between the body's arrays are zeros (a full check, for tools and tests;
        the service never reads them)."""
        body = self._spans[len(TABLE) :]
        gaps = [(end, start) for (_, end), (start, _) in itertools.pairwise(body)]
        gaps.append((body[-1][1], len(self._buf)))
        return all(not self._buf[a:b].any() for a, b in gaps)
