"""The one `Definitions` object: `dagster dev` and `voronka demo` both load this."""

from __future__ import annotations

import dagster as dg

from orchestration.assets.dbt import MART_MODELS, dbt_resource, voronka_dbt_models
from orchestration.assets.publish import build_published_marts
from orchestration.assets.raw import build_raw_assets, contact_points
from orchestration.checks import build_mart_checks
from orchestration.resources import optional_resources, resources_from_env

published_marts = build_published_marts(MART_MODELS)

daily_refresh = dg.define_asset_job(
    "daily_refresh",
    selection=dg.AssetSelection.all(),
    description="Extract every source, land raw, dbt build, run checks, publish the marts.",
)

daily_refresh_schedule = dg.ScheduleDefinition(
    name="daily_refresh_0600_msk",
    job=daily_refresh,
    cron_schedule="0 6 * * *",
    execution_timezone="Europe/Moscow",
)



def build_defs() -> dg.Definitions:
    """The graph for the sources configured in the environment right now."""
    return dg.Definitions(
        assets=[*build_raw_assets(), contact_points, voronka_dbt_models, published_marts],
        asset_checks=build_mart_checks(MART_MODELS),
        jobs=[daily_refresh],
        schedules=[daily_refresh_schedule],
        resources={**resources_from_env(), **optional_resources(), "dbt": dbt_resource()},
        # One process runs the steps in order: one DuckDB writer at a time, one rate limiter
        # per API.
        executor=dg.in_process_executor,
    )


defs = build_defs()
