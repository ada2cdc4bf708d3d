"""Thread counts for torch, OpenMP/BLAS and FAISS, set once at start from settings.

Left alone, each library starts one thread per visible core, and on a small or
shared container they fight: one MiniLM call took 0.6 s with the defaults and 0.02 s
with one OpenMP thread on a loaded 2-core machine, and FAISS over 10 vectors 8 ms
against 0.05 ms. The defaults suit a small container: torch gets min(cores - 1, 2)
threads (at least 1), leaving a core to the Python that parses requests, reads SQL and
composes the answer while a forward pass runs (an OpenMP team as wide as the machine
stalls at every barrier when one of its threads is preempted: on the shared 2-core
machine, 2 torch threads gave 1 call/s where 1 thread gave 16); FAISS gets 1, since it
searches one user's few vectors, where threads only add overhead. The scan of one large
profile's block (store/block_ranking.py, 32k vectors or more) gets min(cores, 2)
threads: it is bound by memory bandwidth, and on the shared 2-core machine a split over
2 threads made one 240k-vector scan 1.5-1.9x faster at load 4 (nothing at load 7),
while 4 concurrent scans did as many scans/s as with 1 thread (within 3%); a third
thread was no faster than two."""

from __future__ import annotations

import logging
import os
import sys
from dataclasses import dataclass

from service.settings import Settings
from store.block_ranking import set_scan_threads

log = logging.getLogger("tailor")

_OMP_VARIABLES = ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS")


@dataclass(frozen=True, slots=True)
class ThreadCounts:
    torch: int
    omp: int
    faiss: int
    scan: int = 1


def available_cores() -> int:
    """Cores this process may run on (its CPU affinity), not the host's count."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1


def thread_counts(settings: Settings) -> ThreadCounts:
    torch_threads = settings.torch_threads or max(1, min(available_cores() - 1, 2))
    return ThreadCounts(
        torch=torch_threads,
        omp=settings.omp_threads or torch_threads,
        faiss=settings.faiss_threads,
        scan=settings.scan_threads or min(available_cores(), 2),
    )


def apply_thread_settings(settings: Settings, *, load_torch: bool = False) -> ThreadCounts:
    """OMP/MKL/OpenBLAS variables where the environment does not set them (they count
    for libraries loaded after this, and for child processes); the BLAS pools already
    loaded (numpy's OpenBLAS), through threadpoolctl; torch's intra-op pool if torch is
    loaded or `load_torch` (a fake embedder does not need it); FAISS's OpenMP pool.

    Call it before the model runs anything: torch keeps the count per thread, and a
    thread that already ran a parallel op keeps the count it had (other threads pick
    up the new one on their first op)."""
    from threadpoolctl import threadpool_limits

    counts = thread_counts(settings)
    for variable in _OMP_VARIABLES:
        os.environ.setdefault(variable, str(counts.omp))
    threadpool_limits(limits=counts.omp, user_api="blas")
    if load_torch or "torch" in sys.modules:
        import torch

        torch.set_num_threads(counts.torch)
    import faiss

    faiss.omp_set_num_threads(counts.faiss)
    set_scan_threads(counts.scan)
    log.info(
        "threads: torch %d, OMP_NUM_THREADS %s, FAISS %d, scan %d",
        counts.torch,
        os.environ["OMP_NUM_THREADS"],
        counts.faiss,
        counts.scan,
    )
    return counts
