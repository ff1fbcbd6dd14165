"""Raw assets: one per source entity. Extract → validate (GX raw suite) → land → cursor.

The entity lists come from the extractors (``<Source>.ENTITIES``), so an entity an extractor
learns joins the graph by itself. Ad platforms' daily statistics (``orchestration.partitions``)
are partitioned by day: a run pulls exactly its partition range, whatever cursor is stored, and
the stored cursor only ever moves forward. Everything else is unpartitioned and incremental
from its cursor (or a full pull), as before. Offline ad spend files stay unpartitioned: the
files source has no date filter, it re-reads every file each run (landing de-duplicates), so a
"day" of it could not be pulled on its own.
"""


import warnings
from collections.abc import Callable, Iterator
from datetime import date
from typing import Any

import dagster as dg

from expectations import validate_records
from extractors.amocrm import AmoCRMSource
from extractors.bitrix24 import Bitrix24Source
from extractors.files import FilesSource
from extractors.google_ads import GoogleAdsSource
from extractors.http import AuthorizationError
from extractors.meta_ads import MetaAdsSource
from extractors.state import AuthFailure, AuthFailures
from extractors.sync import SyncResult, sync_entity
from extractors.vk_ads import VKAdsSource
from extractors.yandex_direct import YandexDirectSource
from orchestration.executor import API_TAG, CONCURRENT_TAG
from orchestration.partitions import AD_SPEND_PLATFORMS, is_ad_spend, record_pulled
from orchestration.resources import (
    AMOCRM_OPTIONAL_ENTITIES,
    WarehouseResource,
    amocrm_skipped_entities,
    enabled_sources,
)
from voronka import settings
from warehouse.contact_points import build_contact_points
from warehouse.records import QuarantinedRecord, RawRecord, raw_table_name

SOURCE_CLASSES: dict[str, type] = {
    "amocrm": AmoCRMSource,
    "bitrix24": Bitrix24Source,
    "yandex_direct": YandexDirectSource,
    "vk_ads": VKAdsSource,
    "google_ads": GoogleAdsSource,
    "meta_ads": MetaAdsSource,
    "files": FilesSource,
}
ALL_RAW_ENTITIES: dict[str, tuple[str, ...]] = {
    source: tuple(cls.ENTITIES) for source, cls in SOURCE_CLASSES.items()
}
# Sources whose entity carries phones/e-mails: raw.contact_points reads every one enabled.
CONTACT_BEARING: tuple[tuple[str, str], ...] = (
    ("amocrm", "contacts"), ("bitrix24", "contacts"), ("bitrix24", "leads"), ("files", "orders"),
)


def enabled_raw_entities() -> dict[str, tuple[str, ...]]:
    """The entities of every source whose settings are present (``enabled_sources``), less
    the optional amoCRM entities switched off by AMOCRM_SKIP_ENTITIES."""
    enabled = set(enabled_sources())
    skipped = {"amocrm": amocrm_skipped_entities()}
    return {s: tuple(e for e in entities if e not in skipped.get(s, ()))
            for s, entities in ALL_RAW_ENTITIES.items() if s in enabled}


