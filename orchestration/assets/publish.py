"""Publication: BI users read a snapshot of the marts that only changes between runs.

Publication cannot skip the checks, whatever a run selects. Before publishing, the asset
asks the Dagster instance the run belongs to for the verdict of the marts' latest build:
every check of every mart (the blocking GX suites and reconciliations, dbt's tests) must have
evaluated the mart's latest materialization and not failed with ERROR severity. A check that
failed, never ran, or ran against an older build refuses the publication by name, and nothing
is published. In a full run the checks have just run in the same run; a run of
`published/marts` alone (the UI, `dagster asset materialize`) is judged on the instance's
history, so an instance that has none (an ephemeral one) refuses until the marts and their
checks run with it.

The customer predictions (``orchestration.assets.predictions``) are published along, without
that gate: their step rewrites them only when the fit passes its own check.
"""

from collections.abc import Iterable, Sequence

import dagster as dg
from dagster._core.definitions.assets.graph.base_asset_graph import BaseAssetGraph
from dagster._core.storage.asset_check_execution_record import (
    AssetCheckExecutionRecord,
    AssetCheckExecutionRecordStatus,
)

from orchestration.resources import WarehouseResource
from warehouse.publication import published_report_dates

PUBLISHED_KEY = dg.AssetKey(["published", "marts"])


def _check_blocker(record: AssetCheckExecutionRecord,
                   latest_storage_id: int | None) -> str | None:
    """Why one check's latest execution does not vouch for its mart's latest build."""
    label = f"{record.key.asset_key.to_user_string()} check {record.key.name}"
    if record.status == AssetCheckExecutionRecordStatus.PLANNED:
        return f"{label} was planned in run {record.run_id} but never evaluated"
    evaluation = record.evaluation
    target = evaluation.target_materialization_data if evaluation else None
    if target is None or target.storage_id != latest_storage_id:
        return f"{label} has not evaluated the latest build of the mart"
    if (record.status == AssetCheckExecutionRecordStatus.FAILED
            and evaluation.severity == dg.AssetCheckSeverity.ERROR):
        return f"{label} failed (run {record.run_id})"
    return None


def publication_blockers(instance: dg.DagsterInstance, mart_keys: Sequence[dg.AssetKey],
                         check_keys: Iterable[dg.AssetCheckKey],
                         known_elsewhere: Iterable[dg.AssetCheckKey] = ()) -> list[str]:
    """Every reason the latest build of the marts may not be published; empty = publish.

    `check_keys` must all vouch for their mart's latest build. `known_elsewhere` (the
    pipeline's checks that this run's graph may not show) count once they have ever run in
    this instance: a check that never ran here is not part of this deployment."""
    latest = {
        record.asset_entry.asset_key: record.asset_entry.last_materialization_storage_id
        for record in instance.get_asset_records(list(mart_keys))
    }
    blockers = _never_built([k for k in mart_keys if latest.get(k) is None], len(mart_keys))
    required = set(check_keys)
    considered = sorted((ck for ck in required | set(known_elsewhere)
                         if latest.get(ck.asset_key) is not None),
                        key=lambda ck: (ck.asset_key.to_user_string(), ck.name))
    executions = instance.event_log_storage.get_latest_asset_check_execution_by_key(considered)
    for ck in considered:
        record = executions.get(ck)
        if record is None:
            if ck in required:
                blockers.append(f"{ck.asset_key.to_user_string()} check {ck.name} has never run")
            continue
        reason = _check_blocker(record, latest[ck.asset_key])
        if reason:
            blockers.append(reason)
    return blockers


def _never_built(keys: list[dg.AssetKey], total: int) -> list[str]:
    if total > 1 and len(keys) == total:
        return [f"none of the {total} marts has been built in this Dagster instance (an "
                "ephemeral one keeps no history: set DAGSTER_HOME, or select the marts and "
                "their checks in the same run)"]
    return [f"{k.to_user_string()} has never been built in this Dagster instance" for k in keys]


def _run_graph(context: dg.AssetExecutionContext) -> BaseAssetGraph:
    """The code location's graph, else the graph of the job the run was cut from: a subset
    run (one asset picked in the UI or by the CLI) holds only what it selected."""
    try:
        return context.repository_def.asset_graph
    except Exception:  # an in-process run has no repository (a CheckError)
        job = context.job_def
    while job.is_subset:
        parent = getattr(job._subset_selection_data, "parent_job_def", None)
        if parent is None:
            break
        job = parent
    return job.asset_layer.asset_graph


