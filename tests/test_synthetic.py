"""The synthetic business: determinism, API shapes, duplicates, and a ground truth that agrees
with an independent re-derivation from the emitted payloads (the same rules the marts use)."""

from __future__ import annotations

import csv
import re
from collections import Counter, defaultdict
from datetime import date, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from zoneinfo import ZoneInfo

import pandas as pd
import phonenumbers
import pytest

from synthetic import CHANNELS, SyntheticBusiness, channel_for, generate

MOSCOW = ZoneInfo("Europe/Moscow")
WON, LOST = 142, 143
SEED_CSV = Path(__file__).resolve().parents[1] / "dbt_project" / "seeds" / "channel_mapping.csv"
# the channels of /work/shared/reference/metrics.md, in its order
METRICS_CHANNELS = ("yandex_direct", "vk_ads", "google_ads", "meta_ads", "organic", "referral",
                    "direct", "other")
# platform -> (id key, name key, impressions key, money key, id type) of its emulator's rows
PLATFORM_ROWS = {
    "yandex_direct": ("campaign_id", "campaign_name", "impressions", "cost", int),
    "vk_ads": ("ad_plan_id", "ad_plan_name", "shows", "spent", int),
    "google_ads": ("campaign_id", "campaign_name", "impressions", "cost", int),
    "meta_ads": ("campaign_id", "campaign_name", "impressions", "spend", str),
}
PLATFORM_SOURCES = {"yandex_direct": {"yandex"}, "vk_ads": {"vk"}, "google_ads": {"google"},
                    "meta_ads": {"facebook", "instagram"}}


@pytest.fixture(scope="module")
def biz() -> SyntheticBusiness:
    return generate()


@pytest.fixture(scope="module")
def small() -> SyntheticBusiness:
    return generate(scale=0.2)


# -- an independent re-derivation (what the marts do) -------------------------------------------
def _msk_month(ts: int) -> date:
    return datetime.fromtimestamp(ts, MOSCOW).date().replace(day=1)


def _norm_phone(value: str) -> str | None:
    try:
        parsed = phonenumbers.parse(value, "RU")
    except phonenumbers.NumberParseException:
        return None
    if not phonenumbers.is_valid_number(parsed):
        return None
    return phonenumbers.format_number(parsed, phonenumbers.PhoneNumberFormat.E164)


def _field_values(entity: dict, code: str) -> list[str]:
    out = []
    for f in entity.get("custom_fields_values") or []:
        if f.get("field_code") == code:
            out += [v["value"] for v in f["values"]]
    return out


def _seed_mapping() -> dict[tuple[str, str], str]:
    with SEED_CSV.open(newline="", encoding="utf-8") as fh:
        return {(r["utm_source"].strip().lower(), r["utm_medium"].strip().lower()): r["channel"]
                for r in csv.DictReader(fh)}


MAPPING = _seed_mapping()


def _lead_channel(lead: dict) -> str:
    """The dbt rule over the seed: exact (source, medium), then ('*', medium); no UTM -> direct."""
    src = (_field_values(lead, "UTM_SOURCE") or [None])[0]
    med = (_field_values(lead, "UTM_MEDIUM") or [None])[0]
    if src is None and med is None:
        return "direct"
    return MAPPING.get((src, med)) or MAPPING.get(("*", med)) or "other"


def _union_find(nodes: dict) -> dict:
    """node -> root, joining nodes that share a normalised phone or e-mail (union-find).
    ``nodes`` maps a node to its (raw phones, raw e-mails)."""
    parent = {n: n for n in nodes}

    def find(x):
        while parent[x] != x:
            parent[x] = parent[parent[x]]
            x = parent[x]
        return x

    owner: dict = {}
    for node, (phones, emails) in nodes.items():
        keys = [("p", p) for p in map(_norm_phone, phones) if p]
        keys += [("e", e.strip().lower()) for e in emails if e and e.strip()]
        for key in keys:
            if key in owner:
                a, b = find(owner[key]), find(node)
                if a != b:
                    parent[max(a, b)] = min(a, b)
            else:
                owner[key] = node
    return {n: find(n) for n in parent}


def _resolve_persons(contacts: list[dict]) -> dict[int, int]:
    """amoCRM contact id -> person root."""
    nodes = {c["id"]: (_field_values(c, "PHONE"), _field_values(c, "EMAIL")) for c in contacts}
    return _union_find(nodes)


def _b24_values(row: dict, kind: str) -> list[str]:
    return [v["VALUE"] for v in row.get(kind) or []]


def _resolve_all(b: SyntheticBusiness) -> dict[tuple[str, object], tuple]:
    """Identity over every source: amoCRM contacts, Bitrix24 contacts and leads (their own
    phone/e-mail), and file orders."""
    nodes: dict = {("amocrm", c["id"]): (_field_values(c, "PHONE"), _field_values(c, "EMAIL"))
                   for c in b.amocrm["contacts"]}
    nodes |= {("bitrix24", c["ID"]): (_b24_values(c, "PHONE"), _b24_values(c, "EMAIL"))
              for c in b.bitrix24["contacts"]}
    nodes |= {("bitrix24_lead", x["ID"]): (_b24_values(x, "PHONE"), _b24_values(x, "EMAIL"))
              for x in b.bitrix24["leads"]}
    nodes |= {("files", r["order_id"]): ([r["customer_phone"]] if r["customer_phone"] else [],
                                         [r["customer_email"]])
              for r in b.file_orders}
    return _union_find(nodes)


def _utm_channel(source: str | None, medium: str | None) -> str:
    """The dbt rule over the seed on raw text UTM: nullif(lower(trim(x)), '')."""
    src = (source or "").strip().lower() or None
    med = (medium or "").strip().lower() or None
    if src is None and med is None:
        return "direct"
    return MAPPING.get((src, med)) or MAPPING.get(("*", med)) or "other"


def _b24_lead_person(lead: dict, person_of: dict) -> tuple:
    """A Bitrix24 lead's person: through its contact, or its own phone/e-mail without one."""
    if lead["CONTACT_ID"] is not None:
        return person_of[("bitrix24", lead["CONTACT_ID"])]
    return person_of[("bitrix24_lead", lead["ID"])]


def _live(b: SyntheticBusiness) -> list[dict]:
    """amoCRM leads that are not deleted."""
    return [x for x in b.amocrm["leads"] if not x["is_deleted"]]


def _inquiries(b: SyntheticBusiness, person_of: dict) -> list[tuple]:
    """(created_at as an aware datetime, unified lead id, channel, crm, person, utm_campaign)
    per inquiry."""
    out = []
    for lead in _live(b):
        main = next(c for c in lead["_embedded"]["contacts"] if c["is_main"])
        out.append((datetime.fromtimestamp(lead["created_at"], MOSCOW), f"amocrm_{lead['id']}",
                    _lead_channel(lead), "amocrm", person_of[("amocrm", main["id"])],
                    (_field_values(lead, "UTM_CAMPAIGN") or [None])[0]))
    b24_leads = {x["ID"]: x for x in b.bitrix24["leads"]}
    converted = set()
    for deal in b.bitrix24["deals"]:
        origin = b24_leads[deal["LEAD_ID"]] if deal["LEAD_ID"] is not None else deal
        converted.add(deal["LEAD_ID"])
        out.append((datetime.fromisoformat(origin["DATE_CREATE"]), f"bitrix24_deal_{deal['ID']}",
                    _utm_channel(origin["UTM_SOURCE"], origin["UTM_MEDIUM"]), "bitrix24",
                    person_of[("bitrix24", deal["CONTACT_ID"])], origin["UTM_CAMPAIGN"]))
    for lead in b.bitrix24["leads"]:
        if lead["ID"] not in converted:
            out.append((datetime.fromisoformat(lead["DATE_CREATE"]),
                        f"bitrix24_lead_{lead['ID']}",
                        _utm_channel(lead["UTM_SOURCE"], lead["UTM_MEDIUM"]), "bitrix24",
                        _b24_lead_person(lead, person_of), lead["UTM_CAMPAIGN"]))
    return out


