"""Acting on segments (issue 15): CRM membership marks, actions on entry and e-mail lists,
through ``audiences.sync.sync_segment`` with the real write clients against the amoCRM,
Bitrix24 and UniSender emulators, over a small hand-built warehouse.

Each test checks what the CRM or the e-mail service holds afterwards, what the warehouse
recorded (``audiences.actions``, ``synced_members``) and, for the e-mail lists, that no raw
identifier reached the state tables or the logs.
"""

from __future__ import annotations

import hashlib
import logging
import threading
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from _support import RecordingSleep, scratch_warehouse
from conftest import BACKENDS

from audiences import state
from audiences.clients.amocrm import AmoCRMWriteClient
from audiences.clients.bitrix24 import Bitrix24WriteClient
from audiences.clients.unisender import UniSenderClient
from audiences.segments import parse_segment
from audiences.sync import plan_segment, sync_segment
from emulators import AmoCRMEmulator, Bitrix24Emulator, UniSenderEmulator
from extractors.amocrm import AmoCRMSource
from extractors.bitrix24 import Bitrix24Source
from extractors.http import HttpOptions

T0 = datetime(2026, 11, 23, 9, 0, tzinfo=UTC)
ACCOUNT, PORTAL = "voronka-test", "b24-test"
LONG_LIVED = "amo-activation-token-Rq71"
WEBHOOK_CODE = "b24-activation-hook-Mz40"
UNISENDER_KEY = "unisender-activation-key-Vb93"
MANAGERS = (8812000, 8812001)  # amoCRM users
B24_MANAGERS = (5, 7)  # Bitrix24 users
SALES, REPEAT = 7310455, 7310460
N = 12  # customers c_00000 ... c_00011; the first LAPSED are members of the segments below
LAPSED = 8

TASKS_SEGMENT = """\
name: call_lapsed
description: lapsed customers get a call
kind: dynamic
conditions:
  - {field: recency, op: ">=", value: 90}
actions:
  - task: {text: "Позвонить: {{ product_category }}, заказов {{ orders_count }}",
           due_in_days: 1, responsible: customer_manager}
"""
DEAL_SEGMENT = """\
name: win_back
description: lapsed customers get a deal
kind: dynamic
conditions:
  - {field: recency, op: ">=", value: 90}
actions:
  - deal: {pipeline: "Повторные продажи", stage: first, name: "Возврат: {{ product_category }}"}
"""


def at(hours: int) -> datetime:
    return T0 + timedelta(hours=hours)


def cid(i: int) -> str:
    return f"c_{i:05d}"


def amo_contact(i: int) -> int:
    return 51000000 + i


def b24_contact(i: int) -> int:
    return 700 + i


def email(i: int) -> str:
    return f"buyer{i}@example.ru"


def phone(i: int) -> str:
    return f"+7916{i:07d}"


# -- the warehouse -----------------------------------------------------------------------------

DIM_DDL = """create table marts.dim_customers (
    customer_id varchar, days_since_last_order integer, orders_count integer,
    revenue numeric(18, 2), gross_margin numeric(18, 2), aov numeric(18, 2),
    rfm_segment varchar, recency_score integer, frequency_score integer,
    monetary_score integer, channel varchar, cohort_month date, first_order_date date,
    last_order_date date, expected_next_order_date date, expected_next_order_basis varchar,
    days_until_expected_order integer, repurchase_status varchar, is_due boolean,
    is_overdue boolean, is_active boolean, is_churned boolean, is_contactable boolean)"""