def _checks_in_run_graph(context: dg.AssetExecutionContext,
                         mart_keys: Sequence[dg.AssetKey]) -> set[dg.AssetCheckKey]:
    graph = _run_graph(context)
    return {ck for k in mart_keys if graph.has(k) for ck in graph.get(k).check_keys}


def pipeline_check_keys(mart_models: Sequence[str]) -> set[dg.AssetCheckKey]:
    """The checks of the marts as the pipeline defines them (GX suites, reconciliations and
    dbt tests), known whatever a run selects: an in-process run of a subset (e.g.
    `execute_in_process(asset_selection=...)`) sees no check it did not select."""
    from orchestration.assets.dbt import voronka_dbt_models
    from orchestration.checks import build_mart_checks

    keys = {ck for checks in build_mart_checks(list(mart_models)) for ck in checks.check_keys}
    marts = {dg.AssetKey(["marts", m]) for m in mart_models}
    return {ck for ck in keys | set(voronka_dbt_models.check_keys) if ck.asset_key in marts}


def _report_dates_metadata(dates: dict) -> dict[str, dg.MetadataValue]:
    """The as-of date and each source's data range (marts.dim_report_dates) as Dagster
    metadata, so the run page says what "today" meant for this snapshot."""
    if not dates:
        return {}
    return {
        "as_of_date": dg.MetadataValue.text(dates["as_of_date"] or ""),
        "as_of_basis": dg.MetadataValue.text(dates["as_of_basis"]),
        "source_data_ranges": dg.MetadataValue.json(dates["source_data_ranges"]),
    }


def refusal(blockers: list[str]) -> dg.Failure:
    """The run fails, saying which checks stand in the way; nothing was published."""
    shown = "; ".join(blockers[:10]) + (f"; and {len(blockers) - 10} more"
                                        if len(blockers) > 10 else "")
    return dg.Failure(
        description=(f"Publication refused, nothing was published: {shown}. Run the marts "
                     "and their checks (the daily_refresh job) and publish when they pass."),
        metadata={"blockers": dg.MetadataValue.json(blockers)},
    )


def build_published_marts(
    mart_models: list[str], check_keys: Iterable[dg.AssetCheckKey] | None = None,
    ungated_models: Sequence[str] = (), after: Sequence[dg.AssetKey] = (),
) -> dg.AssetsDefinition:
    """`check_keys`: the checks known besides those of the run's graph (default: the
    pipeline's own, `pipeline_check_keys`); see `publication_blockers`.

    `ungated_models` are published with the marts but never refuse a publication (the
    customer predictions: their own step decides whether to rewrite them, and a business the
    models do not fit must still get its marts); `after` are assets publication waits for
    (the step writing them). Only assets materialized on every run belong there: Dagster
    skips a step whose upstream output was skipped."""
    mart_keys = [dg.AssetKey(["marts", m]) for m in mart_models]
    known_checks = set(pipeline_check_keys(mart_models) if check_keys is None else check_keys)
    published_models = [*mart_models, *(m for m in ungated_models if m not in mart_models)]

    @dg.asset(
        key=PUBLISHED_KEY,
        deps=[*mart_keys, *(k for k in after if k not in mart_keys)],
        group_name="published",
        kinds={"duckdb"},
        description="The marts made visible to BI: DuckDB copies them to a separate file "
                    "swapped in atomically, PostgreSQL copies them from marts_build into marts "
                    "in one transaction and re-grants the read-only BI role. Refused unless "
                    "every check of the marts' latest build passed (docs/BI.md). The customer "
                    "predictions are published with them, gated by their own fit check "
                    "instead (a failed fit keeps the previous predictions). Its metadata "
                    "records the as-of date and each source's data range.",
    )
    def published_marts(context: dg.AssetExecutionContext,
                        warehouse: WarehouseResource) -> dg.MaterializeResult:
        blockers = publication_blockers(context.instance, mart_keys,
                                        _checks_in_run_graph(context, mart_keys), known_checks)
        if blockers:
            raise refusal(blockers)
        wh = warehouse.open()
        publication = wh.publish_marts(published_models)
        for warning in publication.warnings:
            context.log.warning(warning)
        counts = wh.table_counts("marts")
        dates = published_report_dates(wh)
        return dg.MaterializeResult(metadata={
            **_report_dates_metadata(dates),
            "location": publication.location,
            "published_tables": dg.MetadataValue.json(list(publication.tables)),
            "warnings": dg.MetadataValue.json(list(publication.warnings)),
            **{f"rows_{name}": count for name, count in counts.items()},
        })

    return published_marts