def _orders(b: SyntheticBusiness, person_of: dict) -> list[tuple]:
    """(date, amount, order_source, person) per order."""
    out = []
    for lead in _live(b):
        if lead["status_id"] == WON:
            main = lead["_embedded"]["contacts"][0]["id"]
            out.append((datetime.fromtimestamp(lead["closed_at"], MOSCOW).date(),
                        Decimal(lead["price"]), "amocrm_lead", person_of[("amocrm", main)]))
    for deal in b.bitrix24["deals"]:
        if deal["STAGE_SEMANTIC_ID"] == "S":
            out.append((datetime.fromisoformat(deal["CLOSEDATE"]).astimezone(MOSCOW).date(),
                        Decimal(deal["OPPORTUNITY"]), "bitrix24_deal",
                        person_of[("bitrix24", deal["CONTACT_ID"])]))
    main_contact = {c["id"]: next(x["id"] for x in c["_embedded"]["contacts"] if x["is_main"])
                    for c in b.amocrm["customers"]}
    for tx in b.amocrm["transactions"]:
        if not tx["is_deleted"]:
            out.append((datetime.fromtimestamp(tx["completed_at"], MOSCOW).date(),
                        Decimal(tx["price"]), "amocrm_transaction",
                        person_of[("amocrm", main_contact[tx["customer_id"]])]))
    for row in b.file_orders:
        out.append((date.fromisoformat(row["order_date"]), Decimal(row["amount"]), "files",
                    person_of[("files", row["order_id"])]))
    return out


def _frame(rows, columns: list[str]) -> pd.DataFrame:
    return pd.DataFrame(sorted(rows), columns=columns)


def _rederive(b: SyntheticBusiness) -> dict[str, pd.DataFrame]:
    person_of = _resolve_all(b)
    inquiries = _inquiries(b, person_of)
    orders = _orders(b, person_of)
    leads_ct: Counter = Counter((x[0].date().replace(day=1), x[2]) for x in inquiries)
    crm_ct: Counter = Counter((x[0].date().replace(day=1), x[3]) for x in inquiries)
    campaign_ct: Counter = Counter((x[0].date().replace(day=1), x[2], x[5]) for x in inquiries
                                   if x[2] in PLATFORM_ROWS)
    first_inquiry: dict = {}
    for _when, _id, channel, _crm, person, _campaign in sorted(inquiries,
                                                               key=lambda x: (x[0], x[1])):
        first_inquiry.setdefault(person, channel)
    first_file: dict = {}
    for row in sorted(b.file_orders, key=lambda r: (r["order_date"], r["order_id"])):
        first_file.setdefault(person_of[("files", row["order_id"])],
                              _utm_channel(row["utm_source"], row["utm_medium"]))
    revenue: dict = defaultdict(Decimal)
    count: Counter = Counter()
    by_source: dict = defaultdict(Decimal)
    by_source_n: Counter = Counter()
    first_order: dict = {}
    for day, amount, source, person in orders:
        m = day.replace(day=1)
        revenue[m] += amount
        count[m] += 1
        by_source[(m, source)] += amount
        by_source_n[(m, source)] += 1
        first_order[person] = min(day, first_order.get(person, day))
    new_ct: Counter = Counter()
    cohorts: Counter = Counter()
    for person, day in first_order.items():
        channel = first_inquiry.get(person) or first_file[person]
        new_ct[(day.replace(day=1), channel)] += 1
        cohorts[day.replace(day=1)] += 1
    spend: dict[tuple[date, str], Decimal] = defaultdict(Decimal)
    for platform, rows in _platform_rows(b).items():
        money = PLATFORM_ROWS[platform][3]
        for row in rows:
            spend[(date.fromisoformat(row["date"]).replace(day=1), platform)] += row[money]
    return {
        "new_customers_by_channel_month": _frame(
            [(m, ch, n) for (m, ch), n in new_ct.items()], ["month", "channel", "new_customers"]),
        "revenue_by_month": _frame([(m, float(v), count[m]) for m, v in revenue.items()],
                                   ["month", "revenue", "orders"]),
        "spend_by_channel_month": _frame([(m, ch, float(v)) for (m, ch), v in spend.items()],
                                         ["month", "channel", "spend"]),
        "cohort_sizes": _frame(list(cohorts.items()), ["cohort_month", "customers"]),
        "leads_by_channel_month": _frame([(m, ch, n) for (m, ch), n in leads_ct.items()],
                                         ["month", "channel", "leads"]),
        "orders_by_source_month": _frame(
            [(m, s, by_source_n[(m, s)], float(v)) for (m, s), v in by_source.items()],
            ["month", "order_source", "orders", "revenue"]),
        "leads_by_crm_month": _frame([(m, crm, n) for (m, crm), n in crm_ct.items()],
                                     ["month", "crm", "leads"]),
        "leads_by_campaign_month": _frame(
            [(m, ch, c, n) for (m, ch, c), n in campaign_ct.items()],
            ["month", "channel", "campaign_id", "leads"]),
    }


def _platform_rows(b: SyntheticBusiness) -> dict[str, list[dict]]:
    return {"yandex_direct": b.yandex_direct, "vk_ads": b.vk_ads, "google_ads": b.google_ads,
            "meta_ads": b.meta_ads}


# -- determinism --------------------------------------------------------------------------------
def test_same_seed_gives_identical_payloads(small):
    again = generate(scale=0.2)
    assert again.amocrm == small.amocrm
    assert again.bitrix24 == small.bitrix24
    assert again.file_orders == small.file_orders
    for platform, rows in _platform_rows(small).items():
        assert _platform_rows(again)[platform] == rows, platform
        assert rows, platform
    for name, frame in small.ground_truth.tables().items():
        pd.testing.assert_frame_equal(frame, again.ground_truth.tables()[name])


def test_different_seed_gives_different_payloads(small):
    other = generate(seed=7, scale=0.2)
    assert other.amocrm["leads"] != small.amocrm["leads"]
    assert other.amocrm["contacts"] != small.amocrm["contacts"]
    assert other.bitrix24["deals"] != small.bitrix24["deals"]
    assert other.file_orders != small.file_orders
    assert other.bitrix24["statuses"] == small.bitrix24["statuses"]
    for platform, rows in _platform_rows(small).items():
        assert _platform_rows(other)[platform] != rows, platform
    # static reference data does not depend on the seed
    assert other.amocrm["pipelines"] == small.amocrm["pipelines"]
    assert other.amocrm["users"] == small.amocrm["users"]


# -- volumes ------------------------------------------------------------------------------------
CAMPAIGNS_PER_PLATFORM = {"yandex_direct": (4, 4), "vk_ads": (2, 3), "google_ads": (2, 3),
                          "meta_ads": (2, 2)}


