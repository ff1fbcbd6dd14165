"""Audience segments (issue 5): YAML -> parameterised SQL, consent exclusion, CLI list/preview.

Members are recomputed in pandas from marts.dim_customers / marts.fct_orders of the shared
`marts` build (DuckDB and PostgreSQL) and compared with what the compiled SQL selects."""

from __future__ import annotations

import argparse
import datetime as dt
import re

import pandas as pd
import pytest

from audiences import cli as audiences_cli
from audiences.segments import (
    FIELDS,
    PredictionsUnavailable,
    SegmentError,
    compile_segment,
    load_segments,
    parse_segment,
    segment_members,
)

SHIPPED = {
    "lapsed_90_days", "due_for_repurchase", "bought_last_30_days",
    "top_10_percent_ltv_lookalike", "one_time_buyers", "high_value_at_risk",
    "birthday_next_7_days", "reminder_30_days_before", "reminder_7_days_before",
    "reminder_1_day_before", "win_back_lapsed", "high_value_slipping",
    "top_10_percent_predicted_value_lookalike",
}
#: shipped segments on customer predictions (tests/test_segment_predictions.py checks their
#: members); the dbt-only build here has no predictions
ON_PREDICTIONS = {"high_value_slipping", "top_10_percent_predicted_value_lookalike"}
#: reminder segment -> the days until the expected next order it covers (inclusive)
REMINDER_DAYS = {"reminder_30_days_before": (8, 30), "reminder_7_days_before": (2, 7),
                 "reminder_1_day_before": (0, 1)}
RECENT_CATEGORIES = ("Рабочая тетрадь «Разговорный английский»", "Видеокурс «Произношение»")
AT_RISK = ("At risk", "Can't lose them", "About to sleep", "Hibernating")


def _error(text: str) -> str:
    with pytest.raises(SegmentError) as info:
        parse_segment(text, "evil.yml")
    return str(info.value)


# -- loading and compiling (no warehouse) ----------------------------------------------------


def test_every_shipped_segment_loads_and_compiles_for_both_backends():
    segments = load_segments()
    assert {s.name for s in segments} == SHIPPED
    for seg in segments:
        assert seg.kind in ("static", "dynamic") and seg.description and seg.conditions
        assert seg.file.endswith(".yml")
        for backend, mark in (("duckdb", "?"), ("postgres", "%s")):
            sql, params = compile_segment(seg, backend)
            assert sql.count(mark) == len(params), (seg.name, sql)
            other = "%s" if mark == "?" else "?"
            assert other not in sql
            assert "marts.dim_customers" in sql and "is_contactable" in sql
            for value in params:  # values are bound, never pasted into the SQL
                if isinstance(value, str):
                    assert value not in sql
    by_name = {s.name: s for s in segments}
    assert by_name["top_10_percent_ltv_lookalike"].value == "revenue"
    sql, params = compile_segment(by_name["lapsed_90_days"], "duckdb")
    assert params == [90] and "90" not in sql
    assert "d.days_since_last_order >= ?" in sql


def test_an_injected_field_is_rejected_with_file_line_and_allowed_fields():
    msg = _error(
        "name: evil\n"
        "kind: dynamic\n"
        "conditions:\n"
        "  - {field: revenue, op: '>', value: 1}\n"
        "  - {field: 'revenue; drop table x', op: '>', value: 1}\n"
    )
    assert msg.startswith("evil.yml, line 5:"), msg
    assert "unknown field 'revenue; drop table x'" in msg
    assert "allowed fields:" in msg and all(f in msg for f in FIELDS)


def test_an_unknown_operator_is_rejected_with_the_ops_allowed_for_the_type():
    msg = _error(
        "name: evil\nkind: dynamic\nconditions:\n"
        "  - field: revenue\n"
        "    op: '> 0 or 1=1 --'\n"
        "    value: 1\n"
    )
    assert msg.startswith("evil.yml, line 5:"), msg
    assert "operator '> 0 or 1=1 --' is not allowed for revenue (number)" in msg
    assert "allowed: = != < <= > >= in not_in between" in msg
    # an op that exists but does not fit the field's type
    msg = _error("name: e\nkind: static\nconditions:\n  - {field: channel, op: '>', value: a}\n")
    assert msg.startswith("evil.yml, line 4:") and "allowed: = != in not_in" in msg
    msg = _error("name: e\nkind: static\nconditions:\n  - {field: is_due, op: '=', value: 1}\n")
    assert "allowed: is_true is_false" in msg


