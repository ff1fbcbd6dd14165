"""PostgreSQL backend: the same interface, for teams whose BI already reads Postgres."""

from __future__ import annotations

import re
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import psycopg2
import psycopg2.errors
import psycopg2.extensions
from psycopg2 import sql
from psycopg2.extras import execute_values

from warehouse.base import RAW_SCHEMA, Publication, Warehouse
from warehouse.publication import BUILD_SCHEMA, MARTS_SCHEMA, BIRole, scram_verifier

#: pg_class.relkind -> the word DROP/ALTER need
_RELATION_KINDS = {"r": "table", "p": "table", "v": "view", "m": "materialized view"}


DDL_LOCK_KEY = 7_243_017  # the advisory lock that serialises voronka's "if not exists" DDL
_IF_NOT_EXISTS = re.compile(r"^\s*create\s+(schema|table|(unique\s+)?index)\s+if\s+not\s+exists",
                            re.IGNORECASE)


class DdlSerialisingCursor(psycopg2.extensions.cursor):
    """``create schema/table if not exists`` is not safe against a concurrent one in
    PostgreSQL: both sessions see nothing and one fails on the catalog's unique index
    (``pg_namespace_nspname_index``). Steps now land from several threads at once, so such a
    statement first takes a transaction-scoped advisory lock: the second waits, then finds
    the schema there."""

    def execute(self, query: Any, vars: Any = None) -> Any:
        text = query.as_string(self) if isinstance(query, sql.Composable) else str(query)
        if _IF_NOT_EXISTS.match(text):
            super().execute("select pg_advisory_xact_lock(%s)", (DDL_LOCK_KEY,))
        return super().execute(query, vars)


class PostgresWarehouse(Warehouse):
    kind = "postgres"
    _param = "%s"

    def __init__(self, dsn: str) -> None:
        self.dsn = dsn

    def ensure_database(self) -> bool:
        """Create the configured database if it does not exist yet; True when created."""
        parts = urlsplit(self.dsn)
        name = parts.path.lstrip("/")
        admin = psycopg2.connect(urlunsplit(parts._replace(path="/postgres")))
        admin.autocommit = True
        try:
            cur = admin.cursor()
            cur.execute("select 1 from pg_database where datname = %s", (name,))
            if cur.fetchone():
                return False
            cur.execute(sql.SQL("create database {}").format(sql.Identifier(name)))
            return True
        finally:
            admin.close()

    def drop_schemas(self, schemas: tuple[str, ...]) -> None:
        """Remove voronka's schemas (a from-scratch demo run)."""
        with self.connect() as conn:
            for schema in schemas:
                conn.cursor().execute(
                    sql.SQL("drop schema if exists {} cascade").format(sql.Identifier(schema))
                )

    def _json_type(self) -> str:
        return "jsonb"

    @contextmanager
    def writer(self) -> Iterator[None]:
        """PostgreSQL takes concurrent writers; nothing to serialise."""
        yield

    @contextmanager
    def connect(self) -> Iterator[Any]:
        conn = psycopg2.connect(self.dsn, cursor_factory=DdlSerialisingCursor)
        try:
            with conn:  # commits on success, rolls back on error
                yield conn
        finally:
            conn.close()

    def _insert_rows(self, cur: Any, table: str, width: int, rows: list[tuple]) -> None:
        """One statement per 1,000 rows instead of one per row (34,000 identity rows: ~5 s
        with executemany)."""
        execute_values(cur, f"insert into {table} values %s", rows, page_size=1000)

    def _insert_raw(self, conn: Any, table: str, rows: list[tuple]) -> int:
        inserted = execute_values(
            conn.cursor(),
            f"""insert into {RAW_SCHEMA}.{table} values %s
                on conflict do nothing returning 1""",
            rows,
            template="(%s, %s, %s, %s, %s::jsonb, %s, %s, %s, %s)",
            page_size=1000,
            fetch=True,
        )
        return len(inserted)

    def list_tables(self, schema: str) -> list[str]:
        with self.connect() as conn:
            cur = conn.cursor()
            cur.execute(
                "select table_name from information_schema.tables "
                "where table_schema = %s and table_name not like '\\_%%' order by table_name",
                (schema,),
            )
            return [r[0] for r in cur.fetchall()]

    def mart_table(self, model: str) -> str:
        """`marts_build.<model>`, the pipeline's latest build; `marts` when dbt was run
        without the pipeline's build schema (a plain `dbt build`)."""
        with self.connect() as conn:
            cur = conn.cursor()
            cur.execute("select to_regclass(%s) is not null", (f"{BUILD_SCHEMA}.{model}",))
            built = cur.fetchall()[0][0]
        return f"{BUILD_SCHEMA if built else MARTS_SCHEMA}.{model}"

    def publish(self) -> str:
        return self.publish_marts().location

    def publish_marts(self, models: Sequence[str] | None = None) -> Publication:
        """Replace the marts in `marts` by their build in `marts_build`, in one transaction
        (BI sees the old marts or the new ones, never a mix), and re-grant the BI role."""
        role = BIRole.from_env()
        with self.connect() as conn:
            cur = conn.cursor()
            cur.execute(sql.SQL("create schema if not exists {}").format(
                sql.Identifier(MARTS_SCHEMA)))
            copied = _copy_in(cur, models)
            warnings = _grant_bi_role(cur, role)
        return Publication(location=f"{self.describe()} schema {MARTS_SCHEMA}",
                           tables=tuple(copied), warnings=tuple(warnings))

    def describe(self) -> str:
        parts = urlsplit(self.dsn)
        host = parts.hostname or "localhost"
        return f"postgres://{host}:{parts.port or 5432}{parts.path}"  # no user, no password


