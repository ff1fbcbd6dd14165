"""Audience bookkeeping in the warehouse schema ``audiences`` (DuckDB and PostgreSQL alike).

Why in the warehouse: a diff sync needs to know what every platform already holds, and that
record must survive the process and be queryable next to the marts. Tables:

- ``membership_history``: one row per stint of a customer in a segment (``entered_at`` /
  ``entered_run``, ``left_at`` / ``left_run`` / ``left_reason``; an open stint has no
  ``left_at``);
- ``static_members``: the frozen members (and look-alike value) of static segments;
- ``destinations``: the platform audience behind (segment, platform, list type): VK keeps
  one users list per identifier type, the other platforms use list type ``''``;
- ``synced_members``: per (segment, platform, audience id) and customer, the JSON of the hashed
  rows last sent for that customer, so a removal sends exactly what was added (hashes only:
  nothing raw is ever stored here);
- ``sync_runs``: one row per sync attempt with its status (success | failed | skipped |
  exported) and counts;
- ``actions``: one row per action (task, deal) of a segment entry on a CRM: which stint
  (``entered_run``), the CRM record it created (``crm_id``), its status (pending | created |
  failed | skipped) and attempts, so an entry is acted on once, however often a run is retried.

The same SQL runs on both backends; every value is a bound parameter (``wh._marks``). Table
and column names are module constants, never input.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

SCHEMA = "audiences"
HISTORY = f"{SCHEMA}.membership_history"
STATIC = f"{SCHEMA}.static_members"
DESTINATIONS = f"{SCHEMA}.destinations"
SYNCED = f"{SCHEMA}.synced_members"
RUNS = f"{SCHEMA}.sync_runs"
ACTIONS = f"{SCHEMA}.actions"
_CHUNK = 500  # rows per multi-row insert / ids per "in (...)" (bound parameters)

DDL = (
    f"create schema if not exists {SCHEMA}",
    f"""create table if not exists {HISTORY} (
        segment varchar not null, customer_id varchar not null,
        entered_at timestamp not null, entered_run varchar not null,
        left_at timestamp, left_run varchar, left_reason varchar)""",
    f"""create table if not exists {STATIC} (
        segment varchar not null, customer_id varchar not null, value double precision,
        frozen_at timestamp not null, primary key (segment, customer_id))""",
    f"""create table if not exists {DESTINATIONS} (
        segment varchar not null, platform varchar not null, list_type varchar not null,
        audience_id varchar not null, created_at timestamp not null,
        primary key (segment, platform, list_type))""",
    f"""create table if not exists {SYNCED} (
        segment varchar not null, platform varchar not null, audience_id varchar not null,
        customer_id varchar not null, rows_json varchar not null,
        synced_at timestamp not null, run_id varchar not null,
        primary key (segment, platform, audience_id, customer_id))""",
    f"""create table if not exists {RUNS} (
        run_id varchar not null primary key, segment varchar not null,
        platform varchar not null, audience_id varchar, started_at timestamp not null,
        finished_at timestamp not null, status varchar not null, added integer not null,
        removed integer not null, excluded integer not null, pending integer not null,
        message varchar)""",
    f"""create table if not exists {ACTIONS} (
        action_key varchar not null primary key, segment varchar not null,
        platform varchar not null, customer_id varchar not null, entered_run varchar not null,
        action_index integer not null, action_kind varchar not null, contact_id varchar,
        responsible_user_id varchar, crm_id varchar, status varchar not null,
        attempts integer not null, message varchar, first_run varchar not null,
        last_run varchar not null, created_at timestamp not null,
        updated_at timestamp not null)""",
)


def naive_utc(when: datetime) -> datetime:
    """Timestamps are stored as naive UTC (as the raw layer does)."""
    return when.astimezone(UTC).replace(tzinfo=None) if when.tzinfo else when


def ensure_state(wh: Any, conn: Any) -> None:
    """Create the ``audiences`` schema and tables if missing (idempotent)."""
    cur = conn.cursor()
    for statement in DDL:
        cur.execute(statement)


def _fetch(conn: Any, sql: str, params: Sequence[Any] = ()) -> list[tuple]:
    cur = conn.cursor()
    cur.execute(sql, list(params))
    return list(cur.fetchall())


def insert_rows(wh: Any, conn: Any, table: str, columns: Sequence[str],
                rows: Iterable[Sequence[Any]]) -> int:
    """Multi-row inserts of at most ``_CHUNK`` rows (far faster than executemany on DuckDB)."""
    rows = [tuple(r) for r in rows]
    cur = conn.cursor()
    one = f"({wh._marks(len(columns))})"
    for start in range(0, len(rows), _CHUNK):
        chunk = rows[start:start + _CHUNK]
        cur.execute(f"insert into {table} ({', '.join(columns)}) values "
                    f"{', '.join([one] * len(chunk))}",
                    [v for row in chunk for v in row])
    return len(rows)


def _in_chunks(ids: Sequence[str]) -> Iterable[list[str]]:
    ids = list(ids)
    for start in range(0, len(ids), _CHUNK):
        yield ids[start:start + _CHUNK]


# -- membership history ------------------------------------------------------------------------

def open_members(wh: Any, conn: Any, segment: str) -> set[str]:
    """Customers with an open stint (entered, not left) in ``segment``."""
    p = wh._param
    rows = _fetch(conn, f"select customer_id from {HISTORY} where segment = {p} "
                        f"and left_at is null", [segment])
    return {str(r[0]) for r in rows}


def record_entries(wh: Any, conn: Any, segment: str, customer_ids: Iterable[str],
                   run_id: str, when: datetime) -> int:
    """Open a stint for each customer who entered ``segment``."""
    when = naive_utc(when)
    return insert_rows(wh, conn, HISTORY, ("segment", "customer_id", "entered_at", "entered_run"),
                       [(segment, c, when, run_id) for c in sorted(customer_ids)])


def record_leaves(wh: Any, conn: Any, segment: str, reasons: dict[str, str], run_id: str,
                  when: datetime) -> int:
    """Close the open stint of each customer who left, with why (left_segment |
    not_contactable)."""
    p = wh._param
    cur = conn.cursor()
    for reason in sorted(set(reasons.values())):
        ids = sorted(c for c, r in reasons.items() if r == reason)
        for chunk in _in_chunks(ids):
            cur.execute(f"update {HISTORY} set left_at = {p}, left_run = {p}, "
                        f"left_reason = {p} where segment = {p} and left_at is null "
                        f"and customer_id in ({wh._marks(len(chunk))})",
                        [naive_utc(when), run_id, reason, segment, *chunk])
    return len(reasons)


def open_stints(wh: Any, conn: Any, segment: str) -> dict[str, str]:
    """customer_id -> the run that opened the customer's current stint in ``segment`` (an
    entry: actions are keyed by it, so a customer who leaves and comes back is acted on
    again, and only then)."""
    p = wh._param
    rows = _fetch(conn, f"select customer_id, entered_run from {HISTORY} where segment = {p} "
                        f"and left_at is null", [segment])
    return {str(c): str(r) for c, r in rows}


def history(wh: Any, segment: str) -> list[dict[str, Any]]:
    """Every stint of ``segment``, by customer and entry time (for reports and tests)."""
    p = wh._param
    with wh.connect() as conn:
        ensure_state(wh, conn)
        cur = conn.cursor()
        cur.execute(f"select customer_id, entered_at, entered_run, left_at, left_run, "
                    f"left_reason from {HISTORY} where segment = {p} "
                    f"order by customer_id, entered_at", [segment])
        cols = [d[0] for d in cur.description]
        return [dict(zip(cols, r, strict=True)) for r in cur.fetchall()]


# -- static segments ---------------------------------------------------------------------------

def frozen_members(wh: Any, conn: Any, segment: str) -> dict[str, float | None] | None:
    """customer_id -> frozen value of a static segment; None when it was never frozen."""
    p = wh._param
    rows = _fetch(conn, f"select customer_id, value from {STATIC} where segment = {p}",
                  [segment])
    if not rows:
        return None
    return {str(c): (None if v is None else float(v)) for c, v in rows}


def freeze_members(wh: Any, conn: Any, segment: str, values: dict[str, float | None],
                   when: datetime) -> int:
    """Freeze a static segment's members at creation (never changed afterwards)."""
    when = naive_utc(when)
    return insert_rows(wh, conn, STATIC, ("segment", "customer_id", "value", "frozen_at"),
                       [(segment, c, v, when) for c, v in sorted(values.items())])


