"""Landing, cursors, quarantine and the DuckDB single-writer design, on both backends."""

from __future__ import annotations

import multiprocessing
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path

import duckdb
import psycopg2
import pytest

from warehouse import QuarantinedRecord, RawRecord, Warehouse, duckdb_backend, open_warehouse
from warehouse.contact_points import build_contact_points, normalize_phone
from warehouse.duckdb_backend import DuckDBWarehouse
from warehouse.locking import _locks, writer_lock


def _leads(n: int, name: str = "lead", start: int = 0) -> list[RawRecord]:
    return [
        RawRecord("amocrm", "acme", "leads", str(i), {"id": i, "name": f"{name} {i}"},
                  datetime(2026, 1, 1, 12, 0, i % 60))
        for i in range(start, start + n)
    ]


@pytest.fixture
def duck(tmp_path: Path) -> DuckDBWarehouse:
    return DuckDBWarehouse(tmp_path / "warehouse.duckdb", tmp_path / "voronka.duckdb")


@pytest.fixture
def pg() -> Iterator[Warehouse]:
    name = f"voronka_wh_{uuid.uuid4().hex[:8]}"
    admin = psycopg2.connect(host="127.0.0.1", user="postgres", dbname="postgres")
    admin.autocommit = True
    admin.cursor().execute(f"create database {name}")
    try:
        yield open_warehouse("postgres", postgres_dsn=f"postgresql://postgres@127.0.0.1/{name}")
    finally:
        admin.cursor().execute(f"drop database if exists {name} with (force)")
        admin.close()


def check_idempotent_landing(wh: Warehouse) -> None:
    first = wh.land(_leads(300), run_id="run-1")
    assert (first.inserted, first.duplicates) == (300, 0)
    again = wh.land(_leads(300), run_id="run-2")  # the same page landed twice adds nothing
    assert (again.inserted, again.duplicates) == (0, 300)
    changed = wh.land(_leads(10, name="renamed"), run_id="run-3")  # new versions sit beside
    assert changed.inserted == 10
    assert wh.count_rows("raw.amocrm__leads") == 310
    versions = wh.query_df("select record_id, count(*) as n from raw.amocrm__leads "
                           "group by record_id having count(*) > 1")
    assert sorted(versions.record_id.astype(int)) == list(range(10))
    runs = wh.query_df("select distinct run_id from raw.amocrm__leads order by 1")
    assert list(runs.run_id) == ["run-1", "run-3"]


def check_cursor_and_quarantine(wh: Warehouse) -> None:
    assert wh.get_cursor("amocrm", "acme", "leads") is None
    wh.set_cursor("amocrm", "acme", "leads", "1767225600")
    wh.set_cursor("amocrm", "acme", "leads", "1767229200")
    assert wh.get_cursor("amocrm", "acme", "leads") == "1767229200"
    bad = RawRecord("amocrm", "acme", "leads", "77", {"id": 77, "price": -5})
    reason = "amocrm leads id=77: field 'price' expected a non-negative integer, got -5"
    assert wh.quarantine([QuarantinedRecord(bad, reason, ("price",))], run_id="r") == 1
    rows = wh.query_df("select record_id, reason, failed_fields from raw._quarantine")
    assert rows.to_dict("records") == [
        {"record_id": "77", "reason": reason, "failed_fields": "price"}]


def test_duckdb_landing_is_idempotent_and_keeps_versions(duck: DuckDBWarehouse) -> None:
    check_idempotent_landing(duck)


def test_duckdb_cursor_and_quarantine(duck: DuckDBWarehouse) -> None:
    check_cursor_and_quarantine(duck)


@pytest.mark.postgres
def test_postgres_landing_is_idempotent_and_keeps_versions(pg: Warehouse) -> None:
    check_idempotent_landing(pg)


@pytest.mark.postgres
def test_postgres_cursor_and_quarantine(pg: Warehouse) -> None:
    check_cursor_and_quarantine(pg)


def _land_in_child(path: str, start: int, done: multiprocessing.Queue) -> None:
    wh = DuckDBWarehouse(path)
    for batch in range(5):
        wh.land(_leads(50, start=start + batch * 50), run_id=f"child-{start}")
    done.put(start)


@pytest.mark.postgres
def test_postgres_landing_from_many_threads_into_a_fresh_database(pg: Warehouse) -> None:
    """Concurrent extraction lands from several threads at once into a database with no raw
    schema yet: PostgreSQL's ``create schema if not exists`` alone would fail one of them on
    pg_namespace's unique index; every thread lands its own entity."""
    import threading

    errors: list[BaseException] = []
    start = threading.Barrier(6)

    def land(entity: str) -> None:
        records = [RawRecord("amocrm", "acme", entity, str(i), {"id": i}) for i in range(20)]
        start.wait(10)
        try:
            pg.land(records, run_id=f"run-{entity}")
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=land, args=(f"entity_{n}",)) for n in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert errors == []
    assert {t: pg.count_rows(f"raw.amocrm__entity_{n}") for n, t in enumerate(range(6))} == {
        n: 20 for n in range(6)}