# Per source: entity names repeat across sources (amoCRM leads are not Bitrix24 leads).
ENTITY_DESCRIPTIONS: dict[str, dict[str, str]] = {
    "amocrm": {
        "users": "amoCRM users (managers), full pull each run.",
        "pipelines": "amoCRM pipelines with their statuses embedded, full pull each run.",
        "loss_reasons": "amoCRM loss reasons, full pull each run.",
        "contacts": "amoCRM contacts, incremental on updated_at with an overlap window.",
        "leads": "amoCRM leads (deals) with UTM tracking fields and linked company, "
                 "incremental on updated_at.",
        "events": "amoCRM lead_status_changed events (stage history), incremental on "
                  "created_at.",
        "companies": "amoCRM companies, incremental on updated_at with an overlap window.",
        "customers": "amoCRM customers (the buyer funnel) with their contacts, incremental on "
                     "updated_at.",
        "customer_statuses": "amoCRM buyer-funnel statuses, full pull each run.",
        "transactions": "amoCRM customer transactions (purchases), full pull each run (no "
                        "documented change filter).",
        "customer_events": "amoCRM customer_status_changed events (the buyers' status "
                           "history), incremental on created_at with its own cursor.",
        "deleted_leads": "amoCRM leads in the trash (id, updated_at, is_deleted), full pull "
                         "each run: the normal lead list never returns them.",
    },
    "bitrix24": {
        "users": "Bitrix24 users (managers), full pull each run.",
        "statuses": "Bitrix24 lead statuses and deal stages of every category "
                    "(crm.status.list), full pull each run.",
        "categories": "Bitrix24 deal categories (funnels), full pull each run.",
        "leads": "Bitrix24 leads with UTM fields, phones and e-mails, incremental on "
                 "DATE_MODIFY with an overlap window.",
        "deals": "Bitrix24 deals with stage, amount and UTM fields, incremental on "
                 "DATE_MODIFY with an overlap window.",
        "contacts": "Bitrix24 contacts with phones and e-mails, incremental on DATE_MODIFY.",
        "stagehistory": "Bitrix24 lead and deal stage history (append-only), incremental on "
                        "ID per entity type.",
    },
    "yandex_direct": {
        "campaign_stats": "Yandex Direct daily campaign stats (Reports API).",
    },
    "vk_ads": {
        "ad_plans": "VK Ads ad plans (campaigns) with names and status, full pull each run.",
        "ad_plan_stats": "VK Ads daily ad plan statistics (base metrics).",
    },
    "google_ads": {
        "campaign_stats": "Google Ads daily campaign metrics (searchStream).",
    },
    "meta_ads": {
        "campaign_insights": "Meta Ads Insights per campaign and day (async reports).",
    },
    "files": {
        "orders": "Orders from shop or accounting exports (CSV/Parquet) under the file "
                  "contract.",
        "ad_spend": "Offline ad spend files (CSV/Parquet) under the file contract, every file "
                    "re-read each run.",
    },
}
RAW_CHECK = "raw_batch_passes_suite"
MAX_REASONS_IN_METADATA = 10


def entity_description(source: str, entity: str) -> str:
    text = ENTITY_DESCRIPTIONS.get(source, {}).get(entity) or f"{source} {entity}, raw payloads."
    if source == "amocrm" and entity in AMOCRM_OPTIONAL_ENTITIES:
        text += (" Optional: AMOCRM_SKIP_ENTITIES leaves it out; a 'feature off' answer (402, "
                 "422 on customers*) or 204 skips it with metadata 'skipped'.")
    if is_ad_spend(source, entity):
        days = AD_SPEND_PLATFORMS[source].settle_days
        text += (f" Partitioned by day (Moscow); the daily run re-pulls the last {days} days "
                 "(the settling window), a backfill over a range is one run.")
    return text


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


class RangeLanding:
    """The warehouse as ``sync_entity`` sees it in a partitioned run.

    No cursor goes in: with a stored cursor the ad extractors start ``settle_days`` before it,
    which would skip an older range or widen a recent one; without one they pull exactly
    ``start_date..until_date``, the partition range. The cursor (the last day pulled) is still
    kept, moved forward only, so a backfill of old days never rewinds it.
    """

    def __init__(self, warehouse: Any) -> None:
        self.warehouse = warehouse

    def already_landed(self, records: list[RawRecord]) -> set[int]:
        return self.warehouse.already_landed(records)

    def land(self, records: list[RawRecord], run_id: str) -> Any:
        return self.warehouse.land(records, run_id)

    def quarantine(self, items: list[QuarantinedRecord], run_id: str) -> int:
        return self.warehouse.quarantine(items, run_id)

    def get_cursor(self, source: str, account: str, entity: str) -> str | None:
        return None

    def set_cursor(self, source: str, account: str, entity: str, value: str) -> None:
        current = self.warehouse.get_cursor(source, account, entity)
        if current is None or value > current:  # ISO dates order as strings
            self.warehouse.set_cursor(source, account, entity, value)


def landed_summary(result: SyncResult) -> str:
    """One line for the run log: "0 landed, 12 quarantined" when a whole batch was refused."""
    text = f"{result.inserted} landed, {result.quarantined} quarantined"
    return text + (f", {result.duplicates} unchanged" if result.duplicates else "")


