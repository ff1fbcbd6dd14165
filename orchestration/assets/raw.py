"""Raw assets: one per source entity. Extract → validate (GX raw suite) → land → cursor."""


from collections.abc import Iterator

import dagster as dg

from expectations import validate_records
from extractors.sync import sync_entity
from orchestration.resources import WarehouseResource, enabled_optional_sources
from warehouse.contact_points import build_contact_points
from warehouse.records import QuarantinedRecord, RawRecord, raw_table_name

ALL_RAW_ENTITIES: dict[str, tuple[str, ...]] = {
    "amocrm": ("users", "pipelines", "loss_reasons", "contacts", "leads", "events"),
    "yandex_direct": ("campaign_stats",),
    "vk_ads": ("ad_plans", "ad_plan_stats"),
    "google_ads": ("campaign_stats",),
    "meta_ads": ("campaign_insights",),
    "files": ("orders", "ad_spend"),
}


def enabled_raw_entities() -> dict[str, tuple[str, ...]]:
    """amoCRM and Yandex Direct always; other sources when their variables are set."""
    enabled = {"amocrm", "yandex_direct", *enabled_optional_sources()}
    return {s: entities for s, entities in ALL_RAW_ENTITIES.items() if s in enabled}

ENTITY_DESCRIPTIONS = {
    "users": "amoCRM users (managers), full pull each run.",
    "pipelines": "amoCRM pipelines with their statuses embedded, full pull each run.",
    "loss_reasons": "amoCRM loss reasons, full pull each run.",
    "contacts": "amoCRM contacts, incremental on updated_at with an overlap window.",
    "leads": "amoCRM leads (deals) with UTM tracking fields, incremental on updated_at.",
    "events": "amoCRM lead_status_changed events (stage history), incremental on created_at.",
    "campaign_stats": "Daily campaign stats; the platform's settling window is re-pulled.",
    "ad_plans": "VK Ads ad plans (campaigns) with names and status, full pull each run.",
    "ad_plan_stats": "VK Ads daily ad plan statistics (base metrics), last 7 days re-pulled.",
    "campaign_insights": "Meta Ads Insights per campaign and day (async reports), "
                         "last 28 days re-pulled for attribution.",
    "orders": "Orders from shop or accounting exports (CSV/Parquet) under the file contract.",
    "ad_spend": "Offline ad spend files (CSV/Parquet) under the file contract.",
}
RAW_CHECK = "raw_batch_passes_suite"
MAX_REASONS_IN_METADATA = 10


def raw_asset_key(source: str, entity: str) -> dg.AssetKey:
    return dg.AssetKey(["raw", raw_table_name(source, entity)])


class _CollectingValidator:
    """Runs the raw GX suite on each page and remembers what it quarantined, for metadata."""

    def __init__(self) -> None:
        self.quarantined: list[QuarantinedRecord] = []

    def __call__(self, records: list[RawRecord]) -> tuple[list[RawRecord], list[QuarantinedRecord]]:
        result = validate_records(records)
        self.quarantined.extend(result.quarantined)
        return result.good, result.quarantined


def build_raw_asset(source: str, entity: str) -> dg.AssetsDefinition:
    """An asset that syncs one source entity into its raw table."""
    key = raw_asset_key(source, entity)

    @dg.asset(
        key=key,
        group_name=f"raw_{source}",
        description=ENTITY_DESCRIPTIONS[entity],
        kinds={"python", "duckdb"},
        required_resource_keys={"warehouse", source},
        check_specs=[dg.AssetCheckSpec(
            RAW_CHECK, asset=key,
            description="Great Expectations raw suite: failing records are quarantined "
                        "(raw._quarantine) with the record id, field and reason; the rest lands.",
        )],
    )
    def _raw_asset(
        context: dg.AssetExecutionContext,
    ) -> Iterator[dg.MaterializeResult | dg.AssetCheckResult]:
        wh = context.resources.warehouse.open()
        extractor = getattr(context.resources, source).source()
        validator = _CollectingValidator()
        result = sync_entity(extractor, entity, wh, run_id=context.run_id, validate=validator)
        reasons = [q.reason for q in validator.quarantined][:MAX_REASONS_IN_METADATA]
        for reason in reasons:
            context.log.warning(f"quarantined: {reason}")
        yield dg.MaterializeResult(metadata={
            "fetched": result.fetched,
            "inserted": result.inserted,
            "duplicates_skipped": result.duplicates,
            "quarantined": result.quarantined,
            "pages": result.pages,
            "cursor_before": str(result.cursor_before),
            "cursor_after": str(result.cursor_after),
            "table_rows": wh.count_rows(f"raw.{raw_table_name(source, entity)}")
            if result.fetched else 0,
        })
        yield dg.AssetCheckResult(
            check_name=RAW_CHECK,
            passed=result.quarantined == 0,
            severity=dg.AssetCheckSeverity.WARN,
            metadata={"quarantined": result.quarantined,
                      "reasons": dg.MetadataValue.json(reasons)},
        )

    return _raw_asset


def build_raw_assets() -> list[dg.AssetsDefinition]:
    return [build_raw_asset(s, e) for s, entities in enabled_raw_entities().items()
            for e in entities]


@dg.asset(
    key=dg.AssetKey(["raw", "contact_points"]),
    deps=[raw_asset_key("amocrm", "contacts")],
    group_name="raw_amocrm",
    kinds={"python", "duckdb"},
    description="Contacts' phones (E.164 via libphonenumber, region RU) and e-mails "
                "(trimmed, lower-cased): the keys dbt resolves customers by.",
)
def contact_points(warehouse: WarehouseResource) -> dg.MaterializeResult:
    rows = build_contact_points(warehouse.open())
    return dg.MaterializeResult(metadata={"rows": rows})