def test_concurrent_writers_wait_for_each_other_instead_of_failing(tmp_path: Path) -> None:
    """Two processes (say, a schedule and a UI click) land into one DuckDB file at once."""
    path = str(tmp_path / "warehouse.duckdb")
    ctx = multiprocessing.get_context("spawn")
    done = ctx.Queue()
    children = [ctx.Process(target=_land_in_child, args=(path, s, done)) for s in (0, 1000)]
    for child in children:
        child.start()
    for child in children:
        child.join(timeout=120)
    assert [child.exitcode for child in children] == [0, 0]
    assert sorted(done.get(timeout=5) for _ in children) == [0, 1000]
    assert DuckDBWarehouse(path).count_rows("raw.amocrm__leads") == 500


def _hold_writer_lock(path: str, seconds: float, ready: multiprocessing.Event) -> None:
    with writer_lock(path):
        ready.set()
        time.sleep(seconds)


def test_a_writer_waits_for_the_lock_held_by_another_process(tmp_path: Path) -> None:
    path = tmp_path / "warehouse.duckdb"
    ctx = multiprocessing.get_context("spawn")
    ready = ctx.Event()
    holder = ctx.Process(target=_hold_writer_lock, args=(str(path), 1.5, ready))
    holder.start()
    assert ready.wait(timeout=60)
    started = time.monotonic()
    DuckDBWarehouse(path).land(_leads(3), run_id="waiting")
    assert time.monotonic() - started >= 1.0  # it waited rather than failing
    holder.join(timeout=30)
    assert DuckDBWarehouse(path).count_rows("raw.amocrm__leads") == 3


def _opened_by_another_process(path: Path) -> bool:
    """Whether a separate process (dbt, a SQL client) can open the file read-write now."""
    done = subprocess.run([sys.executable, "-c", f"import duckdb; duckdb.connect({str(path)!r})"],
                          capture_output=True, text=True, timeout=60)
    return done.returncode == 0


def _wait_for_waiters(path: Path, waiters: int) -> None:
    lock = _locks[str(path.resolve()) + ".lock"]
    deadline = time.monotonic() + 30
    while lock.waiting < waiters:
        assert time.monotonic() < deadline, f"{lock.waiting} of {waiters} threads waiting"
        time.sleep(0.01)