def test_volumes_at_default_scale(biz):
    """The demo extracts amoCRM at 7 req/s within 60 s: at most 3,600 leads, 8,000 events.
    About a fifth of the inquiries go to the Bitrix24 brand."""
    a = biz.amocrm
    assert 2_200 <= len(_live(biz)) <= 3_000
    assert 10 <= len(a["leads"]) - len(_live(biz)) <= 40  # deleted spam
    assert 1_700 <= len(a["contacts"]) <= 2_400
    assert 20 <= len(a["companies"]) <= 100
    assert 80 <= len(a["customers"]) <= 300 and 60 <= len(a["transactions"]) <= 400
    x = biz.bitrix24
    assert 400 <= len(x["leads"]) <= 800 and 300 <= len(x["deals"]) <= 700
    assert len(x["stagehistory"]) <= 6_000
    b24_share = biz.ground_truth.leads_by_crm_month.groupby("crm")["leads"].sum()
    assert 0.18 <= b24_share["bitrix24"] / b24_share.sum() <= 0.28
    assert 200 <= len(biz.file_orders) <= 600
    assert 3_000 <= len(a["events"]) <= 8_000
    assert 6 <= len(a["users"]) <= 8
    days = (biz.end - biz.start).days + 1
    for platform, rows in _platform_rows(biz).items():
        id_key = PLATFORM_ROWS[platform][0]
        campaigns = {r[id_key] for r in rows}
        lo, hi = CAMPAIGNS_PER_PLATFORM[platform]
        assert lo <= len(campaigns) <= hi, platform
        assert len(rows) == days * len(campaigns), platform
    assert len(biz.yandex_direct) == days * 4  # Direct keeps its four campaigns


def test_smaller_scale_is_smaller(biz, small):
    for entity in ("leads", "contacts", "events"):
        assert len(small.amocrm[entity]) < 0.4 * len(biz.amocrm[entity])
        assert len(small.amocrm[entity]) > 0.1 * len(biz.amocrm[entity])
    for entity in ("leads", "deals", "contacts"):
        assert 0.1 * len(biz.bitrix24[entity]) < len(small.bitrix24[entity]) < 0.4 * len(
            biz.bitrix24[entity])
    assert 0.1 * len(biz.file_orders) < len(small.file_orders) < 0.4 * len(biz.file_orders)
    for platform, rows in _platform_rows(biz).items():
        money = PLATFORM_ROWS[platform][3]
        spend = sum(r[money] for r in rows)
        small_rows = _platform_rows(small)[platform]
        assert len(small_rows) == len(rows)  # fewer roubles, not fewer days
        assert 0 < sum(r[money] for r in small_rows) < Decimal("0.3") * spend, platform


# -- shapes -------------------------------------------------------------------------------------
LEAD_KEYS = {
    "id", "name", "price", "responsible_user_id", "group_id", "status_id", "pipeline_id",
    "loss_reason_id", "created_by", "updated_by", "created_at", "updated_at", "closed_at",
    "closest_task_at", "is_deleted", "score", "account_id", "labor_cost",
    "custom_fields_values", "_embedded",
}
CONTACT_KEYS = {
    "id", "name", "first_name", "last_name", "responsible_user_id", "group_id", "created_by",
    "updated_by", "created_at", "updated_at", "closest_task_at", "is_deleted", "is_unsorted",
    "account_id", "custom_fields_values", "_embedded",
}
EVENT_KEYS = {
    "id", "type", "entity_id", "entity_type", "created_by", "created_at", "value_before",
    "value_after", "account_id", "_embedded",
}


def test_reference_entities(biz):
    a = biz.amocrm
    assert biz.subdomain == "voronka-demo"
    for user in a["users"]:
        assert {"id", "name", "email", "lang", "rights"} <= user.keys()
    for reason in a["loss_reasons"]:
        assert set(reason) == {"id", "name", "sort", "created_at", "updated_at"}
    assert sum(p["is_main"] for p in a["pipelines"]) == 1
    for p in a["pipelines"]:
        assert {"id", "name", "sort", "is_main", "is_unsorted_on", "is_archive",
                "account_id", "_embedded"} <= p.keys()
        statuses = p["_embedded"]["statuses"]
        assert [s["sort"] for s in statuses] == sorted(s["sort"] for s in statuses)
        assert statuses[0]["type"] == 1
        assert [s["id"] for s in statuses[-2:]] == [WON, LOST]
        assert all(s["pipeline_id"] == p["id"] for s in statuses)
        assert all(s["account_id"] == biz.account_id for s in statuses)
    main = next(p for p in a["pipelines"] if p["is_main"])
    assert 5 <= len(main["_embedded"]["statuses"]) <= 7


def test_leads_follow_status_rules(biz):
    a = biz.amocrm
    as_of = biz.as_of_ts
    statuses = {p["id"]: [s["id"] for s in p["_embedded"]["statuses"]] for p in a["pipelines"]}
    users = {u["id"] for u in a["users"]}
    reasons = {r["id"] for r in a["loss_reasons"]}
    contact_ids = {c["id"] for c in a["contacts"]}
    company_ids = {c["id"] for c in a["companies"]}
    ids = [x["id"] for x in a["leads"]]
    assert len(set(ids)) == len(ids)
    outcomes = Counter()
    for lead in _live(biz):
        assert set(lead) == LEAD_KEYS
        assert lead["account_id"] == biz.account_id
        assert lead["status_id"] in statuses[lead["pipeline_id"]]
        assert lead["responsible_user_id"] in users
        assert isinstance(lead["created_at"], int)
        assert biz.start <= datetime.fromtimestamp(lead["created_at"], MOSCOW).date() <= biz.end
        assert lead["created_at"] <= lead["updated_at"] <= as_of
        (link,) = lead["_embedded"]["contacts"]
        assert link["is_main"] is True and link["id"] in contact_ids
        assert {c["id"] for c in lead["_embedded"]["companies"]} <= company_ids
        if lead["status_id"] == WON:
            outcomes["won"] += 1
            assert lead["price"] > 0 and isinstance(lead["price"], int)
            assert lead["closed_at"] is not None and lead["loss_reason_id"] is None
        elif lead["status_id"] == LOST:
            outcomes["lost"] += 1
            assert lead["loss_reason_id"] in reasons and lead["closed_at"] is not None
        else:
            outcomes["open"] += 1
            assert lead["closed_at"] is None and lead["loss_reason_id"] is None
        if lead["closed_at"] is not None:
            assert lead["created_at"] < lead["closed_at"] <= lead["updated_at"]
        cfv = lead["custom_fields_values"]
        if cfv is not None:
            assert cfv and all(f["field_type"] == "tracking_data" for f in cfv)
            assert {f["field_code"] for f in cfv} <= {"UTM_SOURCE", "UTM_MEDIUM", "UTM_CAMPAIGN"}
    assert min(outcomes["won"], outcomes["lost"], outcomes["open"]) > 30


def test_channels_are_the_metrics_list():
    assert CHANNELS == METRICS_CHANNELS
    assert set(MAPPING.values()) <= set(CHANNELS)


def test_channels_and_ad_campaigns(biz):
    channels = Counter(_lead_channel(x) for x in _live(biz))
    assert set(channels) == set(CHANNELS)
    assert all(n >= 20 for n in channels.values()), channels
    assert channels["google_ads"] >= 100 and channels["meta_ads"] >= 100
    campaign_ids = {platform: {str(r[PLATFORM_ROWS[platform][0]]) for r in rows}
                    for platform, rows in _platform_rows(biz).items()}
    used: dict[str, Counter] = defaultdict(Counter)
    sources: dict[str, Counter] = defaultdict(Counter)
    for lead in _live(biz):
        channel = _lead_channel(lead)
        if channel in campaign_ids:
            (campaign,) = _field_values(lead, "UTM_CAMPAIGN")
            assert campaign in campaign_ids[channel], (channel, campaign)
            assert _field_values(lead, "UTM_MEDIUM") == ["cpc"]
            used[channel][campaign] += 1
            sources[channel][_field_values(lead, "UTM_SOURCE")[0]] += 1
    for platform, ids in campaign_ids.items():
        assert set(used[platform]) == ids, f"every {platform} campaign brings leads"
        assert set(sources[platform]) == PLATFORM_SOURCES[platform]
    # the package's mapping is the marts' mapping
    for lead in _live(biz):
        src = (_field_values(lead, "UTM_SOURCE") or [None])[0]
        med = (_field_values(lead, "UTM_MEDIUM") or [None])[0]
        assert channel_for(src, med) == _lead_channel(lead)
    for (src, med), channel in MAPPING.items():
        if src != "*":
            assert channel_for(src, med) == channel


