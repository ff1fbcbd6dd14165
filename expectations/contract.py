"""The mart contract as dbt enforces it: each mart's columns, in table order, with their types.

The contract lives in dbt_project/models/marts/_*.yml (`data_type` on every column, contracts
enforced for the whole marts folder in dbt_project.yml): dbt refuses to build a mart whose SQL
yields another column or type. Python reads it back from dbt's manifest instead of keeping its
own list, so the dashboard and the tests can never disagree with what dbt built.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

MART_SCHEMA = "marts"


@dataclass(frozen=True)
class ContractColumn:
    name: str
    data_type: str


def read_mart_contract(manifest_path: Path) -> dict[str, tuple[ContractColumn, ...]]:
    """Mart name -> its contracted columns, from a dbt manifest.json (columns keep the YAML's
    order, which is the table's: a contracted table is created from that column list)."""
    manifest = json.loads(Path(manifest_path).read_text())
    contract: dict[str, tuple[ContractColumn, ...]] = {}
    for node in manifest["nodes"].values():
        if node["resource_type"] != "model" or node["config"].get("schema") != MART_SCHEMA:
            continue
        if not node["config"].get("contract", {}).get("enforced"):
            raise ValueError(f"mart {node['name']} has no enforced contract "
                             f"(dbt_project.yml: models.voronka.marts.+contract)")
        contract[node["name"]] = tuple(
            ContractColumn(column["name"], column.get("data_type") or "")
            for column in node["columns"].values()
        )
    return dict(sorted(contract.items()))


def project_manifest() -> Path:
    """The project's own manifest, parsed again first when missing or older than the project
    (the same parse the Dagster code location does when it loads)."""
    from voronka import settings

    path = settings.DBT_PROJECT_DIR / "target" / "manifest.json"
    if path.exists() and not _older_than_project(path, settings.DBT_PROJECT_DIR):
        return path
    from orchestration.assets.dbt import ensure_manifest  # imports Dagster: only when needed

    return Path(ensure_manifest())


def _older_than_project(manifest: Path, project_dir: Path) -> bool:
    """The contract is in YAML and the project file: a manifest older than either is stale."""
    sources = [project_dir / "dbt_project.yml", *(project_dir / "models").rglob("*.yml")]
    newest = max((f.stat().st_mtime for f in sources if f.is_file()), default=0.0)
    return manifest.stat().st_mtime < newest


@lru_cache(maxsize=1)
def mart_contract() -> dict[str, tuple[ContractColumn, ...]]:
    """The contract of the project's marts (read once per process)."""
    return read_mart_contract(project_manifest())


def mart_columns(manifest_path: Path | None = None) -> dict[str, tuple[str, ...]]:
    """Mart name -> column names in table order: from `manifest_path`, else the project's."""
    contract = read_mart_contract(manifest_path) if manifest_path else mart_contract()
    return {model: tuple(c.name for c in columns) for model, columns in contract.items()}
