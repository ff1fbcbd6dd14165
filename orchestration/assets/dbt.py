"""dbt models as Dagster assets (dagster-dbt); dbt tests become asset checks."""


import contextlib
import fcntl
import graphlib
import importlib.metadata
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Iterator, Mapping, Sequence
from functools import cached_property
from pathlib import Path
from typing import Any

import dagster as dg
from dagster_dbt import DagsterDbtTranslator, DbtCliResource, DbtProject, dbt_assets
from packaging import version

from orchestration.resources import WarehouseResource
from orchestration.transform_state import (
    TransformPlan,
    downstream_of,
    exclusions,
    plan_transform,
    project_fingerprint,
    save_state,
)
from voronka import settings
from voronka.dbt_parse_cache import keep_parse, parse_key, seed_target
from warehouse.publication import dbt_build_vars

DBT_PROJECT = DbtProject(
    project_dir=settings.DBT_PROJECT_DIR,
    profiles_dir=settings.DBT_PROJECT_DIR,
)


STALE_RUN_DIR_S = 24 * 3600  # a run directory this old belongs to a run that was killed
DBT_EXECUTABLE = Path(sys.executable).with_name("dbt")  # the venv's dbt, whatever PATH says
# what Dagster runs: that dbt, in the DuckDB warehouse's folder (see the script)
DBT_IN_WAREHOUSE_FOLDER = Path(__file__).resolve().parents[1] / "dbt_in_warehouse_folder.sh"

# dbt's debug file log goes to the run's own target folder, which the step removes when it
# ends; every event also reaches Dagster (and data/logs) through stdout. Writing it cost ~10 %
# of a build (~1.5 s of the demo's). Set the variable (to debug, say) to have it anyway.
DBT_FILE_LOG_ENV = "DBT_LOG_LEVEL_FILE"


def _newest_source_mtime(project_dir: Path) -> float:
    """When any model, macro, seed, test or project file last changed."""
    files = [project_dir / "dbt_project.yml", project_dir / "profiles.yml"]
    for folder in ("models", "macros", "seeds", "tests"):
        files += (project_dir / folder).rglob("*")
    return max((f.stat().st_mtime for f in files if f.is_file()), default=0.0)


def manifest_is_stale(project: DbtProject = DBT_PROJECT) -> bool:
    """No manifest yet (a fresh clone), or the project changed since it was written (a pull):
    Dagster builds its asset graph from the manifest, so a stale one would hide new models."""
    manifest = project.manifest_path
    return (not manifest.exists()
            or manifest.stat().st_mtime < _newest_source_mtime(Path(project.project_dir)))


