"""Publication: BI users read a snapshot of the marts that only changes between runs."""


import dagster as dg

from orchestration.resources import WarehouseResource


def build_published_marts(mart_models: list[str]) -> dg.AssetsDefinition:
    @dg.asset(
        key=dg.AssetKey(["published", "marts"]),
        deps=[dg.AssetKey(["marts", m]) for m in mart_models],
        group_name="published",
        kinds={"duckdb"},
        description="The marts copied to a separate DuckDB file and swapped in atomically "
                    "(PostgreSQL: the live marts schema). Runs only when every blocking mart "
                    "check passed.",
    )
    def published_marts(warehouse: WarehouseResource) -> dg.MaterializeResult:
        wh = warehouse.open()
        location = wh.publish()
        counts = wh.table_counts("marts")
        return dg.MaterializeResult(metadata={
            "location": location,
            **{f"rows_{name}": count for name, count in counts.items()},
        })

    return published_marts
