"""Land a synthetic business straight into the raw schema, without the HTTP emulators.

amoCRM (with companies, the buyer funnel and deleted leads), Bitrix24, the orders files and the
four ad platforms.

The records are shaped exactly as the real extractors land them (see docs/ARCHITECTURE.md,
"Raw data contract"), so the dbt project cannot tell the two paths apart. Tests use this to
build the marts in seconds and compare them with the generator's ground truth.
"""

from __future__ import annotations

import tempfile
from collections.abc import Iterable, Iterator
from decimal import ROUND_HALF_UP, Decimal
from pathlib import Path
from typing import TYPE_CHECKING

from emulators.bitrix24 import Bitrix24Emulator, stringify
from extractors import bitrix24 as b24
from extractors.amocrm import ENTITY_SPECS, strip_links, unix_to_utc_naive
from extractors.files import FilesSource
from warehouse.records import RawRecord

if TYPE_CHECKING:
    from synthetic.business import SyntheticBusiness
    from warehouse.base import Warehouse

DIRECT_ACCOUNT = "voronka-demo"  # the Yandex Direct client login (and VK cabinet) of the demo
GOOGLE_CUSTOMER_ID = "1234567890"
META_AD_ACCOUNT = "act_1234567890"
AMOCRM_ENTITIES = ("users", "pipelines", "loss_reasons", "contacts", "leads", "events",
                   "companies", "customers", "customer_statuses", "transactions",
                   "customer_events")
FILES_ACCOUNT = "files"  # the files source's default account (VORONKA_FILES_ACCOUNT unset)
_MICROS = Decimal(1_000_000)
_MICROS_STEP = Decimal(10_000)  # Direct rounds micros to 10,000 (one kopeck)


def amocrm_records(account: str, entity: str, items: Iterable[dict]) -> Iterator[RawRecord]:
    """One RawRecord per amoCRM element, as extractors.amocrm lands it: the payload without
    `_links` (at every level), updated_at from the entity's own field (events: created_at;
    users and pipelines: none), in naive UTC."""
    ts_field = ENTITY_SPECS[entity].updated_field
    for item in items:
        yield RawRecord(
            source="amocrm",
            account=account,
            entity=entity,
            record_id=str(item["id"]),
            payload=strip_links(item),
            updated_at=unix_to_utc_naive(item.get(ts_field)) if ts_field else None,
        )


def amocrm_entity_records(account: str, entity: str, items: list[dict]) -> list[RawRecord]:
    """One amoCRM entity as the extractor lands it. Deleted leads are not in the normal leads
    list; they land as ``deleted_leads`` (the bin's ``{id, updated_at, is_deleted}`` view)."""
    if entity == "leads":
        items = [x for x in items if not x.get("is_deleted")]
    elif entity == "deleted_leads":
        items = [{"id": x["id"], "updated_at": x["updated_at"], "is_deleted": True}
                 for x in items if x.get("is_deleted")]
    return list(amocrm_records(account, entity, items))


def bitrix24_records(account: str, data: dict[str, list[dict]]) -> Iterator[RawRecord]:
    """Every Bitrix24 entity as extractors.bitrix24 lands it: the rows the emulator would serve
    (its own select and stringify rules; stage history native, minus ENTITY_TYPE_ID), record
    ids and updated_at per the extractor's ENTITY_SPECS, ``_entityTypeId`` on history rows."""
    for entity in b24.Bitrix24Source.ENTITIES:
        spec = b24.ENTITY_SPECS[entity]
        for row in data.get(entity) or []:
            if entity == "stagehistory":
                yield _stagehistory_record(account, row)
                continue
            payload = _served_row(entity, row, list(spec.select))
            updated = (b24.parse_b24_datetime(payload.get(spec.updated_field))
                       if spec.updated_field else None)
            yield RawRecord(b24.SOURCE, account, entity, str(payload[spec.id_field]), payload,
                            updated)


def _served_row(entity: str, row: dict, select: list[str]) -> dict:
    """What the portal returns for one stored row of an entity."""
    if entity in ("leads", "deals", "contacts"):
        return Bitrix24Emulator._select(row, select)
    if entity == "categories":  # crm.category.list is not a legacy method: native values
        return dict(row)
    return stringify(row)


def _stagehistory_record(account: str, row: dict) -> RawRecord:
    type_id = int(row["ENTITY_TYPE_ID"])
    payload = {k: v for k, v in row.items() if k != "ENTITY_TYPE_ID"}
    payload["_entityTypeId"] = type_id
    return RawRecord(b24.SOURCE, account, "stagehistory", f"{type_id}:{row['ID']}", payload,
                     b24.parse_b24_datetime(row.get("CREATED_TIME")))


def file_order_records(business: SyntheticBusiness,
                       account: str = FILES_ACCOUNT) -> list[RawRecord]:
    """The orders files as extractors.files lands them: written to a temporary folder and read
    back by FilesSource itself (record ids, ``_file``/``_line``, the cp1251 file's decimal
    comma kept as typed)."""
    with tempfile.TemporaryDirectory(prefix="voronka-orders-") as folder:
        business.write_order_files(Path(folder))
        source = FilesSource(folder, account=account)
        return [record for page in source.pages("orders", None) for record in page.records]


def cost_micros(cost: Decimal | float | str) -> str:
    """RUB amount -> Direct's micros string (amount x 1e6, rounded to 10,000)."""
    micros = (Decimal(str(cost)) * _MICROS / _MICROS_STEP).quantize(
        Decimal(1), rounding=ROUND_HALF_UP
    ) * _MICROS_STEP
    return str(int(micros))


