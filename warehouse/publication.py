"""Where marts are built and where BI reads them, and the read-only BI role (PostgreSQL).

DuckDB: dbt builds `marts` in the working file and publication copies it to a separate file.
PostgreSQL: dbt (run by the pipeline) builds into `marts_build`, which BI cannot read; the
checks and dbt's tests read that, and publication replaces the tables of `marts` by copies of
the build in one transaction, then re-grants the BI role. `marts_build` always holds the latest
build. A direct `dbt build` outside the pipeline still builds `marts`.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import os
import re
from dataclasses import dataclass

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