def test_spend_drives_leads(biz):
    """Paid leads follow their platform's spend: a plausible cost per lead, and more leads in
    the second half of the period, when the business spends more."""
    main = next(p["id"] for p in biz.amocrm["pipelines"] if p["is_main"])
    middle = biz.start + (biz.end - biz.start) / 2
    for platform, rows in _platform_rows(biz).items():
        money = PLATFORM_ROWS[platform][3]
        spend = [sum(r[money] for r in rows if (date.fromisoformat(r["date"]) > middle) == half)
                 for half in (False, True)]
        leads = Counter(datetime.fromtimestamp(x["created_at"], MOSCOW).date() > middle
                        for x in _live(biz)
                        if x["pipeline_id"] == main and _lead_channel(x) == platform)
        assert spend[1] > Decimal("1.15") * spend[0], platform
        assert leads[True] > leads[False], (platform, leads)
        cpl = float(sum(spend)) / (leads[True] + leads[False])
        assert 1_000 < cpl < 6_000, (platform, cpl)


def test_contacts_shape(biz):
    styles = set()
    for c in biz.amocrm["contacts"]:
        assert set(c) == CONTACT_KEYS
        assert c["created_at"] <= c["updated_at"] <= biz.as_of_ts
        for f in c["custom_fields_values"] or []:
            if f["field_code"] == "MARKETING_CONSENT":  # the consent checkbox (test below)
                assert f["field_type"] == "checkbox" and len(f["values"]) == 1
                assert isinstance(f["values"][0]["value"], bool)
                continue
            if f["field_type"] == "birthday":  # user-created: no field_code (test below)
                assert f["field_code"] is None and len(f["values"]) == 1
                assert isinstance(f["values"][0]["value"], int)
                continue
            assert f["field_code"] in ("PHONE", "EMAIL") and f["field_type"] == "multitext"
            for v in f["values"]:
                assert {"value", "enum_id", "enum_code"} <= v.keys()
                assert v["enum_code"] in (("MOB", "WORK") if f["field_code"] == "PHONE"
                                          else ("WORK", "PRIV"))
        for p in _field_values(c, "PHONE"):
            styles.add(re.sub(r"\d", "9", p))
    assert {"+9 999 999-99-99", "9 (999) 999 99 99", "99999999999", "9999999999"} <= styles


def test_birthdays_are_one_per_person_and_known_on_about_half_of_the_contacts(biz):
    """amoCRM keeps a birthday as Unix time at Moscow midnight, Bitrix24 as an ISO timestamp
    with +03:00 (or ""); a person's contacts agree (test_customer_360 checks it through
    identity resolution)."""
    from synthetic.model import MSK

    amo = {c["id"]: next((datetime.fromtimestamp(f["values"][0]["value"], MSK).date()
                          for f in c["custom_fields_values"] or []
                          if f["field_type"] == "birthday"), None)
           for c in biz.amocrm["contacts"]}
    b24 = {c["ID"]: (date.fromisoformat(c["BIRTHDATE"][:10]) if c["BIRTHDATE"] else None)
           for c in biz.bitrix24["contacts"]}
    assert all(c["BIRTHDATE"] == "" or c["BIRTHDATE"].endswith("T00:00:00+03:00")
               for c in biz.bitrix24["contacts"])
    known = [d for d in [*amo.values(), *b24.values()] if d is not None]
    assert 0.45 < len(known) / (len(amo) + len(b24)) < 0.65
    assert all(date(1971, 1, 1) <= d <= date(2006, 12, 31) for d in known)
    assert len(set(known)) > len(known) // 3  # spread over many days, not one


def _amocrm_consent(c: dict) -> tuple[bool | None, bool]:
    """(consent given / withdrawn / None, do-not-contact) of an amoCRM contact payload."""
    values = [f["values"][0]["value"] for f in c["custom_fields_values"] or []
              if f["field_code"] == "MARKETING_CONSENT"]
    tags = {t["name"] for t in c["_embedded"]["tags"]}
    return (values[0] if values else None), "do_not_contact" in tags


def test_contact_consent(biz):
    """Consent in both CRMs, as SOURCES_CONTRACT.md defines it: mostly given, a few percent
    withdrawn, some never asked; a few contacts do-not-contact (amoCRM tag, Bitrix24
    EXPORT = 'N'). Each payload mirrors the generator's model."""
    amo = [_amocrm_consent(c) for c in biz.amocrm["contacts"]]
    b24 = [({"Y": True, "N": False}.get(c.get("UF_CRM_MARKETING_CONSENT")), c["EXPORT"] == "N")
           for c in biz.bitrix24["contacts"]]
    assert all(c["EXPORT"] in ("Y", "N") for c in biz.bitrix24["contacts"])
    assert all(c.get("UF_CRM_MARKETING_CONSENT", "Y") in ("Y", "N")
               for c in biz.bitrix24["contacts"])
    for flags in (amo, b24):
        n = len(flags)
        given = sum(1 for consent, _ in flags if consent is True) / n
        withdrawn = sum(1 for consent, _ in flags if consent is False) / n
        unknown = sum(1 for consent, _ in flags if consent is None) / n
        dnc = sum(1 for _, d in flags if d) / n
        assert 0.6 <= given <= 0.85, given
        assert 0.005 <= withdrawn <= 0.1, withdrawn
        assert 0.1 <= unknown <= 0.4, unknown
        assert 0.003 <= dnc <= 0.08, dnc


def test_consent_draws_leave_everything_else_unchanged(small):
    """Consent has its own random generator: without the consent fields the payloads are those
    of a business generated with every contact left at "never asked"."""
    from synthetic import business

    original = business.assign_consent
    try:
        business.assign_consent = lambda *args: None
        plain = business.generate(seed=small.seed, scale=small.scale, start=small.start,
                                  end=small.end)
    finally:
        business.assign_consent = original
    plain_contacts = {p["id"]: p for p in plain.amocrm["contacts"]}
    assert len(plain_contacts) == len(small.amocrm["contacts"])
    for c in small.amocrm["contacts"]:
        c = {**c, "_embedded": {**c["_embedded"], "tags": []},
             "custom_fields_values": [f for f in c["custom_fields_values"] or []
                                      if f["field_code"] != "MARKETING_CONSENT"] or None}
        assert c == plain_contacts[c["id"]]
    stripped = [{k: v for k, v in c.items() if k not in ("EXPORT", "UF_CRM_MARKETING_CONSENT")}
                for c in small.bitrix24["contacts"]]
    assert stripped == [{k: v for k, v in c.items() if k != "EXPORT"}
                        for c in plain.bitrix24["contacts"]]
    assert small.amocrm["leads"] == plain.amocrm["leads"]
    assert small.file_orders == plain.file_orders
    for name, frame in small.ground_truth.tables().items():
        pd.testing.assert_frame_equal(frame, plain.ground_truth.tables()[name])


