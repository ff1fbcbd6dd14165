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


def _resolve_persons(contacts: list[dict]) -> dict[int, int]:
    """contact id -> person root, by shared normalised phone or e-mail (union-find)."""
    parent = {c["id"]: c["id"] for c in contacts}

    def find(x: int) -> int:
        while parent[x] != x:
            parent[x] = parent[parent[x]]
            x = parent[x]
        return x

    owner: dict[str, int] = {}
    for c in contacts:
        keys = [("p", p) for p in map(_norm_phone, _field_values(c, "PHONE")) if p]
        keys += [("e", e.strip().lower()) for e in _field_values(c, "EMAIL") if e.strip()]
        for key in keys:
            if key in owner:
                a, b = find(owner[key]), find(c["id"])
                if a != b:
                    parent[max(a, b)] = min(a, b)
            else:
                owner[key] = c["id"]
    return {cid: find(cid) for cid in parent}


def _rederive(b: SyntheticBusiness) -> dict[str, pd.DataFrame]:
    leads = b.amocrm["leads"]
    person_of = _resolve_persons(b.amocrm["contacts"])
    leads_ct: Counter = Counter()
    by_person: dict[int, list[dict]] = defaultdict(list)
    for lead in leads:
        leads_ct[(_msk_month(lead["created_at"]), _lead_channel(lead))] += 1
        main = next(c for c in lead["_embedded"]["contacts"] if c["is_main"])
        by_person[person_of[main["id"]]].append(lead)
    revenue: Counter = Counter()
    orders: Counter = Counter()
    new_ct: Counter = Counter()
    cohorts: Counter = Counter()
    for plist in by_person.values():
        won = [x for x in plist if x["status_id"] == WON]
        for x in won:
            revenue[_msk_month(x["closed_at"])] += x["price"]
            orders[_msk_month(x["closed_at"])] += 1
        if won:
            cohort = _msk_month(min(x["closed_at"] for x in won))
            first = min(plist, key=lambda x: (x["created_at"], x["id"]))
            new_ct[(cohort, _lead_channel(first))] += 1
            cohorts[cohort] += 1
    spend: dict[tuple[date, str], Decimal] = defaultdict(Decimal)
    for platform, rows in _platform_rows(b).items():
        money = PLATFORM_ROWS[platform][3]
        for row in rows:
            spend[(date.fromisoformat(row["date"]).replace(day=1), platform)] += row[money]
    return {
        "new_customers_by_channel_month": pd.DataFrame(
            sorted((m, ch, n) for (m, ch), n in new_ct.items()),
            columns=["month", "channel", "new_customers"]),
        "revenue_by_month": pd.DataFrame(
            sorted((m, float(revenue[m]), orders[m]) for m in orders),
            columns=["month", "revenue", "orders"]),
        "spend_by_channel_month": pd.DataFrame(
            sorted((m, ch, float(v)) for (m, ch), v in spend.items()),
            columns=["month", "channel", "spend"]),
        "cohort_sizes": pd.DataFrame(sorted(cohorts.items()),
                                     columns=["cohort_month", "customers"]),
        "leads_by_channel_month": pd.DataFrame(
            sorted((m, ch, n) for (m, ch), n in leads_ct.items()),
            columns=["month", "channel", "leads"]),
    }


def _platform_rows(b: SyntheticBusiness) -> dict[str, list[dict]]:
    return {"yandex_direct": b.yandex_direct, "vk_ads": b.vk_ads, "google_ads": b.google_ads,
            "meta_ads": b.meta_ads}


# -- determinism --------------------------------------------------------------------------------
def test_same_seed_gives_identical_payloads(small):
    again = generate(scale=0.2)
    assert again.amocrm == small.amocrm
    for platform, rows in _platform_rows(small).items():
        assert _platform_rows(again)[platform] == rows, platform
        assert rows, platform
    for name, frame in small.ground_truth.tables().items():
        pd.testing.assert_frame_equal(frame, again.ground_truth.tables()[name])


