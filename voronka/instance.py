"""The in-memory Dagster instance of a run without history (`voronka demo`, `voronka run`).

``DagsterInstance.ephemeral()`` keeps its event log in a shared-cache in-memory SQLite database
and opens a new connection for every event it stores, running two PRAGMAs on it first. A cold
run stores ~3,300 events (2,920 of them the ad-spend backfill's daily partitions, stored by four
threads in turn), so the connecting was a quarter of the event log's time: ~2 s of interpreter
time in the middle of extraction, where the ad-spend steps ended after amoCRM's. Here each
thread keeps one connection for the run; everything else is Dagster's in-memory storage.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import dagster as dg
import sqlalchemy as db
from dagster._core.storage.event_log.in_memory import InMemoryEventLogStorage


class ThreadConnectionEventLog(InMemoryEventLogStorage):
    """Dagster's in-memory event log with one connection per thread, opened on the thread's
    first use (SQLite refuses a connection from another thread) and closed on ``dispose``.
    Writes stay serialised by the storage's own lock, as in the parent class."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        self._local = threading.local()
        self._opened: list[Any] = []
        super().__init__(*args, **kwargs)

    def _thread_connection(self) -> Any:
        conn = getattr(self._local, "conn", None)
        if conn is None:
            conn = self._engine.connect()
            conn.execute(db.text("PRAGMA foreign_keys=ON;")).close()
            conn.commit()
            self._local.conn = conn
            self._opened.append(conn)
        return conn

    @contextmanager
    def _connect(self) -> Iterator[Any]:
        with self._db_lock:
            conn = self._thread_connection()
            with conn.begin():
                yield conn

    def run_connection(self, run_id: str | None = None) -> Any:
        return self._connect()

    def index_connection(self) -> Any:
        return self._connect()

    def dispose(self) -> None:
        for conn in self._opened:
            conn.close()
        self._opened.clear()
        super().dispose()


def in_memory_instance() -> dg.DagsterInstance:
    """What ``DagsterInstance.ephemeral()`` builds, with the event log above."""
    from dagster._core.instance import InstanceType
    from dagster._core.launcher.sync_in_memory_run_launcher import SyncInMemoryRunLauncher
    from dagster._core.run_coordinator import DefaultRunCoordinator
    from dagster._core.storage.noop_compute_log_manager import NoOpComputeLogManager
    from dagster._core.storage.root import TemporaryLocalArtifactStorage
    from dagster._core.storage.runs import InMemoryRunStorage

    return dg.DagsterInstance(
        instance_type=InstanceType.EPHEMERAL,
        local_artifact_storage=TemporaryLocalArtifactStorage(),
        run_storage=InMemoryRunStorage(),
        event_storage=ThreadConnectionEventLog(),
        compute_log_manager=NoOpComputeLogManager(),
        run_coordinator=DefaultRunCoordinator(),
        run_launcher=SyncInMemoryRunLauncher(),
    )