def test_events_chain_ends_at_current_status(biz):
    a = biz.amocrm
    first_stage = {p["id"]: p["_embedded"]["statuses"][0]["id"] for p in a["pipelines"]}
    by_lead: dict[int, list[dict]] = defaultdict(list)
    ids = set()
    for e in a["events"]:
        assert set(e) == EVENT_KEYS
        assert e["type"] == "lead_status_changed" and e["entity_type"] == "lead"
        assert isinstance(e["id"], str) and len(e["id"]) == 26
        assert e["_embedded"]["entity"]["id"] == e["entity_id"]
        ids.add(e["id"])
        by_lead[e["entity_id"]].append(e)
    assert len(ids) == len(a["events"])
    assert [e["created_at"] for e in a["events"]] == sorted(e["created_at"] for e in a["events"])
    skipped = 0
    for lead in _live(biz):
        chain = sorted(by_lead.pop(lead["id"], []), key=lambda e: e["created_at"])
        cur = first_stage[lead["pipeline_id"]]
        for e in chain:
            (before,), (after,) = e["value_before"], e["value_after"]
            assert before["lead_status"] == {"id": cur, "pipeline_id": lead["pipeline_id"]}
            assert after["lead_status"]["pipeline_id"] == lead["pipeline_id"]
            assert lead["created_at"] < e["created_at"] <= lead["updated_at"]
            cur = after["lead_status"]["id"]
        assert cur == lead["status_id"]
        if lead["closed_at"] is not None:
            assert chain[-1]["created_at"] == lead["closed_at"]
        main_open = [s for s in (x["value_after"][0]["lead_status"]["id"] for x in chain)
                     if s not in (WON, LOST)]
        if lead["status_id"] == WON and lead["pipeline_id"] == next(
                p["id"] for p in a["pipelines"] if p["is_main"]) and len(main_open) < 3:
            skipped += 1
    assert not by_lead, "events for unknown leads"
    assert skipped > 10, "some won leads should skip stages"


def test_yandex_direct_rows(biz):
    for r in biz.yandex_direct:
        assert set(r) == {"date", "campaign_id", "campaign_name", "impressions", "clicks", "cost"}
        assert isinstance(r["campaign_id"], int) and 70_000_000 <= r["campaign_id"] < 80_000_000


@pytest.mark.parametrize("platform", list(PLATFORM_ROWS))
def test_ad_platform_rows(biz, platform):
    """Every platform: the emulator's row shape, RUB with 2 decimals, spend on every day."""
    id_key, name_key, shows_key, money, id_type = PLATFORM_ROWS[platform]
    rows = _platform_rows(biz)[platform]
    seen = set()
    names: dict = {}
    for r in rows:
        assert set(r) == {"date", id_key, name_key, shows_key, "clicks", money}
        assert isinstance(r["date"], str) and date.fromisoformat(r["date"]).isoformat() == r[
            "date"]
        assert type(r[id_key]) is id_type and str(r[id_key]).isdigit()
        assert isinstance(r[name_key], str) and r[name_key]
        assert names.setdefault(r[id_key], r[name_key]) == r[name_key]  # one name per id
        assert isinstance(r[money], Decimal) and r[money] == r[money].quantize(Decimal("0.01"))
        assert r[money] > 0
        assert isinstance(r["clicks"], int) and isinstance(r[shows_key], int)
        assert 0 < r["clicks"] <= r[shows_key]
        seen.add((r["date"], r[id_key]))
    assert len(seen) == len(rows), "one row per day and campaign"
    days = (biz.end - biz.start).days + 1
    all_days = {(biz.start + timedelta(days=i)).isoformat() for i in range(days)}
    for campaign in names:  # every campaign spends every day of the period
        assert {d for d, c in seen if c == campaign} == all_days, (platform, campaign)
    assert len(set(names.values())) == len(names)


def test_ad_rows_feed_the_emulators(small):
    """The emulators take the rows as they are (they normalise nothing away)."""
    from emulators.google_ads import GoogleAdsEmulator
    from emulators.meta_ads import MetaAdsEmulator
    from emulators.vk_ads import VKAdsEmulator

    for cls, rows in ((VKAdsEmulator, small.vk_ads), (GoogleAdsEmulator, small.google_ads),
                      (MetaAdsEmulator, small.meta_ads)):
        emu = cls(rows)
        assert len(emu.rows) == len(rows)
        for got, row in zip(emu.rows, rows, strict=True):
            assert {k: got[k] for k in row} == row, cls.__name__


# -- identity resolution ------------------------------------------------------------------------
def test_duplicates_exist_and_resolve(biz):
    contacts = biz.amocrm["contacts"]
    person_of = _resolve_persons(contacts)
    groups: dict[int, list[int]] = defaultdict(list)
    for cid, root in person_of.items():
        groups[root].append(cid)
    dup_groups = [g for g in groups.values() if len(g) > 1]
    share = len(dup_groups) / len(groups)
    assert 0.025 <= share <= 0.06, share
    assert any(len(g) > 2 for g in dup_groups), "a transitive (phone + e-mail) chain"
    leads_of: dict[int, list[int]] = defaultdict(list)
    for lead in _live(biz):
        leads_of[lead["_embedded"]["contacts"][0]["id"]].append(lead["id"])
    for g in dup_groups:  # every duplicate contact carries its own lead(s)
        assert all(leads_of[cid] for cid in g)
    by_id = {c["id"]: c for c in contacts}
    junk = [c for c in contacts
            if _field_values(c, "PHONE") and not any(map(_norm_phone, _field_values(c, "PHONE")))]
    assert len(junk) >= 10, "some contacts have an unparseable phone"
    junk_merged = [c for c in junk if len(groups[person_of[c["id"]]]) > 1]
    assert junk_merged, "an unparseable phone contact is matched by e-mail"
    # differently typed phones of one person normalise to the same number
    phone_dups = 0
    for g in dup_groups:
        raw = {p for cid in g for p in _field_values(by_id[cid], "PHONE") if _norm_phone(p)}
        if len(raw) > 1 and len({_norm_phone(p) for p in raw}) == 1:
            phone_dups += 1
    assert phone_dups >= 20


# -- ground truth -------------------------------------------------------------------------------
@pytest.mark.parametrize("fixture", ["biz", "small"])
def test_ground_truth_equals_rederivation(fixture, request):
    b: SyntheticBusiness = request.getfixturevalue(fixture)
    derived = _rederive(b)
    for name, frame in b.ground_truth.tables().items():
        pd.testing.assert_frame_equal(frame.reset_index(drop=True), derived[name],
                                      check_dtype=False, obj=name)


def test_ground_truth_is_consistent(biz):
    gt = biz.ground_truth
    assert gt.cohort_sizes["customers"].sum() == gt.new_customers_by_channel_month[
        "new_customers"].sum()
    b24 = biz.bitrix24
    converted = {d["LEAD_ID"] for d in b24["deals"]} - {None}
    n_leads = len(_live(biz)) + len(b24["deals"]) + len(b24["leads"]) - len(converted)
    assert gt.leads_by_channel_month["leads"].sum() == n_leads
    assert gt.leads_by_crm_month["leads"].sum() == n_leads
    assert gt.leads_by_crm_month.groupby("crm")["leads"].sum()["amocrm"] == len(_live(biz))
    won = [x for x in _live(biz) if x["status_id"] == WON]
    won_deals = [d for d in b24["deals"] if d["STAGE_SEMANTIC_ID"] == "S"]
    by_source = gt.orders_by_source_month.groupby("order_source")[["orders", "revenue"]].sum()
    assert set(by_source.index) == {"amocrm_lead", "bitrix24_deal", "amocrm_transaction",
                                    "files"}
    assert by_source.loc["amocrm_lead", "orders"] == len(won)
    assert by_source.loc["amocrm_lead", "revenue"] == pytest.approx(sum(x["price"] for x in won))
    assert by_source.loc["bitrix24_deal", "orders"] == len(won_deals)
    assert by_source.loc["amocrm_transaction", "orders"] == len(biz.amocrm["transactions"])
    assert by_source.loc["files", "revenue"] == pytest.approx(
        sum(float(r["amount"]) for r in biz.file_orders))
    assert gt.revenue_by_month["orders"].sum() == by_source["orders"].sum()
    assert gt.revenue_by_month["revenue"].sum() == pytest.approx(by_source["revenue"].sum())
    spend = gt.spend_by_channel_month
    assert set(spend["channel"]) == set(PLATFORM_ROWS)
    months = sorted(gt.leads_by_channel_month["month"].unique())
    assert months[0] == biz.start.replace(day=1) and months[-1] == biz.end.replace(day=1)
    assert all(isinstance(m, date) and m.day == 1 for m in months)
    assert len(spend) == len(months) * len(PLATFORM_ROWS)  # every platform, every month
    assert (spend["spend"] > 0).all()
    assert spend["spend"].round(2).tolist() == spend["spend"].tolist()
    for platform, rows in _platform_rows(biz).items():
        money = PLATFORM_ROWS[platform][3]
        total = float(sum(r[money] for r in rows))
        assert spend[spend.channel == platform]["spend"].sum() == pytest.approx(total)
    paid = gt.new_customers_by_channel_month.groupby("channel")["new_customers"].sum()
    assert set(paid.index) == set(CHANNELS)
    assert paid["google_ads"] >= 20 and paid["meta_ads"] >= 10
    # returning customers: more orders than customers
    assert gt.revenue_by_month["orders"].sum() > 1.3 * gt.cohort_sizes["customers"].sum()


