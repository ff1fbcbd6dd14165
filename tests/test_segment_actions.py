"""Segment actions (issue 15): the ``actions:`` key of a segment file, its templates and the
values they are rendered with (audiences.actions_spec).

A template may name only whitelisted, non-personal fields; everything else (a phone, an
attribute access, Jinja logic, a filter) is refused when the file is PARSED, with the file, the
line and the allowed fields. template_context is checked on a tiny hand-built DuckDB warehouse.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator
from decimal import Decimal
from pathlib import Path
from typing import Any

import pandas as pd
import pytest
from _support import scratch_warehouse

from audiences import actions_spec
from audiences.actions_spec import (
    TEMPLATE_FIELDS,
    DealAction,
    TaskAction,
    render,
    template_context,
    template_fields,
)
from audiences.segments import Segment, SegmentError, load_segments, parse_segment

HEAD = "name: repeat\nkind: dynamic\nconditions:\n  - {field: is_due, op: is_true}\n"
#: the context of one customer with every field set
FULL = {"product_category": "Видеокурс «Произношение»", "segment": "repeat",
        "orders_count": 3, "revenue": Decimal("14500.00"), "aov": Decimal("4833.33"),
        "last_order_date": dt.date(2026, 9, 1),
        "expected_next_order_date": dt.date(2026, 12, 1), "days_until_expected_order": 9,
        "repurchase_status": "upcoming", "rfm_segment": "Loyal", "channel": "yandex_direct",
        "days_since_last_order": 82}


def parse(actions: str) -> Segment:
    return parse_segment(HEAD + actions, "seg.yml")


def error(actions: str) -> str:
    with pytest.raises(SegmentError) as info:
        parse(actions)
    return str(info.value)


# -- parsing ------------------------------------------------------------------------------------


def test_the_issue_example_parses_into_task_and_deal() -> None:
    seg = parse('actions:\n'
                '  - task: {text: "Напомнить о повторной покупке: {{ product_category }}",\n'
                '           due_in_days: 0, responsible: customer_manager}\n'
                '  - task: {text: "Встреча: {{segment}}", due_in_days: 365, responsible: 4242,\n'
                '           task_type: 2}\n'
                '  - deal: {pipeline: "Повторные продажи", stage: first}\n'
                '  - deal:\n'
                '      pipeline: Продажи\n'
                '      stage: Квалификация\n'
                '      name: "{{ rfm_segment }} / {{ channel }}"\n'
                '      responsible: 7\n')
    assert seg.actions == (
        TaskAction("Напомнить о повторной покупке: {{ product_category }}", 0,
                   "customer_manager", 1),
        TaskAction("Встреча: {{segment}}", 365, 4242, 2),
        DealAction("Повторные продажи", "first", "{{ segment }}: повторная продажа",
                   "customer_manager"),
        DealAction("Продажи", "Квалификация", "{{ rfm_segment }} / {{ channel }}", 7),
    )
    assert [a.kind for a in seg.actions] == ["task", "task", "deal", "deal"]
    assert parse("").actions == () and parse("actions: []\n").actions == ()
    # a Segment built in code (the existing constructors) has no actions
    assert Segment("s", "", "dynamic", ()).actions == ()


# (actions text, the line the error names, what the message must say)
BAD = [
    ("actions:\n  - email: {text: hi}\n", 6, "unknown action kind 'email'"),
    ("actions:\n  - {task: {text: a}, deal: {pipeline: b}}\n", 6,
     "an action has exactly one kind, got task, deal"),
    ("actions:\n  - task: {text: hi, when: 3}\n", 6,
     "unknown task key 'when'; allowed: text, due_in_days, responsible, task_type"),
    ("actions:\n  - deal: {pipeline: P, owner: 5}\n", 6,
     "unknown deal key 'owner'; allowed: pipeline, stage, name, responsible"),
    ("actions:\n  - task:\n      due_in_days: 1\n      text: 'Звонок {{ phone }}'\n", 8,
     "task text: unknown template field 'phone'; allowed fields: product_category, segment"),
    ("actions:\n  - task:\n      text: 'a'\n      due_in_days: 400\n", 8,
     "task due_in_days: due_in_days must be a whole number 0..365, got 400"),
    ("actions:\n  - task: {text: a, due_in_days: -1}\n", 6, "0..365, got -1"),
    ("actions:\n  - task: {text: a, due_in_days: '3'}\n", 6, "0..365, got '3'"),
    ("actions:\n  - task: {text: a, due_in_days: true}\n", 6, "0..365, got True"),
    ("actions:\n  - task: {text: a, due_in_days: 1.5}\n", 6, "0..365, got 1.5"),
    ("actions:\n  - task: {text: a, responsible: boss}\n", 6,
     "responsible must be customer_manager (the customer's manager in the CRM) or a CRM user "
     "id (a positive whole number), got 'boss'"),
    ("actions:\n  - task: {text: a, responsible: 0}\n", 6, "user id (a positive whole number)"),
    ("actions:\n  - deal: {pipeline: P, responsible: -3}\n", 6, "got -3"),
    ("actions:\n  - deal: {pipeline: P, responsible: true}\n", 6, "got True"),
    ("actions:\n  - deal: {pipeline: P, responsible: '5'}\n", 6, "got '5'"),
    ("actions:\n  - task: {text: a, task_type: 0}\n", 6, "task_type must be"),
    ("actions:\n  - task: {text: '" + "x" * 1001 + "'}\n", 6,
     "a template is at most 1000 characters, got 1001"),
    ("actions:\n  - deal: {pipeline: P, name: '" + "{{ segment }}" * 80 + "'}\n", 6,
     "deal name: a template is at most 1000 characters, got 1040"),
    ("actions:\n" + "  - task: {text: a}\n" * 5 + "  - deal: {pipeline: P}\n", 11,
     "more than 5 actions"),
    ("actions:\n  - task: {due_in_days: 1}\n", 6, "task needs text"),
    ("actions:\n  - deal: {stage: first}\n", 6, "deal needs pipeline"),
    ("actions:\n  - task: {text: ''}\n", 6, "task text: needs a non-empty text, got ''"),
    ("actions:\n  - task: {text: 5}\n", 6, "needs a non-empty text, got 5"),
    ("actions:\n  - deal: {pipeline: ''}\n", 6, "pipeline must be a non-empty name"),
    ("actions:\n  - deal: {pipeline: [a, b]}\n", 6, "expected a single value"),
    ("actions:\n  - task: {text: a, text: b}\n", 6, "task key 'text' given twice"),
    ("actions:\n  - task: [text, a]\n", 6, "task: {text, due_in_days, responsible, task_type} "
                                            "must be a mapping"),
    ("actions:\n  - just a text\n", 6, "an action must be a mapping"),
    ("actions: {task: {text: a}}\n", 5, "actions is a list of at most 5 items"),
    ("actions:\n", 5, "actions is a list"),
    ("actions:\n  - task: {text: a}\nactions: []\n", 7, "key 'actions' given twice"),
]


@pytest.mark.parametrize(("actions", "line", "problem"), BAD,
                         ids=[f"{i}-{b[2][:30]}" for i, b in enumerate(BAD)])
def test_a_bad_action_names_the_file_line_and_problem(actions: str, line: int,
                                                      problem: str) -> None:
    msg = error(actions)
    assert msg.startswith(f"seg.yml, line {line}: "), msg
    assert problem in msg, msg


@pytest.mark.parametrize(("template", "problem"), [
    ("Звонок {{ phone }}", "unknown template field 'phone'"),
    ("{{ email }}", "unknown template field 'email'"),
    ("{{ customer_id }}", "unknown template field 'customer_id'"),
    ("{{ name }}", "unknown template field 'name'"),
    ("{{ customer.email }}", "{{ customer.email }}: attribute or item access is not allowed"),
    ("{{ customer['email'] }}", "attribute or item access is not allowed"),
    ("{{ segment|upper }}", "{{ segment|upper }}: filters (|) are not allowed"),
    ("{{ segment | e }}", "filters (|) are not allowed"),
    ("{% if revenue %}VIP{% endif %}", "'{%' outside a {{ field }} placeholder"),
    ("{# note #} hi", "'{#' outside"),
    ("Заказ {{ segment", "'{{' outside"),
    ("}} segment", "'}}' outside"),
    ("{{ }}", "not a field name"),
    ("{{ lipsum() }}", "not a field name"),
    ("{{ Segment }}", "not a field name"),
    ("{{{ segment }}}", "only {{ field }} is allowed"),
])
def test_a_template_outside_the_whitelist_is_rejected_at_parse_time(template: str,
                                                                     problem: str) -> None:
    text = template.replace("'", "''")
    msg = error(f"actions:\n  - deal:\n      pipeline: P\n      name: '{text}'\n")
    assert msg.startswith("seg.yml, line 8: deal name: "), msg
    assert problem in msg, msg
    assert "allowed fields: " + ", ".join(TEMPLATE_FIELDS) in msg  # the whole whitelist
    for call in (template_fields, lambda t: render(t, FULL)):
        with pytest.raises(ValueError) as info:
            call(template)
        assert problem in str(info.value)
    with pytest.raises(ValueError, match="allowed fields"):
        TaskAction(text=template)


def test_an_unquoted_placeholder_names_the_line() -> None:
    # inside a flow mapping, after other text: YAML's own error, with the line
    msg = error("actions:\n  - task: {text: a}\n  - task: {text: Звонок {{ segment }}}\n")
    assert msg.startswith("seg.yml, line 7: not valid YAML"), msg
    # a leading {{ is a YAML mapping: say to quote it
    for actions, line in (("actions:\n  - task: {text: a}\n  - task: {text: {{ segment }}}\n", 7),
                          ("actions:\n  - deal:\n      pipeline: P\n      name: {{ segment }}\n",
                           8)):
        msg = error(actions)
        assert msg.startswith(f"seg.yml, line {line}: "), msg
        assert "must be a text; quote a template that starts with {{" in msg, msg
    # a block value may hold {{ unquoted after its first character
    seg = parse("actions:\n  - task:\n      text: Звонок {{ segment }}\n")
    assert seg.actions == (TaskAction("Звонок {{ segment }}"),)


def test_the_whitelist_carries_no_personal_field() -> None:
    for field in TEMPLATE_FIELDS:
        assert not any(word in field for word in ("name", "phone", "email", "mail", "_id",
                                                  "birth", "address")), field
    assert set(TEMPLATE_FIELDS) == {
        "product_category", "segment", "orders_count", "revenue", "aov", "last_order_date",
        "expected_next_order_date", "days_until_expected_order", "repurchase_status",
        "rfm_segment", "channel", "days_since_last_order"}
    assert all(TEMPLATE_FIELDS.values())


# -- rendering ----------------------------------------------------------------------------------


def test_render_fills_the_fields_and_formats_values() -> None:
    template = ("{{segment}}: {{ product_category }}, {{  orders_count  }} заказа на "
                "{{ revenue }} (средний {{ aov }}), последний {{ last_order_date }}, "
                "следующий {{ expected_next_order_date }} через {{ days_until_expected_order }}"
                " дн.; {{ rfm_segment }}/{{ repurchase_status }}/{{ channel }}, "
                "{{ days_since_last_order }}")
    assert template_fields(template) == [
        "segment", "product_category", "orders_count", "revenue", "aov", "last_order_date",
        "expected_next_order_date", "days_until_expected_order", "rfm_segment",
        "repurchase_status", "channel", "days_since_last_order"]
    assert template_fields("{{ segment }} {{ segment }} plain") == ["segment"]
    assert template_fields("no placeholders") == []
    assert render(template, FULL) == (
        "repeat: Видеокурс «Произношение», 3 заказа на 14500 (средний 4833.33), последний "
        "2026-09-01, следующий 2026-12-01 через 9 дн.; Loyal/upcoming/yandex_direct, 82")


@pytest.mark.parametrize(("value", "shown"), [
    (None, ""),
    (Decimal("1500.00"), "1500"),
    (Decimal("1500.50"), "1500.5"),
    (Decimal("0.00"), "0"),
    (Decimal("-12.30"), "-12.3"),
    (Decimal("1E+3"), "1000"),
    (3.0, "3"),
    (1234.5, "1234.5"),
    (0.1, "0.1"),
    (1e16, "10000000000000000"),
    (-0.0, "0"),
    (float("nan"), ""),
    (7, "7"),
    (-2, "-2"),
    (dt.date(2026, 2, 3), "2026-02-03"),
    (dt.datetime(2026, 2, 3, 23, 59), "2026-02-03"),
    (pd.Timestamp("2026-02-03 10:00"), "2026-02-03"),
    (pd.NaT, ""),
    ("Loyal", "Loyal"),
])
def test_render_formats_one_value(value: Any, shown: str) -> None:
    assert render("[{{ revenue }}]", {"revenue": value}) == f"[{shown}]"


def test_render_caps_the_output_and_needs_every_field_it_uses() -> None:
    long = {**FULL, "product_category": "Курс " * 400}
    out = render("Напомнить: {{ product_category }}", long)
    assert len(out) == actions_spec.MAX_TEMPLATE_CHARS and out.endswith("…")
    assert out.startswith("Напомнить: Курс Курс")
    assert render("x" * 1000, {}) == "x" * 1000
    with pytest.raises(ValueError, match="no value for template field 'channel'"):
        render("{{ channel }}", {"segment": "s"})
    assert render("{{ channel }}", {"channel": None}) == ""


def test_actions_built_in_code_are_checked_too() -> None:
    with pytest.raises(ValueError, match=r"due_in_days must be a whole number 0\.\.365"):
        TaskAction("hi", due_in_days=366)
    with pytest.raises(ValueError, match="responsible must be customer_manager"):
        DealAction("P", responsible="someone")
    with pytest.raises(ValueError, match="unknown template field 'phone'"):
        DealAction("P", name="{{ phone }}")
    with pytest.raises(ValueError, match="pipeline must be a non-empty name"):
        DealAction(" ")
    assert DealAction("P").name == "{{ segment }}: повторная продажа"


# -- template_context on a tiny warehouse -------------------------------------------------------

DIM = """create table marts.dim_customers (
    customer_id varchar, orders_count integer, revenue numeric(18, 2), aov numeric(18, 2),
    last_order_date date, expected_next_order_date date, days_until_expected_order integer,
    repurchase_status varchar, rfm_segment varchar, channel varchar,
    days_since_last_order integer, is_contactable boolean)"""


class TinyShop:
    """Four customers in dim_customers (c1..c4) plus 1100 filler ones (f0000..), and their
    orders; c9 has orders but is not in dim_customers."""

    def __init__(self, wh: Any, *, with_order_id: bool = True) -> None:
        self.wh = wh
        with wh.connect() as conn:
            cur = conn.cursor()
            cur.execute("create schema if not exists marts")
            cur.execute(DIM)
            cur.execute("create table marts.fct_orders (" +
                        ("order_id varchar, " if with_order_id else "") +
                        "customer_id varchar, order_date date, product_category varchar)")
            cur.executemany(f"insert into marts.dim_customers values ({wh._marks(12)})", [
                ("c1", 3, Decimal("14500.00"), Decimal("4833.33"), dt.date(2026, 9, 1),
                 dt.date(2026, 12, 1), 9, "upcoming", "Loyal", "yandex_direct", 82, True),
                ("c2", 1, Decimal("990.50"), Decimal("990.50"), dt.date(2026, 1, 5),
                 None, None, None, "New", "organic", 321, False),
                ("c3", 2, Decimal("3000.00"), Decimal("1500.00"), dt.date(2025, 3, 1),
                 dt.date(2025, 6, 1), -539, "lapsed", "Hibernating", "vk_ads", 631, True),
                ("c4", 1, Decimal("10.00"), Decimal("10.00"), dt.date(2026, 11, 1),
                 dt.date(2026, 12, 20), 28, "upcoming", "New", "direct", 21, True),
            ])
            cur.execute("insert into marts.dim_customers (customer_id, orders_count, channel) "
                        "select 'f' || lpad(cast(i as varchar), 4, '0'), 1, 'filler' "
                        "from range(1100) as t(i)")
            orders = [
                # c1: the latest order names no category -> the one before it
                ("o1", "c1", dt.date(2026, 3, 1), "Рабочая тетрадь"),
                ("o2", "c1", dt.date(2026, 6, 1), "Видеокурс «Произношение»"),
                ("o3", "c1", dt.date(2026, 9, 1), None),
                # c3: two orders on its latest day -> the higher order id (when there is one)
                ("o4", "c3", dt.date(2025, 3, 1), "Разговорный клуб"),
                ("o5", "c3", dt.date(2025, 3, 1), "Индивидуальные занятия"),
                ("o6", "c3", dt.date(2024, 1, 1), "Рабочая тетрадь"),
                # c4: only an empty category
                ("o7", "c4", dt.date(2026, 11, 1), ""),
                ("o8", "c9", dt.date(2026, 11, 1), "Рабочая тетрадь"),
            ]
            if not with_order_id:
                orders = [o[1:] for o in orders if o[0] != "o5"]
            width = 4 if with_order_id else 3
            cur.executemany(f"insert into marts.fct_orders values ({wh._marks(width)})", orders)
            cur.execute("insert into marts.fct_orders select 'fo' || cast(i as varchar), "
                        "'f' || lpad(cast(i as varchar), 4, '0'), date '2026-01-01', "
                        "'Категория ' || cast(i % 7 as varchar) from range(1100) as t(i)"
                        if with_order_id else
                        "insert into marts.fct_orders select "
                        "'f' || lpad(cast(i as varchar), 4, '0'), date '2026-01-01', "
                        "'Категория ' || cast(i % 7 as varchar) from range(1100) as t(i)")


@pytest.fixture
def shop(tmp_path: Path) -> Iterator[TinyShop]:
    with scratch_warehouse("duckdb", tmp_path, "actions") as (wh, _env):
        yield TinyShop(wh)


def test_template_context_reads_every_field_for_known_customers(shop: TinyShop) -> None:
    ctx = template_context(shop.wh, ["c1", "c2", "c3", "c4", "c9", "nobody", "c1"],
                           "win_back_lapsed")
    assert list(ctx) == ["c1", "c2", "c3", "c4"]  # c9 and nobody are not in dim_customers
    for values in ctx.values():
        assert list(values) == list(TEMPLATE_FIELDS)
        assert values["segment"] == "win_back_lapsed"
    assert ctx["c1"] == {**FULL, "segment": "win_back_lapsed"}
    assert ctx["c2"]["product_category"] is None  # no order in fct_orders
    assert ctx["c2"]["expected_next_order_date"] is None
    assert ctx["c2"]["repurchase_status"] is None
    assert ctx["c3"]["product_category"] == "Индивидуальные занятия"  # o5 > o4, same day
    assert ctx["c4"]["product_category"] is None  # an empty category names none
    task = TaskAction("Вернуть клиента: последний заказ {{ last_order_date }} "
                      "({{ product_category }}), заказов {{ orders_count }}, выручка "
                      "{{ revenue }}, {{ expected_next_order_date }}")
    assert render(task.text, ctx["c3"]) == ("Вернуть клиента: последний заказ 2025-03-01 "
                                            "(Индивидуальные занятия), заказов 2, выручка "
                                            "3000, 2025-06-01")
    assert render(task.text, ctx["c2"]) == ("Вернуть клиента: последний заказ 2026-01-05 (), "
                                            "заказов 1, выручка 990.5, ")
    assert template_context(shop.wh, [], "s") == {}


def test_template_context_reads_in_chunks_of_500(shop: TinyShop) -> None:
    ids = [f"f{i:04d}" for i in range(1100)] + ["c4"]
    ctx = template_context(shop.wh, ids, "s")
    assert len(ctx) == 1101  # three chunks (500, 500, 101): none lost at a chunk boundary
    assert ctx["f0499"]["product_category"] == "Категория 2"
    assert ctx["f0500"]["product_category"] == "Категория 3"
    assert ctx["f1099"]["product_category"] == "Категория 0"
    assert ctx["f1099"]["channel"] == "filler" and ctx["c4"]["channel"] == "direct"


def test_template_context_without_an_order_id_column(tmp_path: Path) -> None:
    with scratch_warehouse("duckdb", tmp_path, "actions") as (wh, _env):
        TinyShop(wh, with_order_id=False)
        ctx = template_context(wh, ["c1", "c3"], "s")
    assert ctx["c1"]["product_category"] == "Видеокурс «Произношение»"
    assert ctx["c3"]["product_category"] == "Разговорный клуб"


def test_a_customer_id_is_a_bound_parameter(shop: TinyShop) -> None:
    hostile = "c1') or 1=1 --"
    assert template_context(shop.wh, [hostile], "s") == {}


# -- the shipped segments -----------------------------------------------------------------------


def test_the_shipped_reminders_and_win_back_carry_their_actions() -> None:
    by_name = {s.name: s for s in load_segments()}
    for name in ("reminder_30_days_before", "reminder_7_days_before",
                 "reminder_1_day_before", "win_back_lapsed"):
        actions = by_name[name].actions
        tasks = [a for a in actions if isinstance(a, TaskAction)]
        assert len(tasks) == 1, name
        assert tasks[0].responsible == "customer_manager"
        assert "product_category" in template_fields(tasks[0].text), name
        for action in actions:  # every shipped template renders with a full context
            text = render(action.text if isinstance(action, TaskAction) else action.name,
                          {**FULL, "segment": name})
            assert text and "{{" not in text and "None" not in text, (name, text)
    assert [t.due_in_days for n in ("reminder_30_days_before", "reminder_7_days_before",
                                     "reminder_1_day_before")
            for t in by_name[n].actions if isinstance(t, TaskAction)] == [7, 1, 0]
    win_back = by_name["win_back_lapsed"]
    assert win_back.kind == "dynamic"
    [condition] = win_back.conditions
    assert (condition.field, condition.op, condition.value) == ("repurchase_status", "=",
                                                                "lapsed")
    deals = [a for a in win_back.actions if isinstance(a, DealAction)]
    assert [(d.pipeline, d.stage) for d in deals] == [("Повторные продажи", "first")]
    assert [(d.pipeline, d.stage) for d in by_name["reminder_1_day_before"].actions
            if isinstance(d, DealAction)] == [("Повторные продажи", "first")]
    # the other shipped segments have no actions
    assert {n for n, s in by_name.items() if s.actions} == {
        "reminder_30_days_before", "reminder_7_days_before", "reminder_1_day_before",
        "win_back_lapsed"}