class Shop:
    """``N`` customers; the first ``LAPSED`` have recency 100 (members), the rest 10. Each has
    one amoCRM contact (customer 0 a second, older one) whose manager alternates, and one
    Bitrix24 contact; customer 11 has no amoCRM contact."""

    def __init__(self, wh: Any) -> None:
        self.wh = wh

    def build(self) -> Shop:
        self._sql("create schema if not exists marts", "create schema if not exists intermediate",
                  DIM_DDL,
                  "create table marts.fct_orders (customer_id varchar, order_date date, "
                  "product_category varchar)",
                  "create table intermediate.int_as_of_date (as_of_date date)",
                  "insert into intermediate.int_as_of_date values ('2026-11-22')",
                  "create table intermediate.int_customer_identifiers "
                  "(customer_id varchar, kind varchar, value_normalized varchar)",
                  "create table intermediate.int_customer_crm_contacts (customer_id varchar, "
                  "crm varchar, account varchar, contact_id bigint, responsible_user_id bigint, "
                  "updated_at timestamp, is_primary boolean)")
        self._insert("marts.dim_customers (customer_id, days_since_last_order, orders_count, "
                     "revenue, is_contactable)", 5,
                     [(cid(i), 100 if i < LAPSED else 10, 2, 1000 + i, True) for i in range(N)])
        self._insert("marts.fct_orders", 3, [(cid(i), "2026-06-01", f"Кофе {i}")
                                             for i in range(N)])
        self._insert("intermediate.int_customer_identifiers", 3,
                     [(cid(i), k, v) for i in range(N)
                      for k, v in (("email", email(i)), ("phone", phone(i)))])
        contacts = [(cid(i), "amocrm", ACCOUNT, amo_contact(i), MANAGERS[i % 2],
                     "2026-10-01 10:00:00", True) for i in range(N - 1)]
        contacts.append((cid(0), "amocrm", ACCOUNT, amo_contact(100), MANAGERS[1],
                         "2025-01-01 10:00:00", False))
        contacts += [(cid(i), "bitrix24", PORTAL, b24_contact(i), B24_MANAGERS[i % 2],
                      "2026-10-01 10:00:00", True) for i in range(N)]
        self._insert("intermediate.int_customer_crm_contacts", 7, contacts)
        return self

    def _sql(self, *statements: str) -> None:
        with self.wh.connect() as conn:
            cur = conn.cursor()
            for statement in statements:
                cur.execute(statement)

    def _insert(self, table: str, width: int, rows: list[tuple]) -> None:
        one = f"({self.wh._marks(width)})"
        with self.wh.connect() as conn:
            conn.cursor().execute(f"insert into {table} values {', '.join([one] * len(rows))}",
                                  [v for r in rows for v in r])

    def set(self, i: int, **columns: Any) -> None:
        p = self.wh._param
        sets = ", ".join(f"{k} = {p}" for k in columns)
        with self.wh.connect() as conn:
            conn.cursor().execute(f"update marts.dim_customers set {sets} "
                                  f"where customer_id = {p}", [*columns.values(), cid(i)])


@pytest.fixture
def shop(tmp_path: Path) -> Iterator[Shop]:
    with scratch_warehouse("duckdb", tmp_path, "activation") as (wh, _env):
        yield Shop(wh).build()


# -- the emulators and clients -----------------------------------------------------------------

def _stage(sid: int, pid: int, name: str, sort: int, kind: int = 0) -> dict:
    return {"id": sid, "name": name, "sort": sort, "pipeline_id": pid, "type": kind,
            "is_editable": True, "color": "#99ccff"}


def amo_data() -> dict[str, list[dict]]:
    won_lost = [_stage(142, 0, "Won", 10000), _stage(143, 0, "Lost", 11000)]
    pipelines = [
        {"id": SALES, "name": "Sales", "sort": 1, "is_main": True,
         "_embedded": {"statuses": [_stage(61880209, SALES, "Incoming", 10, 1),
                                    _stage(61880213, SALES, "First contact", 20), *won_lost]}},
        {"id": REPEAT, "name": "Повторные продажи", "sort": 2, "is_main": False,
         "_embedded": {"statuses": [_stage(62000001, REPEAT, "Неразобранное", 10, 1),
                                    _stage(62000002, REPEAT, "Предложение", 30),
                                    _stage(62000003, REPEAT, "Переговоры", 40), *won_lost]}},
    ]
    contacts = [{"id": amo_contact(i), "name": f"Client {i}",
                 "responsible_user_id": MANAGERS[i % 2], "created_at": 1767225600,
                 "updated_at": 1767225600, "is_deleted": False,
                 "_embedded": {"tags": [{"id": 90001, "name": "vip", "color": None}]
                               if i == 1 else []}}
                for i in (*range(N - 1), 100)]
    users = [{"id": uid, "name": f"Manager {n}"} for n, uid in enumerate(MANAGERS)]
    return {"users": users, "pipelines": pipelines, "contacts": contacts}