def direct_records(account: str, rows: Iterable[dict]) -> Iterator[RawRecord]:
    """One RawRecord per TSV row of the daily campaign report (all values strings)."""
    for row in rows:
        payload = {
            "Date": str(row["date"]),
            "CampaignId": str(row["campaign_id"]),
            "CampaignName": str(row["campaign_name"]),
            "Impressions": str(int(row["impressions"])),
            "Clicks": str(int(row["clicks"])),
            "Cost": cost_micros(row["cost"]),
            "_currency": "RUB",
            "_include_vat": "NO",
            "_money_in_micros": True,
        }
        yield RawRecord(
            source="yandex_direct",
            account=account,
            entity="campaign_stats",
            record_id=f"{payload['Date']}|{payload['CampaignId']}",
            payload=payload,
            updated_at=None,
        )


def _money(amount: Decimal | float | str) -> str:
    return f"{Decimal(str(amount)).quantize(Decimal('0.01'), rounding=ROUND_HALF_UP)}"


def vk_records(account: str, rows: Iterable[dict]) -> Iterator[RawRecord]:
    """VK Ads ad plans and daily stats as extractors.vk_ads lands them (money as strings)."""
    plans: dict[int, str] = {}
    for row in rows:
        plan_id = int(row["ad_plan_id"])
        plans.setdefault(plan_id, row["ad_plan_name"])
        base = {"shows": int(row["shows"]), "clicks": int(row["clicks"]),
                "spent": _money(row["spent"])}
        yield RawRecord("vk_ads", account, "ad_plan_stats", f"{row['date']}|{plan_id}",
                        {"date": str(row["date"]), "ad_plan_id": plan_id, "base": base,
                         "_currency": "RUB"})
    for plan_id, name in plans.items():
        yield RawRecord("vk_ads", account, "ad_plans", str(plan_id),
                        {"id": plan_id, "name": name, "status": "active"})


def google_records(customer_id: str, rows: Iterable[dict]) -> Iterator[RawRecord]:
    """Google Ads searchStream results (camelCase, int64 as strings, cost in micros)."""
    for row in rows:
        campaign_id = str(row["campaign_id"])
        micros = int(Decimal(str(row["cost"])) * _MICROS)
        payload = {
            "campaign": {"resourceName": f"customers/{customer_id}/campaigns/{campaign_id}",
                         "id": campaign_id, "name": row["campaign_name"], "status": "ENABLED"},
            "metrics": {"impressions": str(int(row["impressions"])),
                        "clicks": str(int(row["clicks"])), "costMicros": str(micros)},
            "segments": {"date": str(row["date"])},
            "customer": {"resourceName": f"customers/{customer_id}", "currencyCode": "RUB",
                         "timeZone": "Europe/Moscow"},
        }
        yield RawRecord("google_ads", customer_id, "campaign_stats",
                        f"{row['date']}|{campaign_id}", payload)


def meta_records(ad_account_id: str, rows: Iterable[dict]) -> Iterator[RawRecord]:
    """Meta Insights rows (level=campaign, time_increment=1), numbers as strings."""
    for row in rows:
        day = str(row["date"])
        payload = {
            "campaign_id": str(row["campaign_id"]), "campaign_name": row["campaign_name"],
            "account_currency": "RUB", "impressions": str(int(row["impressions"])),
            "clicks": str(int(row["clicks"])), "spend": _money(row["spend"]),
            "date_start": day, "date_stop": day,
        }
        yield RawRecord("meta_ads", ad_account_id, "campaign_insights",
                        f"{day}|{payload['campaign_id']}", payload)


def business_records(business: SyntheticBusiness) -> list[RawRecord]:
    """Every raw record of the business: amoCRM, Bitrix24, the orders files, then each ad
    platform."""
    records: list[RawRecord] = []
    for entity in AMOCRM_ENTITIES:
        records.extend(amocrm_entity_records(business.subdomain, entity,
                                             business.amocrm.get(entity) or []))
    records.extend(amocrm_entity_records(business.subdomain, "deleted_leads",
                                         business.amocrm.get("leads") or []))
    records.extend(bitrix24_records(business.bitrix24_account, business.bitrix24))
    records.extend(file_order_records(business))
    records.extend(direct_records(DIRECT_ACCOUNT, business.yandex_direct))
    records.extend(vk_records(DIRECT_ACCOUNT, business.vk_ads))
    records.extend(google_records(GOOGLE_CUSTOMER_ID, business.google_ads))
    records.extend(meta_records(META_AD_ACCOUNT, business.meta_ads))
    return records


def land_business(
    business: SyntheticBusiness, wh: Warehouse, run_id: str = "synthetic"
) -> dict[str, int]:
    """Land the business into `wh` and rebuild raw.contact_points and the identity clusters
    (what the Dagster assets raw/contact_points and raw/identity_clusters do).

    Returns the number of rows inserted per raw table (re-landing the same business inserts
    nothing, since landing is idempotent), plus `contact_points`.
    """
    from warehouse.contact_points import build_contact_points
    from warehouse.identity import build_identity

    by_table: dict[str, list[RawRecord]] = {}
    for record in business_records(business):
        by_table.setdefault(record.table, []).append(record)
    counts = {table: wh.land(batch, run_id).inserted for table, batch in by_table.items()}
    counts["contact_points"] = build_contact_points(wh)
    build_identity(wh)
    return counts