# -- destinations ------------------------------------------------------------------------------

@dataclass(frozen=True)
class Destination:
    segment: str
    platform: str
    list_type: str
    audience_id: str
    created_at: datetime


def destinations(wh: Any, conn: Any, segment: str, platform: str) -> dict[str, Destination]:
    """list_type -> the recorded platform audience of (segment, platform)."""
    p = wh._param
    rows = _fetch(conn, f"select list_type, audience_id, created_at from {DESTINATIONS} "
                        f"where segment = {p} and platform = {p}", [segment, platform])
    return {str(lt): Destination(segment, platform, str(lt), str(aid), created)
            for lt, aid, created in rows}


def save_destination(wh: Any, conn: Any, segment: str, platform: str, list_type: str,
                     audience_id: str, when: datetime) -> None:
    """Record (or re-point) the platform audience of (segment, platform, list type)."""
    p = wh._param
    conn.cursor().execute(f"delete from {DESTINATIONS} where segment = {p} and platform = {p} "
                          f"and list_type = {p}", [segment, platform, list_type])
    insert_rows(wh, conn, DESTINATIONS,
                ("segment", "platform", "list_type", "audience_id", "created_at"),
                [(segment, platform, list_type, str(audience_id), naive_utc(when))])


# -- synced members ----------------------------------------------------------------------------