def test_first_lead_channel_can_differ_from_winning_lead(biz):
    """Re-inquiries: a customer whose first (lost) lead came from another channel."""
    person_of = _resolve_persons(biz.amocrm["contacts"])
    by_person: dict[int, list[dict]] = defaultdict(list)
    for lead in _live(biz):
        by_person[person_of[lead["_embedded"]["contacts"][0]["id"]]].append(lead)
    differing = 0
    for plist in by_person.values():
        plist.sort(key=lambda x: x["created_at"])
        won = [x for x in plist if x["status_id"] == WON]
        if won and plist[0]["status_id"] != WON and (
                _lead_channel(plist[0]) != _lead_channel(won[0])):
            differing += 1
    assert differing >= 5


def test_write_ground_truth(biz, tmp_path):
    biz.write_ground_truth(tmp_path / "gt")
    files = sorted(p.name for p in (tmp_path / "gt").iterdir())
    assert files == sorted(f"{n}.csv" for n in biz.ground_truth.TABLES)
    back = pd.read_csv(tmp_path / "gt" / "cohort_sizes.csv")
    assert list(back.columns) == ["cohort_month", "customers"]
    assert back["customers"].sum() == biz.ground_truth.cohort_sizes["customers"].sum()
    assert back["cohort_month"].iloc[0] == biz.ground_truth.cohort_sizes["cohort_month"].iloc[
        0].isoformat()


def test_custom_period_and_validation():
    b = generate(seed=3, scale=0.1, start=date(2025, 1, 1), end=date(2025, 3, 31))
    assert b.amocrm["leads"] and b.bitrix24["deals"] and b.file_orders
    assert max(x["updated_at"] for x in b.amocrm["leads"]) <= b.as_of_ts
    last = max(datetime.fromisoformat(x[k]) for x in b.bitrix24["deals"]
               for k in ("DATE_MODIFY", "CLOSEDATE"))
    assert last.timestamp() <= b.as_of_ts
    assert max(r["order_date"] for r in b.file_orders) <= b.end.isoformat()
    assert b.as_of_ts == int(datetime(2025, 4, 1, tzinfo=MOSCOW).timestamp()) - 1
    assert datetime.fromtimestamp(b.as_of_ts, MOSCOW).date() == b.end
    assert b.end - b.start == timedelta(days=89)
    with pytest.raises(ValueError):
        generate(scale=0)


# -- Bitrix24 brand -----------------------------------------------------------------------------
B24_FINAL = {"CONVERTED": "S", "JUNK": "F", "UC_NOANSWER": "F", "WON": "S", "LOSE": "F",
             "UC_PRICE": "F", "APOLOGY": "F", "C1:WON": "S", "C1:LOSE": "F", "C1:UC_NOTIME": "F",
             "C1:APOLOGY": "F"}


def _stages(b: SyntheticBusiness) -> dict[str, list[str]]:
    """ENTITY_ID -> status ids in SORT order."""
    out: dict[str, list[tuple[int, str]]] = defaultdict(list)
    for s in b.bitrix24["statuses"]:
        out[s["ENTITY_ID"]].append((s["SORT"], s["STATUS_ID"]))
    return {k: [sid for _, sid in sorted(v)] for k, v in out.items()}


def test_bitrix24_payloads_feed_the_emulator_as_strings(small):
    """The emulator takes the data as it is and serves every row, stringified."""
    import requests

    from emulators.bitrix24 import ENTITY_KEYS, Bitrix24Emulator

    data = small.bitrix24
    assert set(data) == set(ENTITY_KEYS)
    with Bitrix24Emulator(data) as emu:
        def call(method: str, body: dict) -> dict:
            return requests.post(emu.webhook_url + method, json=body, timeout=5).json()

        deals = call("crm.deal.list", {"start": 0, "order": {"ID": "ASC"}})
        assert deals["total"] == len(data["deals"])
        first = deals["result"][0]
        assert all(v is None or isinstance(v, str) for v in first.values())
        stored = data["deals"][0]
        assert first["ID"] == str(stored["ID"])
        assert first["OPPORTUNITY"] == f"{stored['OPPORTUNITY']:.2f}"
        assert first["CLOSED"] in ("Y", "N")
        lead = call("crm.lead.list", {"select": ["*", "PHONE", "EMAIL"]})["result"][0]
        assert {"PHONE", "EMAIL"} & set(lead) and lead["STATUS_ID"]
        for type_id, key in ((1, "STATUS_ID"), (2, "STAGE_ID")):
            history = call("crm.stagehistory.list", {"entityTypeId": type_id})
            expected = [r for r in data["stagehistory"] if r["ENTITY_TYPE_ID"] == type_id]
            assert history["total"] == len(expected)
            item = history["result"]["items"][0]
            assert isinstance(item["ID"], int) and isinstance(item["OWNER_ID"], int)
            assert key in item and "ENTITY_TYPE_ID" not in item
        assert call("crm.category.list", {"entityTypeId": 2})["total"] == 2
        assert len(call("user.get", {})["result"]) == len(data["users"])


def test_bitrix24_extractor_lands_what_direct_landing_lands(small):
    """synthetic.landing lands exactly the records Bitrix24Source extracts from the emulator."""
    from emulators.bitrix24 import Bitrix24Emulator
    from extractors.bitrix24 import Bitrix24Source
    from synthetic.landing import bitrix24_records

    with Bitrix24Emulator(small.bitrix24) as emu:
        source = Bitrix24Source(emu.base_url, account=small.bitrix24_account,
                                webhook_url=emu.webhook_url)
        extracted = {(r.entity, r.record_id): r for e in source.ENTITIES
                     for page in source.pages(e, None) for r in page.records}
    landed = {(r.entity, r.record_id): r
              for r in bitrix24_records(small.bitrix24_account, small.bitrix24)}
    assert landed == extracted
    assert {entity for entity, _ in landed} == set(Bitrix24Source.ENTITIES)


