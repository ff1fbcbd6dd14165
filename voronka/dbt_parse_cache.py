"""dbt's partial parse kept per target and vars, so a dbt invocation skips the full parse.

dbt reuses `partial_parse.msgpack` only when the target and the `--vars` are the ones it was
written with: another as-of date or warehouse kind makes it parse every model, test and macro
again (~4 s of a ~7 s start on 2 cores). Each (target, database, vars) keeps its own copy under
`<project>/target/partial_parse/`; dbt itself still re-parses any file that changed since.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import tempfile
from collections.abc import Mapping, Sequence
from pathlib import Path

PARSE_FILE = "partial_parse.msgpack"


def parse_key(env: Mapping[str, str], dbt_args: Sequence[str]) -> str:
    """The target, database and --vars an invocation parses with, as a file-name-safe key.

    The database is part of it because dbt writes it into every parsed node (a source's
    `database` is the profile's at parse time) yet does not compare it when it decides whether
    a partial parse still holds: a parse made for another PostgreSQL database would point
    the run's sources at that database."""
    target = env.get("VORONKA_WAREHOUSE") or "duckdb"
    if target == "postgres":
        database = env.get("VORONKA_POSTGRES_DB") or "voronka"
    else:  # DuckDB names the database after the file
        database = Path(env.get("VORONKA_DUCKDB_PATH") or "warehouse.duckdb").stem
    args = list(dbt_args)
    variables = args[args.index("--vars") + 1] if "--vars" in args[:-1] else ""
    text = "\0".join((target, database, variables))
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def cache_dir(project_dir: Path) -> Path:
    return Path(project_dir) / "target" / "partial_parse"


def seed_target(target_path: Path, project_dir: Path, key: str) -> bool:
    """Put the parse kept for `key` into a fresh target dir; True if there was one."""
    warm = cache_dir(project_dir) / f"{key}.msgpack"
    if not warm.exists():
        return False
    target_path.mkdir(parents=True, exist_ok=True)
    shutil.copy2(warm, target_path / PARSE_FILE)
    return True


def keep_parse(target_path: Path, project_dir: Path, key: str) -> None:
    """Keep the parse an invocation wrote for the next one with the same key (atomically:
    test workers and runs may share the project)."""
    written = target_path / PARSE_FILE
    if not written.exists():
        return
    folder = cache_dir(project_dir)
    folder.mkdir(parents=True, exist_ok=True)
    handle, temporary = tempfile.mkstemp(dir=folder, suffix=".tmp")
    os.close(handle)
    try:
        shutil.copy2(written, temporary)
        os.replace(temporary, folder / f"{key}.msgpack")
    finally:
        if os.path.exists(temporary):
            os.unlink(temporary)