def row_key(row: Any) -> str:
    """Canonical JSON of one hashed row: rows compare (and are stored) by this text."""
    return json.dumps(row, sort_keys=True, separators=(",", ":"), ensure_ascii=True)


def synced_members(wh: Any, conn: Any, segment: str, platform: str,
                   audience_id: str) -> dict[str, list[Any]]:
    """customer_id -> the hashed rows last sent to this audience for that customer."""
    p = wh._param
    rows = _fetch(conn, f"select customer_id, rows_json from {SYNCED} where segment = {p} "
                        f"and platform = {p} and audience_id = {p}",
                  [segment, platform, str(audience_id)])
    return {str(c): json.loads(text) for c, text in rows}


def write_synced(wh: Any, conn: Any, segment: str, platform: str, audience_id: str,
                 after: dict[str, list[Any] | None], run_id: str, when: datetime) -> None:
    """Set the synced rows of the customers in ``after`` (None or [] deletes the customer)."""
    if not after:
        return
    p = wh._param
    cur = conn.cursor()
    for chunk in _in_chunks(sorted(after)):
        cur.execute(f"delete from {SYNCED} where segment = {p} and platform = {p} "
                    f"and audience_id = {p} and customer_id in ({wh._marks(len(chunk))})",
                    [segment, platform, str(audience_id), *chunk])
    when = naive_utc(when)
    insert_rows(wh, conn, SYNCED, ("segment", "platform", "audience_id", "customer_id",
                                   "rows_json", "synced_at", "run_id"),
                [(segment, platform, str(audience_id), c, json.dumps(rows), when, run_id)
                 for c, rows in sorted(after.items()) if rows])


# -- sync runs ---------------------------------------------------------------------------------

RUN_COLUMNS = ("run_id", "segment", "platform", "audience_id", "started_at", "finished_at",
               "status", "added", "removed", "excluded", "pending", "message")


def record_run(wh: Any, conn: Any, *, run_id: str, segment: str, platform: str,
               audience_id: str | None, started_at: datetime, finished_at: datetime,
               status: str, added: int, removed: int, excluded: int, pending: int,
               message: str) -> None:
    """One row per sync attempt, whatever its outcome."""
    insert_rows(wh, conn, RUNS, RUN_COLUMNS, [(
        run_id, segment, platform, audience_id, naive_utc(started_at), naive_utc(finished_at),
        status, int(added), int(removed), int(excluded), int(pending), message)])