def test_bitrix24_leads_and_deals_are_consistent(biz):
    x = biz.bitrix24
    stages = _stages(biz)
    contacts = {c["ID"] for c in x["contacts"]}
    users = {u["ID"] for u in x["users"]}
    leads = {lead["ID"]: lead for lead in x["leads"]}
    as_of = biz.as_of_ts
    deals_of: dict[int, list[dict]] = defaultdict(list)
    for deal in x["deals"]:
        category = deal["CATEGORY_ID"]
        entity = "DEAL_STAGE" if category == 0 else f"DEAL_STAGE_{category}"
        assert deal["STAGE_ID"] in stages[entity]
        assert deal["STAGE_SEMANTIC_ID"] == B24_FINAL.get(deal["STAGE_ID"], "P")
        assert deal["CLOSED"] == ("N" if deal["STAGE_SEMANTIC_ID"] == "P" else "Y")
        assert deal["CONTACT_ID"] in contacts and deal["ASSIGNED_BY_ID"] in users
        assert isinstance(deal["OPPORTUNITY"], Decimal)
        if deal["STAGE_SEMANTIC_ID"] == "S":
            assert deal["OPPORTUNITY"] > 0
        created = datetime.fromisoformat(deal["DATE_CREATE"])
        assert created <= datetime.fromisoformat(deal["DATE_MODIFY"])
        assert datetime.fromisoformat(deal["DATE_MODIFY"]).timestamp() <= as_of
        if deal["CLOSED"] == "Y":
            assert created < datetime.fromisoformat(deal["CLOSEDATE"]) <= datetime.fromisoformat(
                deal["DATE_MODIFY"])
        if category == 0:  # every sales deal comes from a converted lead
            lead = leads[deal["LEAD_ID"]]
            deals_of[lead["ID"]].append(deal)
            assert lead["STATUS_ID"] == "CONVERTED" and lead["CONTACT_ID"] == deal["CONTACT_ID"]
            assert datetime.fromisoformat(lead["DATE_CLOSED"]) < created
            assert created - datetime.fromisoformat(lead["DATE_CLOSED"]) < timedelta(minutes=10)
            assert all(lead[k] == deal[k] for k in ("UTM_SOURCE", "UTM_MEDIUM", "UTM_CAMPAIGN"))
        else:  # repeat purchases: category 1, C1: stages, no lead
            assert deal["LEAD_ID"] is None and deal["STAGE_ID"].startswith("C1:")
            assert deal["SOURCE_ID"] == "REPEAT_SALE"
    for lead in x["leads"]:
        assert lead["STATUS_ID"] in stages["STATUS"]
        # a never-qualified junk lead has no contact, only its own phone/e-mail
        assert lead["CONTACT_ID"] in contacts or (
            lead["CONTACT_ID"] is None and lead["STATUS_SEMANTIC_ID"] == "F"
            and (lead.get("PHONE") or lead.get("EMAIL")))
        assert lead["STATUS_SEMANTIC_ID"] == B24_FINAL.get(lead["STATUS_ID"], "P")
        assert len(deals_of[lead["ID"]]) == (lead["STATUS_ID"] == "CONVERTED")
        assert (lead["DATE_CLOSED"] is None) == (lead["STATUS_SEMANTIC_ID"] == "P")
    statuses = Counter(lead["STATUS_ID"] for lead in x["leads"])
    assert statuses["CONVERTED"] > 100 and statuses["JUNK"] > 50
    won = Counter(d["CATEGORY_ID"] for d in x["deals"] if d["STAGE_SEMANTIC_ID"] == "S")
    assert won[0] > 50 and won[1] > 20


def test_bitrix24_stage_history_ends_at_the_current_stage(biz):
    x = biz.bitrix24
    current = {1: {lead["ID"]: lead for lead in x["leads"]},
               2: {deal["ID"]: deal for deal in x["deals"]}}
    rows: dict[tuple[int, int], list[dict]] = defaultdict(list)
    ids: dict[int, list[int]] = defaultdict(list)
    for row in x["stagehistory"]:
        assert all(isinstance(row[k], int) for k in ("ID", "TYPE_ID", "OWNER_ID",
                                                     "ENTITY_TYPE_ID"))
        rows[(row["ENTITY_TYPE_ID"], row["OWNER_ID"])].append(row)
        ids[row["ENTITY_TYPE_ID"]].append(row["ID"])
    for type_id, seq in ids.items():  # one id sequence per entity type, in time order
        assert len(set(seq)) == len(seq)
        by_id = sorted((r["ID"], datetime.fromisoformat(r["CREATED_TIME"]))
                       for r in x["stagehistory"] if r["ENTITY_TYPE_ID"] == type_id)
        assert [t for _, t in by_id] == sorted(t for _, t in by_id)
    assert set(rows) == {(t, i) for t, records in current.items() for i in records}
    for (type_id, owner), chain in rows.items():
        chain.sort(key=lambda r: r["ID"])
        record = current[type_id][owner]
        stage_key = "STATUS_ID" if type_id == 1 else "STAGE_ID"
        semantic_key = "STATUS_SEMANTIC_ID" if type_id == 1 else "STAGE_SEMANTIC_ID"
        times = [datetime.fromisoformat(r["CREATED_TIME"]) for r in chain]
        assert times == sorted(times)
        assert chain[0]["TYPE_ID"] == 1 and times[0] == datetime.fromisoformat(
            record["DATE_CREATE"])
        assert all(r["TYPE_ID"] in (2, 3) for r in chain[1:])
        assert chain[-1][stage_key] == record[stage_key]
        assert chain[-1][semantic_key] == record[semantic_key]
        for r in chain:
            assert (r["TYPE_ID"] == 3) == (r[stage_key] in B24_FINAL)
            if type_id == 2:
                assert r["CATEGORY_ID"] == record["CATEGORY_ID"]


def test_cross_crm_persons_share_a_point(biz):
    """Some people are in both CRMs; their records join by a normalised phone or e-mail."""
    person_of = _resolve_all(biz)
    sources: dict = defaultdict(set)
    for (source, _id), root in person_of.items():
        sources[root].add(source)
    both = [root for root, s in sources.items() if {"amocrm", "bitrix24"} <= s]
    assert len(both) >= 20
    # every Bitrix24 contact of a cross-brand person shares a point with an amoCRM contact
    amo_points = set()
    for c in biz.amocrm["contacts"]:
        amo_points |= {p for p in map(_norm_phone, _field_values(c, "PHONE")) if p}
        amo_points |= {e.strip().lower() for e in _field_values(c, "EMAIL")}
    shared = 0
    for c in biz.bitrix24["contacts"]:
        if "amocrm" in sources[person_of[("bitrix24", c["ID"])]]:
            points = {p for p in map(_norm_phone, _b24_values(c, "PHONE")) if p}
            points |= {e.strip().lower() for e in _b24_values(c, "EMAIL")}
            assert points & amo_points
            shared += 1
    assert shared == len(both)
    # and the ground truth counts each of them once as a customer
    gt = biz.ground_truth
    assert gt.cohort_sizes["customers"].sum() == len(
        {person for *_rest, person in _orders(biz, person_of)})


# -- amoCRM: companies, buyer funnel, deleted leads ---------------------------------------------
def test_companies_link_a_few_b2b_leads(biz):
    a = biz.amocrm
    linked = [x for x in _live(biz) if x["_embedded"]["companies"]]
    assert 20 <= len(linked) <= 0.05 * len(_live(biz))
    for company in a["companies"]:
        assert {"id", "name", "responsible_user_id", "created_at", "updated_at", "is_deleted",
                "account_id", "_embedded"} <= company.keys()
        assert company["created_at"] <= company["updated_at"] <= biz.as_of_ts
    assert {c["id"] for x in linked for c in x["_embedded"]["companies"]} == {
        c["id"] for c in a["companies"]}


CUSTOMER_KEYS = {
    "id", "name", "next_price", "next_date", "responsible_user_id", "status_id", "periodicity",
    "created_by", "updated_by", "created_at", "updated_at", "closest_task_at", "is_deleted",
    "custom_fields_values", "ltv", "purchases_count", "average_check", "account_id",
    "group_id", "_embedded",
}
TRANSACTION_KEYS = {"id", "price", "completed_at", "comment", "customer_id", "created_by",
                    "updated_by", "created_at", "updated_at", "is_deleted", "account_id",
                    "_embedded"}


