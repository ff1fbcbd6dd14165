"""Landing, cursors, quarantine and publication over DuckDB (default) or PostgreSQL."""

from warehouse.base import LandResult, Warehouse
from warehouse.records import QuarantinedRecord, RawRecord

__all__ = ["LandResult", "QuarantinedRecord", "RawRecord", "Warehouse", "open_warehouse"]


def open_warehouse(kind: str, *, duckdb_path: str | None = None,
                   published_path: str | None = None, postgres_dsn: str | None = None) -> Warehouse:
    """Build the configured backend; `kind` is 'duckdb' or 'postgres'."""
    if kind == "duckdb":
        from warehouse.duckdb_backend import DuckDBWarehouse

        return DuckDBWarehouse(duckdb_path or "data/warehouse.duckdb", published_path)
    if kind == "postgres":
        from warehouse.postgres_backend import PostgresWarehouse

        if not postgres_dsn:
            raise ValueError("VORONKA_POSTGRES_DSN must be set when VORONKA_WAREHOUSE=postgres")
        return PostgresWarehouse(postgres_dsn)
    raise ValueError(f"VORONKA_WAREHOUSE must be 'duckdb' or 'postgres', not {kind!r}")
