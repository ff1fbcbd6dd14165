"""The files contract for real shop exports (docs/FILES.md): line items, the shop's own
customer_id, dates from 1970 to the as-of date, 0.00 orders, one account currency and the
conversion of other currencies by a user-supplied daily rates file.

The unit tests run the contract (extractors.files) and the raw GX suite; the build test lands
two export files through the real raw validation, builds the whole dbt project on a scratch
DuckDB (and PostgreSQL with VORONKA_TEST_POSTGRES=1), and compares fct_orders / dim_customers
with figures computed by hand below; every dbt test and every GX mart suite must pass on that
build.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import date, datetime
from decimal import Decimal
from pathlib import Path
from zoneinfo import ZoneInfo

import pandas as pd
import pytest
from _support import failed_nodes, run_dbt, scratch_warehouse

from expectations import validate_records
from extractors.files import (
    FileContractError,
    FilesSource,
    Limits,
    Rates,
    account_currency,
    latest_allowed_date,
    validate_file_rows,
)
from extractors.sync import sync_entity
from warehouse.contact_points import build_contact_points
from warehouse.identity import build_identity

AS_OF = "2026-06-30"
ACCOUNT = "shop"

# The site's export: one row per order line (L-1 has two), a customer_id on most rows.
LINES_CSV = """\
order_id,order_date,amount,currency,customer_id,customer_phone,product,quantity,gross_margin
L-1,1985-03-02,1000.00,RUB,K1,,Tea,2,300
L-1,1985-03-02,250.25,,,,Cup,1,100
L-2,1999-12-31,0.00,RUB,K2,+79161234567,Sample,1,0
L-3,2026-06-01,300,RUB,K1,,Tea,1,90
L-4,2026-06-02,0,,K3,,Gift,,
L-5,2026-06-03,100,USD,K3,,Tea,1,
L-7,2026-07-01,100,RUB,K1,,Tea,1,
L-9,2026-06-05,50,RUB,,8 916 123-45-67,Tea,1,
"""
# The accounting export: Windows-1251, semicolons, decimal comma, no currency, no phone or
# e-mail at all: the customer_id is the only identity.
IDS_ONLY_CSV = """order_id;order_date;amount;customer_id
C-1;01.02.1971;1 500,00;K9
C-2;15.03.1971;2 000,50;K9
C-3;20.03.1971;0,00;K10
C-4;10.06.2026;700;K1
"""

# The user's daily rates (VORONKA_CURRENCY_RATES): a day takes the latest rate on or before it.
RATES_CSV = "date,currency,rate\n2026-06-01,USD,90\n2026-06-04,USD,95\n"
SPEND_CSV = ("date,platform,campaign_id,spend,currency\n2026-06-05,radio,R1,10,USD\n"
             "2026-06-05,radio,R2,500,\n")

# fct_orders by hand: order -> (date, amount, gross margin, customer key, order number)
EXPECTED_ORDERS = {
    "files_L-1": ("1985-03-02", "1250.25", "400.00", "K1", 1),
    "files_L-3": ("2026-06-01", "300.00", "90.00", "K1", 2),
    "files_C-4": ("2026-06-10", "700.00", "700.00", "K1", 3),
    "files_L-2": ("1999-12-31", "0.00", "0.00", "K2", 1),
    "files_L-9": ("2026-06-05", "50.00", "50.00", "K2", 2),  # K2 by phone
    "files_L-4": ("2026-06-02", "0.00", "0.00", "K3", 1),
    "files_L-5": ("2026-06-03", "9000.00", "9000.00", "K3", 2),  # 100 USD x 90 (June 1 rate)
    "files_C-1": ("1971-02-01", "1500.00", "1500.00", "K9", 1),
    "files_C-2": ("1971-03-15", "2000.50", "2000.50", "K9", 2),
    "files_C-3": ("1971-03-20", "0.00", "0.00", "K10", 1),
}


def _write(folder: Path) -> Path:
    (folder / "orders").mkdir(parents=True, exist_ok=True)
    (folder / "orders" / "site_lines.csv").write_text(LINES_CSV, encoding="utf-8")
    (folder / "orders" / "accounting.csv").write_bytes(IDS_ONLY_CSV.encode("cp1251"))
    (folder / "ad_spend").mkdir(exist_ok=True)
    (folder / "ad_spend" / "radio.csv").write_text(SPEND_CSV, encoding="utf-8")
    (folder / "rates.csv").write_text(RATES_CSV, encoding="utf-8")
    return folder


def _records(folder: Path, entity: str = "orders") -> list:
    return [r for page in FilesSource(folder, account=ACCOUNT).pages(entity, None)
            for r in page.records]


def _raw_suite(records: list) -> tuple[list, list]:
    """The raw validation a run applies (contract, then the GX suite) as a sync validator."""
    verdict = validate_records(records)
    return verdict.good, verdict.quarantined


LIMITS = Limits(latest=date.fromisoformat(AS_OF), currency="RUB")


# -- the contract ---------------------------------------------------------------------------
def test_line_items_add_up_to_one_order_and_keep_their_lines(tmp_path: Path) -> None:
    records = {r.record_id: r for r in _records(_write(tmp_path))}
    order = records["L-1"].payload
    assert (order["amount"], order["quantity"], order["gross_margin"]) == ("1250.25", "3", "400")
    assert (order["customer_id"], order["currency"], order["product"]) == ("K1", "RUB", "Tea")
    assert [line["_line"] for line in order["_lines"]] == [2, 3]
    assert order["_lines"][1]["amount"] == "250.25"  # lines kept as received
    assert "_lines" not in records["L-3"].payload  # a one-line order is the plain row


def test_a_bad_line_quarantines_its_whole_order_naming_the_line(tmp_path: Path) -> None:
    (tmp_path / "orders").mkdir()
    (tmp_path / "orders" / "x.csv").write_text(
        "order_id,order_date,amount,customer_id,gross_margin\n"
        "A,2026-05-01,10,K1,5\n"
        "A,2026-05-01,abc,K1,\n"      # line 3: not a number
        "B,2026-05-01,10,K1,\n"
        "B,2026-05-01,5,K2,\n"        # line 5: another customer
        "C,2026-05-01,10,,1\n"
        "C,01.05.2026,5,,\n")         # same day written another way: fine; margin unknown
    good, bad = validate_file_rows(_records(tmp_path), LIMITS)
    assert [r.record_id for r in good] == ["C"]
    assert good[0].payload["gross_margin"] == ""  # one line without a margin: no total
    assert {q.record.record_id: q.reason for q in bad} == {
        "A": "x.csv line 3: field 'amount' expected a number, got 'abc'",
        "B": "x.csv line 5: field 'customer_id' is 'K2' but line 4 of order 'B' says 'K1'",
    }


def test_dates_run_from_1970_to_the_as_of_date(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "orders").mkdir()
    (tmp_path / "orders" / "d.csv").write_text(
        "order_id,order_date,amount\nA,1970-01-01,1\nB,31.12.1969,1\nC,2026-06-30,1\n"
        "D,2026-07-01,1\n")
    monkeypatch.setenv("VORONKA_AS_OF_DATE", AS_OF)
    result = validate_records(_records(tmp_path))  # contract + raw GX suite, as a run does
    assert [r.record_id for r in result.good] == ["A", "C"]
    assert [q.reason for q in result.quarantined] == [
        "d.csv line 3: field 'order_date' is before 1970-01-01, got '31.12.1969'",
        "d.csv line 5: field 'order_date' is after the as-of date 2026-06-30 "
        "(VORONKA_AS_OF_DATE, else today in Moscow), got '2026-07-01'",
    ]
    monkeypatch.delenv("VORONKA_AS_OF_DATE")
    assert latest_allowed_date() == datetime.now(ZoneInfo("Europe/Moscow")).date()


def test_another_currency_is_quarantined_naming_file_and_currency(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    _write(tmp_path)
    monkeypatch.setenv("VORONKA_AS_OF_DATE", AS_OF)
    with caplog.at_level(logging.WARNING, logger="voronka.extractors"):
        result = validate_records(_records(tmp_path))
    usd = [q for q in result.quarantined if q.record.record_id == "L-5"]
    assert usd[0].reason == (
        "site_lines.csv line 7: field 'currency' is USD, not the account currency RUB "
        "(VORONKA_CURRENCY): amounts in two currencies cannot be added up; convert the file's "
        "amounts to RUB, or give daily rates in VORONKA_CURRENCY_RATES")
    assert "site_lines.csv has 1 record(s) in USD, quarantined: the account currency is RUB" \
        in caplog.text
    monkeypatch.setenv("VORONKA_CURRENCY", "usd")  # a USD account refuses the RUB rows
    assert account_currency() == "USD"
    good, _ = validate_file_rows(_records(tmp_path))
    assert sorted(r.record_id for r in good) == ["C-1", "C-2", "C-3", "C-4", "L-4", "L-5"]
    monkeypatch.setenv("VORONKA_CURRENCY", "рубли")
    with pytest.raises(ValueError, match="VORONKA_CURRENCY must be an ISO 4217 code"):
        validate_file_rows(_records(tmp_path))


# -- landed and built: the marts match the hand-computed figures ------------------------------
@dataclass
class FilesBuild:
    wh: object
    landed: tuple[int, int]  # (inserted, quarantined)
    results: dict
    output: str

    def df(self, sql: str) -> pd.DataFrame:
        return self.wh.query_df(sql)


@pytest.fixture(scope="module", params=["duckdb", pytest.param("postgres",
                                                                marks=pytest.mark.postgres)])
def built(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory):
    workdir = tmp_path_factory.mktemp(f"files_contract_{request.param}")
    folder = _write(workdir / "drop")
    with scratch_warehouse(request.param, workdir, "files") as (wh, env):
        with pytest.MonkeyPatch.context() as mp:  # the run's settings, for landing only
            mp.setenv("VORONKA_AS_OF_DATE", AS_OF)
            mp.setenv("VORONKA_CURRENCY_RATES", str(folder / "rates.csv"))
            source = FilesSource(folder, account=ACCOUNT)
            orders = sync_entity(source, "orders", wh, run_id="files", validate=_raw_suite)
            spend = sync_entity(source, "ad_spend", wh, run_id="files", validate=_raw_suite)
        assert (spend.inserted, spend.quarantined) == (2, 0)
        build_contact_points(wh)
        build_identity(wh)
        # the unit tests use their own fixtures, not this data: the shared builds run them
        _, out, results = run_dbt(workdir, env, "build", "--exclude-resource-type", "unit_test",
                                  "--vars", f"{{as_of_date: '{AS_OF}'}}")
        yield FilesBuild(wh, (orders.inserted, orders.quarantined), results, out)


def test_the_build_passes_every_dbt_test_with_zero_orders_and_old_dates(built) -> None:
    assert built.landed == (10, 1)  # L-7 (after the as-of date) quarantined
    assert not failed_nodes(built.results), (failed_nodes(built.results), built.output[-3000:])


def test_fct_orders_match_the_hand_computed_orders(built) -> None:
    got = built.df("""select order_id, cast(order_date as varchar) as d, amount, gross_margin,
                             customer_id, order_number, currency, order_source, product_category
                      from marts.fct_orders order by order_id""")
    assert sorted(got.order_id) == sorted(EXPECTED_ORDERS)
    assert set(got.currency) == {"RUB"} and set(got.order_source) == {"files"}
    customer_of_key: dict[str, str] = {}
    for row in got.itertuples():
        day, amount, margin, key, number = EXPECTED_ORDERS[row.order_id]
        assert (row.d, Decimal(str(row.amount)), Decimal(str(row.gross_margin)),
                row.order_number) == (day, Decimal(amount), Decimal(margin), number), row
        # one customer per key: the same key (or a shared phone) is one customer
        assert customer_of_key.setdefault(key, row.customer_id) == row.customer_id, row
    assert len(set(customer_of_key.values())) == 5
    assert got.set_index("order_id").product_category["files_L-1"] == "Tea"


def test_dim_customers_match_the_hand_computed_customers(built) -> None:
    """(The mart rules, a 0.00 order and one currency among them, are the dbt tests the build
    passed; tests/test_mart_rules.py breaks them.)"""
    customers = built.df("select orders_count, revenue from marts.dim_customers "
                         "order by orders_count, revenue")
    assert [(int(n), Decimal(str(r))) for n, r in customers.itertuples(index=False)] == [
        (1, Decimal("0.00")), (2, Decimal("50.00")), (2, Decimal("3500.50")),
        (2, Decimal("9000.00")), (3, Decimal("2250.25"))]


def test_foreign_amounts_are_converted_with_the_rate_of_their_day(built) -> None:
    order = built.df("select amount, currency, source_amount, source_currency, exchange_rate "
                     "from staging.stg_files__orders where order_id = 'L-5'")
    assert [(Decimal(str(a)), c, Decimal(str(sa)), sc, Decimal(str(r)))
            for a, c, sa, sc, r in order.itertuples(index=False)] == [
        (Decimal("9000.00"), "RUB", Decimal("100.00"), "USD", Decimal("90"))]
    spend = built.df("select campaign_id, spend, currency from marts.fct_ad_spend_daily "
                     "order by campaign_id")
    assert [(c, Decimal(str(v)), k) for c, v, k in spend.itertuples(index=False)] == [
        ("R1", Decimal("950.00"), "RUB"), ("R2", Decimal("500.00"), "RUB")]  # 10 USD x 95


def test_a_rates_file_is_checked_and_a_day_before_its_first_rate_is_refused(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    folder = _write(tmp_path)
    rates = Rates.load(folder / "rates.csv")
    assert [rates.rate("USD", date(2026, d, 1 if d == 7 else 3)) for d in (5, 6, 7)] == [
        None, Decimal("90"), Decimal("95")]
    (folder / "orders" / "site_lines.csv").write_text(
        LINES_CSV.replace("L-5,2026-06-03", "L-5,2026-05-31"), encoding="utf-8")
    monkeypatch.setenv("VORONKA_CURRENCY_RATES", str(folder / "rates.csv"))
    monkeypatch.setenv("VORONKA_AS_OF_DATE", AS_OF)
    _, bad = validate_file_rows(_records(folder))
    assert [q.reason for q in bad if q.record.record_id == "L-5"] == [
        "site_lines.csv line 7: field 'currency' is USD, not the account currency RUB "
        "(VORONKA_CURRENCY), and rates.csv (VORONKA_CURRENCY_RATES) has no USD rate on or "
        "before the row's date"]
    (folder / "bad_rates.csv").write_text("date,currency,rate\n2026-06-01,USD,0\n")
    with pytest.raises(FileContractError, match=r"bad_rates.csv line 2: field 'rate' expected "
                                                r"a positive number, got '0'"):
        Rates.load(folder / "bad_rates.csv")
