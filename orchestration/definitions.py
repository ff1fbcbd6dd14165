"""The one `Definitions` object: `dagster dev` and `voronka demo` both load this.

Sources
-------
A source is in the graph when its settings are present (``orchestration.resources.SOURCES``):
any subset works, down to the files folder alone. With no ad platform configured nothing is
partitioned, and a schedule tick launches the whole job in one run.

Partitions and jobs
-------------------
Ad platforms' daily statistics (Direct campaign_stats, VK ad_plan_stats, Google
campaign_stats, Meta campaign_insights) are partitioned by day (Moscow) on ONE shared
``DailyPartitionsDefinition`` with ``BackfillPolicy.single_run()``: a backfill over a date
range is one run that pulls exactly that range (``orchestration.partitions``). Every other
asset is unpartitioned: dimensions (VK ad plans), CRM entities, offline files, contact points,
dbt models, checks, publication.

After the marts, one step fits the customer predictions (BG/NBD + Gamma-Gamma,
``orchestration.assets.predictions``); publication waits for it and publishes them with the
marts, gated by their own fit check rather than the marts' checks.

After publication, one asset per dynamic audience segment (``audiences/<segment>``) diff-syncs
it to the ad platforms (``orchestration.assets.audiences``).

``daily_refresh`` is one asset job over all of them. Dagster allows unpartitioned assets and
assets of a single partitions definition in one job, so a run of ``daily_refresh`` with the
``dagster/asset_partition_range_start``/``_end`` tags does everything in one go: the ad
platforms pull that range and the rest runs as usual. ``voronka demo``
(``voronka.runner.run_daily_refresh``) runs it that way in-process (the whole history on a
fresh warehouse). A subset run of only unpartitioned assets needs no partition tags.

The 06:00 Moscow schedule (``orchestration.schedules``) needs a different range per platform
(its settling window), and a run has only one, so a tick launches one ``daily_refresh`` run
per ad platform over its window, and the sensor ``daily_refresh_after_ad_spend`` launches the
unpartitioned rest once all of them have succeeded.
"""

import dagster as dg

from orchestration.alerts import build_alert_sensors
from orchestration.assets.audiences import build_audience_assets
from orchestration.assets.channel_mapping import channel_mapping
from orchestration.assets.dbt import MART_MODELS, dbt_resource, voronka_dbt_models
from orchestration.assets.identity import build_identity_asset
from orchestration.assets.predictions import FIT_KEY, PREDICTION_MODELS, customer_predictions_asset
from orchestration.assets.publish import build_published_marts
from orchestration.assets.raw import (
    build_contact_points_asset,
    build_raw_assets,
    enabled_raw_entities,
    raw_asset_key,
)
from orchestration.checks import build_mart_checks
from orchestration.executor import threaded_executor
from orchestration.partitions import AD_SPEND_PLATFORMS, ad_spend_partitions, ad_spend_start
from orchestration.resources import resources_from_env
from orchestration.schedules import build_daily_schedule, build_rest_sensor

JOB_NAME = "daily_refresh"

# the predictions are published with the marts but not gated by the marts' checks; publication
# waits for the fit (always materialized), not for the predictions (skipped when it fails)
published_marts = build_published_marts(MART_MODELS, ungated_models=PREDICTION_MODELS,
                                        after=[FIT_KEY])

daily_refresh = dg.define_asset_job(
    JOB_NAME,
    selection=dg.AssetSelection.all(),
    description="Extract every source, land raw, dbt build, run checks, publish the marts. "
                "Ad spend is partitioned by day: give a partition range (one run pulls it "
                "all); the daily schedule runs each platform's settling window, then the rest.",
)


def ad_spend_platforms_enabled() -> list[str]:
    enabled = enabled_raw_entities()
    return [s for s, p in AD_SPEND_PLATFORMS.items() if p.entity in enabled.get(s, ())]


def ad_spend_asset_keys() -> dict[str, list[dg.AssetKey]]:
    """The partitioned asset(s) of each enabled ad platform."""
    return {s: [raw_asset_key(s, AD_SPEND_PLATFORMS[s].entity)]
            for s in ad_spend_platforms_enabled()}


def build_defs() -> dg.Definitions:
    """The graph for the sources configured in the environment right now."""
    platforms = ad_spend_platforms_enabled()
    partitions_def = ad_spend_partitions(platforms)
    raw_assets = build_raw_assets(partitions_def)
    assets = [*raw_assets, build_contact_points_asset(), channel_mapping, voronka_dbt_models,
              build_identity_asset(),
              customer_predictions_asset, published_marts,
              *build_audience_assets()]
    rest_keys = [key for a in assets if a.partitions_def is None for key in a.keys]
    return dg.Definitions(
        assets=assets,
        asset_checks=build_mart_checks(MART_MODELS),
        jobs=[daily_refresh],
        schedules=[build_daily_schedule(daily_refresh, ad_spend_asset_keys(), rest_keys,
                                        ad_spend_start(platforms))],
        # the run-failure alert only when a destination is configured (docs/ALERTS.md)
        sensors=[build_rest_sensor(daily_refresh, rest_keys), *build_alert_sensors()],
        # the warehouse and every source whose settings are present (any subset, down to
        # the files folder alone): orchestration.resources.SOURCES
        resources={**resources_from_env(), "dbt": dbt_resource()},
        # One process: extraction and audience syncs on threads beside each other (one rate
        # limiter per API account, landing under the writer lock), the rest in order.
        executor=threaded_executor,
    )


defs = build_defs()
