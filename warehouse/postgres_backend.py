"""PostgreSQL backend: the same interface, for teams whose BI already reads Postgres."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import psycopg2
from psycopg2 import sql
from psycopg2.extras import execute_values

from warehouse.base import RAW_SCHEMA, Warehouse


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
        conn = psycopg2.connect(self.dsn)
        try:
            with conn:  # commits on success, rolls back on error
                yield conn
        finally:
            conn.close()

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

    def publish(self) -> str:
        """dbt swaps each Postgres table in its own transaction; the marts schema is live."""
        return f"{self.describe()} schema marts"

    def describe(self) -> str:
        parts = urlsplit(self.dsn)
        host = parts.hostname or "localhost"
        return f"postgres://{host}:{parts.port or 5432}{parts.path}"  # no user, no password
