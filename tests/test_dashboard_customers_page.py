"""The customers page payload equals the marts (RFM grid, repurchase counts) and the audience
state (segment sizes, latest sync per platform), and carries nothing but counts."""

import json
from datetime import datetime
from pathlib import Path

import pandas as pd
import pytest
from _support import MartsBuild

from audiences import state
from dashboard.data import Marts, read_marts
from dashboard.pages import customers
from warehouse.duckdb_backend import DuckDBWarehouse


@pytest.fixture(scope="module")
def marts(marts_alt: MartsBuild) -> MartsBuild:
    """The dashboard reads the second business (`marts_alt`, DuckDB): its own xdist group,
    so these tests do not lengthen the worker that runs the main DuckDB build's tests."""
    return marts_alt

T0 = datetime(2026, 6, 1, 6, 0)
T1 = datetime(2026, 6, 2, 6, 0)


@pytest.fixture
def page_marts(marts) -> Marts:
    return read_marts(marts.wh.query_df, ["dim_customers", "dim_report_dates"])


def _summed(rows: list[dict], keys: tuple[str, ...], field: str) -> dict[tuple, int]:
    out: dict[tuple, int] = {}
    for row in rows:
        key = tuple(row[k] for k in keys)
        out[key] = out.get(key, 0) + row[field]
    return out


def test_rfm_grid_and_repurchase_counts_equal_the_marts(marts, page_marts) -> None:
    payload = customers.build(page_marts, "ru")
    json.dumps(payload, allow_nan=False)  # JSON-able, no NaN

    grid = marts.wh.query_df(
        "select recency_score as r, frequency_score as f, rfm_segment, count(*) as n "
        "from marts.dim_customers where recency_score is not null group by 1, 2, 3")
    expected = {(int(r.r), int(r.f)): int(r.n) for r in grid.itertuples()}
    assert expected, "the shared marts have active customers"
    assert _summed(payload["rfm"], ("recency_score", "frequency_score"), "customers") == expected
    names = {(int(r.r), int(r.f)): r.rfm_segment for r in grid.itertuples()}
    assert {(c["recency_score"], c["frequency_score"]): c["rfm_segment"]
            for c in payload["rfm"]} == names

    status = marts.wh.query_df(
        "select coalesce(repurchase_status, 'none') as s, count(*) as n, "
        "count(*) filter (where is_contactable) as c from marts.dim_customers group by 1")
    assert _summed(payload["repurchase"], ("status",), "customers") == \
        {(r.s,): int(r.n) for r in status.itertuples()}
    assert _summed(payload["repurchase"], ("status",), "contactable") == \
        {(r.s,): int(r.c) for r in status.itertuples()}
    assert {"due", "overdue", "lapsed"} <= {r["status"] for r in payload["repurchase"]}

    segments = marts.wh.query_df(
        "select rfm_segment, count(*) as n, sum(revenue) as revenue "
        "from marts.dim_customers group by 1")
    got = _summed(payload["rfm_segments"], ("rfm_segment",), "customers")
    assert got == {(r.rfm_segment,): int(r.n) for r in segments.itertuples()}
    revenue = _summed(payload["rfm_segments"], ("rfm_segment",), "revenue")
    for r in segments.itertuples():
        assert revenue[(r.rfm_segment,)] == pytest.approx(float(r.revenue))

    assert payload["as_of_date"] == str(page_marts.as_of_date)
    assert payload["audiences"]["available"] is False  # only marts: audience state unknown


def test_channel_slices_add_up_to_the_whole(marts, page_marts) -> None:
    payload = customers.build(page_marts, "en")
    channels = marts.wh.query_df("select distinct channel from marts.dim_customers")
    assert set(payload["channels"]) == set(channels["channel"].fillna("other"))
    one = payload["channels"][0]
    n = marts.wh.scalar("select count(*) from marts.dim_customers where "
                        f"coalesce(channel, 'other') = '{one}' and repurchase_status = 'due'")
    assert sum(r["customers"] for r in payload["repurchase"]
               if r["channel"] == one and r["status"] == "due") == n


def _state_warehouse(tmp_path: Path) -> DuckDBWarehouse:
    """A scratch warehouse holding only audience state: two segments, syncs to two platforms
    (a failure after a success, a skip), with a message that must not reach the page."""
    wh = DuckDBWarehouse(tmp_path / "warehouse.duckdb", tmp_path / "voronka.duckdb")
    with wh.connect() as conn:
        state.ensure_state(wh, conn)
        state.record_entries(wh, conn, "lapsed_90_days", ["c1", "c2", "c3"], "r1", T0)
        state.record_entries(wh, conn, "due_for_repurchase", ["c4"], "r1", T0)
        state.record_leaves(wh, conn, "lapsed_90_days", {"c3": "left_segment"}, "r2", T1)
        runs = [("r1", "lapsed_90_days", "meta", T0, "success", 3, 0),
                ("r2", "lapsed_90_days", "meta", T1, "failed", 0, 0),
                ("r3", "lapsed_90_days", "yandex", T1, "exported", 2, 1),
                ("r4", "due_for_repurchase", "meta", T1, "skipped", 0, 0)]
        for run_id, segment, platform, when, status, added, removed in runs:
            state.record_run(wh, conn, run_id=run_id, segment=segment, platform=platform,
                             audience_id="42", started_at=when, finished_at=when,
                             status=status, added=added, removed=removed, excluded=1,
                             pending=0, message="token=SECRET-123 rejected")
    return wh


def test_audience_state_from_the_working_warehouse(page_marts, tmp_path) -> None:
    wh = _state_warehouse(tmp_path)
    page_marts.update(customers.read_audience_state(wh.query_df))
    payload = customers.build(page_marts, "ru")
    text = json.dumps(payload, allow_nan=False)
    assert "SECRET" not in text and "message" not in text

    aud = payload["audiences"]
    assert aud["available"] is True
    open_members = {s: len(state.history(wh, s)) - sum(
        1 for h in state.history(wh, s) if h["left_at"] is not None)
        for s in ("lapsed_90_days", "due_for_repurchase")}
    assert {s["segment"]: s["members"] for s in aud["segments"]} == open_members

    latest: dict[tuple[str, str], dict] = {}
    for run in state.sync_runs(wh):
        latest[(run["segment"], run["platform"])] = run
    got = {(s["segment"], s["platform"]): s for s in aud["syncs"]}
    assert set(got) == set(latest)
    for key, run in latest.items():
        assert got[key]["status"] == run["status"]
        assert (got[key]["added"], got[key]["removed"]) == (run["added"], run["removed"])
    meta = got[("lapsed_90_days", "meta")]
    assert meta["status"] == "failed" and meta["attempts"] == 2
    assert meta["last_success_at"] == pd.Timestamp(T0).strftime("%Y-%m-%d %H:%M UTC")
    assert got[("due_for_repurchase", "meta")]["last_success_at"] is None
    assert aud["platforms"] == sorted({p for _, p in latest})


def test_missing_audience_schema_reads_as_unavailable(marts, tmp_path) -> None:
    wh = DuckDBWarehouse(tmp_path / "empty.duckdb", tmp_path / "published.duckdb")
    assert customers.read_audience_state(wh.query_df) == {}
    payload = customers.build(Marts(), "en")  # no marts at all: renders empty, no error
    assert payload["rfm"] == [] and payload["audiences"]["available"] is False
