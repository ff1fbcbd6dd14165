"""A writer lock around the DuckDB file.

DuckDB allows one read-write process per file. Every voronka writer (landing, dbt build,
checks, publication) takes this lock first and *waits* for it, so a schedule, a click in the
Dagster UI and a CLI run queue up instead of failing on DuckDB's own file lock.
"""

from __future__ import annotations

import fcntl
import os
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

_registry_guard = threading.Lock()
_locks: dict[str, _ProcessLock] = {}


class WriterLockTimeout(TimeoutError):
    """Raised when another process holds the writer lock for longer than the timeout."""


class _ProcessLock:
    """Re-entrant within a process (thread RLock), exclusive across processes (flock)."""

    def __init__(self, path: str) -> None:
        self.path = path
        self.rlock = threading.RLock()
        self.depth = 0
        self.fd: int | None = None

    def acquire(self, timeout_s: float) -> None:
        if not self.rlock.acquire(timeout=timeout_s):
            raise WriterLockTimeout(f"writer lock {self.path} busy in this process")
        if self.depth == 0:
            try:
                self.fd = _flock_with_timeout(self.path, timeout_s)
            except BaseException:
                self.rlock.release()
                raise
        self.depth += 1

    def release(self) -> None:
        self.depth -= 1
        if self.depth == 0 and self.fd is not None:
            fcntl.flock(self.fd, fcntl.LOCK_UN)
            os.close(self.fd)
            self.fd = None
        self.rlock.release()


def _flock_with_timeout(path: str, timeout_s: float) -> int:
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            return fd
        except BlockingIOError:
            if time.monotonic() >= deadline:
                os.close(fd)
                raise WriterLockTimeout(
                    f"another voronka process has held {path} for over {timeout_s:.0f}s"
                ) from None
            time.sleep(0.2)


@contextmanager
def writer_lock(db_path: str | Path, timeout_s: float = 1800.0) -> Iterator[None]:
    """Hold the exclusive writer lock of a DuckDB file (waits, never fails fast)."""
    key = str(Path(db_path).resolve()) + ".lock"
    with _registry_guard:
        lock = _locks.setdefault(key, _ProcessLock(key))
    lock.acquire(timeout_s)
    try:
        yield
    finally:
        lock.release()
