#!/bin/sh
# The dbt that Dagster runs (orchestration.assets.dbt.dbt_resource): on DuckDB, in the
# warehouse file's folder with the file named relative to it (VORONKA_DBT_DUCKDB_PATH, read
# by profiles.yml). dbt hashes the profile's path into its partial parse, so an absolute path
# made every warehouse in another folder (a scratch warehouse, a benchmark's) parse the whole
# project again (~5 s); relative, every warehouse file of one name shares the parse.
# PostgreSQL: dbt as it is. The dbt run is VORONKA_DBT_EXECUTABLE (the venv's).
if [ "${VORONKA_WAREHOUSE:-duckdb}" = "duckdb" ] && [ -n "${VORONKA_DUCKDB_PATH:-}" ]; then
    cd "$(dirname "$VORONKA_DUCKDB_PATH")" || exit 2
    VORONKA_DBT_DUCKDB_PATH="$(basename "$VORONKA_DUCKDB_PATH")"
    export VORONKA_DBT_DUCKDB_PATH
fi
exec "${VORONKA_DBT_EXECUTABLE:-dbt}" "$@"