def test_different_seed_gives_different_payloads(small):
    other = generate(seed=7, scale=0.2)
    assert other.amocrm["leads"] != small.amocrm["leads"]
    assert other.amocrm["contacts"] != small.amocrm["contacts"]
    for platform, rows in _platform_rows(small).items():
        assert _platform_rows(other)[platform] != rows, platform
    # static reference data does not depend on the seed
    assert other.amocrm["pipelines"] == small.amocrm["pipelines"]
    assert other.amocrm["users"] == small.amocrm["users"]


# -- volumes ------------------------------------------------------------------------------------
CAMPAIGNS_PER_PLATFORM = {"yandex_direct": (4, 4), "vk_ads": (2, 3), "google_ads": (2, 3),
                          "meta_ads": (2, 2)}


def test_volumes_at_default_scale(biz):
    """The demo extracts amoCRM at 7 req/s within 60 s: at most 3,600 leads, 8,000 events."""
    a = biz.amocrm
    assert 2_800 <= len(a["leads"]) <= 3_600
    assert 2_000 <= len(a["contacts"]) <= 2_800
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
    ids = [x["id"] for x in a["leads"]]
    assert len(set(ids)) == len(ids)
    outcomes = Counter()
    for lead in a["leads"]:
        assert set(lead) == LEAD_KEYS
        assert lead["account_id"] == biz.account_id
        assert lead["status_id"] in statuses[lead["pipeline_id"]]
        assert lead["responsible_user_id"] in users
        assert isinstance(lead["created_at"], int)
        assert biz.start <= datetime.fromtimestamp(lead["created_at"], MOSCOW).date() <= biz.end
        assert lead["created_at"] <= lead["updated_at"] <= as_of
        (link,) = lead["_embedded"]["contacts"]
        assert link["is_main"] is True and link["id"] in contact_ids
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
    channels = Counter(_lead_channel(x) for x in biz.amocrm["leads"])
    assert set(channels) == set(CHANNELS)
    assert all(n >= 20 for n in channels.values()), channels
    assert channels["google_ads"] >= 100 and channels["meta_ads"] >= 100
    campaign_ids = {platform: {str(r[PLATFORM_ROWS[platform][0]]) for r in rows}
                    for platform, rows in _platform_rows(biz).items()}
    used: dict[str, Counter] = defaultdict(Counter)
    sources: dict[str, Counter] = defaultdict(Counter)
    for lead in biz.amocrm["leads"]:
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
    for lead in biz.amocrm["leads"]:
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
                        for x in biz.amocrm["leads"]
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
            assert f["field_code"] in ("PHONE", "EMAIL") and f["field_type"] == "multitext"
            for v in f["values"]:
                assert {"value", "enum_id", "enum_code"} <= v.keys()
                assert v["enum_code"] in (("MOB", "WORK") if f["field_code"] == "PHONE"
                                          else ("WORK", "PRIV"))
        for p in _field_values(c, "PHONE"):
            styles.add(re.sub(r"\d", "9", p))
    assert {"+9 999 999-99-99", "9 (999) 999 99 99", "99999999999", "9999999999"} <= styles


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
    for lead in a["leads"]:
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
    for lead in biz.amocrm["leads"]:
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
    assert gt.leads_by_channel_month["leads"].sum() == len(biz.amocrm["leads"])
    won = [x for x in biz.amocrm["leads"] if x["status_id"] == WON]
    assert gt.revenue_by_month["orders"].sum() == len(won)
    assert gt.revenue_by_month["revenue"].sum() == pytest.approx(sum(x["price"] for x in won))
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
    for lead in biz.amocrm["leads"]:
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
    assert b.amocrm["leads"]
    assert max(x["updated_at"] for x in b.amocrm["leads"]) <= b.as_of_ts
    assert b.as_of_ts == int(datetime(2025, 4, 1, tzinfo=MOSCOW).timestamp()) - 1
    assert datetime.fromtimestamp(b.as_of_ts, MOSCOW).date() == b.end
    assert b.end - b.start == timedelta(days=89)
    with pytest.raises(ValueError):
        generate(scale=0)