def ensure_manifest(project: DbtProject = DBT_PROJECT) -> Path:
    """Parse the dbt project when its manifest is missing or stale.

    The parse sees the same profile and vars as the run's `dbt build` will, so that build can
    reuse dbt's partial parse instead of parsing the whole project again (~4 s).
    """
    if not manifest_is_stale(project):
        return project.manifest_path
    # Several processes may load the definitions at once (the webserver and the daemon, test
    # workers): one parses, the others wait and then find the manifest fresh. dbt writes
    # manifest.json in place, so reading it during another process's parse would fail.
    lock_path = Path(project.project_dir) / "target" / ".parse.lock"
    lock_path.parent.mkdir(parents=True, exist_ok=True)
    with lock_path.open("w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if manifest_is_stale(project):
            settings.WarehouseSettings.from_env().export_for_dbt()
            subprocess.run(
                [str(DBT_EXECUTABLE), "parse", "--quiet",
                 "--project-dir", str(project.project_dir),
                 "--profiles-dir", str(project.profiles_dir), *vars_args()],
                check=True, cwd=project.project_dir,
            )
    return project.manifest_path


class VoronkaDbtTranslator(DagsterDbtTranslator):
    """Asset keys follow the warehouse: raw/<table> for sources, <schema>/<model> for models."""

    def get_asset_key(self, dbt_resource_props: Mapping[str, Any]) -> dg.AssetKey:
        if dbt_resource_props["resource_type"] == "source":
            return dg.AssetKey(["raw", dbt_resource_props["name"]])
        schema = dbt_resource_props.get("config", {}).get("schema") or "main"
        return dg.AssetKey([schema, dbt_resource_props["name"]])

    def get_group_name(self, dbt_resource_props: Mapping[str, Any]) -> str | None:
        return dbt_resource_props.get("config", {}).get("schema") or "dbt"


def dbt_vars() -> dict[str, str]:
    """The as-of date pins the marts to the data (unset: the newest data date, capped in dbt at
    the run's day in Moscow, int_as_of_date), never to a query's clock; on PostgreSQL the
    marts are built into a schema BI cannot read until publication (warehouse.publication)."""
    as_of = settings.as_of_date()
    build = dbt_build_vars(settings.WarehouseSettings.from_env().kind)
    return {**({"as_of_date": as_of.isoformat()} if as_of else {}), **build}


def vars_args() -> list[str]:
    variables = dbt_vars()
    return ["--vars", json.dumps(variables)] if variables else []


def mart_model_names(manifest_path: Path) -> list[str]:
    manifest = json.loads(manifest_path.read_text())
    return sorted(
        node["name"] for node in manifest["nodes"].values()
        if node["resource_type"] == "model" and node["config"].get("schema") == "marts"
    )


ensure_manifest()
MART_MODELS = mart_model_names(DBT_PROJECT.manifest_path)


@dbt_assets(
    manifest=DBT_PROJECT.manifest_path,
    project=DBT_PROJECT,
    dagster_dbt_translator=VoronkaDbtTranslator(),
)
def voronka_dbt_models(
    context: dg.AssetExecutionContext, dbt: DbtCliResource, warehouse: WarehouseResource
) -> Iterator[Any]:
    """`dbt build` (models, seeds and data tests) under the warehouse writer lock, of only what
    changed (``orchestration.transform_state``): nothing when nothing landed since the last
    successful build (what follows is skipped too), else the nodes downstream of the raw
    tables that changed. dbt's unit tests check the SQL, not the data: they run in the test
    suite, not in every run."""
    warehouse.export_for_dbt()
    os.environ.setdefault(DBT_FILE_LOG_ENV, "none")
    os.environ["VORONKA_DBT_EXECUTABLE"] = str(DBT_EXECUTABLE)  # what the script runs
    wh = warehouse.open()
    manifest = json.loads(DBT_PROJECT.manifest_path.read_text())
    with wh.writer():
        plan = transform_plan(wh, manifest) if _whole_project(context) else SUBSET
        context.log.info(f"dbt build: {plan.mode} ({plan.reason})")
        if plan.mode == "skip":
            return
        keep = downstream_of(manifest, plan.changed) if plan.mode == "partial" else None
        if keep is not None and not keep:  # the changed tables feed no model
            save_state(wh, plan)
            return
        args = ["build", "--exclude-resource-type", "unit_test", *vars_args()]
        if keep is not None:
            # first, in dependency order: Dagster wants a multi-asset's outputs topologically
            yield from _unchanged_results(context, manifest, keep, plan)
            # one value, space-separated: dagster-dbt folds it into its own selection
            args += ["--exclude", " ".join(exclusions(manifest, keep))]
        key = parse_key(os.environ, args)  # export_for_dbt set the profile's variables
        target = run_target_path(context.run_id, key)
        try:
            invocation = dbt.cli(args, context=context, target_path=target)
            yield from stream_bound_to_run(invocation)
            keep_parse(target, Path(DBT_PROJECT.project_dir), key)
        finally:
            shutil.rmtree(target, ignore_errors=True)
        if plan is not SUBSET:  # a subset says nothing of the models it left out
            save_state(wh, plan)


SUBSET = TransformPlan("subset", "the run selected some dbt models or tests: exactly those")


def _whole_project(context: dg.AssetExecutionContext) -> bool:
    """Every model and test of the project selected (a run of the job, not a subset picked
    in the UI or a check-only run, which build exactly what was picked)."""
    assets_def = context.assets_def  # in a subset run: the subset, beside the whole node
    return (assets_def.keys_by_output_name == assets_def.node_keys_by_output_name
            and assets_def.check_specs_by_output_name
            == assets_def.node_check_specs_by_output_name)


def transform_plan(wh: Any, manifest: Mapping[str, Any]) -> TransformPlan:
    """This run's build: full, partial or skipped (``orchestration.transform_state``)."""
    sources = [src["name"] for src in manifest["sources"].values()]
    kind = settings.WarehouseSettings.from_env().kind
    build_print = project_fingerprint(Path(DBT_PROJECT.project_dir), dbt_vars(), kind)
    return plan_transform(wh, sources, build_print)


def _unchanged_results(context: dg.AssetExecutionContext, manifest: Mapping[str, Any],
                       rebuilt: set[str], plan: TransformPlan) -> Iterator[dg.MaterializeResult]:
    """A partial build leaves the models no changed source feeds as they were: they are
    current for this run (what follows them runs), marked as not rebuilt. In dependency
    order; none of them depends on a rebuilt one."""
    translator = VoronkaDbtTranslator()
    order = graphlib.TopologicalSorter(
        {uid: manifest["parent_map"].get(uid, ()) for uid in manifest["nodes"]}).static_order()
    for uid in order:
        node = manifest["nodes"].get(uid)
        if node is None or node["resource_type"] not in ("model", "seed", "snapshot"):
            continue
        key = translator.get_asset_key(node)
        if uid in rebuilt or key not in context.selected_asset_keys:
            continue
        yield dg.MaterializeResult(asset_key=key, metadata={
            "rebuilt": False,
            "why_not": f"no raw table it reads changed ({plan.reason})",
        })


# How long dbt may take to cancel its queries after SIGINT before it is killed (dagster-dbt
# waits 25 s, then leaves it running).
DBT_INTERRUPT_GRACE_S = 5.0

# A watchdog process (stdlib only): when the run's process dies, even by SIGKILL, it ends the
# dbt child it was started for, SIGINT first, then SIGKILL after the grace period.
_WATCHDOG = """
import os, signal, sys, time
parent, child, grace = int(sys.argv[1]), int(sys.argv[2]), float(sys.argv[3])
def alive(pid):
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True
while alive(child):
    if os.getppid() != parent:
        os.kill(child, signal.SIGINT)
        deadline = time.monotonic() + grace
        while alive(child) and time.monotonic() < deadline:
            time.sleep(0.1)
        if alive(child):
            os.kill(child, signal.SIGKILL)
        break
    time.sleep(0.2)
"""


def watch_child(pid: int, grace_s: float = DBT_INTERRUPT_GRACE_S) -> subprocess.Popen:
    """Start the watchdog of child ``pid``: a run killed outright runs no ``finally``, and its
    orphaned ``dbt build`` would otherwise go on writing the warehouse for minutes. Its own
    session, so a terminal's Ctrl-C reaches dbt, not the watchdog."""
    return subprocess.Popen(
        [sys.executable, "-I", "-S", "-c", _WATCHDOG, str(os.getpid()), str(pid), str(grace_s)],
        stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        start_new_session=True,
    )


def end_child(process: subprocess.Popen, grace_s: float = DBT_INTERRUPT_GRACE_S) -> None:
    """End a child still running: SIGINT (dbt cancels its queries), SIGKILL after grace_s."""
    if process.poll() is not None:
        return
    if grace_s > 0:
        process.send_signal(signal.SIGINT)
        try:
            process.wait(timeout=grace_s)
            return
        except subprocess.TimeoutExpired:
            pass
    process.kill()
    process.wait()


def stream_bound_to_run(invocation: Any) -> Iterator[Any]:
    """Stream a dbt invocation whose process cannot outlive the step: ended when the step
    stops for any reason (interrupt, failure, closed generator), by the watchdog when the
    whole run process is killed."""
    invocation.termination_timeout_seconds = DBT_INTERRUPT_GRACE_S
    watchdog = watch_child(invocation.process.pid)
    grace_s = DBT_INTERRUPT_GRACE_S
    try:
        yield from invocation.stream()
    except (dg.DagsterExecutionInterruptedError, subprocess.TimeoutExpired):
        grace_s = 0.0  # dagster-dbt already sent SIGINT and waited the grace period
        raise
    finally:
        end_child(invocation.process, grace_s)
        watchdog.kill()
        watchdog.wait()


def run_target_path(run_id: str, key: str, project: DbtProject = DBT_PROJECT) -> Path:
    """A run's own dbt target directory, seeded with the partial parse the last run with the
    same target, database and vars kept (voronka.dbt_parse_cache).

    The run never writes the project's target/ (whose manifest.json other processes read
    when they load the definitions), yet dbt still partial-parses. A run removes its own
    directory when it ends; here only leftovers of killed runs go, a day old: runs on other
    warehouses (another writer lock) may share the project and be building right now."""
    project_target = Path(project.project_dir) / project.target_path  # absolute stays absolute
    runs = project_target / "runs"
    if runs.exists():
        cutoff = time.time() - STALE_RUN_DIR_S
        for old in runs.iterdir():
            with contextlib.suppress(OSError):  # another run may remove it first
                if old.stat().st_mtime < cutoff:
                    shutil.rmtree(old, ignore_errors=True)
    target = runs / run_id
    target.mkdir(parents=True)
    seed_target(target, Path(project.project_dir), key)
    return target


class VenvDbtCliResource(DbtCliResource):
    """dagster-dbt runs `dbt --version` (a ~2 s subprocess) and opens an in-process adapter
    handle (~2 s) before every invocation. Our dbt is always the venv's dbt-core, and we use
    neither row-count nor column-metadata fetching (the adapter's only use), so the version
    comes from the installed package and no handle is opened: ~4 s off every run."""

    @cached_property
    def _cli_version(self) -> version.Version:
        return version.parse(importlib.metadata.version("dbt-core"))

    def _initialize_dbt_core_adapter(self, args: Sequence[str]) -> Any:
        return None


def dbt_resource() -> DbtCliResource:
    """No fixed target: profiles.yml takes it from VORONKA_WAREHOUSE when the run starts.
    dbt runs through ``DBT_IN_WAREHOUSE_FOLDER`` (its partial parse then holds for every
    DuckDB warehouse file of one name, wherever it is; the asset tells it which dbt)."""
    return VenvDbtCliResource(project_dir=DBT_PROJECT,
                              profiles_dir=str(DBT_PROJECT.profiles_dir),
                              dbt_executable=str(DBT_IN_WAREHOUSE_FOLDER))