def test_threads_queued_for_the_file_share_one_open_database_and_the_last_closes_it(
    duck: DuckDBWarehouse, monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Concurrent steps of one run pass the open file from thread to thread (opening and
    checkpointing it for each short transaction cost a run ~15 s); once nobody waits, the
    file is closed and its lock released, so another process can open it."""
    duck.land(_leads(1), run_id="setup")
    opens: list[Path] = []
    real_open = duckdb_backend._connect_waiting
    monkeypatch.setattr(duckdb_backend, "_connect_waiting",
                        lambda path: opens.append(path) or real_open(path))
    holding, go_on = threading.Event(), threading.Event()

    def first() -> None:
        with duck.connect() as conn:
            conn.cursor().execute("create table raw.seen (n int)")
            holding.set()
            go_on.wait(timeout=30)

    def queued(n: int) -> None:
        with duck.connect() as conn:
            conn.cursor().execute("insert into raw.seen values (?)", [n])

    threads = [threading.Thread(target=first)]
    threads[0].start()
    assert holding.wait(timeout=30)
    threads += [threading.Thread(target=queued, args=(n,)) for n in range(3)]
    for thread in threads[1:]:
        thread.start()
    _wait_for_waiters(duck.path, 3)
    go_on.set()
    for thread in threads:
        thread.join(timeout=30)
    assert len(opens) == 1  # opened once, handed over three times
    assert duck.count_rows("raw.seen") == 3
    assert len(opens) == 2  # nobody was waiting: that last look closed it again
    assert _opened_by_another_process(duck.path)


def test_a_step_that_runs_dbt_gets_the_file_closed_even_when_handed_over(
    duck: DuckDBWarehouse,
) -> None:
    """The dbt step holds the writer lock and runs dbt in a subprocess: a database the
    previous holder left open for it is closed first, or dbt could not open the file."""
    duck.land(_leads(1), run_id="setup")
    holding, go_on = threading.Event(), threading.Event()
    seen: list[bool] = []

    def first() -> None:
        with duck.connect():
            holding.set()
            go_on.wait(timeout=30)

    def dbt_step() -> None:
        with duck.writer():
            with duck.connect() as conn:  # the plan reads the warehouse first
                conn.cursor().execute("select 1")
            seen.append(_opened_by_another_process(duck.path))

    threads = [threading.Thread(target=first), threading.Thread(target=dbt_step)]
    threads[0].start()
    assert holding.wait(timeout=30)
    threads[1].start()
    _wait_for_waiters(duck.path, 1)
    go_on.set()
    for thread in threads:
        thread.join(timeout=60)
    assert seen == [True]


def test_published_marts_are_readable_while_the_working_file_is_written(
    duck: DuckDBWarehouse,
) -> None:
    with duck.connect() as conn:
        conn.cursor().execute("create schema marts")
        conn.cursor().execute("create table marts.fct_orders as select 1 as order_id")
    published = duck.publish()
    with duck.connect() as conn:  # a run is writing the working file...
        conn.cursor().execute("insert into marts.fct_orders values (2)")
        with duckdb.connect(published, read_only=True) as bi:  # ...and BI still reads
            assert bi.sql("select count(*) from marts.fct_orders").fetchall() == [(1,)]
    duck.publish()
    with duckdb.connect(published, read_only=True) as bi:
        assert bi.sql("select count(*) from marts.fct_orders").fetchall() == [(2,)]


def test_contact_points_normalise_phones_to_e164_and_emails(duck: DuckDBWarehouse) -> None:
    def contact(cid: int, phone: str, email: str) -> RawRecord:
        fields = [
            {"field_code": "PHONE", "field_type": "multitext", "values": [{"value": phone}]},
            {"field_code": "EMAIL", "field_type": "multitext", "values": [{"value": email}]},
        ]
        return RawRecord("amocrm", "acme", "contacts", str(cid),
                         {"id": cid, "custom_fields_values": fields})

    duck.land([contact(1, "8 (916) 123-45-67", " Maria@Example.RU"),
               contact(2, "+7 916 1234567", "maria@example.ru"),
               contact(3, "позвонить после 18", "")], run_id="r")
    assert build_contact_points(duck) == 6
    points = duck.query_df("select contact_id, kind, value_normalized from raw.contact_points "
                           "order by contact_id, kind")
    points = points.astype(object).where(points.notna(), None)
    assert points.values.tolist() == [
        ["1", "email", "maria@example.ru"], ["1", "phone", "+79161234567"],
        ["2", "email", "maria@example.ru"], ["2", "phone", "+79161234567"],
        ["3", "email", None], ["3", "phone", None],
    ]
    assert normalize_phone("9161234567") == "+79161234567"


def test_contact_points_cover_bitrix24_contacts_and_file_orders(duck: DuckDBWarehouse) -> None:
    b24 = RawRecord("bitrix24", "portal.bitrix24.ru", "contacts", "17", {
        "ID": "17", "NAME": "Мария",
        "PHONE": [{"ID": "5", "VALUE_TYPE": "MOBILE", "VALUE": "8 916 123-45-67",
                   "TYPE_ID": "PHONE"}],
        "EMAIL": [{"ID": "6", "VALUE_TYPE": "WORK", "VALUE": "Maria@Example.ru",
                   "TYPE_ID": "EMAIL"}],
    })
    order = RawRecord("files", "shop", "orders", "A-1", {
        "order_id": "A-1", "customer_phone": "", "customer_email": "maria@example.ru ",
        "_file": "orders.csv", "_line": 2,
    })
    no_contact = RawRecord("files", "shop", "orders", "A-2", {
        "order_id": "A-2", "customer_phone": "", "customer_email": "", "_file": "orders.csv",
        "_line": 3,
    })
    # a web-form lead nobody qualified: no CONTACT_ID, only the phone typed into the form
    lead = RawRecord("bitrix24", "portal.bitrix24.ru", "leads", "901", {
        "ID": "901", "CONTACT_ID": None, "STATUS_ID": "JUNK",
        "PHONE": [{"ID": "8", "VALUE_TYPE": "WORK", "VALUE": "+7 (916) 123-45-67",
                   "TYPE_ID": "PHONE"}],
    })
    duck.land([b24, order, no_contact, lead], run_id="r")
    assert build_contact_points(duck) == 4
    points = duck.query_df("select source, contact_id, kind, value_normalized "
                           "from raw.contact_points order by source, kind")
    assert points.values.tolist() == [
        ["bitrix24", "17", "email", "maria@example.ru"],
        ["bitrix24", "17", "phone", "+79161234567"],
        ["bitrix24_lead", "901", "phone", "+79161234567"],
        ["files", "A-1", "email", "maria@example.ru"],
    ]


@pytest.mark.postgres
def test_postgres_database_is_created_on_first_use() -> None:
    name = f"voronka_new_{uuid.uuid4().hex[:8]}"
    wh = open_warehouse("postgres", postgres_dsn=f"postgresql://postgres@127.0.0.1/{name}")
    try:
        assert wh.ensure_database() is True
        assert wh.ensure_database() is False
        wh.land(_leads(2), run_id="r")
        wh.drop_schemas(("raw",))
        assert "amocrm__leads" not in wh.list_tables("raw")
    finally:
        admin = psycopg2.connect(host="127.0.0.1", user="postgres", dbname="postgres")
        admin.autocommit = True
        admin.cursor().execute(f"drop database if exists {name} with (force)")
        admin.close()
