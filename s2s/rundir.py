"""One trainer per run directory: an exclusive lock held for the whole run.

Two trainers writing one run directory would interleave checkpoints and metrics. The lock is
`fcntl.flock` on `RUN/.lock`, which holds the pid of its owner so that a refused trainer can name
it. The kernel releases a flock when its process ends, however it ends (SIGKILL included), so a
lock left behind by a dead process never blocks the next run. The file itself stays in place:
deleting a lock file races with a process that has just opened it.
"""

from __future__ import annotations

import fcntl
import os
import shutil
import time
from pathlib import Path

from s2s.errors import UserError

LOCK_FILE = ".lock"


class RunLock:
    """Held from `acquire` until `release` (or until the process ends)."""

    def __init__(self, fd: int):
        self.fd = fd

    @classmethod
    def acquire(cls, run_dir: Path) -> "RunLock":
        """Take the run directory's lock (creating the directory), or say who holds it."""
        run_dir = Path(run_dir)
        run_dir.mkdir(parents=True, exist_ok=True)
        fd = os.open(run_dir / LOCK_FILE, os.O_RDWR | os.O_CREAT, 0o666)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = _holder(fd)
            os.close(fd)
            raise UserError(f"{run_dir} is in use by another trainer (pid {holder}); wait for it "
                            "to finish or stop it, or train into another --run-dir") from None
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
        return cls(fd)

    def release(self) -> None:
        if self.fd >= 0:
            os.ftruncate(self.fd, 0)
            os.close(self.fd)  # closing the last descriptor drops the flock
            self.fd = -1


def _holder(fd: int) -> str:
    """The pid written by the lock's owner (it writes it just after locking: wait a moment)."""
    for _ in range(50):
        text = os.pread(fd, 32, 0).decode("ascii", errors="replace").strip()
        if text:
            return text
        time.sleep(0.01)
    return "unknown"


def clear_run_dir(run_dir: Path) -> None:
    """Delete everything in a run directory but its lock (for --overwrite, lock held)."""
    for entry in Path(run_dir).iterdir():
        if entry.name == LOCK_FILE:
            continue
        if entry.is_dir() and not entry.is_symlink():
            shutil.rmtree(entry)
        else:
            entry.unlink()
