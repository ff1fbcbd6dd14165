"""The warehouse interface shared by the DuckDB and PostgreSQL backends."""

from __future__ import annotations

import json
from abc import ABC, abstractmethod
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, date, datetime
from typing import Any

import pandas as pd

from warehouse.records import QuarantinedRecord, RawRecord, canonical_json

RAW_SCHEMA = "raw"
# One row per successful pull of an ad platform's daily statistics over a day range (the
# partitions of a run): the days no row covers are the gaps the next run backfills.
PULLS_TABLE = "_ad_spend_pulls"
RAW_COLUMNS = (
    "source", "account", "entity", "record_id", "payload", "payload_hash",
    "updated_at", "extracted_at", "run_id",
)


@dataclass(frozen=True)
class LandResult:
    inserted: int
    duplicates: int


@dataclass(frozen=True)
class Publication:
    """What a publication did: where BI reads, the tables swapped in, what BI must know."""

    location: str
    tables: tuple[str, ...] = ()
    warnings: tuple[str, ...] = ()


def utcnow() -> datetime:
    """Naive UTC now; raw timestamps are stored as UTC without a zone."""
    return datetime.now(UTC).replace(tzinfo=None)


LOOKUP_CHUNK = 500  # record ids per "in (...)" when looking up what landed before


def raw_rows(records: Sequence[RawRecord], run_id: str, extracted_at: datetime) -> list[tuple]:
    """Rows for a raw table, deduplicated within the batch by the landing key."""
    seen: set[tuple[str, str, str]] = set()
    rows = []
    for r in records:
        key = (r.account, r.record_id, r.hash)
        if key in seen:
            continue
        seen.add(key)
        rows.append((r.source, r.account, r.entity, r.record_id, canonical_json(r.payload),
                     r.hash, r.updated_at, extracted_at, run_id))
    return rows