def test_a_value_of_the_wrong_type_is_rejected():
    msg = _error(
        "name: evil\nkind: dynamic\nconditions:\n"
        "  - {field: orders_count, op: '>=', value: 2}\n"
        "  - {field: revenue, op: '>', value: '1000 or 1=1'}\n"
    )
    assert msg.startswith("evil.yml, line 5:"), msg
    assert "revenue needs a number, got '1000 or 1=1'" in msg
    msg = _error("name: e\nkind: dynamic\nconditions:\n"
                 "  - {field: recency, op: between, value: [30, 'x']}\n")
    assert msg.startswith("evil.yml, line 4:") and "needs a whole number" in msg
    msg = _error("name: e\nkind: dynamic\nconditions:\n"
                 "  - {field: recency, op: between, value: [30]}\n")
    assert "exactly two values" in msg
    msg = _error("name: e\nkind: dynamic\nconditions:\n"
                 "  - {field: cohort_month, op: '>=', value: 'last year'}\n")
    assert "needs a date (YYYY-MM-DD)" in msg
    msg = _error("name: e\nkind: dynamic\nconditions:\n  - {field: channel, op: '=', value: 5}\n")
    assert "channel needs a text, got 5" in msg


def test_other_bad_segments_name_what_is_allowed():
    msg = _error("name: e\nkind: sometimes\nconditions:\n  - {field: is_due, op: is_true}\n")
    assert msg.startswith("evil.yml, line 2:") and "allowed: static, dynamic" in msg
    msg = _error("name: e\nkind: static\nvalue: channel\n"
                 "conditions:\n  - {field: is_due, op: is_true}\n")
    assert msg.startswith("evil.yml, line 3:") and "allowed: recency" in msg
    msg = _error("name: e\nkind: static\nsql: drop table x\n")
    assert msg.startswith("evil.yml, line 3:") and "allowed: name, description" in msg
    msg = _error("name: e\nkind: static\nconditions: []\n")
    assert "non-empty list" in msg
    msg = _error("name: e\nkind: static\nconditions:\n"
                 "  - bought_category_within_days: {category: x, days: '30; drop'}\n")
    assert msg.startswith("evil.yml, line 4:") and "days must be a whole number" in msg
    msg = _error("name: e\nkind: static\nconditions:\n"
                 "  - top_share: {field: revenue, share: 5}\n")
    assert "share must be a number in (0, 1]" in msg
    msg = _error("name: e\nkind: static\nconditions:\n  - [not, a, mapping]\n")
    assert msg.startswith("evil.yml, line 4:") and "must be a mapping" in msg


def test_a_bad_birthday_window_names_what_is_allowed():
    msg = _error("name: birthdays\nkind: dynamic\nconditions:\n"
                 "  - birthday_within_days: 7\n")
    assert msg.startswith("evil.yml, line 4:") and "must be a mapping" in msg, msg
    msg = _error("name: birthdays\nkind: dynamic\nconditions:\n"
                 "  - birthday_within_days: {days: 400}\n")
    assert msg.startswith("evil.yml, line 4:"), msg
    assert "days must be a whole number 0..366, got 400" in msg
    msg = _error("name: birthdays\nkind: dynamic\nconditions:\n"
                 "  - birthday_within_days: {days: 7, month: 5}\n")
    assert "unknown key 'month'" in msg


def test_load_segments_reads_a_directory_and_rejects_duplicate_names(tmp_path):
    text = "name: a\nkind: static\nconditions:\n  - {field: is_due, op: is_true}\n"
    (tmp_path / "one.yml").write_text(text)
    assert [s.name for s in load_segments(tmp_path)] == ["a"]
    (tmp_path / "two.yml").write_text(text)
    with pytest.raises(SegmentError, match=r"two\.yml, line 1: segment name 'a' is also used"):
        load_segments(tmp_path)
    (tmp_path / "two.yml").write_text("name: b\nkind: static\nconditions:\n  - {field: x}\n")
    with pytest.raises(SegmentError, match=r"two\.yml, line 4: a condition needs field and op"):
        load_segments(tmp_path)


# -- members against the marts, recomputed in pandas ------------------------------------------


