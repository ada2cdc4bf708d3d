"""Which snapshot folder a worker process owns when TAILOR_WORKERS > 1.

Worker processes on one data folder are replicas of one service: they share the
database and follow its change log like replicas on other machines. Only the snapshot
folder cannot be shared: two writers would each delete the other's data file. Each
worker claims a numbered slot by taking an exclusive `flock` on `slot-N.lock` (the
lowest free N), held for the life of the process and released by the kernel when it
exits, however it exits; slot 0 uses the usual `index/` folder (so a single process
finds the snapshot the workers wrote), slot N > 0 uses `index-N/`."""

from __future__ import annotations

import fcntl
import os
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True, slots=True)
class WorkerSlot:
    number: int
    snapshot_dir: Path
    _fd: int

    def release(self) -> None:
        os.close(self._fd)


def claim_slot(data_dir: Path, default_snapshot_dir: Path, *, max_slots: int = 256) -> WorkerSlot:
    locks = data_dir / "workers"
    locks.mkdir(parents=True, exist_ok=True)
    for number in range(max_slots):
        fd = os.open(locks / f"slot-{number}.lock", os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            continue
        folder = default_snapshot_dir if number == 0 else data_dir / f"index-{number}"
        return WorkerSlot(number, folder, fd)
    raise RuntimeError(f"more than {max_slots} worker processes on {data_dir}")
