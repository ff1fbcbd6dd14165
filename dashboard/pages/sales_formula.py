"""Sales formula page: V = Leads × Cv × AOV × # × M by month, and a waterfall of how much each
factor explains of the month-over-month change in V.

Factors and contributions are fct_sales_formula_monthly's own. The waterfall turns the mart's
log contributions c_i = ln(f1/f0) into money with the logarithmic mean of V0 and V1
(LMDI): effect_i = (V1 − V0) × c_i / ln(V1/V0), so the effects add up to V1 − V0 exactly and
keep the mart's split; when V did not change (ln = 0) the limit is V0 × c_i.
"""

import itertools
import math
from typing import Any

from dashboard.data import Marts, jsonable, month_str, records
from dashboard.pages import PageSpec
from dashboard.pages._sales import MetricDef, labels, units

PAGE = PageSpec("sales_formula", "Формула продаж", "Sales formula")

MART = "fct_sales_formula_monthly"

#: The five factors in the formula's order: (factor column, contribution column).
FACTORS = (("leads", "contribution_leads"), ("cv", "contribution_cv"),
           ("aov", "contribution_aov"),
           ("orders_per_customer", "contribution_orders_per_customer"),
           ("margin", "contribution_margin"))

COLUMNS = ("month", "month_complete", "leads", "customers", "orders", "revenue",
           "gross_margin", "margin_rate", "margin_known_share", "cv", "aov",
           "orders_per_customer", "margin", "value", "contribution_leads", "contribution_cv",
           "contribution_aov", "contribution_orders_per_customer", "contribution_margin",
           "value_log_change")

METRICS: dict[str, MetricDef] = {
    "value": ("money", "V — валовая маржа", "V — gross margin",
              "V = Лиды × Cv × Средний чек × Частота × Маржа: валовая маржа месяца "
              "(с маржой 1 — выручка).",
              "V = Leads × Cv × AOV × # × M: the month's gross margin (revenue when the margin "
              "rate is 1)."),
    "leads": ("count", "Лиды", "Leads",
              "Лиды, созданные в месяце (все лиды обеих CRM: привлечение и повторные).",
              "Leads created in the month (all leads of both CRMs, acquisition and repeat)."),
    "cv": ("percent", "Конверсия (Cv)", "Conversion (Cv)",
           "Клиенты с заказом в месяце / лиды, созданные в месяце. Может превышать 100 %: "
           "среди покупателей есть повторные клиенты со старыми лидами.",
           "Customers with an order in the month / leads created in the month. It can exceed "
           "100 %: buyers include repeat customers whose leads are older."),
    "aov": ("money", "Средний чек", "AOV",
            "Выручка / число заказов месяца.", "Revenue / orders of the month."),
    "orders_per_customer": ("ratio", "Заказов на клиента (#)", "Orders per customer (#)",
                            "Заказы / клиенты с заказом в месяце.",
                            "Orders / customers with an order in the month."),
    "margin": ("percent", "Маржа (M)", "Margin (M)",
               "Валовая маржа / выручка месяца: собственная маржа заказа, где источник её "
               "знает, иначе выручка × margin_rate.",
               "Gross margin / revenue of the month: each order's own margin where the source "
               "has it, else amount × margin_rate."),
    "waterfall": ("money", "Что изменило V за месяц", "What changed V month over month",
                  "Изменение V к прошлому месяцу, разложенное по пяти факторам: вклад фактора "
                  "= ln(f1/f0) из витрины, переведённый в рубли логарифмическим средним V0 и "
                  "V1 (вклады в сумме дают V1 − V0). Месяц — последний месяц выбранного "
                  "диапазона.",
                  "The change in V from the previous month split by the five factors: a "
                  "factor's share is the mart's ln(f1/f0), turned into money with the "
                  "logarithmic mean of V0 and V1 (the effects add up to V1 − V0). The month "
                  "is the last one of the chosen range."),
}

EXTRA = {
    "prev_value": ("V прошлого месяца", "Previous month's V"),
    "this_value": ("V месяца", "This month's V"),
    "log_points": ("лог. вклад", "log contribution"),
    "no_change": ("Нет месяца с определённым изменением V (нужны V > 0 в обоих месяцах).",
                  "No month with a defined change of V (V must be above 0 in both months)."),
    "waterfall_for": ("Изменение к месяцу", "Change into month"),
    "margin_known_share": ("Доля выручки с известной маржой", "Revenue share with known margin"),
    "incomplete_note": ("Последний месяц неполный (дата отчёта внутри месяца).",
                        "The last month is incomplete (the as-of date is inside it)."),
}


def effects(v0: float, v1: float, contributions: dict[str, float],
            log_change: float) -> dict[str, float]:
    """Money effect of each factor (LMDI): (V1 − V0) × c_i / ln(V1/V0), V0 × c_i at ln = 0."""
    if abs(log_change) < 1e-12:
        return {k: v0 * c for k, c in contributions.items()}
    scale = (v1 - v0) / log_change
    return {k: scale * c for k, c in contributions.items()}


def _month_before(month: str) -> str:
    """The first day of the previous calendar month ("YYYY-MM-DD")."""
    year, mon = int(month[:4]), int(month[5:7])
    year, mon = (year - 1, 12) if mon == 1 else (year, mon - 1)
    return f"{year:04d}-{mon:02d}-01"


def waterfall(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """One waterfall per month whose change of V is defined (the mart's value_log_change)."""
    out = []
    for prev, cur in itertools.pairwise(rows):
        change = cur["value_log_change"]
        if change is None or prev["value"] is None or cur["value"] is None:
            continue
        if prev["month"] != _month_before(cur["month"]):
            continue  # a month missing from the mart: V0 is not the one ln(V1/V0) used
        contributions = {f: cur[c] for f, c in FACTORS}
        if any(v is None or not math.isfinite(v) for v in contributions.values()):
            continue
        out.append({"month": cur["month"], "prev_month": prev["month"],
                    "month_complete": cur["month_complete"],
                    "prev_value": prev["value"], "value": cur["value"],
                    "value_log_change": change, "contributions": contributions,
                    "effects": effects(prev["value"], cur["value"], contributions, change)})
    return out


def build(marts: Marts, lang: str) -> dict[str, Any]:
    """The page payload: monthly factors (mart rows) and the month-over-month waterfalls."""
    frame = marts[MART]
    if not frame.empty:
        frame = frame.sort_values("month")
    rows = records(frame, [c for c in COLUMNS if c in frame.columns])
    for row in rows:
        row["month"] = month_str(row["month"])
    return {
        "lang": lang,
        "as_of_date": jsonable(marts.as_of_date),
        "factors": [f for f, _ in FACTORS],
        "units": units(METRICS),
        "labels": labels(METRICS, EXTRA),
        "months": rows,
        "waterfall": waterfall(rows),
    }
