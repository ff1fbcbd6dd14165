"""Managers page: leads, won, lost, win rate, revenue, AOV and sales cycle by manager and month.

Rows are fct_manager_performance_monthly's (month = the leads' creation month, a cohort). Over
a month range the script sums the additive columns and recomputes the ratios from the sums the
mart's way (win rate = won / assigned, AOV = revenue / won); the median cycle is shown for a
single month only, because medians do not add up.
"""

from typing import Any

from dashboard.data import Marts, jsonable, month_str
from dashboard.pages import PageSpec
from dashboard.pages._sales import MetricDef, as_of, labels, manager_key, managers_of, units

PAGE = PageSpec("managers", "Менеджеры", "Managers")

MART = "fct_manager_performance_monthly"

VALUE_COLUMNS = ("leads_assigned", "leads_open", "leads_won", "leads_lost", "win_rate",
                 "revenue", "aov", "median_sales_cycle_days", "won_closed_in_month",
                 "revenue_closed_in_month")

METRICS: dict[str, MetricDef] = {
    "leads_assigned": ("count", "Лиды", "Leads",
                       "Лиды, созданные в месяце, за которые отвечает менеджер (текущий "
                       "ответственный).",
                       "Leads created in the month with this manager responsible (the current "
                       "responsible user)."),
    "leads_won": ("count", "Выиграно", "Won",
                  "Из лидов месяца — выигранные на дату отчёта.",
                  "Of the month's leads, won at the as-of date."),
    "leads_lost": ("count", "Проиграно", "Lost",
                   "Из лидов месяца — проигранные на дату отчёта.",
                   "Of the month's leads, lost at the as-of date."),
    "leads_open": ("count", "Открыто", "Open",
                   "Из лидов месяца — ещё открытые на дату отчёта.",
                   "Of the month's leads, still open at the as-of date."),
    "win_rate": ("percent", "Доля выигранных", "Win rate",
                 "Выиграно / лиды месяца.", "Won / the month's leads."),
    "revenue": ("money", "Выручка", "Revenue",
                "Сумма выигранных лидов месяца (бюджет сделки), в валюте аккаунта.",
                "Sum of the month's won leads' amounts, account currency."),
    "aov": ("money", "Средний чек", "AOV",
            "Выручка / выигранные лиды.", "Revenue / won leads."),
    "median_sales_cycle_days": ("days", "Цикл сделки (медиана)", "Sales cycle (median)",
                                "Медиана от создания до выигрыша в днях по выигранным лидам "
                                "месяца (медианы не складываются: за диапазон не считается).",
                                "Median days from creation to won over the month's won leads "
                                "(medians do not add up: not shown over a range)."),
    "revenue_closed_in_month": ("money", "Выручка по дате выигрыша", "Revenue by won date",
                                "Сумма лидов менеджера, выигранных в этом месяце, какого бы "
                                "месяца они ни были.",
                                "Amounts of the manager's leads won in the month, whatever "
                                "their creation month."),
}

EXTRA = {
    "manager": ("Менеджер", "Manager"),
    "summary": ("Итоги по менеджерам за выбранные месяцы", "Managers over the selected months"),
    "summary__def": ("Суммы по месяцам создания лидов; доля и средний чек — из сумм.",
                     "Sums over the leads' creation months; rates and AOV from the sums."),
    "incomplete_note": ("Незавершённые месяцы отмечены: лиды ещё открыты.",
                        "Incomplete months are marked: their leads are still open."),
}


def rows_of(frame: Any) -> list[dict[str, Any]]:
    """Mart rows with the manager key, month as "YYYY-MM-DD" and JSON numbers."""
    if frame.empty:
        return []
    frame = frame.sort_values(["month", "crm", "account", "responsible_user_id"])
    return [{"manager": manager_key(r["crm"], r["account"], r["responsible_user_id"]),
             "month": month_str(r["month"]), "month_complete": bool(r["month_complete"]),
             **{c: jsonable(r[c]) for c in VALUE_COLUMNS}}
            for r in frame.to_dict("records")]


def build(marts: Marts, lang: str) -> dict[str, Any]:
    """The page payload: managers, months (with completeness) and the monthly rows."""
    frame = marts[MART]
    rows = rows_of(frame)
    months = sorted({(r["month"], r["month_complete"]) for r in rows})
    return {
        "lang": lang,
        "as_of_date": jsonable(as_of(marts)),
        "units": units(METRICS),
        "labels": labels(METRICS, EXTRA),
        "managers": managers_of(frame),
        "months": [{"month": m, "month_complete": c} for m, c in months],
        "rows": rows,
    }