def has_run(wh: Any, conn: Any, segment: str, platform: str, status: str) -> bool:
    """Whether (segment, platform) ever had a run with ``status`` (a first file export is
    checked against the platform minimum, later diffs are not)."""
    p = wh._param
    return bool(_fetch(conn, f"select 1 from {RUNS} where segment = {p} and platform = {p} "
                             f"and status = {p} limit 1", [segment, platform, status]))


def sync_runs(wh: Any, segment: str | None = None) -> list[dict[str, Any]]:
    """The recorded sync attempts (of one segment), oldest first."""
    return _records(wh, RUNS, RUN_COLUMNS, segment, "started_at, run_id")


def _records(wh: Any, table: str, columns: Sequence[str], segment: str | None,
             order: str) -> list[dict[str, Any]]:
    """Every row of a state table (of one segment) as a dict, in ``order``."""
    p = wh._param
    where, params = (f" where segment = {p}", [segment]) if segment else ("", [])
    with wh.connect() as conn:
        ensure_state(wh, conn)
        cur = conn.cursor()
        cur.execute(f"select {', '.join(columns)} from {table}{where} order by {order}",
                    params)
        return [dict(zip(columns, r, strict=True)) for r in cur.fetchall()]


# -- one sync of a segment to a platform at a time ---------------------------------------------

@contextmanager
def sync_lock(wh: Any, segment: str, platform: str) -> Iterator[None]:
    """Hold the (segment, platform) sync lock: a CLI sync started while the scheduled run syncs
    the same audience waits for it instead of reading the same state and creating or sending
    twice. DuckDB: a lock file beside the warehouse (threads and processes); PostgreSQL: a
    session advisory lock (any machine)."""
    if getattr(wh, "kind", None) == "postgres":
        import psycopg2

        conn = psycopg2.connect(wh.dsn)
        try:
            conn.autocommit = True
            conn.cursor().execute("select pg_advisory_lock(hashtext(%s))",
                                  [f"voronka.audiences:{segment}:{platform}"])
            yield
        finally:
            conn.close()  # ends the session, and with it the lock
        return
    from warehouse.locking import writer_lock

    with writer_lock(f"{wh.path}.audiences.{segment}.{platform}"):
        yield


# -- actions on entry --------------------------------------------------------------------------

ACTION_COLUMNS = ("action_key", "segment", "platform", "customer_id", "entered_run",
                  "action_index", "action_kind", "contact_id", "responsible_user_id", "crm_id",
                  "status", "attempts", "message", "first_run", "last_run", "created_at",
                  "updated_at")


def action_records(wh: Any, conn: Any, segment: str, platform: str) -> dict[str, dict[str, Any]]:
    """action_key -> the recorded action of (segment, platform)."""
    p = wh._param
    rows = _fetch(conn, f"select {', '.join(ACTION_COLUMNS)} from {ACTIONS} "
                        f"where segment = {p} and platform = {p}", [segment, platform])
    return {str(r[0]): dict(zip(ACTION_COLUMNS, r, strict=True)) for r in rows}


def upsert_actions(wh: Any, conn: Any, records: Sequence[dict[str, Any]]) -> None:
    """Write (replace) whole action records, keyed by ``action_key``."""
    if not records:
        return
    cur = conn.cursor()
    keys = [r["action_key"] for r in records]
    for chunk in _in_chunks(keys):
        cur.execute(f"delete from {ACTIONS} where action_key in ({wh._marks(len(chunk))})",
                    chunk)
    insert_rows(wh, conn, ACTIONS, ACTION_COLUMNS,
                [tuple(naive_utc(r[c]) if isinstance(r[c], datetime) else r[c]
                       for c in ACTION_COLUMNS) for r in records])


def actions(wh: Any, segment: str | None = None) -> list[dict[str, Any]]:
    """The recorded actions (of one segment), oldest first (for reports and tests)."""
    return _records(wh, ACTIONS, ACTION_COLUMNS, segment, "created_at, action_key")