def options(sleep: RecordingSleep) -> HttpOptions:
    return HttpOptions(timeout=(2.0, 10.0), max_retries=2, backoff_base=0.01, backoff_max=0.02,
                       sleep=sleep)


@pytest.fixture
def amo() -> Iterator[AmoCRMEmulator]:
    with AmoCRMEmulator(amo_data(), subdomain=ACCOUNT, long_lived_token=LONG_LIVED,
                        rate_limit_per_s=1000) as emulator:
        yield emulator


def amo_client(amo: AmoCRMEmulator) -> AmoCRMWriteClient:
    return AmoCRMWriteClient(AmoCRMSource(amo.base_url, account=ACCOUNT,
                                          long_lived_token=LONG_LIVED, rate_limit_per_s=1000,
                                          http_options=options(RecordingSleep())))


def tasks_of(amo: AmoCRMEmulator) -> list[dict]:
    return [t for t in amo.tasks() if "[vrn-" in str(t.get("text"))]


def actions(shop: Shop, segment: str) -> list[dict]:
    return state.actions(shop.wh, segment)


# -- amoCRM ------------------------------------------------------------------------------------

def test_amocrm_entry_tags_every_contact_and_creates_one_task_per_customer(shop, amo):
    seg = parse_segment(TASKS_SEGMENT, "call_lapsed.yml")
    shop.set(N - 1, days_since_last_order=100)  # a member with no amoCRM contact
    with amo_client(amo) as client:
        first = sync_segment(shop.wh, seg, "amocrm", client, now=at(0))
        again = sync_segment(shop.wh, seg, "amocrm", client, now=at(1))
    assert first.status == "success" and first.audience_id == "voronka_call_lapsed"
    assert first.added == LAPSED and first.actions.created == {"task": LAPSED}
    assert first.actions.skipped == 1 and first.actions.failed == 0
    for i in range(LAPSED):
        assert "voronka_call_lapsed" in amo.contact_tags(amo_contact(i))
    assert "voronka_call_lapsed" in amo.contact_tags(amo_contact(100))  # every contact
    assert "voronka_call_lapsed" not in amo.contact_tags(amo_contact(LAPSED))
    assert amo.contact_tags(amo_contact(1)) == ["vip", "voronka_call_lapsed"]
    tasks = tasks_of(amo)
    assert sorted(t["entity_id"] for t in tasks) == [amo_contact(i) for i in range(LAPSED)]
    for t in tasks:  # on the primary contact, for its manager, rendered from the whitelist
        i = t["entity_id"] - amo_contact(0)
        assert t["entity_type"] == "contacts" and t["responsible_user_id"] == MANAGERS[i % 2]
        assert t["text"].startswith(f"Позвонить: Кофе {i}, заказов 2 [vrn-")
    # the re-run: nothing new anywhere, and the warehouse says what was created
    assert again.added == again.removed == 0 and again.actions.total_created == 0
    assert len(tasks_of(amo)) == LAPSED
    assert again.actions.skipped == 0  # recorded as skipped once, not re-tried
    recorded = {r["customer_id"]: r for r in actions(shop, "call_lapsed")}
    assert recorded.pop(cid(N - 1))["status"] == "skipped"
    assert {r["status"] for r in recorded.values()} == {"created"} and len(recorded) == LAPSED
    assert {r["crm_id"] for r in recorded.values()} == {str(t["id"]) for t in tasks}


