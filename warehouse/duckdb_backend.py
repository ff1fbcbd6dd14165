"""DuckDB backend: the embedded default.

The working file takes one writer at a time (see `locking.writer_lock`); BI users read the
published copy, which `publish()` swaps in atomically after each successful build.
"""

from __future__ import annotations

import os
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import duckdb
import pandas as pd

from warehouse.base import RAW_SCHEMA, Warehouse
from warehouse.locking import writer_lock

PUBLISHED_SCHEMAS = ("marts",)


class _Conn:
    """Give a DuckDB connection the DB-API shape the shared code expects (one transaction)."""

    def __init__(self, con: duckdb.DuckDBPyConnection) -> None:
        self.con = con

    def cursor(self) -> duckdb.DuckDBPyConnection:
        return self.con


def _connect_waiting(path: Path, timeout_s: float = 120.0) -> duckdb.DuckDBPyConnection:
    """Open read-write, waiting out a process outside voronka's lock (a SQL client, a dbt
    subprocess still shutting down) instead of failing on DuckDB's own file lock."""
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            return duckdb.connect(str(path))
        except duckdb.IOException as exc:
            if "lock" not in str(exc).lower() or time.monotonic() >= deadline:
                raise
            time.sleep(0.5)


def _owner_only(path: Path) -> None:
    """The working warehouse holds contacts and dates of birth: readable by its owner only
    (0600), the write-ahead log too. The published file keeps the umask's mode for BI."""
    for file in (path, path.with_name(path.name + ".wal")):
        try:
            if file.stat().st_mode & 0o077:
                file.chmod(0o600)
        except FileNotFoundError:
            continue


def _process_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # someone else's live process
        return True
    return True


class DuckDBWarehouse(Warehouse):
    kind = "duckdb"
    _param = "?"

    def __init__(self, path: str | Path, published_path: str | Path | None = None) -> None:
        self.path = Path(path)
        self.published_path = Path(published_path) if published_path else (
            self.path.with_name("voronka.duckdb")
        )

    def _json_type(self) -> str:
        return "json"

    @contextmanager
    def writer(self) -> Iterator[None]:
        """Hold the file's writer lock across several steps (e.g. around `dbt build`), with
        the file closed in this process so that a subprocess (dbt) can open it."""
        with writer_lock(self.path) as lock:
            lock.close_attached()
            yield

    @contextmanager
    def connect(self) -> Iterator[Any]:
        """One transaction on a connection of the open database: opened here, or kept open
        by the thread that held the lock before (see ``locking``). Inside an outer hold
        (``writer()``), a database opened here is closed again on the way out, so that what
        the holder runs next (dbt) finds the file free."""
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with writer_lock(self.path) as lock:
            database = lock.attached
            opened_here = database is None
            if opened_here:
                database = _connect_waiting(self.path)
                _owner_only(self.path)
                lock.attached = database
            con = database.cursor()
            try:
                con.begin()
                yield _Conn(con)
                con.commit()
            except BaseException:
                con.rollback()
                raise
            finally:
                con.close()
                if opened_here and lock.depth > 1:
                    lock.close_attached()

    def _insert_raw(self, conn: Any, table: str, rows: list[tuple]) -> int:
        con = conn.cursor()
        frame = pd.DataFrame(rows, columns=[
            "source", "account", "entity", "record_id", "payload", "payload_hash",
            "updated_at", "extracted_at", "run_id",
        ])
        frame["updated_at"] = pd.to_datetime(frame["updated_at"])
        target = f"{RAW_SCHEMA}.{table}"
        before = con.execute(f"select count(*) from {target}").fetchall()[0][0]
        con.register("_landing_batch", frame)
        con.execute(
            f"""insert into {target}
                select source, account, entity, record_id, payload::json, payload_hash,
                       updated_at::timestamp, extracted_at::timestamp, run_id
                from _landing_batch
                on conflict do nothing"""
        )
        con.unregister("_landing_batch")
        return con.execute(f"select count(*) from {target}").fetchall()[0][0] - before

    def replace_table(self, schema: str, table: str, df: pd.DataFrame, ddl: str) -> None:
        """Bulk variant: DuckDB inserts a registered DataFrame far faster than executemany."""
        with self.connect() as conn:
            con = conn.cursor()
            con.execute(f"create schema if not exists {schema}")
            con.execute(f"create or replace table {schema}.{table} ({ddl})")
            con.register("_replacement", df)
            con.execute(f"insert into {schema}.{table} select * from _replacement")
            con.unregister("_replacement")

    def list_tables(self, schema: str) -> list[str]:
        if not self.path.exists():
            return []
        with self.connect() as conn:
            rows = conn.cursor().execute(
                "select table_name from information_schema.tables "
                "where table_schema = ? and table_name not like '\\_%' escape '\\' "
                "order by table_name",
                [schema],
            ).fetchall()
        return [r[0] for r in rows]

    def clean_stale_temporaries(self) -> list[Path]:
        """Remove half-written publication copies (``.<published>.<pid>.tmp`` and their WAL)
        left by a killed run: their process is gone, nothing will ever rename them."""
        removed = []
        for path in self.published_path.parent.glob(f".{self.published_path.name}.*.tmp*"):
            pid = path.name[len(self.published_path.name) + 2:].split(".", 1)[0]
            if pid.isdigit() and not _process_alive(int(pid)):
                path.unlink(missing_ok=True)
                removed.append(path)
        return removed

    def publish(self) -> str:
        """Copy the mart schemas to a new file and rename it over the published one.

        A BI user holding the old file open keeps reading the old snapshot; the next open
        sees the new one. The rename is atomic, so nobody ever sees a half-written file.
        """
        self.clean_stale_temporaries()
        tmp = self.published_path.with_name(f".{self.published_path.name}.{os.getpid()}.tmp")
        tmp.unlink(missing_ok=True)
        with self.connect() as conn:
            con = conn.cursor()
            con.commit()  # ATTACH cannot run inside our transaction
            con.execute(f"attach '{tmp}' as published")
            try:
                for schema in PUBLISHED_SCHEMAS:
                    con.execute(f"create schema if not exists published.{schema}")
                    tables = con.execute(
                        "select table_name from information_schema.tables "
                        "where table_catalog = current_database() and table_schema = ?",
                        [schema],
                    ).fetchall()
                    for (table,) in tables:
                        con.execute(
                            f"create table published.{schema}.{table} as "
                            f"select * from {schema}.{table}"
                        )
            finally:
                con.execute("detach published")
                con.begin()
        os.replace(tmp, self.published_path)
        return str(self.published_path)

    def describe(self) -> str:
        return f"duckdb:{self.path}"