def table_rows(wh: Any, table: str) -> int:
    """Rows of raw.<table>; 0 when nothing was ever landed there (a batch wholly quarantined,
    an entity the account does not have), instead of the backend's missing-table error."""
    return wh.count_rows(f"raw.{table}") if table in wh.list_tables("raw") else 0


def stop_if_auth_failed(source: str, entity: str, run_id: str) -> None:
    """Fail this step at once, without calling the API, when another step of ``source`` in
    this run met a definite auth failure: every entity shares the credentials, and trying a
    dead refresh token once per entity only repeats the error (amoCRM may also block)."""
    failure = AuthFailures(settings.state_dir()).in_run(source, run_id)
    if failure is None:
        return
    raise dg.Failure(
        # the first line is the short one a run summary shows; the first failure's own step
        # carries the full message once
        description=(f"{source} {entity} not attempted: the {source} credentials failed in "
                     f"step {failure.step} of this run (fix them, then re-run)\n"
                     f"{failure.message}"),
        metadata={"auth_failed_in_step": failure.step},
        allow_retries=False,
    )


def sync_recording_auth_failure(source: str, step: str, run_id: str,
                                sync: Callable[[], SyncResult]) -> SyncResult:
    """Run ``sync``; a definite auth failure is recorded for the source's other steps of this
    run (``stop_if_auth_failed``) and re-raised with its own clear message."""
    try:
        return sync()
    except AuthorizationError as exc:
        failure = AuthFailure(source=source, run_id=run_id, step=step, message=str(exc))
        AuthFailures(settings.state_dir()).record(failure)
        raise


PRIORITY_TAG = "dagster/priority"  # Dagster's own: ready steps start in this order (higher first)

# The entities that take the most requests on an account of any age: the append-only histories
# (one row per stage move), then the leads and deals they belong to. Started first, they keep
# their API's rate limit busy from the run's first second while the short pulls fill in beside
# them; started last (the plan's alphabetical order put amoCRM's events seventh), the run
# waited ~5 s on them alone at the end of extraction.
LONGEST_PULLS: dict[tuple[str, str], int] = {
    ("amocrm", "events"): 2,
    ("bitrix24", "stagehistory"): 2,
    ("amocrm", "leads"): 1,
    ("amocrm", "contacts"): 1,
    ("bitrix24", "deals"): 1,
    ("bitrix24", "leads"): 1,
}


def extraction_priority(source: str, entity: str) -> int:
    """The step's Dagster priority: the longest pulls of an API start first."""
    return LONGEST_PULLS.get((source, entity), 0)


def build_raw_asset(
    source: str, entity: str, partitions_def: dg.PartitionsDefinition | None = None,
) -> dg.AssetsDefinition:
    """An asset that syncs one source entity into its raw table; with ``partitions_def`` (ad
    spend) it pulls exactly the run's partition range, a backfill being one run."""
    key = raw_asset_key(source, entity)
    with warnings.catch_warnings():  # backfill_policy is a beta parameter; we rely on it
        warnings.simplefilter("ignore", dg.BetaWarning)
        return _raw_asset_def(source, entity, key, partitions_def)