def test_leaving_removes_that_tag_only_and_coming_back_creates_a_new_task(shop, amo):
    seg = parse_segment(TASKS_SEGMENT, "call_lapsed.yml")
    with amo_client(amo) as client:
        sync_segment(shop.wh, seg, "amocrm", client, now=at(0))
        shop.set(1, days_since_last_order=5)  # customer 1 bought again: leaves
        left = sync_segment(shop.wh, seg, "amocrm", client, now=at(24))
        assert left.removed == 1
        assert amo.contact_tags(amo_contact(1)) == ["vip"]
        shop.set(1, days_since_last_order=120)  # and lapses again: a new entry
        back = sync_segment(shop.wh, seg, "amocrm", client, now=at(48))
    assert back.added == 1 and back.actions.created == {"task": 1}
    assert amo.contact_tags(amo_contact(1)) == ["vip", "voronka_call_lapsed"]
    assert sum(t["entity_id"] == amo_contact(1) for t in tasks_of(amo)) == 2
    assert len(tasks_of(amo)) == LAPSED + 1


def test_a_failed_task_call_is_recorded_and_the_next_run_creates_it_once(shop, amo):
    seg = parse_segment(TASKS_SEGMENT, "call_lapsed.yml")
    amo.faults.add("5xx", count=1, path_prefix="/api/v4/tasks", status=502)
    with amo_client(amo) as client:
        failed = sync_segment(shop.wh, seg, "amocrm", client, now=at(0))
        assert failed.status == "success"  # the tags went through
        assert failed.actions.failed == LAPSED and failed.actions.total_created == 0
        assert "502" in failed.actions.errors[0]
        assert {r["status"] for r in actions(shop, "call_lapsed")} == {"failed"}
        assert tasks_of(amo) == []
        retried = sync_segment(shop.wh, seg, "amocrm", client, now=at(1))
    assert retried.actions.created == {"task": LAPSED} and retried.actions.failed == 0
    assert len(tasks_of(amo)) == LAPSED
    assert {r["attempts"] for r in actions(shop, "call_lapsed")} == {2}


def test_a_lost_answer_is_found_by_its_marker_not_created_twice(shop, amo):
    seg = parse_segment(TASKS_SEGMENT, "call_lapsed.yml")
    amo.faults.add("drop", count=1, path_prefix="/api/v4/tasks", after_write=True)
    with amo_client(amo) as client:
        lost = sync_segment(shop.wh, seg, "amocrm", client, now=at(0))
        assert lost.actions.failed == LAPSED
        assert len(tasks_of(amo)) == LAPSED  # created, but the answer never came
        recovered = sync_segment(shop.wh, seg, "amocrm", client, now=at(1))
    assert recovered.actions.recovered == LAPSED and recovered.actions.total_created == 0
    assert len(tasks_of(amo)) == LAPSED
    recorded = actions(shop, "call_lapsed")
    assert {r["message"] for r in recorded} == {"found by its marker"}
    assert {r["crm_id"] for r in recorded} == {str(t["id"]) for t in tasks_of(amo)}