def test_buyer_funnel_customers_and_transactions(biz):
    a = biz.amocrm
    statuses = {s["id"]: s for s in a["customer_statuses"]}
    assert {s["type"] for s in statuses.values()} <= {0, 1, 2, 3, 4}
    assert sum(s["is_default"] for s in statuses.values()) == 1
    contacts = {c["id"] for c in a["contacts"]}
    person_of = _resolve_persons(a["contacts"])
    won_at: dict[int, list[int]] = defaultdict(list)
    for lead in _live(biz):
        if lead["status_id"] == WON:
            won_at[person_of[lead["_embedded"]["contacts"][0]["id"]]].append(lead["closed_at"])
    customers = {}
    for c in a["customers"]:
        assert set(c) == CUSTOMER_KEYS and c["status_id"] in statuses
        (main,) = c["_embedded"]["contacts"]
        assert main["is_main"] is True and main["id"] in contacts
        assert min(won_at[person_of[main["id"]]]) < c["created_at"]  # won before
        assert c["created_at"] <= c["updated_at"] <= biz.as_of_ts
        customers[c["id"]] = c
    purchases: dict[int, list[dict]] = defaultdict(list)
    for tx in a["transactions"]:
        assert set(tx) == TRANSACTION_KEYS and tx["is_deleted"] is False
        assert tx["_embedded"] == {"customer": {"id": tx["customer_id"]}}
        customer = customers[tx["customer_id"]]
        assert customer["created_at"] < tx["completed_at"] <= tx["created_at"] <= biz.as_of_ts
        assert tx["price"] > 0
        purchases[tx["customer_id"]].append(tx)
    for cid, c in customers.items():
        assert c["purchases_count"] == len(purchases[cid])
        assert c["ltv"] == sum(t["price"] for t in purchases[cid])
    assert sum(1 for c in customers.values() if c["purchases_count"] >= 2) >= 10


def test_deleted_leads_count_nowhere(biz, small):
    """Spam leads sit in the leads list with is_deleted true, without contacts; the ground
    truth and the landed leads leave them out; they land as deleted_leads."""
    from synthetic.landing import business_records

    deleted = [x for x in small.amocrm["leads"] if x["is_deleted"]]
    assert deleted and all(not x["_embedded"]["contacts"] for x in deleted)
    assert all(x["created_at"] < x["updated_at"] <= small.as_of_ts for x in deleted)
    records = business_records(small)
    landed = {r.record_id for r in records if r.table == "amocrm__leads"}
    bin_ = {r.record_id: r.payload for r in records if r.table == "amocrm__deleted_leads"}
    assert landed == {str(x["id"]) for x in _live(small)}
    assert bin_ == {str(x["id"]): {"id": x["id"], "updated_at": x["updated_at"],
                                   "is_deleted": True} for x in deleted}
    for b in (biz, small):
        crm = b.ground_truth.leads_by_crm_month.groupby("crm")["leads"].sum()
        assert crm["amocrm"] == len(_live(b))


def test_amocrm_extractor_lands_what_direct_landing_lands(small):
    """The new amoCRM entities (and leads without the deleted ones) land the same over HTTP."""
    from emulators.amocrm import AmoCRMEmulator
    from extractors.amocrm import AmoCRMSource
    from synthetic.landing import amocrm_entity_records

    entities = ("companies", "customers", "customer_statuses", "transactions", "deleted_leads",
                "leads")
    with AmoCRMEmulator(small.amocrm, account_id=small.account_id, subdomain=small.subdomain,
                        long_lived_token="demo", rate_limit_per_s=1000) as emu:
        source = AmoCRMSource(emu.base_url, account=small.subdomain, long_lived_token="demo",
                              rate_limit_per_s=1000)
        for entity in entities:
            items = small.amocrm["leads" if entity == "deleted_leads" else entity]
            extracted = {r.record_id: r for page in source.pages(entity, None)
                         for r in page.records}
            landed = {r.record_id: r for r in amocrm_entity_records(small.subdomain, entity,
                                                                     items)}
            assert landed == extracted, entity
            assert landed, entity


# -- the online shop's order files --------------------------------------------------------------
def test_file_orders_follow_the_files_contract(biz):
    from extractors.files import ORDER_COLUMNS

    names = [c.name for c in ORDER_COLUMNS]
    ids = set()
    for row in biz.file_orders:
        # the contract's columns in its order (the shop leaves customer_id, quantity out)
        assert list(row) == [n for n in names if n in row] and set(row) <= set(names)
        assert all(isinstance(v, str) for v in row.values())
        assert row["customer_phone"] or row["customer_email"]
        assert biz.start.isoformat() <= row["order_date"] <= biz.end.isoformat()
        assert Decimal(row["amount"]) > 0 and row["currency"] == "RUB"
        ids.add(row["order_id"])
    assert len(ids) == len(biz.file_orders)
    # some buyers are CRM people (their phone typed differently), some never had a lead
    person_of = _resolve_all(biz)
    crm_people = {root for (source, _id), root in person_of.items() if source != "files"}
    crm_phones = {}
    for c in biz.amocrm["contacts"]:
        for p in _field_values(c, "PHONE"):
            crm_phones.setdefault(_norm_phone(p), set()).add(p)
    known = [r for r in biz.file_orders if person_of[("files", r["order_id"])] in crm_people]
    assert 0.2 * len(biz.file_orders) <= len(known) <= 0.6 * len(biz.file_orders)
    retyped = [r for r in known if r["customer_phone"] and r["customer_phone"] not in
               crm_phones.get(_norm_phone(r["customer_phone"]), {r["customer_phone"]})]
    assert len(retyped) >= 10
    shop_only = {person_of[("files", r["order_id"])] for r in biz.file_orders} - crm_people
    assert len(shop_only) >= 50
    assert any(r["utm_source"] == "" for r in biz.file_orders)


def test_write_order_files_reads_back_through_the_files_source(small, tmp_path):
    from extractors.files import FilesSource, parse_money, validate_file_rows

    (tmp_path / "orders").mkdir()
    (tmp_path / "orders" / "shop_orders_old.csv").write_text("stale")  # ours: replaced
    paths = small.write_order_files(tmp_path)
    assert sorted(p.name for p in (tmp_path / "orders").iterdir()) == sorted(p.name
                                                                             for p in paths)
    assert len(paths) == 2
    raw = paths[1].read_bytes()
    with pytest.raises(UnicodeDecodeError):
        raw.decode("utf-8")
    assert ";" in raw.decode("cp1251").splitlines()[1]
    records = [r for page in FilesSource(tmp_path).pages("orders", None) for r in page.records]
    good, bad = validate_file_rows(records)
    assert not bad and len(good) == len(small.file_orders)
    by_id = {r["order_id"]: r for r in small.file_orders}
    for record in records:
        row = by_id[record.record_id]
        got = {k: v for k, v in record.payload.items() if not k.startswith("_")}
        for money in ("amount", "gross_margin"):  # the cp1251 file has a decimal comma
            assert parse_money(got.pop(money)) == Decimal(row[money])
        assert got == {k: v for k, v in row.items() if k not in ("amount", "gross_margin")}


def test_business_records_cover_every_source(small):
    from synthetic.landing import business_records

    tables = Counter(r.table for r in business_records(small))
    for entity in ("users", "statuses", "categories", "leads", "deals", "contacts",
                   "stagehistory"):
        assert tables[f"bitrix24__{entity}"] == len(small.bitrix24[entity]), entity
    for entity in ("companies", "customers", "customer_statuses", "transactions"):
        assert tables[f"amocrm__{entity}"] == len(small.amocrm[entity]), entity
    assert tables["files__orders"] == len(small.file_orders)