def _raw_asset_def(
    source: str, entity: str, key: dg.AssetKey, partitions_def: dg.PartitionsDefinition | None,
) -> dg.AssetsDefinition:
    partitioned = partitions_def is not None

    @dg.asset(
        key=key,
        group_name=f"raw_{source}",
        description=entity_description(source, entity),
        kinds={"python", "duckdb"},
        # waits on the API's limits: beside the other sources, a few steps per API at most,
        # the longest pulls first
        op_tags={CONCURRENT_TAG: "extract", API_TAG: source,
                 PRIORITY_TAG: str(extraction_priority(source, entity))},
        required_resource_keys={"warehouse", source},
        partitions_def=partitions_def,
        backfill_policy=dg.BackfillPolicy.single_run() if partitioned else None,
        check_specs=[dg.AssetCheckSpec(
            RAW_CHECK, asset=key,
            description="Great Expectations raw suite: failing records are quarantined "
                        "(raw._quarantine) with the record id, field and reason; the rest lands.",
        )],
    )
    def _raw_asset(
        context: dg.AssetExecutionContext,
    ) -> Iterator[dg.MaterializeResult | dg.AssetCheckResult]:
        stop_if_auth_failed(source, entity, context.run_id)
        wh = context.resources.warehouse.open()
        resource = getattr(context.resources, source)
        range_meta: dict[str, Any] = {}
        if partitioned:
            keys = context.partition_key_range
            extractor = resource.source(start_date=date.fromisoformat(keys.start),
                                        until_date=date.fromisoformat(keys.end))
            landing: Any = RangeLanding(wh)
            range_meta = {"partition_range": f"{keys.start}..{keys.end}",
                          "pulled_from": str(extractor.start_date),
                          "pulled_until": str(extractor.until_date)}
            context.log.info(f"{source} {entity}: pulling {extractor.start_date}.."
                             f"{extractor.until_date} (partitions {keys.start}..{keys.end})")
        else:
            extractor = resource.source()
            landing = wh
        validator = _CollectingValidator()
        result = sync_recording_auth_failure(
            source, key.to_user_string(), context.run_id,
            lambda: sync_entity(extractor, entity, landing, run_id=context.run_id,
                                validate=validator))
        if partitioned and not result.skipped:  # its days are no gap any more
            record_pulled(wh, source, entity, extractor, context.run_id)
        reasons = [q.reason for q in validator.quarantined][:MAX_REASONS_IN_METADATA]
        for reason in reasons:
            context.log.warning(f"quarantined: {reason}")
        context.log.info(f"{source} {entity}: {landed_summary(result)}")
        if result.skipped:
            context.log.warning(f"{source} {entity} skipped: {result.skipped}")
        yield dg.MaterializeResult(metadata={
            **range_meta,
            "summary": landed_summary(result),
            **({"skipped": result.skipped} if result.skipped else {}),
            "fetched": result.fetched,
            "inserted": result.inserted,
            "duplicates_skipped": result.duplicates,
            "quarantined": result.quarantined,
            "pages": result.pages,
            **({} if partitioned else {"cursor_before": str(result.cursor_before),
                                       "cursor_after": str(result.cursor_after)}),
            "table_rows": table_rows(wh, raw_table_name(source, entity)),
        })
        yield dg.AssetCheckResult(
            check_name=RAW_CHECK,
            passed=result.quarantined == 0,
            severity=dg.AssetCheckSeverity.WARN,
            metadata={"quarantined": result.quarantined,
                      "reasons": dg.MetadataValue.json(reasons)},
        )

    return _raw_asset


def build_raw_assets(
    ad_spend_partitions: dg.PartitionsDefinition | None = None,
) -> list[dg.AssetsDefinition]:
    """Every enabled source entity; ad spend on ``ad_spend_partitions`` when given."""
    return [
        build_raw_asset(s, e, ad_spend_partitions if is_ad_spend(s, e) else None)
        for s, entities in enabled_raw_entities().items() for e in entities
    ]


def contact_point_sources(enabled: dict[str, tuple[str, ...]] | None = None) -> list[dg.AssetKey]:
    """The enabled contact-bearing raw assets (amoCRM and Bitrix24 contacts, Bitrix24 leads,
    orders files)."""
    enabled = enabled_raw_entities() if enabled is None else enabled
    return [raw_asset_key(s, e) for s, e in CONTACT_BEARING if e in enabled.get(s, ())]


def build_contact_points_asset(
    enabled: dict[str, tuple[str, ...]] | None = None,
) -> dg.AssetsDefinition:
    deps = contact_point_sources(enabled)

    @dg.asset(
        key=dg.AssetKey(["raw", "contact_points"]),
        deps=deps,
        group_name="raw_identity",
        kinds={"python", "duckdb"},
        description="Phones (E.164 via libphonenumber, region RU) and e-mails (trimmed, "
                    "lower-cased) of " + ", ".join(k.path[-1] for k in deps)
                    + ": the keys dbt resolves customers by.",
    )
    def contact_points(warehouse: WarehouseResource) -> dg.MaterializeResult:
        rows = build_contact_points(warehouse.open())
        return dg.MaterializeResult(metadata={"rows": rows})

    return contact_points
