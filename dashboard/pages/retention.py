"""Retention page: CRR and strict retention by month (fct_crr_monthly); active, churned and
lapsed customers and the repeat purchase rate (fct_customer_value_monthly).

Both marts are whole-business figures (no channel dimension): the page filters months only.
Warm-up months (is_warm_up) and the as-of month are marked, never hidden.
"""

from typing import Any

from dashboard.pages import PageSpec
from dashboard.pages._marketing import (
    MetricDef,
    as_of,
    frame,
    metric_texts,
    months_of,
    records,
    texts,
)

PAGE = PageSpec("retention", "Удержание", "Retention")

CRR_COLUMNS = ("month", "period_end", "customers_active_start", "customers_active_end",
               "new_customers", "retained_customers", "crr", "strict_retention",
               "month_complete", "is_warm_up")
VALUE_COLUMNS = ("month", "period_end", "month_complete", "customers_to_date",
                 "active_customers", "churned_customers", "lapsed_90d", "lapsed_180d",
                 "lapsed_365d", "repeat_customers", "repeat_purchase_rate")

METRICS: dict[str, MetricDef] = {
    "crr": ("percent", "CRR, коэффициент удержания", "CRR, customer retention rate",
            "(E − N) / S × 100%: S — активные клиенты на начало месяца, E — на конец, N — "
            "новые клиенты месяца. Активен — последний заказ не старше 180 дней. Может "
            "превышать 100%, когда ушедшие клиенты возвращаются. Заштриховано: незавершённый "
            "месяц или разгон (окно 180 дней начинается до начала данных, CRR завышен).",
            "(E − N) / S × 100%: S = customers active at the start of the month, E = at the "
            "end, N = the month's new customers. Active = last order at most 180 days old. "
            "Can exceed 100% when lapsed customers come back. Hatched: an incomplete month or "
            "warm-up (the 180-day window reaches back before the data; CRR reads high)."),
    "strict_retention": ("percent", "Строгое удержание", "Strict retention",
                         "Доля активных на начало месяца клиентов, сделавших заказ в этом "
                         "месяце.",
                         "Share of the customers active at the start of the month who ordered "
                         "again within the month."),
    "customer_status": ("count", "Активные и ушедшие клиенты", "Active and churned customers",
                        "На конец месяца: активные — заказ за последние 180 дней; ушедшие — "
                        "все клиенты на дату минус активные; «без заказа N дней» — последний "
                        "заказ старше N дней (90, 180, 365).",
                        "At the month's end: active = an order in the last 180 days; churned "
                        "= customers to date − active; lapsed N days = last order more than N "
                        "days old (90, 180, 365)."),
    "repeat_purchase_rate": ("percent", "Доля повторных покупателей", "Repeat purchase rate",
                             "Клиенты с двумя и более заказами на конец месяца / все клиенты "
                             "на эту дату.",
                             "Customers with at least two orders by the month's end / all "
                             "customers to that date."),
}

LABELS = {
    "active_customers": ("Активные", "Active"),
    "churned_customers": ("Ушедшие", "Churned"),
    "lapsed_90d": ("Без заказа 90+ дней", "Lapsed 90+ days"),
    "lapsed_180d": ("Без заказа 180+ дней", "Lapsed 180+ days"),
    "lapsed_365d": ("Без заказа 365+ дней", "Lapsed 365+ days"),
    "warm_up": ("разгон", "warm-up"),
    "incomplete": ("незавершённый период", "incomplete period"),
}


def build(marts: Any, lang: str) -> dict:
    """The retention page's payload: CRR rows and customer-status rows, as in the marts."""
    crr = records(frame(marts, "fct_crr_monthly"), CRR_COLUMNS, ["month"])
    value = records(frame(marts, "fct_customer_value_monthly"), VALUE_COLUMNS, ["month"])
    return {
        "slug": PAGE.slug,
        "as_of_date": as_of(marts),
        "months": months_of(crr + value),
        "crr": crr,
        "customers": value,
        "metrics": metric_texts(METRICS, lang),
        "labels": texts(LABELS, lang),
    }
