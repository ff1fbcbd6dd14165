"""Diff sync of segments to ad platform audiences (issue 5): audiences.sync + audiences.state.

A small hand-built warehouse (marts.dim_customers, marts.fct_orders,
intermediate.int_as_of_date, intermediate.int_customer_identifiers) on DuckDB and PostgreSQL;
the real clients of audiences.clients talk to the real emulators of emulators.audiences, which
record every batch and the resulting members. Every test checks what the platform received,
what the state tables hold and that no raw phone or e-mail was written anywhere.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from _support import RecordingSleep, scratch_warehouse
from conftest import BACKENDS

from audiences import state
from audiences.clients.google import GoogleAudienceClient
from audiences.clients.meta import MetaAudienceClient
from audiences.clients.vk import VKAudienceClient
from audiences.clients.yandex import YandexAudienceClient
from audiences.segments import parse_segment
from audiences.sync import refresh_membership, sync_segment, sync_to_platforms
from emulators.audiences import (
    GoogleDataManagerEmulator,
    MetaAudiencesEmulator,
    VKAudiencesEmulator,
    YandexAudiencesEmulator,
)
from extractors.http import HttpOptions

T0 = datetime(2026, 11, 23, 9, 0, tzinfo=UTC)
TOKEN = "sync-test-secret-token-5150"
LIST_ID = "7700123456"

LAPSED = parse_segment("name: lapsed\ndescription: win-back\nkind: dynamic\n"
                       "conditions:\n  - {field: recency, op: '>=', value: 90}\n", "lapsed.yml")
SEED = parse_segment("name: seed\ndescription: value seed\nkind: dynamic\nvalue: revenue\n"
                     "conditions:\n  - {field: recency, op: '>=', value: 90}\n", "seed.yml")
FROZEN = parse_segment("name: frozen\ndescription: one-time buyers, frozen\nkind: static\n"
                       "conditions:\n  - {field: orders_count, op: '=', value: 1}\n",
                       "frozen.yml")


def at(hours: int) -> datetime:
    return T0 + timedelta(hours=hours)


def sha(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


def md5(text: str) -> str:
    return hashlib.md5(text.encode()).hexdigest()


def cid(i: int) -> str:
    return f"c_{i:05d}"


def phone(i: int) -> str:
    return f"+7916{i:07d}"


def email(i: int) -> str:
    return f"User{i}@Example.ru"  # stored normalised (lower case) in the identifiers table


# -- the warehouse -----------------------------------------------------------------------------

DIM_DDL = """create table marts.dim_customers (
    customer_id varchar, days_since_last_order integer, orders_count integer,
    revenue numeric(18, 2), gross_margin numeric(18, 2), aov numeric(18, 2),
    rfm_segment varchar, recency_score integer, frequency_score integer,
    monetary_score integer, channel varchar, cohort_month date, first_order_date date,
    last_order_date date, is_due boolean, is_overdue boolean, is_active boolean,
    is_churned boolean, is_contactable boolean)"""


class Shop:
    """A warehouse of ``n`` customers: ``lapsed`` (recency >= 90) are the first ``lapsed``,
    odd ids have one order, revenue grows with the id."""

    def __init__(self, wh: Any) -> None:
        self.wh = wh

    def build(self, n: int, lapsed: int) -> Shop:
        with self.wh.connect() as conn:
            cur = conn.cursor()
            for schema in ("marts", "intermediate"):
                cur.execute(f"create schema if not exists {schema}")
            cur.execute(DIM_DDL)
            cur.execute("create table marts.fct_orders (customer_id varchar, order_date date, "
                        "product_category varchar)")
            cur.execute("create table intermediate.int_as_of_date (as_of_date date)")
            cur.execute("insert into intermediate.int_as_of_date values ('2026-11-22')")
            cur.execute("create table intermediate.int_customer_identifiers "
                        "(customer_id varchar, kind varchar, value_normalized varchar)")
        customers = [(cid(i), 100 if i < lapsed else 10, 1 if i % 2 else 2, 10 * i + 5, True)
                     for i in range(n)]
        idents = [(cid(i), kind, value) for i in range(n)
                  for kind, value in (("phone", phone(i)), ("email", email(i).lower()))]
        self._insert("marts.dim_customers (customer_id, days_since_last_order, orders_count, "
                     "revenue, is_contactable)", 5, customers)
        self._insert("intermediate.int_customer_identifiers", 3, idents)
        return self

    def _insert(self, table: str, width: int, rows: list[tuple]) -> None:
        with self.wh.connect() as conn:
            cur = conn.cursor()
            one = f"({self.wh._marks(width)})"
            for start in range(0, len(rows), 400):
                chunk = rows[start:start + 400]
                cur.execute(f"insert into {table} values {', '.join([one] * len(chunk))}",
                            [v for r in chunk for v in r])

    def set(self, i: int, **columns: Any) -> None:
        """Change one customer (recency via ``days_since_last_order``, consent, ...)."""
        p = self.wh._param
        sets = ", ".join(f"{k} = {p}" for k in columns)
        with self.wh.connect() as conn:
            conn.cursor().execute(f"update marts.dim_customers set {sets} "
                                  f"where customer_id = {p}", [*columns.values(), cid(i)])

    def set_email(self, i: int, value: str) -> None:
        p = self.wh._param
        with self.wh.connect() as conn:
            conn.cursor().execute(
                f"update intermediate.int_customer_identifiers set value_normalized = {p} "
                f"where customer_id = {p} and kind = 'email'", [value, cid(i)])

    def table(self, name: str) -> list[tuple]:
        return [tuple(r) for r in self.wh.query_df(f"select * from audiences.{name}")
                .itertuples(index=False)]

    def synced(self, segment: str, platform: str, audience_id: str) -> dict[str, list]:
        with self.wh.connect() as conn:
            return state.synced_members(self.wh, conn, segment, platform, audience_id)


@pytest.fixture(params=BACKENDS)
def shop(request, tmp_path: Path) -> Iterator[Shop]:
    with scratch_warehouse(request.param, tmp_path, "sync") as (wh, _env):
        yield Shop(wh).build(150, lapsed=130)


def options() -> HttpOptions:
    return HttpOptions(timeout=(2.0, 10.0), max_retries=2, backoff_base=0.01,
                       sleep=RecordingSleep())


@pytest.fixture
def meta() -> Iterator[MetaAudiencesEmulator]:
    emulator = MetaAudiencesEmulator(access_token=TOKEN).start()
    yield emulator
    emulator.stop()


@pytest.fixture
def google() -> Iterator[GoogleDataManagerEmulator]:
    emulator = GoogleDataManagerEmulator(access_token=TOKEN, user_lists=(LIST_ID,)).start()
    yield emulator
    emulator.stop()


@pytest.fixture
def yandex() -> Iterator[YandexAudiencesEmulator]:
    emulator = YandexAudiencesEmulator(oauth_token=TOKEN).start()
    yield emulator
    emulator.stop()


def meta_client(emulator: MetaAudiencesEmulator, max_batch: int = 50) -> MetaAudienceClient:
    return MetaAudienceClient(emulator.base_url, TOKEN, max_batch=max_batch,
                              rate_limit_per_s=None, http_options=options(),
                              ad_account_id="act_1234567")


def google_client(emulator: GoogleDataManagerEmulator) -> GoogleAudienceClient:
    return GoogleAudienceClient(emulator.base_url, TOKEN, operating_account_id="1234567890",
                                max_batch=40, rate_limit_per_s=None, http_options=options())


def yandex_client(emulator: YandexAudiencesEmulator) -> YandexAudienceClient:
    return YandexAudienceClient(emulator.base_url, TOKEN, rate_limit_per_s=None,
                                http_options=options())


# -- expected hashed members -------------------------------------------------------------------

def meta_row(i: int) -> list[str]:
    return [sha(email(i).lower()), sha(phone(i).lstrip("+"))]


def meta_member(i: int) -> tuple:
    return (("EMAIL", sha(email(i).lower())), ("PHONE", sha(phone(i).lstrip("+"))))


def google_member(i: int) -> frozenset:
    return frozenset({("emailAddress", sha(email(i).lower())), ("phoneNumber", sha(phone(i)))})


def google_row(i: int) -> dict:
    return {"userData": {"userIdentifiers": [{"emailAddress": sha(email(i).lower())},
                                             {"phoneNumber": sha(phone(i))}]}}


def yandex_member(i: int) -> tuple[str, str]:
    return (sha(phone(i).lstrip("+")), sha(email(i).lower()))


def assert_no_raw_identifiers(shop: Shop, out_dir: Path | None, ids: range) -> None:
    """No phone (E.164 or digits) or e-mail of ``ids`` in any written file or state table."""
    texts = [json.dumps(shop.table(t), default=str)
             for t in ("membership_history", "static_members", "destinations",
                       "synced_members", "sync_runs")]
    if out_dir is not None and out_dir.exists():
        texts += [p.read_text() for p in out_dir.iterdir()]
    blob = "\n".join(texts).lower()
    assert blob.strip()
    for i in ids:
        for raw in (phone(i), phone(i).lstrip("+"), email(i).lower()):
            assert raw.lower() not in blob, raw


def runs(shop: Shop, segment: str) -> list[dict[str, Any]]:
    return state.sync_runs(shop.wh, segment)


# -- Meta: creation, batches, diff, consent ----------------------------------------------------

def test_meta_first_sync_creates_then_diffs_and_drops_withdrawn_consent(shop, meta, tmp_path):
    client, out = meta_client(meta), tmp_path / "out"
    first = sync_segment(shop.wh, LAPSED, "meta", client, now=at(0), out_dir=out)
    assert (first.status, first.added, first.removed, first.excluded) == ("success", 130, 0, 0)
    ca = first.audience_id
    assert ca in meta.audiences and not meta.audiences[ca]["is_value_based"]
    assert shop.table("destinations") == [("lapsed", "meta", "", ca, at(0).replace(tzinfo=None))]
    # one upload session in batches of the client's max_batch (50), in customer order
    assert [(b["method"], b["rows"], b["session"]["batch_seq"]) for b in meta.batches] == [
        ("POST", 50, 1), ("POST", 50, 2), ("POST", 30, 3)]
    assert [row for b in meta.batches for row in b["data"]] == [meta_row(i) for i in range(130)]
    assert meta.members(ca) == {meta_member(i) for i in range(130)}

    # customer 5 leaves the segment, 140 joins: exactly one removal and one addition
    shop.set(5, days_since_last_order=3)
    shop.set(140, days_since_last_order=200)
    second = sync_segment(shop.wh, LAPSED, "meta", client, now=at(1), out_dir=out)
    assert (second.status, second.added, second.removed, second.audience_id) == (
        "success", 1, 1, ca)
    assert [(b["method"], b["data"]) for b in meta.batches[3:]] == [
        ("DELETE", [meta_row(5)]), ("POST", [meta_row(140)])]
    expected = {meta_member(i) for i in [*range(130), 140] if i != 5}
    assert meta.members(ca) == expected

    # nothing changed: nothing is sent
    assert sync_segment(shop.wh, LAPSED, "meta", client, now=at(2)).added == 0
    assert len(meta.batches) == 5

    # customer 7 withdraws consent: removed, and never re-added while not contactable
    shop.set(7, is_contactable=False)
    third = sync_segment(shop.wh, LAPSED, "meta", client, now=at(3), out_dir=out)
    assert (third.added, third.removed, third.excluded) == (0, 1, 1)
    assert meta.batches[-1]["method"] == "DELETE" and meta.batches[-1]["data"] == [meta_row(7)]
    shop.set(7, days_since_last_order=365)  # still matches the conditions, still no consent
    fourth = sync_segment(shop.wh, LAPSED, "meta", client, now=at(4), out_dir=out)
    assert (fourth.added, fourth.removed, fourth.excluded) == (0, 0, 1)
    assert len(meta.batches) == 6 and meta_member(7) not in meta.members(ca)
    stints = [s for s in state.history(shop.wh, "lapsed") if s["customer_id"] == cid(7)]
    assert [(s["left_reason"], s["left_at"]) for s in stints] == [
        ("not_contactable", at(3).replace(tzinfo=None))]
    assert set(shop.synced("lapsed", "meta", ca)) == {cid(i) for i in [*range(130), 140]
                                                       if i not in (5, 7)}
    assert [r["status"] for r in runs(shop, "lapsed")] == ["success"] * 5

    # the manifest of every run with out_dir: counts and hash algorithm, never an identifier
    manifest = json.loads(third.manifest_path.read_text())
    assert manifest["segment"] == "lapsed" and manifest["platform"] == "meta"
    assert manifest["hash_algorithm"] == "SHA256" and manifest["status"] == "success"
    assert manifest["counts"] == {"members": 129, "customers": 129, "added": 0,
                                       "removed": 1, "excluded": 1, "pending": 0}
    assert manifest["created_at"] == at(3).isoformat()
    assert len(list(out.glob("*.manifest.json"))) == 4
    assert_no_raw_identifiers(shop, out, range(150))


def test_meta_value_based_seed_sends_lookalike_values_and_resends_changed_values(shop, meta):
    client = meta_client(meta, max_batch=10_000)
    first = sync_segment(shop.wh, SEED, "meta", client, now=at(0))
    assert first.status == "success", first.message
    ca = first.audience_id
    assert meta.audiences[ca]["is_value_based"] is True
    assert meta.batches[0]["schema"] == ["EMAIL", "PHONE", "LOOKALIKE_VALUE"]
    assert meta.batches[0]["data"][:2] == [[*meta_row(0), 5], [*meta_row(1), 15]]
    shop.set(3, revenue=999.5)  # a changed value: old row removed, new row added
    second = sync_segment(shop.wh, SEED, "meta", client, now=at(1))
    assert (second.added, second.removed) == (1, 1)
    assert [(b["method"], b["data"]) for b in meta.batches[1:]] == [
        ("DELETE", [[*meta_row(3), 35]]), ("POST", [[*meta_row(3), 999.5]])]
    assert meta.values(ca)[meta_member(3)] == 999.5


# -- failures ----------------------------------------------------------------------------------

def test_failed_upload_is_not_marked_and_the_next_sync_resends_the_same_diff(shop, google):
    client = google_client(google)
    first = sync_segment(shop.wh, LAPSED, "google", client, now=at(0), audience_id=LIST_ID)
    assert (first.status, first.added, first.audience_id) == ("success", 130, LIST_ID)
    assert [(b["method"], b["members"]) for b in google.batches] == [
        ("ingest", 40), ("ingest", 40), ("ingest", 40), ("ingest", 10)]
    synced_before = shop.synced("lapsed", "google", LIST_ID)

    for i in range(20):  # 20 leave
        shop.set(i, days_since_last_order=1)
    for i in range(130, 150):  # 20 join
        shop.set(i, days_since_last_order=120)
    google.faults.add("5xx", count=3, path_prefix="/v1/audienceMembers:ingest", status=503)
    failed = sync_segment(shop.wh, LAPSED, "google", client, now=at(1))
    assert failed.status == "failed" and (failed.added, failed.removed) == (0, 0)
    assert failed.pending == 40 and "503" in failed.message and TOKEN not in failed.message
    assert shop.synced("lapsed", "google", LIST_ID) == synced_before  # nothing marked
    assert runs(shop, "lapsed")[-1]["status"] == "failed"
    assert runs(shop, "lapsed")[-1]["message"] == failed.message
    calls_after_failure = len(google.batches)
    assert google.batches[-1]["method"] == "remove"  # the removals went, the adds did not

    retried = sync_segment(shop.wh, LAPSED, "google", client, now=at(2))
    assert (retried.status, retried.added, retried.removed) == ("success", 20, 20)
    resent = google.batches[calls_after_failure:]
    assert [(b["method"], b["members"]) for b in resent] == [("remove", 20), ("ingest", 20)]
    assert google.batches[calls_after_failure - 1]["audienceMembers"] == \
        resent[0]["audienceMembers"]  # the same removal diff, sent again
    assert resent[1]["audienceMembers"] == [google_row(i) for i in range(130, 150)]
    assert google.members(LIST_ID) == {google_member(i) for i in range(20, 150)}
    assert len(shop.synced("lapsed", "google", LIST_ID)) == 130
    assert [r["status"] for r in runs(shop, "lapsed")] == ["success", "failed", "success"]


def test_google_creates_a_user_list_on_first_sync(shop, google):
    result = sync_segment(shop.wh, LAPSED, "google", google_client(google), now=at(0))
    assert result.status == "success", result.message
    assert result.audience_id in google.user_lists and result.audience_id != LIST_ID
    assert google.members(result.audience_id) == {google_member(i) for i in range(130)}
    again = sync_segment(shop.wh, LAPSED, "google", google_client(google), now=at(1))
    assert again.audience_id == result.audience_id and again.added == 0  # no second list


def test_failed_creation_upload_keeps_the_audience_and_does_not_duplicate(shop, yandex):
    client = yandex_client(yandex)
    result = sync_segment(shop.wh, LAPSED, "yandex", client, now=at(0))
    seg_id = result.audience_id
    assert result.status == "success" and yandex.members(seg_id) == {
        yandex_member(i) for i in range(130)}
    shop.set(140, days_since_last_order=300)
    yandex.faults.add("5xx", count=3, status=500)
    failed = sync_segment(shop.wh, LAPSED, "yandex", client, now=at(1))
    assert (failed.status, failed.pending, failed.audience_id) == ("failed", 1, seg_id)
    ok = sync_segment(shop.wh, LAPSED, "yandex", client, now=at(2))
    assert (ok.status, ok.added, ok.audience_id) == ("success", 1, seg_id)
    assert len(yandex.segments) == 1  # never a second segment
    assert [(b["method"], b["rows"]) for b in yandex.batches] == [
        ("upload", 130), ("addition", 1)]
    assert yandex.batches[-1]["members"] == {yandex_member(140)}
    assert yandex.members(seg_id) == {yandex_member(i) for i in [*range(130), 140]}


# -- static segments, minimum size -------------------------------------------------------------

def test_static_segment_stays_frozen_minus_withdrawn_consent(shop, yandex):
    client = yandex_client(yandex)
    first = sync_segment(shop.wh, FROZEN, "yandex", client, now=at(0), allow_small=True)
    odd = [i for i in range(150) if i % 2]
    assert first.added == 75 and yandex.members(first.audience_id) == {
        yandex_member(i) for i in odd}
    assert {r[1] for r in shop.table("static_members")} == {cid(i) for i in odd}
    shop.set(1, orders_count=5)  # no longer matches: frozen, stays
    shop.set(2, orders_count=1)  # matches now: frozen, not added
    shop.set(3, is_contactable=False)  # withdrawn consent: removed even from a static segment
    members = refresh_membership(shop.wh, FROZEN, now=at(1))
    assert cid(1) in members.customer_ids and cid(2) not in members.customer_ids
    assert cid(3) not in members.customer_ids and members.left == (cid(3),)
    second = sync_segment(shop.wh, FROZEN, "yandex", client, now=at(2))
    assert (second.added, second.removed, second.excluded) == (0, 1, 1)
    assert yandex.batches[-1]["method"] == "subtraction"
    assert yandex.batches[-1]["members"] == {yandex_member(3)}
    assert yandex.members(first.audience_id) == {yandex_member(i) for i in odd if i != 3}


def test_below_platform_minimum_is_skipped_with_a_clear_message(shop, yandex, tmp_path):
    small = parse_segment("name: few\nkind: dynamic\n"
                          "conditions:\n  - {field: revenue, op: '<', value: 500}\n")
    out = tmp_path / "out"
    result = sync_segment(shop.wh, small, "yandex", yandex_client(yandex), now=at(0),
                          out_dir=out)
    assert result.status == "skipped" and result.audience_id is None
    assert result.message.startswith("yandex needs at least 100 rows, this audience has 50")
    assert yandex.batches == [] and yandex.segments == {}
    assert shop.table("destinations") == [] and shop.table("synced_members") == []
    assert runs(shop, "few")[0]["status"] == "skipped"
    assert json.loads(result.manifest_path.read_text())["status"] == "skipped"
    forced = sync_segment(shop.wh, small, "yandex", yandex_client(yandex), now=at(1),
                          allow_small=True)
    assert forced.status == "success" and forced.added == 50
    assert yandex.segments[int(forced.audience_id)]["status"] == "few_data"


# -- VK: one list per type, differential lists of >= 25 lines ----------------------------------

@pytest.mark.parametrize("backend", BACKENDS)
def test_vk_lists_per_type_and_small_diffs_stay_pending(backend, tmp_path):
    vk = VKAudiencesEmulator(access_token=TOKEN, rate_limit_per_s=100).start()
    try:
        with scratch_warehouse(backend, tmp_path, "vk") as (wh, _env):
            shop = Shop(wh).build(2_040, lapsed=2_010)
            client = VKAudienceClient(vk.base_url, TOKEN, rate_limit_per_s=None,
                                      http_options=options())
            first = sync_segment(wh, LAPSED, "vk", client, now=at(0))
            assert first.status == "success" and first.added == 2_010
            ids = {b["type"]: b["list_id"] for b in vk.batches}
            assert first.audience_id == f"emails:{ids['emails']},phones:{ids['phones']}"
            assert vk.members(ids["phones"]) == {md5(phone(i).lstrip("+")) for i in range(2_010)}
            assert vk.members(ids["emails"]) == {md5(email(i).lower()) for i in range(2_010)}

            for i in range(10):  # 10 leave: 10 lines per type < 25 -> held back
                shop.set(i, days_since_last_order=0)
            held = sync_segment(wh, LAPSED, "vk", client, now=at(1))
            assert (held.status, held.removed, held.pending) == ("success", 0, 10)
            assert "10 phones lines to remove" in held.message and len(vk.batches) == 2
            assert len(shop.synced("lapsed", "vk", str(ids["phones"]))) == 2_010
            for i in range(10, 30):  # 20 more: 30 lines per type -> sent
                shop.set(i, days_since_last_order=0)
            sent = sync_segment(wh, LAPSED, "vk", client, now=at(2))
            assert (sent.removed, sent.pending) == (30, 0)
            diffs = [(b["type"], b["base"], len(b["lines"])) for b in vk.batches[2:]]
            assert sorted(diffs) == [("emails", -ids["emails"], 30),
                                     ("phones", -ids["phones"], 30)]
            assert vk.members(ids["phones"]) == {md5(phone(i).lstrip("+"))
                                                 for i in range(30, 2_010)}
            assert_no_raw_identifiers(shop, None, range(2_040))
    finally:
        vk.stop()


# -- file-only mode ----------------------------------------------------------------------------

def test_file_only_export_writes_diff_files_and_manifest(shop, tmp_path):
    out = tmp_path / "files"
    first = sync_segment(shop.wh, LAPSED, "yandex", None, now=at(0), out_dir=out)
    assert (first.status, first.added, first.removed) == ("exported", 130, 0)
    [added_file] = first.files
    lines = added_file.read_text().splitlines()
    assert lines[0] == "phone,email" and len(lines) == 131
    assert lines[1] == ",".join(yandex_member(0))
    manifest = json.loads(first.manifest_path.read_text())
    assert manifest["hash_algorithm"] == "SHA256" and manifest["mode"] == "file"
    assert (manifest["counts"]["added"], manifest["counts"]["removed"],
            manifest["counts"]["excluded"]) == (130, 0, 0)
    assert manifest["files"][0]["name"] == added_file.name

    shop.set(0, is_contactable=False)
    shop.set_email(1, "new1@example.ru")  # a changed identifier: old row out, new row in
    second = sync_segment(shop.wh, LAPSED, "yandex", None, now=at(1), out_dir=out)
    assert (second.added, second.removed, second.excluded) == (1, 2, 1)
    by_kind = {p.name.split("__")[2]: p.read_text().splitlines()[1:] for p in second.files}
    assert by_kind == {
        "remove": [",".join(yandex_member(0)), ",".join(yandex_member(1))],
        "add": [f"{sha(phone(1).lstrip('+'))},{sha('new1@example.ru')}"]}
    manifest = json.loads(second.manifest_path.read_text())
    assert (manifest["counts"]["added"], manifest["counts"]["removed"],
            manifest["counts"]["excluded"]) == (1, 2, 1)
    assert [r["status"] for r in runs(shop, "lapsed")] == ["exported", "exported"]
    assert_no_raw_identifiers(shop, out, range(150))


def test_state_tables_are_created_once_and_hold_hashes_only(shop):
    refresh_membership(shop.wh, LAPSED, now=at(0))
    refresh_membership(shop.wh, LAPSED, now=at(1))  # idempotent: no second stint
    assert len(state.history(shop.wh, "lapsed")) == 130
    assert set(shop.wh.list_tables("audiences")) == {
        "actions", "destinations", "membership_history", "static_members", "synced_members",
        "sync_runs"}


def test_two_concurrent_syncs_of_one_audience_create_it_once(shop: Shop, meta) -> None:
    """A CLI sync started while the scheduled run syncs the same segment to the same platform
    waits for it (state.sync_lock): one audience, each member once, the second sync sends
    nothing."""
    import threading

    results = []

    def sync_once(hours: int) -> None:
        with meta_client(meta) as client:
            results.append(sync_segment(shop.wh, LAPSED, "meta", client, now=at(hours)))

    threads = [threading.Thread(target=sync_once, args=(h,)) for h in (1, 2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    assert [r.status for r in results] == ["success", "success"], results
    assert len(meta.audiences) == 1
    [audience] = meta.audiences
    assert meta.members(audience) == {meta_member(i) for i in range(130)}
    assert sorted((r.added, r.removed) for r in results) == [(0, 0), (130, 0)]


def test_a_segments_platforms_sync_side_by_side_and_record_membership_once(
        shop: Shop, meta, google, yandex) -> None:
    """``sync_to_platforms`` (the Dagster asset's and the CLI's path) gives each platform its
    own thread on DuckDB: every client is made before any of them is used (a sync in turn
    would wait at the barrier for the next platform and break it). On PostgreSQL they go in
    turn (each sync holds two sessions: 11 segments x 6 platforms would exhaust a server's
    connections). Either way the results keep the platforms' order and the segment's entries
    are recorded once, not once per platform."""
    import threading

    side_by_side = shop.wh.kind == "duckdb"
    all_made = threading.Barrier(3 if side_by_side else 1, timeout=10)
    makers = {"meta": lambda: meta_client(meta), "google": lambda: google_client(google),
              "yandex": lambda: yandex_client(yandex)}
    threads: set[str] = set()

    def make_client(name: str) -> Any:
        client = makers[name]()
        threads.add(threading.current_thread().name)
        all_made.wait()
        return client

    results = sync_to_platforms(shop.wh, LAPSED, ["yandex", "meta", "google"], now=at(0),
                                out_dir=None, client_factory=make_client)
    assert len(threads) == (3 if side_by_side else 1)
    assert [(r.platform, r.status, r.added) for r in results] == [
        ("yandex", "success", 130), ("meta", "success", 130), ("google", "success", 130)]
    assert meta.members(results[1].audience_id) == {meta_member(i) for i in range(130)}
    assert google.members(results[2].audience_id) == {google_member(i) for i in range(130)}
    stints = state.history(shop.wh, "lapsed")
    assert sorted(s["customer_id"] for s in stints) == sorted(cid(i) for i in range(130))
    assert {s["entered_at"] for s in stints} == {at(0).replace(tzinfo=None)}


def test_a_segment_is_computed_once_for_all_its_platforms(
        shop: Shop, meta, google, monkeypatch: pytest.MonkeyPatch) -> None:
    """The segment's query runs once per sync of its platforms, not again in each platform's
    sync (eleven segments times six platforms ran it 88 times a run, the Dagster asset's own
    computation included), and not at all when the caller passes the membership it has."""
    import audiences.sync as sync

    computed: list[str] = []
    matching = sync._matching

    def counted(wh: Any, seg: Any) -> Any:
        computed.append(seg.name)
        return matching(wh, seg)

    monkeypatch.setattr(sync, "_matching", counted)
    clients = {"meta": lambda: meta_client(meta), "google": lambda: google_client(google)}
    results = sync_to_platforms(shop.wh, LAPSED, ["meta", "google"], now=at(0), out_dir=None,
                                client_factory=lambda name: clients[name]())
    assert [(r.platform, r.status, r.added) for r in results] == [
        ("meta", "success", 130), ("google", "success", 130)]
    assert computed == ["lapsed"]

    computed.clear()
    members = refresh_membership(shop.wh, LAPSED, now=at(1))
    results = sync_to_platforms(shop.wh, LAPSED, ["meta", "google"], now=at(1), out_dir=None,
                                client_factory=lambda name: clients[name](),
                                membership=members)
    assert [(r.platform, r.status, r.added, r.removed) for r in results] == [
        ("meta", "success", 0, 0), ("google", "success", 0, 0)]
    assert computed == ["lapsed"]  # refresh_membership's, none in the syncs
