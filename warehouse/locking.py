"""A writer lock around the DuckDB file.

DuckDB allows one read-write process per file. Every voronka writer (landing, dbt build,
checks, publication) takes this lock first and *waits* for it, so a schedule, a click in the
Dagster UI and a CLI run queue up instead of failing on DuckDB's own file lock.

Within one process the lock passes from thread to thread: when a thread lets go while others
of the process wait for it (concurrent extraction and audience steps), the file lock is kept
and so is what the holder attached to it (the open DuckDB database), so the next thread does
not pay for closing and reopening the file. The last holder with nobody waiting closes the
attachment and releases the file lock for other processes.
"""

from __future__ import annotations

import fcntl
import os
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

_registry_guard = threading.Lock()
_locks: dict[str, _ProcessLock] = {}


class WriterLockTimeout(TimeoutError):
    """Raised when another process holds the writer lock for longer than the timeout."""


class _ProcessLock:
    """Re-entrant within a process (thread RLock), exclusive across processes (flock)."""

    def __init__(self, path: str) -> None:
        self.path = path
        self.rlock = threading.RLock()
        self.guard = threading.Lock()  # guards ``waiting``
        self.depth = 0
        self.waiting = 0  # threads of this process blocked in acquire()
        self.fd: int | None = None
        self.attached: Any | None = None  # closed (``.close()``) when the lock is let go

    def acquire(self, timeout_s: float) -> None:
        with self.guard:
            self.waiting += 1
        try:
            got = self.rlock.acquire(timeout=timeout_s)
        finally:
            with self.guard:
                self.waiting -= 1
        if not got:
            self._let_go_if_abandoned()
            raise WriterLockTimeout(f"writer lock {self.path} busy in this process")
        if self.depth == 0 and self.fd is None:  # not handed over by another thread
            try:
                self.fd = _flock_with_timeout(self.path, timeout_s)
            except BaseException:
                self.rlock.release()
                raise
        self.depth += 1

    def release(self) -> None:
        self.depth -= 1
        if self.depth == 0:
            with self.guard:
                hand_over = self.waiting > 0
            if not hand_over:
                self._let_go()
        self.rlock.release()

    def close_attached(self) -> None:
        """Close what a holder attached (the open database) now, e.g. before a subprocess
        opens the file itself."""
        attached, self.attached = self.attached, None
        if attached is not None:
            attached.close()

    def _let_go(self) -> None:
        self.close_attached()
        if self.fd is not None:
            fcntl.flock(self.fd, fcntl.LOCK_UN)
            os.close(self.fd)
            self.fd = None

    def _let_go_if_abandoned(self) -> None:
        """A waiter the lock was handed over to gave up: nobody holds it now, let it go."""
        if self.rlock.acquire(blocking=False):
            try:
                with self.guard:
                    abandoned = self.depth == 0 and self.waiting == 0
                if abandoned:
                    self._let_go()
            finally:
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
def writer_lock(db_path: str | Path, timeout_s: float = 1800.0) -> Iterator[_ProcessLock]:
    """Hold the exclusive writer lock of a DuckDB file (waits, never fails fast); yields the
    lock, whose ``attached`` slot keeps the open database between holders."""
    key = str(Path(db_path).resolve()) + ".lock"
    with _registry_guard:
        lock = _locks.setdefault(key, _ProcessLock(key))
    lock.acquire(timeout_s)
    try:
        yield lock
    finally:
        lock.release()