def _relations(cur: Any, schema: str) -> dict[str, str]:
    """name -> kind (table, view, ...) of the relations of a schema."""
    cur.execute(
        "select c.relname, c.relkind from pg_class c join pg_namespace n "
        "on n.oid = c.relnamespace where n.nspname = %s and c.relkind in ('r', 'p', 'v', 'm')",
        (schema,),
    )
    return {name: _RELATION_KINDS[kind] for name, kind in cur.fetchall()}


def _copy_in(cur: Any, models: Sequence[str] | None) -> list[str]:
    """Replace each built mart in `marts` by a copy of its build (columns, comments and
    constraints included). The build schema stays as it is: dbt's tests and the checks keep
    reading the latest build there, and a subset build leaves the rest of it in place."""
    built = _relations(cur, BUILD_SCHEMA)
    live = _relations(cur, MARTS_SCHEMA)
    copied = sorted(name for name in built if models is None or name in models)
    for name in copied:
        target = sql.SQL("{}.{}").format(sql.Identifier(MARTS_SCHEMA), sql.Identifier(name))
        source = sql.SQL("{}.{}").format(sql.Identifier(BUILD_SCHEMA), sql.Identifier(name))
        if name in live:
            cur.execute(sql.SQL("drop {} {} cascade").format(sql.SQL(live[name]), target))
        cur.execute(sql.SQL("create table {} (like {} including all)").format(target, source))
        cur.execute(sql.SQL("insert into {} select * from {}").format(target, source))
    return copied


def _ensure_role(cur: Any, role: BIRole) -> str | None:
    """Create the BI login role if missing, set its password if one is configured; a
    warning instead of a failure when this database user may not manage roles."""
    cur.execute("select 1 from pg_roles where rolname = %s", (role.name,))
    exists = bool(cur.fetchall())
    if exists and not role.password:
        return None
    password = (sql.SQL(" password {}").format(sql.Literal(scram_verifier(role.password)))
                if role.password else sql.SQL(""))
    statement = (sql.SQL("alter role {} login{}") if exists else sql.SQL(
        "create role {} login nosuperuser nocreatedb nocreaterole noinherit{}"))
    cur.execute("savepoint bi_role")
    try:
        cur.execute(statement.format(sql.Identifier(role.name), password))
    except (psycopg2.errors.InsufficientPrivilege, psycopg2.errors.DuplicateObject,
            psycopg2.errors.UniqueViolation) as exc:
        cur.execute("rollback to savepoint bi_role")
        if isinstance(exc, psycopg2.errors.InsufficientPrivilege):
            verb = "update" if exists else "create"
            return (f"could not {verb} the BI role {role.name!r}: this database user may not "
                    f"manage roles; create it once as an administrator (docs/BI.md)")
    cur.execute("release savepoint bi_role")
    return None


def _grant_bi_role(cur: Any, role: BIRole) -> list[str]:
    """The BI role may connect and read `marts` (granted again after every swap: the new
    tables carry no grant of their own), and nothing else."""
    warning = _ensure_role(cur, role)
    cur.execute("select 1 from pg_roles where rolname = %s", (role.name,))
    if not cur.fetchall():
        return [warning or f"the BI role {role.name!r} does not exist"]
    ident, marts = sql.Identifier(role.name), sql.Identifier(MARTS_SCHEMA)
    cur.execute("select current_database()")
    database = sql.Identifier(cur.fetchall()[0][0])
    cur.execute("savepoint bi_grants")
    try:
        cur.execute(sql.SQL("grant connect on database {} to {}").format(database, ident))
        cur.execute(sql.SQL("grant usage on schema {} to {}").format(marts, ident))
        cur.execute(sql.SQL("grant select on all tables in schema {} to {}").format(
            marts, ident))
    except psycopg2.errors.InsufficientPrivilege as exc:
        cur.execute("rollback to savepoint bi_grants")
        warning = (f"could not grant the BI role {role.name!r} read access to marts "
                   f"({exc.pgerror.strip().splitlines()[0] if exc.pgerror else 'denied'})")
    return [warning] if warning else []
