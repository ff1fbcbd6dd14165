"""What the last successful ``dbt build`` was built from, so the next one does only what changed.

A run lands raw data, then builds dbt. When nothing landed since the last successful build
(same raw tables, same dbt project, same vars and day), the build, the mart checks, publication
and the audience syncs are skipped; when some raw tables changed, only the dbt nodes downstream
of those sources are built. The marts stay a function of the data and the as-of date: a node
that is not rebuilt was built from exactly the inputs it would read now.

Fingerprints:

- a landing table ``raw.<source>__<entity>`` is append-only (landing skips records it already
  holds), so its row count and newest ``extracted_at`` change whenever it does;
- a derived table (contact points, channel mapping, identity clusters) is replaced each run:
  the hash of its sorted rows;
- the build itself: the dbt project's files, the dbt vars, the warehouse kind and, when no
  as-of date is set, the day in Moscow (dbt caps the as-of date at it).

The state lives in the warehouse (``raw._dbt_build_state``), so it travels with the data it
describes, and is written only after a build succeeded: a failed build is retried in full
next time. ``VORONKA_FULL_TRANSFORM=1`` forces a full build (after a change to Python checks,
say, which the fingerprint does not see).
"""

import hashlib
import json
import os
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pandas as pd

STATE_TABLE = "_dbt_build_state"
BUILD_KEY = "__build__"  # the row holding the project/vars fingerprint
FORCE_ENV = "VORONKA_FULL_TRANSFORM"
PROJECT_FOLDERS = ("models", "macros", "seeds", "tests", "snapshots", "analyses")
MOSCOW = ZoneInfo("Europe/Moscow")


@dataclass(frozen=True)
class TransformPlan:
    """What this run's dbt step does: ``full``, ``partial`` (``changed`` tables only) or
    ``skip``; ``fingerprints`` are saved once the build succeeds."""

    mode: str
    reason: str
    changed: tuple[str, ...] = ()
    fingerprints: Mapping[str, str] = field(default_factory=dict)


def project_fingerprint(project_dir: Path, variables: Mapping[str, Any], kind: str) -> str:
    """The dbt project's files, the vars and the warehouse kind; the Moscow day when no as-of
    date is set (dbt caps the newest data date at it)."""
    digest = hashlib.sha256()
    files = [project_dir / "dbt_project.yml", project_dir / "profiles.yml"]
    for folder in PROJECT_FOLDERS:
        files += sorted((project_dir / folder).rglob("*"))
    for file in files:
        if file.is_file():
            digest.update(str(file.relative_to(project_dir)).encode())
            digest.update(file.read_bytes())
    digest.update(json.dumps(dict(variables), sort_keys=True).encode())
    digest.update(kind.encode())
    if "as_of_date" not in variables:
        digest.update(datetime.now(MOSCOW).date().isoformat().encode())
    return digest.hexdigest()


def is_landing_table(table: str) -> bool:
    """``<source>__<entity>`` tables are append-only landings; the rest are derived."""
    return "__" in table and not table.startswith("_")


def landing_fingerprints(wh: Any, tables: Iterable[str]) -> dict[str, str]:
    """Row count and newest extraction time of each landing table, in one query."""
    tables = list(tables)
    if not tables:
        return {}
    sql = " union all ".join(
        f"select '{t}' as table_name, count(*) as n, "
        f"cast(max(extracted_at) as varchar) as newest from raw.{t}" for t in tables)
    frame = wh.query_df(sql)
    return {str(t): f"{int(n)}@{newest}" for t, n, newest in frame.itertuples(index=False)}


def derived_fingerprint(wh: Any, table: str) -> str:
    """The hash of a derived table's rows, whatever order they were written in."""
    frame = wh.query_df(f"select * from raw.{table}")
    if frame.empty:
        return f"0@{','.join(frame.columns)}"
    frame = frame.astype(str).sort_values(list(frame.columns)).reset_index(drop=True)
    hashed = pd.util.hash_pandas_object(frame, index=False).to_numpy().tobytes()
    return f"{len(frame)}@{hashlib.sha256(hashed).hexdigest()}"


def source_fingerprints(wh: Any, source_tables: Iterable[str]) -> dict[str, str]:
    """One fingerprint per raw table dbt reads; "absent" for a table not landed (yet)."""
    present = set(wh.list_tables("raw"))
    wanted = sorted(set(source_tables))
    prints = landing_fingerprints(wh, [t for t in wanted if t in present and is_landing_table(t)])
    for table in wanted:
        if table not in present:
            prints[table] = "absent"
        elif not is_landing_table(table):
            prints[table] = derived_fingerprint(wh, table)
    return prints


def read_state(wh: Any) -> dict[str, str]:
    exists = wh.scalar("select count(*) from information_schema.tables where table_schema = "
                       f"'raw' and table_name = '{STATE_TABLE}'")  # list_tables hides _tables
    if not exists:
        return {}
    frame = wh.query_df(f"select name, fingerprint from raw.{STATE_TABLE}")
    return {str(n): str(f) for n, f in frame.itertuples(index=False)}


def save_state(wh: Any, plan: TransformPlan) -> None:
    """After a successful build: what it was built from."""
    rows = pd.DataFrame(sorted(plan.fingerprints.items()), columns=["name", "fingerprint"])
    wh.replace_table("raw", STATE_TABLE, rows, "name varchar, fingerprint varchar")


def plan_transform(wh: Any, source_tables: Iterable[str], build_print: str,
                   env: Mapping[str, str] = os.environ) -> TransformPlan:
    """Compare the raw tables and the build with what the last successful build saw."""
    current = {**source_fingerprints(wh, source_tables), BUILD_KEY: build_print}
    stored = read_state(wh)
    if env.get(FORCE_ENV, "").strip().lower() in ("1", "true", "yes"):
        return TransformPlan("full", f"{FORCE_ENV} is set", fingerprints=current)
    if not stored:
        return TransformPlan("full", "no earlier build recorded", fingerprints=current)
    if stored.get(BUILD_KEY) != build_print:
        return TransformPlan("full", "the dbt project, its vars or the day changed",
                             fingerprints=current)
    changed = tuple(t for t, f in current.items() if t != BUILD_KEY and stored.get(t) != f)
    if not changed:
        return TransformPlan("skip", "nothing new landed since the last successful build",
                             fingerprints=current)
    return TransformPlan("partial", f"{len(changed)} raw tables changed: {', '.join(changed)}",
                         changed=changed, fingerprints=current)


def downstream_of(manifest: Mapping[str, Any], source_tables: Iterable[str]) -> set[str]:
    """Unique ids of every node built from the given raw tables (dbt's ``source:...+``)."""
    wanted = set(source_tables)
    frontier = [uid for uid, src in manifest["sources"].items() if src["name"] in wanted]
    seen: set[str] = set()
    while frontier:
        uid = frontier.pop()
        for child in manifest["child_map"].get(uid, ()):
            if child not in seen:
                seen.add(child)
                frontier.append(child)
    return seen


def exclusions(manifest: Mapping[str, Any], keep: set[str]) -> list[str]:
    """``--exclude`` arguments for every buildable node not in ``keep`` (models, seeds,
    snapshots and tests, by fully qualified name)."""
    kinds = {"model", "seed", "snapshot", "test"}
    return sorted(
        "fqn:" + ".".join(node["fqn"]) for uid, node in manifest["nodes"].items()
        if node["resource_type"] in kinds and uid not in keep
    )
