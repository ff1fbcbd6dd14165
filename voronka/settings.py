"""Every setting voronka reads from the environment, in one place (documented in .env.example)."""

from __future__ import annotations

import os
from dataclasses import dataclass
from datetime import date
from pathlib import Path

from warehouse import Warehouse, open_warehouse

REPO_ROOT = Path(__file__).resolve().parent.parent
DBT_PROJECT_DIR = REPO_ROOT / "dbt_project"


def _env(name: str, default: str = "") -> str:
    return os.environ.get(name, default).strip()


def _path(name: str, default: str) -> Path:
    """Relative paths are taken from the repository root, so every entry point agrees."""
    path = Path(_env(name, default)).expanduser()
    return path if path.is_absolute() else REPO_ROOT / path


def _date(name: str) -> date | None:
    value = _env(name)
    if not value:
        return None
    try:
        return date.fromisoformat(value)
    except ValueError:
        raise ValueError(f"{name} must be an ISO date (YYYY-MM-DD), got {value!r}") from None


@dataclass(frozen=True)
class WarehouseSettings:
    kind: str
    duckdb_path: Path
    published_path: Path
    pg_host: str
    pg_port: int
    pg_user: str
    pg_password: str
    pg_db: str

    @classmethod
    def from_env(cls) -> WarehouseSettings:
        return cls(
            kind=_env("VORONKA_WAREHOUSE", "duckdb"),
            duckdb_path=_path("VORONKA_DUCKDB_PATH", "data/warehouse.duckdb"),
            published_path=_path("VORONKA_PUBLISHED_PATH", "data/voronka.duckdb"),
            pg_host=_env("VORONKA_POSTGRES_HOST", "127.0.0.1"),
            pg_port=int(_env("VORONKA_POSTGRES_PORT", "5432")),
            pg_user=_env("VORONKA_POSTGRES_USER", "postgres"),
            pg_password=_env("VORONKA_POSTGRES_PASSWORD"),
            pg_db=_env("VORONKA_POSTGRES_DB", "voronka"),
        )

    @property
    def postgres_dsn(self) -> str:
        auth = self.pg_user + (f":{self.pg_password}" if self.pg_password else "")
        return f"postgresql://{auth}@{self.pg_host}:{self.pg_port}/{self.pg_db}"

    def open(self) -> Warehouse:
        return open_warehouse(
            self.kind,
            duckdb_path=str(self.duckdb_path),
            published_path=str(self.published_path),
            postgres_dsn=self.postgres_dsn,
        )

    def export_for_dbt(self) -> None:
        """dbt's profiles.yml reads these; make the DuckDB path absolute for the subprocess."""
        os.environ["VORONKA_WAREHOUSE"] = self.kind
        os.environ["VORONKA_DUCKDB_PATH"] = str(self.duckdb_path)


def state_dir() -> Path:
    """Where extractor state that is not data lives (the rotating amoCRM token)."""
    return _path("VORONKA_STATE_DIR", ".voronka/state")


def log_dir() -> Path:
    """Where the demo writes the full Dagster and dbt log."""
    return _path("VORONKA_LOG_DIR", "data/logs")


def as_of_date() -> date | None:
    """The marts' as-of date (dbt var); None lets dbt take the newest date in the data, capped
    at the day the dbt run started in Moscow (int_as_of_date), so a future-dated row cannot
    move it. Set explicitly, it is used as is, even in the future."""
    return _date("VORONKA_AS_OF_DATE")
