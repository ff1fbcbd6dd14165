"""`raw/channel_mapping`: the user's channel mapping file, validated and loaded before dbt.

dbt reads it through the source `voronka_settings.channel_mapping` (int_channel_mapping), so
Dagster orders this asset before every model that maps UTM tags to channels. An invalid file
fails this step with the file, line and field named, and nothing downstream runs on a mapping
the user did not mean.
"""

import dagster as dg

from orchestration.resources import WarehouseResource
from warehouse.channel_mapping import ENV_VAR, load_channel_mapping, mapping_path

KEY = dg.AssetKey(["raw", "channel_mapping"])


@dg.asset(
    key=KEY,
    group_name="raw_settings",
    kinds={"python", "csv"},
    description=f"The (utm_source, utm_medium) -> channel rules from {ENV_VAR} (default: the "
                "shipped dbt_project/seeds/channel_mapping.csv), validated and loaded into "
                "raw.channel_mapping. Rules and examples: docs/CHANNELS.md.",
)
def channel_mapping(context: dg.AssetExecutionContext,
                    warehouse: WarehouseResource) -> dg.MaterializeResult:
    """Load the mapping in force for this run; a bad file fails the run before dbt."""
    path = mapping_path()
    rows = load_channel_mapping(warehouse.open(), path)
    wildcard_rows = sum(1 for r in rows if "*" in (r.utm_source, r.utm_medium))
    context.log.info(f"channel mapping: {len(rows)} rows from {path}")
    return dg.MaterializeResult(metadata={
        "file": str(path),
        "rows": len(rows),
        "wildcard_rows": wildcard_rows,
        "channels": ", ".join(sorted({r.channel for r in rows})),
    })