@pytest.fixture(scope="module")
def frames(marts):
    dim = marts.df("select * from marts.dim_customers")
    orders = marts.df("select customer_id, product_category, order_date from marts.fct_orders")
    as_of = pd.Timestamp(marts.df(
        "select max(as_of_date) as d from intermediate.int_as_of_date")["d"].iloc[0]).date()
    for col in ("last_order_date", "first_order_date", "cohort_month"):
        dim[col] = pd.to_datetime(dim[col]).dt.date
    orders["order_date"] = pd.to_datetime(orders["order_date"]).dt.date
    for col in ("revenue", "days_since_last_order", "orders_count", "monetary_score"):
        dim[col] = pd.to_numeric(dim[col])
    dim["is_contactable"] = dim["is_contactable"].astype(bool)
    return marts, dim, orders, as_of


def _expected(name: str, dim: pd.DataFrame, orders: pd.DataFrame, as_of: dt.date) -> pd.Series:
    """The shipped segments' conditions, written independently in pandas."""
    if name == "lapsed_90_days":
        return dim["days_since_last_order"] >= 90
    if name == "due_for_repurchase":
        return dim["is_due"].astype(bool)
    if name == "one_time_buyers":
        return dim["orders_count"] == 1
    if name == "high_value_at_risk":
        return (dim["monetary_score"] >= 4) & (
            dim["rfm_segment"].isin(AT_RISK) | dim["is_overdue"].astype(bool))
    if name == "bought_last_30_days":
        recent = orders[orders["product_category"].isin(RECENT_CATEGORIES)
                        & (orders["order_date"] <= as_of)
                        & (orders["order_date"] > as_of - dt.timedelta(days=30))]
        return dim["customer_id"].isin(set(recent["customer_id"]))
    if name == "top_10_percent_ltv_lookalike":
        ranked = dim[dim["is_contactable"]].sort_values(
            ["revenue", "customer_id"], ascending=[False, True])
        size = -(-len(ranked) // 10)  # ceil(0.1 x contactable customers)
        return dim["customer_id"].isin(set(ranked["customer_id"].head(size)))
    if name == "birthday_next_7_days":
        window = {(d.month, d.day) for d in (as_of + dt.timedelta(days=k) for k in range(8))}
        return pd.Series([pd.notna(m) and (int(m), int(d)) in window
                          for m, d in zip(dim["birthday_month"], dim["birthday_day"],
                                          strict=True)], index=dim.index)
    if name == "win_back_lapsed":
        return dim["repurchase_status"] == "lapsed"
    if name in REMINDER_DAYS:
        low, high = REMINDER_DAYS[name]
        return pd.Series([pd.notna(d) and low <= (pd.Timestamp(d).date() - as_of).days <= high
                          for d in dim["expected_next_order_date"]], index=dim.index)
    raise AssertionError(name)


def test_members_match_pandas_for_every_shipped_segment(frames):
    marts, dim, orders, as_of = frames
    assert (~dim["is_contactable"]).sum() > 0, "the seeded business has uncontactable customers"
    for seg in load_segments():
        if seg.name in ON_PREDICTIONS:
            with pytest.raises(PredictionsUnavailable, match="predictions are not published"):
                segment_members(marts.wh, seg)
            continue
        match = dim[_expected(seg.name, dim, orders, as_of)]
        members = segment_members(marts.wh, seg)
        expected = sorted(match.loc[match["is_contactable"], "customer_id"])
        assert list(members.customer_ids) == expected, seg.name
        assert members.excluded_count == int((~match["is_contactable"]).sum()), seg.name
        # a reminder window holds a handful of customers on one as-of date (possibly only
        # uncontactable ones): tests/test_repeat_reminders.py checks its edges
        assert len(members) > 0 or seg.name in REMINDER_DAYS, (
            f"{seg.name} selects nobody on the seeded business")
        assert not set(members.customer_ids) & set(dim.loc[~dim["is_contactable"],
                                                           "customer_id"])


def test_lookalike_seed_segment_is_fct_lookalike_seed_with_values(frames):
    marts, _, _, _ = frames
    seg = {s.name: s for s in load_segments()}["top_10_percent_ltv_lookalike"]
    members = segment_members(marts.wh, seg)
    seed = marts.df("select customer_id, lookalike_value from marts.fct_lookalike_seed")
    seed = seed.sort_values("customer_id")
    assert list(members.customer_ids) == list(seed["customer_id"])
    assert list(members.values) == pytest.approx([float(v) for v in seed["lookalike_value"]])
    frame = members.frame()
    assert list(frame.columns) == ["customer_id", "value"] and len(frame) == len(seed)


def test_an_injected_value_is_bound_and_matches_nothing(frames):
    marts, dim, _, _ = frames
    evil = "x' or 1=1 --"
    seg = parse_segment(
        "name: evil\nkind: dynamic\nconditions:\n"
        f"  - {{field: channel, op: '=', value: \"{evil}\"}}\n", "evil.yml")
    sql, params = compile_segment(seg, marts.wh)
    assert params == [evil] and evil not in sql and "1=1" not in sql
    members = segment_members(marts.wh, seg)
    assert members.customer_ids == () and members.excluded_count == 0
    seg = parse_segment(
        "name: evil\nkind: dynamic\nconditions:\n"
        f"  - {{field: rfm_segment, op: not_in, value: [\"{evil}\", 'Churned']}}\n", "evil.yml")
    members = segment_members(marts.wh, seg)
    match = dim[dim["rfm_segment"].notna() & (dim["rfm_segment"] != "Churned")]
    assert len(members) + members.excluded_count == len(match) > 0
    assert marts.df("select count(*) as n from marts.dim_customers")["n"].iloc[0] == len(dim)


def test_an_uncontactable_customer_matching_the_conditions_is_excluded_and_counted(frames):
    marts, dim, _, _ = frames
    person = dim[~dim["is_contactable"]].sort_values("customer_id").iloc[0]
    revenue = float(person["revenue"])
    seg = parse_segment(
        "name: one_person\nkind: static\nvalue: revenue\nconditions:\n"
        f"  - {{field: revenue, op: between, value: [{revenue}, {revenue}]}}\n"
        f"  - {{field: last_order_date, op: '=', value: {person['last_order_date']}}}\n"
        f"  - {{field: first_order_date, op: in, value: [{person['first_order_date']}]}}\n",
        "consent.yml")
    members = segment_members(marts.wh, seg)
    match = dim[(dim["revenue"] == person["revenue"])
                & (dim["last_order_date"] == person["last_order_date"])
                & (dim["first_order_date"] == person["first_order_date"])]
    assert person["customer_id"] not in members.customer_ids
    assert members.excluded_count == int((~match["is_contactable"]).sum()) >= 1
    assert list(members.customer_ids) == sorted(match.loc[match["is_contactable"],
                                                          "customer_id"])
    assert len(members.values) == len(members.customer_ids)


@pytest.mark.parametrize("days", [0, 7, 45])
def test_birthday_within_days_matches_known_birthdays_in_the_window(frames, days):
    """dim_customers.birthday_month/_day on one of the days as-of .. as-of + days (across
    the year end too), recomputed in pandas; unknown birthdays never match."""
    marts, dim, _, as_of = frames
    seg = parse_segment("name: birthdays\nkind: dynamic\nconditions:\n"
                        f"  - birthday_within_days: {{days: {days}}}\n", "birthdays.yml")
    members = segment_members(marts.wh, seg)
    window = {((as_of + dt.timedelta(days=k)).month, (as_of + dt.timedelta(days=k)).day)
              for k in range(days + 1)}
    birthdays = dim["birthday_month"]
    match = dim[[pd.notna(m) and (int(m), int(d)) in window
                 for m, d in zip(dim["birthday_month"], dim["birthday_day"], strict=True)]]
    assert list(members.customer_ids) == sorted(match.loc[match["is_contactable"],
                                                          "customer_id"])
    assert members.excluded_count == int((~match["is_contactable"]).sum())
    if days == 45:
        assert len(members) > 0 and birthdays.isna().any() and birthdays.notna().any()


def test_birthday_window_crosses_the_year_end():
    """As of 28 December, a 7-day window holds 2 January and not 5 January (DuckDB, tiny
    table: the SQL alone)."""
    import duckdb

    seg = parse_segment("name: b\nkind: dynamic\nconditions:\n"
                        "  - birthday_within_days: {days: 7}\n", "b.yml")
    sql, params = compile_segment(seg, "duckdb")
    con = duckdb.connect()
    con.execute("create schema marts; create schema intermediate")
    con.execute("create table intermediate.int_as_of_date as select date '2026-12-28' "
                "as as_of_date")
    con.execute("create table marts.dim_customers as select * from (values "
                "('jan2', 1, 2, true), ('jan5', 1, 5, true), "
                "('dec28', 12, 28, true), ('unknown', null, null, true)) "
                "as t(customer_id, birthday_month, birthday_day, is_contactable)")
    assert [r[0] for r in con.execute(sql, params).fetchall()] == ["dec28", "jan2"]


def test_any_ors_its_conditions(frames):
    marts, dim, _, _ = frames
    seg = parse_segment(
        "name: either\nkind: dynamic\nconditions:\n"
        "  - {field: is_active, op: is_false}\n"
        "  - any:\n"
        "      - {field: channel, op: in, value: [organic, referral]}\n"
        "      - {field: orders_count, op: '>', value: 2}\n"
        "      - {field: cohort_month, op: '>=', value: 2026-01-01}\n", "any.yml")
    members = segment_members(marts.wh, seg)
    match = dim[~dim["is_active"].astype(bool)
                & (dim["channel"].isin(["organic", "referral"])
                   | (pd.to_numeric(dim["orders_count"]) > 2)
                   | (dim["cohort_month"] >= dt.date(2026, 1, 1)))]
    assert list(members.customer_ids) == sorted(match.loc[match["is_contactable"],
                                                          "customer_id"])
    assert members.excluded_count == int((~match["is_contactable"]).sum())
    assert len(members) > 0


# -- CLI ---------------------------------------------------------------------------------------


def _parse(*argv: str) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="voronka")
    sub = parser.add_subparsers(dest="command", required=True)
    audiences_cli.add_parser(sub)
    return parser.parse_args(argv)