@pytest.mark.parametrize("backend", BACKENDS)
def test_overlapping_runs_create_each_task_once(backend, amo, tmp_path):
    seg = parse_segment(TASKS_SEGMENT, "call_lapsed.yml")
    with scratch_warehouse(backend, tmp_path, "overlap") as (wh, _env):
        shop = Shop(wh).build()
        results: list[Any] = []
        errors: list[BaseException] = []

        def run(hour: int) -> None:
            try:
                with amo_client(amo) as client:
                    results.append(sync_segment(shop.wh, seg, "amocrm", client, now=at(hour)))
            except BaseException as exc:  # surfaced below
                errors.append(exc)

        threads = [threading.Thread(target=run, args=(h,)) for h in (0, 0, 1)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(60)
        assert not errors
        assert sum(r.actions.total_created for r in results) == LAPSED
        assert len(tasks_of(amo)) == LAPSED
        assert len(actions(shop, "call_lapsed")) == LAPSED


def test_deal_action_opens_a_lead_in_the_named_pipeline_at_its_first_stage(shop, amo):
    seg = parse_segment(DEAL_SEGMENT, "win_back.yml")
    with amo_client(amo) as client:
        result = sync_segment(shop.wh, seg, "amocrm", client, now=at(0))
        again = sync_segment(shop.wh, seg, "amocrm", client, now=at(1))
    assert result.actions.created == {"deal": LAPSED} and again.actions.total_created == 0
    leads = amo.created_leads()
    assert len(leads) == LAPSED
    for lead in leads:
        assert (lead["pipeline_id"], lead["status_id"]) == (REPEAT, 62000002)
        contact = lead["_embedded"]["contacts"][0]["id"]
        i = contact - amo_contact(0)
        assert lead["responsible_user_id"] == MANAGERS[i % 2]
        assert lead["name"].startswith(f"Возврат: Кофе {i} [vrn-")


def test_an_unknown_pipeline_fails_the_action_naming_the_pipelines_there_are(shop, amo):
    seg = parse_segment(DEAL_SEGMENT.replace("Повторные продажи", "Нет такой"), "win_back.yml")
    with amo_client(amo) as client:
        result = sync_segment(shop.wh, seg, "amocrm", client, now=at(0))
    assert result.actions.failed == LAPSED and amo.created_leads() == []
    assert "no pipeline 'Нет такой'" in result.actions.errors[0]
    assert "Повторные продажи" in result.actions.errors[0]


def test_dry_run_says_what_would_happen_and_writes_nothing(shop, amo):
    seg = parse_segment(TASKS_SEGMENT, "call_lapsed.yml")
    with amo_client(amo) as client:
        plan = plan_segment(shop.wh, seg, "amocrm", client, now=at(0))
        assert plan.dry_run and plan.added == LAPSED and plan.actions.planned == {"task": LAPSED}
        assert "would create the amocrm audience" in plan.message
        assert amo.write_requests() == [] and state.history(shop.wh, "call_lapsed") == []
        sync_segment(shop.wh, seg, "amocrm", client, now=at(1))
        shop.set(2, days_since_last_order=5)
        later = plan_segment(shop.wh, seg, "amocrm", client, now=at(2))
    assert (later.added, later.removed, later.actions.planned) == (0, 1, {})


# -- Bitrix24 ----------------------------------------------------------------------------------

@pytest.fixture
def b24() -> Iterator[Bitrix24Emulator]:
    contacts = [{"ID": str(b24_contact(i)), "NAME": f"Client {i}",
                 "ASSIGNED_BY_ID": str(B24_MANAGERS[i % 2]), "UF_CRM_OTHER": "keep"}
                for i in range(N)]
    users = [{"ID": str(u), "NAME": f"Manager {u}", "ACTIVE": True} for u in B24_MANAGERS]
    categories = [{"id": 0, "name": "Продажи", "sort": 100, "entityTypeId": 2,
                   "isDefault": "Y"},
                  {"id": 1, "name": "Повторные продажи", "sort": 200, "entityTypeId": 2,
                   "isDefault": "N"}]
    stages = [{"ID": n, "ENTITY_ID": "DEAL_STAGE_1", "STATUS_ID": sid, "NAME": name,
               "SORT": sort, "CATEGORY_ID": 1, "SEMANTICS": sem}
              for n, (sid, name, sort, sem) in enumerate(
                  (("C1:NEW", "Новая", 10, None), ("C1:PREPARATION", "Звонок", 20, None),
                   ("C1:WON", "Успех", 60, "S"), ("C1:LOSE", "Провал", 70, "F")), start=1)]
    data = {"contacts": contacts, "users": users, "categories": categories,
            "statuses": stages}
    with Bitrix24Emulator(data, portal=PORTAL, webhook_code=WEBHOOK_CODE) as emulator:
        yield emulator


def b24_client(b24: Bitrix24Emulator) -> Bitrix24WriteClient:
    return Bitrix24WriteClient(Bitrix24Source(b24.base_url, account=PORTAL,
                                              webhook_url=b24.webhook_url, rate_limit_per_s=1000,
                                              burst=1000,
                                              http_options=options(RecordingSleep())))


def test_bitrix24_flags_contacts_and_creates_todos_and_deals_once(shop, b24):
    seg = parse_segment(TASKS_SEGMENT.replace("actions:\n", "actions:\n  - deal: {pipeline: "
                                              "\"Повторные продажи\"}\n"), "call_lapsed.yml")
    field = "UF_CRM_VRNK_CALL_LAPSED"
    with b24_client(b24) as client:
        first = sync_segment(shop.wh, seg, "bitrix24", client, now=at(0))
        shop.set(3, days_since_last_order=5)
        second = sync_segment(shop.wh, seg, "bitrix24", client, now=at(24))
    assert first.audience_id == field and first.added == LAPSED
    assert first.actions.errors == []
    assert first.actions.created == {"task": LAPSED, "deal": LAPSED}
    assert second.removed == 1 and second.actions.total_created == 0
    for i in range(N):
        expected = i < LAPSED and i != 3
        assert b24.contact_field(b24_contact(i), field) == ("1" if expected else
                                                            ("0" if i == 3 else None))
        assert b24.contact_field(b24_contact(i), "UF_CRM_OTHER") == "keep"
    todos = [t for t in b24.todos() if "[vrn-" in str(t.get("DESCRIPTION"))]
    assert sorted(int(t["OWNER_ID"]) for t in todos) == [b24_contact(i) for i in range(LAPSED)]
    for t in todos:
        i = int(t["OWNER_ID"]) - b24_contact(0)
        assert int(t["RESPONSIBLE_ID"]) == B24_MANAGERS[i % 2]
    deals = b24.created_deals()
    assert len(deals) == LAPSED
    assert {(str(d["CATEGORY_ID"]), d["STAGE_ID"]) for d in deals} == {("1", "C1:NEW")}
    assert len({d["ORIGIN_ID"] for d in deals}) == LAPSED


# -- UniSender ---------------------------------------------------------------------------------

@pytest.fixture
def unisender() -> Iterator[UniSenderEmulator]:
    with UniSenderEmulator(api_key=UNISENDER_KEY) as emulator:
        yield emulator


def test_unisender_lists_hold_consented_members_and_withdrawal_excludes_them(
        shop, unisender, caplog):
    caplog.set_level(logging.DEBUG)
    seg = parse_segment(TASKS_SEGMENT, "call_lapsed.yml")  # actions are for CRMs only
    client = UniSenderClient(unisender.base_url, UNISENDER_KEY,
                             http_options=options(RecordingSleep()))
    with client:
        first = sync_segment(shop.wh, seg, "unisender", client, now=at(0))
        shop.set(4, is_contactable=False)  # consent withdrawn
        second = sync_segment(shop.wh, seg, "unisender", client, now=at(24))
    assert first.added == LAPSED and first.actions is None
    list_id = first.audience_id
    assert unisender.lists()[int(list_id)] == "voronka-call_lapsed"
    kept = [i for i in range(LAPSED) if i != 4]
    assert second.removed == 1
    assert unisender.list_members(list_id, "email") == {email(i) for i in kept}
    assert unisender.list_members(list_id, "phone") == {phone(i).lstrip("+") for i in kept}
    # only hashes in the warehouse; no address in a log line or the run records
    with shop.wh.connect() as conn:
        synced = str(state.synced_members(shop.wh, conn, "call_lapsed", "unisender", list_id))
    assert hashlib.sha256(email(0).encode()).hexdigest() in synced
    for i in range(N):
        for raw in (email(i), phone(i), phone(i).lstrip("+")):
            assert raw not in synced and raw not in caplog.text
            assert raw not in str(state.sync_runs(shop.wh))
    assert UNISENDER_KEY not in caplog.text


def test_crm_and_email_destinations_have_no_file_mode(shop, tmp_path):
    seg = parse_segment(TASKS_SEGMENT, "call_lapsed.yml")
    for platform in ("amocrm", "bitrix24", "unisender"):
        with pytest.raises(ValueError, match=f"{platform} has no file mode"):
            sync_segment(shop.wh, seg, platform, None, now=at(0), out_dir=tmp_path)
    assert list(tmp_path.glob("*.json")) == []


def test_cli_sync_to_a_crm_with_dry_run_then_for_real(shop, amo, tmp_path, monkeypatch, capsys):
    import argparse

    from audiences import cli as audiences_cli

    segments = tmp_path / "segments"
    segments.mkdir()
    (segments / "call_lapsed.yml").write_text(TASKS_SEGMENT, encoding="utf-8")
    for name, value in {"VORONKA_WAREHOUSE": "duckdb", "VORONKA_DUCKDB_PATH": str(shop.wh.path),
                        "VORONKA_STATE_DIR": str(tmp_path / "state"),
                        "VORONKA_SEGMENTS_DIR": str(segments),
                        "AMOCRM_BASE_URL": amo.base_url, "AMOCRM_SUBDOMAIN": ACCOUNT,
                        "AMOCRM_LONG_LIVED_TOKEN": LONG_LIVED}.items():
        monkeypatch.setenv(name, value)

    def voronka(*argv: str) -> tuple[int, str]:
        parser = argparse.ArgumentParser(prog="voronka")
        audiences_cli.add_parser(parser.add_subparsers(dest="command", required=True))
        code = audiences_cli.run(parser.parse_args(["audiences", *argv]))
        return code, capsys.readouterr().out

    code, out = voronka("sync", "call_lapsed", "--platform", "amocrm", "--dry-run")
    assert code == 0 and "[dry run: nothing written]" in out
    assert f"would add {LAPSED}, remove 0 customers" in out
    assert f"actions: {LAPSED} tasks would be created" in out
    assert amo.write_requests() == [] and state.sync_runs(shop.wh) == []
    code, out = voronka("sync", "call_lapsed", "--platform", "amocrm")
    assert code == 0 and f"actions: {LAPSED} tasks created" in out
    assert "audience voronka_call_lapsed" in out and len(tasks_of(amo)) == LAPSED
    code, out = voronka("sync", "call_lapsed", "--platform", "amocrm", "--dry-run")
    assert code == 0 and "would add 0, remove 0 customers" in out and "actions:" not in out
    assert LONG_LIVED not in out


def test_a_segment_file_chooses_its_destinations_among_the_configured_ones():
    from audiences.segments import SegmentError
    from audiences.sync import segment_platforms

    text = TASKS_SEGMENT + "destinations: [amocrm, unisender]\n"
    seg = parse_segment(text, "call_lapsed.yml")
    assert seg.destinations == ("amocrm", "unisender")
    configured = ["meta", "unisender", "amocrm", "bitrix24"]
    assert segment_platforms(seg, configured) == ["unisender", "amocrm"]
    everywhere = parse_segment(TASKS_SEGMENT, "call_lapsed.yml")
    assert segment_platforms(everywhere, configured) == configured
    for bad, problem in (("[amocrm, mailchimp]", "unknown destination 'mailchimp'"),
                         ("[amocrm, amocrm]", "destination 'amocrm' given twice"),
                         ("[]", "destinations must be a non-empty list")):
        with pytest.raises(SegmentError, match=problem) as err:
            parse_segment(TASKS_SEGMENT + f"destinations: {bad}\n", "call_lapsed.yml")
        assert "call_lapsed.yml, line 9" in str(err.value)
