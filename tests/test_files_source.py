"""Files source: CSV/Parquet orders and offline spend, with line-numbered quarantine."""

from __future__ import annotations

from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from extractors.files import FilesSource, validate_file_rows
from extractors.sync import sync_entity
from warehouse.duckdb_backend import DuckDBWarehouse

ORDERS_CSV = """order_id;order_date;amount;currency;customer_phone;customer_email
A-1;2026-05-01;45 000,50;RUB;8 916 123-45-67;maria@example.ru
A-2;02.05.2026;1200;RUB;;ivan@example.ru
A-3;2026-05-03;-10;RUB;;x@example.ru
A-4;yesterday;100;RUB;;y@example.ru
A-5;2026-05-05;;RUB;;z@example.ru
A-1;2026-05-06;10;RUB;;dup@example.ru
"""


@pytest.fixture
def folder(tmp_path: Path) -> Path:
    (tmp_path / "orders").mkdir()
    (tmp_path / "ad_spend").mkdir()
    (tmp_path / "orders" / "shop_export.csv").write_bytes(ORDERS_CSV.encode("cp1251"))
    table = pa.table({
        "date": ["2026-05-01", "2026-05-02", "2026-05-03"],
        "platform": ["radio", "radio", "billboard"],
        "campaign_id": ["R1", "R1", "B7"],
        "campaign_name": ["Утро", "Утро", "МКАД"],
        "spend": [15000.0, 15000.0, None],
        "currency": ["RUB", "RUB", "RUB"],
    })
    pq.write_table(table, tmp_path / "ad_spend" / "offline.parquet")
    return tmp_path


def test_rows_are_read_with_line_numbers_and_malformed_ones_quarantined(folder: Path) -> None:
    [page] = list(FilesSource(folder).pages("orders", None))
    # A-1's two lines are one order (line items), kept as received under _lines
    assert [r.payload["_line"] for r in page.records] == [2, 3, 4, 5, 6]
    assert [r["amount"] for r in page.records[0].payload["_lines"]] == ["45 000,50", "10"]
    good, bad = validate_file_rows(page.records)
    assert [r.record_id for r in good] == ["A-2"]
    reasons = {q.record.payload["_line"]: q.reason for q in bad}
    assert reasons == {
        2: "shop_export.csv line 7: field 'order_date' is '2026-05-06' but line 2 of order "
           "'A-1' says '2026-05-01'",
        4: "shop_export.csv line 4: field 'amount' must not be negative, got '-10'",
        5: "shop_export.csv line 5: field 'order_date' expected a date (YYYY-MM-DD or "
           "DD.MM.YYYY), got 'yesterday'",
        6: "shop_export.csv line 6: field 'amount' is required but empty",
    }


def test_sync_lands_good_rows_quarantines_bad_and_reruns_without_duplicates(
    folder: Path, tmp_path: Path
) -> None:
    wh = DuckDBWarehouse(tmp_path / "w.duckdb")
    source = FilesSource(folder, account="shop")
    first = sync_entity(source, "orders", wh, run_id="r1", validate=validate_file_rows)
    assert (first.inserted, first.quarantined) == (1, 4)
    spend = sync_entity(source, "ad_spend", wh, run_id="r1", validate=validate_file_rows)
    assert (spend.inserted, spend.quarantined) == (2, 1)
    quarantined = wh.query_df("select entity, record_id, reason from raw._quarantine "
                              "where entity = 'ad_spend'")
    assert quarantined.reason.tolist() == [
        "offline.parquet line 3: field 'spend' is required but empty"]
    again = sync_entity(source, "orders", wh, run_id="r2", validate=validate_file_rows)
    assert (again.inserted, again.duplicates) == (0, 1)
    assert wh.count_rows("raw.files__orders") == 1


def test_a_file_without_a_required_column_is_named_in_the_error(tmp_path: Path) -> None:
    (tmp_path / "orders").mkdir()
    (tmp_path / "orders" / "broken.csv").write_text("order_id,amount\nA-1,10\n")
    # issue 12 item 7: the file is quarantined whole (naming it and the column), not a crash
    _, [refused] = validate_file_rows(
        [r for page in FilesSource(tmp_path).pages("orders", None) for r in page.records])
    assert refused.reason.startswith(
        "broken.csv: the whole file is refused: required column(s) 'order_date' missing")


def test_an_empty_folder_yields_nothing(tmp_path: Path) -> None:
    assert list(FilesSource(tmp_path).pages("ad_spend", None)) == []