def test_cli_list_shows_counts_for_every_segment(frames, capsys):
    marts, _, _, _ = frames
    args = _parse("audiences", "list")
    assert args.func is audiences_cli.run
    # without published predictions the segments on them cannot be counted: exit status 1
    assert audiences_cli.run(args, wh=marts.wh) == 1
    captured = capsys.readouterr()
    out = captured.out
    lines = out.splitlines()
    assert lines[0].split() == ["name", "kind", "members", "excluded", "description"]
    assert "2 segment(s) need customer predictions" in captured.err
    for seg in load_segments():
        row = next(line for line in lines if line.startswith(seg.name + " "))
        if seg.name in ON_PREDICTIONS:
            assert row.split()[:4] == [seg.name, seg.kind, "-", "-"]
            assert f"segment {seg.name!r}" in captured.err
            continue
        members = segment_members(marts.wh, seg)
        assert row.split()[:4] == [seg.name, seg.kind, str(len(members)),
                                   str(members.excluded_count)]
        assert seg.description in row
    assert f"{len(load_segments())} segments" in out


def test_cli_preview_shows_counts_and_only_non_identifying_columns(frames, capsys):
    marts, _, _, _ = frames
    seg = {s.name: s for s in load_segments()}["lapsed_90_days"]
    members = segment_members(marts.wh, seg)
    args = _parse("audiences", "preview", "lapsed_90_days", "--limit", "3")
    assert audiences_cli.run(args, wh=marts.wh) == 0
    out = capsys.readouterr().out
    assert f"members:     {len(members)}" in out
    assert f"excluded:    {members.excluded_count} (withdrawn consent" in out
    assert f"sample (3 of {len(members)})" in out
    header = next(line for line in out.splitlines() if "customer_id" in line)
    assert header.split() == ["customer_id", "channel", "cohort_month", "orders_count",
                              "revenue", "rfm_segment"]
    for cid in members.customer_ids[:3]:
        assert cid in out
    assert "@" not in out and not re.search(r"\+7\d{10}", out)
    identifiers = marts.df("select value_normalized from raw.contact_points "
                           "where value_normalized is not null")
    assert identifiers.empty or not any(v in out for v in identifiers["value_normalized"])


def test_cli_reports_an_unknown_segment(frames, capsys):
    marts, _, _, _ = frames
    assert audiences_cli.run(_parse("audiences", "preview", "nope"), wh=marts.wh) == 2
    err = capsys.readouterr().err
    assert "no segment named 'nope'; known: birthday_next_7_days, bought_last_30_days" in err