class Warehouse(ABC):
    """Raw landing, cursors, quarantine and reads, over one database."""

    kind: str

    @abstractmethod
    @contextmanager
    def connect(self) -> Iterator[Any]:
        """A DB-API connection; the transaction commits when the block exits cleanly."""

    @abstractmethod
    def _json_type(self) -> str: ...

    @abstractmethod
    def _insert_raw(self, conn: Any, table: str, rows: list[tuple]) -> int:
        """Insert rows, skipping existing landing keys; return the number inserted."""

    # -- schema -------------------------------------------------------------------------

    def ensure_raw_table(self, conn: Any, table: str) -> None:
        conn.cursor().execute(
            f"""create table if not exists {RAW_SCHEMA}.{table} (
                source varchar not null, account varchar not null, entity varchar not null,
                record_id varchar not null, payload {self._json_type()} not null,
                payload_hash varchar not null, updated_at timestamp,
                extracted_at timestamp not null,
                run_id varchar not null, primary key (account, record_id, payload_hash))"""
        )

    def ensure_bookkeeping(self, conn: Any) -> None:
        cur = conn.cursor()
        cur.execute(f"create schema if not exists {RAW_SCHEMA}")
        cur.execute(
            f"""create table if not exists {RAW_SCHEMA}._cursors (
                source varchar not null, account varchar not null, entity varchar not null,
                cursor varchar, updated_at timestamp not null,
                primary key (source, account, entity))"""
        )
        cur.execute(
            f"""create table if not exists {RAW_SCHEMA}._quarantine (
                source varchar not null, account varchar not null, entity varchar not null,
                record_id varchar, payload {self._json_type()}, reason varchar not null,
                failed_fields varchar, run_id varchar not null,
                quarantined_at timestamp not null)"""
        )
        cur.execute(
            f"""create table if not exists {RAW_SCHEMA}.{PULLS_TABLE} (
                source varchar not null, account varchar not null, entity varchar not null,
                first_day date not null, last_day date not null, run_id varchar not null,
                pulled_at timestamp not null)"""
        )

    # -- landing ------------------------------------------------------------------------

    def land(self, records: Sequence[RawRecord], run_id: str) -> LandResult:
        """Land records idempotently: a (account, record_id, payload) seen before adds nothing."""
        if not records:
            return LandResult(0, 0)
        by_table: dict[str, list[RawRecord]] = {}
        for r in records:
            by_table.setdefault(r.table, []).append(r)
        inserted = 0
        with self.connect() as conn:
            self.ensure_bookkeeping(conn)
            for table, batch in by_table.items():
                self.ensure_raw_table(conn, table)
                inserted += self._insert_raw(conn, table, raw_rows(batch, run_id, utcnow()))
        return LandResult(inserted=inserted, duplicates=len(records) - inserted)

    def already_landed(self, records: Sequence[RawRecord]) -> set[int]:
        """The positions of ``records`` landed before with the same payload (account,
        record_id and payload hash: the raw tables' key). Landing them again adds nothing, and
        they passed validation when they landed, so a re-pull of unchanged rows (a settling
        window, an overlap, a re-run) skips both."""
        groups: dict[tuple[str, str], list[int]] = {}
        for i, r in enumerate(records):
            groups.setdefault((r.table, r.account), []).append(i)
        tables = set(self.list_tables(RAW_SCHEMA)) if groups else set()
        found: set[int] = set()
        for (table, account), positions in groups.items():
            if table not in tables:  # nothing of this entity landed yet
                continue
            ids = sorted({records[i].record_id for i in positions})
            seen = self._landed_keys(table, account, ids)
            found.update(i for i in positions
                         if (records[i].record_id, records[i].hash) in seen)
        return found

    def _landed_keys(self, table: str, account: str, ids: Sequence[str]) -> set[tuple[str, str]]:
        """(record_id, payload_hash) of ``ids`` in raw.<table> for one account."""
        seen: set[tuple[str, str]] = set()
        p = self._param
        with self.connect() as conn:
            cur = conn.cursor()
            for start in range(0, len(ids), LOOKUP_CHUNK):
                chunk = list(ids[start:start + LOOKUP_CHUNK])
                cur.execute(f"select record_id, payload_hash from {RAW_SCHEMA}.{table} "
                            f"where account = {p} and record_id in ({self._marks(len(chunk))})",
                            [account, *chunk])
                seen.update((str(r[0]), str(r[1])) for r in cur.fetchall())
        return seen

    def quarantine(self, items: Sequence[QuarantinedRecord], run_id: str) -> int:
        """Keep rejected records with their reason; they are never silently dropped."""
        if not items:
            return 0
        now = utcnow()
        rows = [
            (q.record.source, q.record.account, q.record.entity, q.record.record_id,
             canonical_json(q.record.payload), q.reason, ",".join(q.failed_fields), run_id, now)
            for q in items
        ]
        with self.connect() as conn:
            self.ensure_bookkeeping(conn)
            cur = conn.cursor()
            cur.executemany(
                f"insert into {RAW_SCHEMA}._quarantine values ({self._marks(9)})", rows
            )
        return len(rows)

    # -- cursors ------------------------------------------------------------------------

    def get_cursor(self, source: str, account: str, entity: str) -> str | None:
        with self.connect() as conn:
            self.ensure_bookkeeping(conn)
            cur = conn.cursor()
            p = self._param
            cur.execute(
                f"select cursor from {RAW_SCHEMA}._cursors "
                f"where source = {p} and account = {p} and entity = {p}",
                (source, account, entity),
            )
            rows = cur.fetchall()
        return rows[0][0] if rows else None

    def set_cursor(self, source: str, account: str, entity: str, value: str | None) -> None:
        with self.connect() as conn:
            self.ensure_bookkeeping(conn)
            cur = conn.cursor()
            p = self._param
            cur.execute(
                f"delete from {RAW_SCHEMA}._cursors "
                f"where source = {p} and account = {p} and entity = {p}",
                (source, account, entity),
            )
            cur.execute(
                f"insert into {RAW_SCHEMA}._cursors values ({p}, {p}, {p}, {p}, {p})",
                (source, account, entity, value, utcnow()),
            )

    # -- ad spend days pulled --------------------------------------------------------------

    def mark_pulled(self, source: str, account: str, entity: str, first: date, last: date,
                    run_id: str) -> None:
        """Record that every day of first..last was pulled for this account and run completed
        (a run that stopped part way records nothing, so its days stay gaps)."""
        with self.connect() as conn:
            self.ensure_bookkeeping(conn)
            conn.cursor().execute(
                f"insert into {RAW_SCHEMA}.{PULLS_TABLE} values ({self._marks(7)})",
                (source, account, entity, first, last, run_id, utcnow()),
            )

    def pulled_spans(self, source: str, entity: str,
                     account: str | None = None) -> list[tuple[date, date]]:
        """The day ranges pulled so far for one platform's account (any account when None)."""
        p = self._param
        sql = (f"select first_day, last_day from {RAW_SCHEMA}.{PULLS_TABLE} "
               f"where source = {p} and entity = {p}")
        params: tuple = (source, entity)
        if account is not None:
            sql, params = sql + f" and account = {p}", (*params, account)
        with self.connect() as conn:
            cur = conn.cursor()  # a read: no bookkeeping table created when none exists
            cur.execute("select count(*) from information_schema.tables "
                        f"where table_schema = '{RAW_SCHEMA}' and table_name = '{PULLS_TABLE}'")
            if not cur.fetchall()[0][0]:
                return []
            cur.execute(sql + " order by first_day", params)
            rows = cur.fetchall()
        return [(_as_date(first), _as_date(last)) for first, last in rows]

    # -- reads --------------------------------------------------------------------------

    _param = "%s"

    def _marks(self, n: int) -> str:
        return ", ".join([self._param] * n)

    def query_df(self, sql: str) -> pd.DataFrame:
        with self.connect() as conn:
            cur = conn.cursor()
            cur.execute(sql)
            cols = [d[0] for d in cur.description]
            return pd.DataFrame(cur.fetchall(), columns=cols)

    def scalar(self, sql: str) -> Any:
        with self.connect() as conn:
            cur = conn.cursor()
            cur.execute(sql)
            rows = cur.fetchall()
        return rows[0][0] if rows else None

    def count_rows(self, table: str) -> int:
        return int(self.scalar(f"select count(*) from {table}"))

    @abstractmethod
    def list_tables(self, schema: str) -> list[str]: ...

    def table_counts(self, schema: str) -> dict[str, int]:
        """Rows per table of a schema, in one query (one connection, not one per table)."""
        tables = self.list_tables(schema)
        if not tables:
            return {}
        sql = " union all ".join(
            f"select '{t}' as table_name, count(*) as n from {schema}.{t}" for t in tables
        )
        frame = self.query_df(sql)
        return {str(name): int(n) for name, n in frame.itertuples(index=False)}

    def replace_table(self, schema: str, table: str, df: pd.DataFrame, ddl: str) -> None:
        """Atomically replace a small derived table with the rows of `df` (ddl: column list)."""
        with self.connect() as conn:
            cur = conn.cursor()
            cur.execute(f"create schema if not exists {schema}")
            cur.execute(f"drop table if exists {schema}.{table}")
            cur.execute(f"create table {schema}.{table} ({ddl})")
            if len(df):
                self._insert_rows(cur, f"{schema}.{table}", len(df.columns),
                                  [tuple(None if pd.isna(v) else v for v in row)
                                   for row in df.itertuples(index=False)])

    def _insert_rows(self, cur: Any, table: str, width: int, rows: list[tuple]) -> None:
        """Insert plain rows into ``table`` (a backend may send them in fewer round trips)."""
        cur.executemany(f"insert into {table} values ({self._marks(width)})", rows)

    def mart_table(self, model: str) -> str:
        """The relation holding the latest build of a mart: what checks must read."""
        return f"marts.{model}"

    def publish(self) -> str | None:
        """Make the freshly built marts visible to BI users; returns where they are."""
        return None

    def publish_marts(self, models: Sequence[str] | None = None) -> Publication:
        """Publish the marts (all, or the named models); only after their checks passed."""
        location = self.publish() or self.describe()
        return Publication(location=location, tables=tuple(self.list_tables("marts")))

    def describe(self) -> str:
        return self.kind


def _as_date(value: Any) -> date:
    return value if isinstance(value, date) else date.fromisoformat(str(value)[:10])


def json_loads(value: Any) -> Any:
    """Payload columns come back as str (DuckDB) or already parsed (psycopg2 jsonb)."""
    return json.loads(value) if isinstance(value, str | bytes) else value
