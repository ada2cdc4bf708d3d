"""Thread counts come from settings, with defaults for a small container, and are
applied to torch, FAISS and the BLAS pools at start."""

from __future__ import annotations

import os
import threading
from pathlib import Path

import faiss
import pytest

from service import threads
from service.settings import Settings
from service.threads import apply_thread_settings, thread_counts


@pytest.mark.parametrize(("cores", "torch_threads"), [(1, 1), (2, 1), (3, 2), (16, 2)])
def test_defaults_leave_a_core_for_python(
    monkeypatch: pytest.MonkeyPatch, cores: int, torch_threads: int
) -> None:
    monkeypatch.setattr(threads, "available_cores", lambda: cores)
    counts = thread_counts(Settings(data_dir=Path("unused")))
    assert (counts.torch, counts.omp, counts.faiss) == (torch_threads, torch_threads, 1)


def test_settings_override_the_defaults() -> None:
    settings = Settings(data_dir=Path("unused"), torch_threads=3, omp_threads=2, faiss_threads=4)
    counts = thread_counts(settings)
    assert (counts.torch, counts.omp, counts.faiss) == (3, 2, 4)


def test_applied_to_faiss_torch_and_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    import torch
    from threadpoolctl import threadpool_info

    torch_before = torch.get_num_threads()
    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    monkeypatch.setenv("MKL_NUM_THREADS", "7")  # the environment's own choice is kept
    before = faiss.omp_get_max_threads()
    try:
        apply_thread_settings(Settings(data_dir=Path("unused"), torch_threads=1, faiss_threads=1))
        assert faiss.omp_get_max_threads() == 1
        assert os.environ["OMP_NUM_THREADS"] == "1"
        assert os.environ["MKL_NUM_THREADS"] == "7"
        blas = [pool for pool in threadpool_info() if pool["user_api"] == "blas"]
        assert blas and all(pool["num_threads"] == 1 for pool in blas)
        assert torch.get_num_threads() == 1  # loaded, so its pool is set
        seen: list[int] = []
        fresh = threading.Thread(target=lambda: seen.append(torch.get_num_threads()))
        fresh.start()
        fresh.join()
        assert seen == [1]  # a thread started later (the batcher, a request) follows
    finally:
        faiss.omp_set_num_threads(before)
        torch.set_num_threads(torch_before)
