"""mem0's side of bench/mem0_compare.py. Runs in the bench's own virtualenv (mem0ai
2.2.1), never in the project's, and talks to the driver through two JSON files:

    .bench-venv/mem0/bin/python bench/mem0_side.py SPEC.json OUT.json

SPEC: the packaged MiniLM's path, torch threads, top k, warm-up count, every user's
memory texts, the (user, query) pairs and the vector stores to run. OUT: per store the
fill time and, per search variant, every search's milliseconds and the texts it
returned; plus one bare query embedding per query, timed in this process (the ratio's
denominator), and the versions that ran.

No LLM is called: memories go in with `add(infer=False)`. Two shortcuts that leave
search untouched, both for the fill only: the stored texts' vectors are computed up
front in batches by mem0's own embedder model and handed to `add` through a memo (10k
single-sentence calls would dominate the run), and the FAISS store's `_save` (it
rewrites the whole index and a JSON docstore on every insert: quadratic) runs once at
the end instead of after each insert.
"""

from __future__ import annotations

import json
import os
import shutil
import sys
import tempfile
import time
from collections.abc import Callable, Mapping, Sequence
from importlib import metadata
from pathlib import Path
from typing import Any


def _store_config(store: str, dims: int, workdir: Path) -> dict[str, Any]:
    if store == "faiss":
        # mem0's defaults: euclidean distance, score 1 / (1 + squared distance)
        return {
            "collection_name": "bench",
            "path": str(workdir / "faiss"),
            "embedding_model_dims": dims,
        }
    if store == "qdrant":
        # local mode (no server), in memory; the default store of mem0's OSS Memory
        return {
            "collection_name": "bench",
            "path": str(workdir / "qdrant"),
            "embedding_model_dims": dims,
        }
    raise ValueError(f"unknown store {store!r}")


def _search_variants(store: str) -> list[tuple[str, dict[str, Any]]]:
    """mem0's default search, and for qdrant also without the default score threshold
    (0.1 on cosine), to tell the store's behaviour from the threshold's."""
    if store == "qdrant":
        return [("defaults", {}), ("threshold=0", {"threshold": 0.0})]
    return [("defaults", {})]


def interleaved(
    paths: Mapping[str, Callable[[Any], Any]], items: Sequence[Any], warmup: int
) -> dict[str, tuple[list[float], list[Any]]]:
    """Every path on every item, the paths taking turns per item, so a shared machine's
    load falls on all of them alike: per path, its milliseconds and its results. The
    first `warmup` items run untimed first. (bench/mem0_compare.py uses it too.)"""
    for item in items[:warmup]:
        for fn in paths.values():
            fn(item)
    out: dict[str, tuple[list[float], list[Any]]] = {name: ([], []) for name in paths}
    for item in items:
        for name, fn in paths.items():
            start = time.perf_counter()
            result = fn(item)
            out[name][0].append((time.perf_counter() - start) * 1000)
            out[name][1].append(result)
    return out


def _fill(memory: Any, store: str, users: dict[str, list[str]]) -> float:
    """Adds every memory with infer=False; the fill's seconds (see the module's note)."""
    distinct = sorted({text for texts in users.values() for text in texts})
    vectors = memory.embedding_model.model.encode(distinct, batch_size=32, convert_to_numpy=True)
    memo = {text: vectors[i].tolist() for i, text in enumerate(distinct)}
    embed = memory.embedding_model.embed

    def memo_embed(text: str, memory_action: str | None = None) -> Any:
        if memory_action == "add" and text in memo:
            return memo[text]
        return embed(text, memory_action)

    memory.embedding_model.embed = memo_embed
    vector_store = memory.vector_store
    save = getattr(vector_store, "_save", None) if store == "faiss" else None
    if save is not None:
        vector_store._save = lambda: None
    start = time.perf_counter()
    for user, texts in users.items():
        for text in texts:
            memory.add([{"role": "user", "content": text}], user_id=user, infer=False)
    if save is not None:
        vector_store._save = save
        save()
    memory.embedding_model.embed = embed
    return time.perf_counter() - start


def run(spec: dict[str, Any]) -> dict[str, Any]:
    import torch

    torch.set_num_threads(int(spec["threads"]))
    from mem0 import Memory  # type: ignore[import-not-found]  # the bench venv only

    # mem0's files (FAISS index, qdrant's local database, the history database) on
    # tmpfs where there is one: a disk's fsync per add would time the disk, not mem0
    shm = "/dev/shm" if os.path.isdir("/dev/shm") else None
    workdir = Path(tempfile.mkdtemp(prefix="mem0-bench-", dir=shm))
    out: dict[str, Any] = {"runs": []}
    model: Any = None
    limit = int(spec["limit"])
    fills: dict[str, float] = {}
    paths: dict[str, Callable[[Any], Any]] = {}
    for store in spec["stores"]:
        config = {
            "embedder": {
                "provider": "huggingface",
                "config": {
                    "model": spec["model_path"],
                    "embedding_dims": 384,
                    "model_kwargs": {"device": "cpu", "local_files_only": True},
                },
            },
            "vector_store": {"provider": store, "config": _store_config(store, 384, workdir)},
            # constructed by Memory() but never called: every add has infer=False
            "llm": {"provider": "openai", "config": {"api_key": "unused-no-llm-call"}},
            "history_db_path": str(workdir / f"history-{store}.db"),
        }
        memory = Memory.from_config(config)
        model = memory.embedding_model.model
        fills[store] = _fill(memory, store, spec["users"])
        for label, kwargs in _search_variants(store):

            def search(q: list[str], m: Any = memory, kw: dict[str, Any] = kwargs) -> list[str]:
                found = m.search(q[1], top_k=limit, filters={"user_id": q[0]}, **kw)
                return [item["memory"] for item in found["results"]]

            paths[f"{store}\t{label}"] = search
    if model is not None:
        paths = {"bare": lambda q: model.encode(q[1], convert_to_numpy=True), **paths}
        timed = interleaved(paths, spec["queries"], int(spec["warmup"]))
        out["embed_ms"] = timed.pop("bare")[0]
        for name, (ms, found) in timed.items():
            store, label = name.split("\t")
            out["runs"].append(
                {"store": store, "label": label, "fill_s": fills[store], "ms": ms, "found": found}
            )
    shutil.rmtree(workdir, ignore_errors=True)
    out["versions"] = {
        name: metadata.version(name)
        for name in ("mem0ai", "torch", "sentence-transformers", "faiss-cpu", "qdrant-client")
    }
    return out


def main() -> None:
    os.environ["MEM0_TELEMETRY"] = "False"  # no PostHog calls (read at import)
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
    spec_path, out_path = Path(sys.argv[1]), Path(sys.argv[2])
    os.environ.setdefault("MEM0_DIR", tempfile.mkdtemp(prefix="mem0-dir-"))
    result = run(json.loads(spec_path.read_text()))
    out_path.write_text(json.dumps(result))


if __name__ == "__main__":
    main()
