"""Where marts are built and where BI reads them, and the read-only BI role (PostgreSQL).

DuckDB: dbt builds `marts` in the working file and publication copies it to a separate file.
PostgreSQL: dbt (run by the pipeline) builds into `marts_build`, which BI cannot read; the
checks and dbt's tests read that, and publication replaces the tables of `marts` by copies of
the build in one transaction, then re-grants the BI role. `marts_build` always holds the latest
build. A direct `dbt build` outside the pipeline still builds `marts`. Every publication records
the as-of date and each source's data range (marts.dim_report_dates) in its metadata.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import os
import re
from dataclasses import dataclass
from typing import Any

import pandas as pd

MARTS_SCHEMA = "marts"
BUILD_SCHEMA = "marts_build"
DEFAULT_BI_ROLE = "voronka_bi"
_ROLE_NAME = re.compile(r"^[a-z_][a-z0-9_]{0,62}$")


def dbt_build_vars(kind: str) -> dict[str, str]:
    """dbt vars of a pipeline build: on PostgreSQL the marts go to the build schema
    (read by the `marts_schema` var in macros/generate_schema_name.sql)."""
    return {"marts_schema": BUILD_SCHEMA} if kind == "postgres" else {}


@dataclass(frozen=True)
class BIRole:
    """The login role BI tools use on PostgreSQL: reads `marts`, nothing else."""

    name: str
    password: str | None

    @classmethod
    def from_env(cls) -> BIRole:
        name = (os.environ.get("VORONKA_BI_ROLE") or DEFAULT_BI_ROLE).strip()
        if not _ROLE_NAME.match(name):
            raise ValueError(
                f"VORONKA_BI_ROLE must be a lower-case PostgreSQL identifier (letters, digits, "
                f"underscores, at most 63), got {name!r}")
        return cls(name=name, password=os.environ.get("VORONKA_BI_PASSWORD") or None)

    def __repr__(self) -> str:  # never show the password
        return f"BIRole(name={self.name!r}, password={'set' if self.password else 'unset'})"


def scram_verifier(password: str, iterations: int = 4096, salt: bytes | None = None) -> str:
    """A SCRAM-SHA-256 verifier (what `\\password` in psql sends), so the clear password is
    never part of a SQL statement, a server log line or an error."""
    salt = salt or os.urandom(16)
    salted = hashlib.pbkdf2_hmac("sha256", password.encode(), salt, iterations)
    client_key = hmac.new(salted, b"Client Key", "sha256").digest()
    stored_key = hashlib.sha256(client_key).digest()
    server_key = hmac.new(salted, b"Server Key", "sha256").digest()

    def b64(raw: bytes) -> str:
        return base64.b64encode(raw).decode()

    return f"SCRAM-SHA-256${iterations}:{b64(salt)}${b64(stored_key)}:{b64(server_key)}"


REPORT_DATES_MODEL = "dim_report_dates"


def _iso(value: Any) -> str | None:
    """A date cell as ISO text (None for a missing one): JSON-safe on both backends."""
    if value is None or (not isinstance(value, str) and pd.isna(value)):
        return None
    return str(value)[:10]


def report_dates_metadata(frame: pd.DataFrame) -> dict[str, Any]:
    """The as-of date and each source's data range from marts.dim_report_dates, as plain
    values for the publication's metadata: a BI user can see what "today" meant for the
    snapshot they read and how far each source reached (docs metrics.md, "Periods")."""
    if frame.empty:
        return {}
    first = frame.iloc[0]
    ranges = [
        {"source": str(row.source), "source_kind": str(row.source_kind),
         "first_data_date": _iso(row.first_data_date),
         "last_data_date": _iso(row.last_data_date),
         "records_after_as_of": int(row.records_after_as_of)}
        for row in frame.sort_values(["source_kind", "source"]).itertuples(index=False)
    ]
    return {"as_of_date": _iso(first["as_of_date"]), "as_of_basis": str(first["as_of_basis"]),
            "source_data_ranges": ranges}


def published_report_dates(wh: Any) -> dict[str, Any]:
    """report_dates_metadata of the published marts; {} when the build has no such mart."""
    if REPORT_DATES_MODEL not in wh.list_tables(MARTS_SCHEMA):
        return {}
    return report_dates_metadata(wh.query_df(
        "select source, source_kind, as_of_date, as_of_basis, first_data_date, "
        f"last_data_date, records_after_as_of from {MARTS_SCHEMA}.{REPORT_DATES_MODEL}"))
