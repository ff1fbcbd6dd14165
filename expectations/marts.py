"""Mart suites: validate a mart's rows (read with `wh.query_df`) after `dbt build`."""

from __future__ import annotations

import datetime as dt
import math
from collections.abc import Callable
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

import numpy as np
import pandas as pd

from expectations._gx import exception_message, expectations_module, run_suite
from expectations.results import MartValidation
from predictions.tables import PREDICTIONS_DDL, PREDICTIONS_MODEL, ddl_columns

#: The marts' channel values (mirrors synthetic.catalog.CHANNELS, the dbt channel rule).
CHANNELS = ("yandex_direct", "vk_ads", "google_ads", "meta_ads", "organic", "referral", "direct",
            "other")
BLENDED_CHANNEL = "all"
AD_CHANNELS = CHANNELS[:4]  # the channels that buy ads: yandex_direct, vk_ads, google_ads, meta_ads
#: Kinds of sale in fct_orders (docs/SOURCES_CONTRACT.md §3).
ORDER_SOURCES = ("amocrm_lead", "bitrix24_deal", "amocrm_transaction", "files")

#: Column contract per mart, in table order (docs/ARCHITECTURE.md, "Mart contract"); the
#: dbt build test compares every mart's columns with it.
MART_COLUMNS: dict[str, tuple[str, ...]] = {
    "dim_customers": ("customer_id", "first_order_date", "cohort_month", "channel",
                      "first_lead_id", "first_lead_created_at", "orders_count", "revenue",
                      "last_order_date", "contact_count", "gross_margin", "aov",
                      "days_since_last_order", "is_active", "is_churned", "median_gap_days",
                      "expected_gap_basis", "expected_next_order_date",
                      "expected_next_order_basis", "expected_gap_days",
                      "days_until_expected_order", "overdue_expiry_days", "repurchase_status",
                      "is_due", "is_overdue",
                      "recency_score", "frequency_score", "monetary_score", "rfm_segment",
                      "has_marketing_consent", "consent_withdrawn", "do_not_contact",
                      "is_contactable", "birthday_month", "birthday_day"),
    "dim_report_dates": ("source", "as_of_date", "as_of_basis", "first_data_date",
                         "last_data_date", "records_after_as_of", "source_kind"),
    "fct_acquisition_monthly": ("month", "channel", "spend", "acquisition_leads",
                                "repeat_leads", "all_leads", "new_customers", "cpl",
                                "cpl_all_leads", "cac", "cv", "cv_all_leads", "month_complete",
                                "open_acquisition_lead_share", "cv_immature", "cac_undefined",
                                "attributed_revenue", "attributed_gross_margin",
                                "gross_margin_known", "margin_known_share", "romi",
                                "romi_gross", "ltv_horizon", "ltv_cac", "cac_payback_months",
                                "cohort_margin_known_share", "spend_covered"),
    "fct_ad_spend_daily": ("spend_date", "platform", "account", "campaign_id", "campaign_name",
                           "impressions", "clicks", "spend", "currency", "vat_included",
                           "channel"),
    "fct_buyer_funnel_monthly": ("month", "period_end", "month_complete", "account", "status_id",
                                 "status_name", "status_sort", "status_type",
                                 "buyers_at_month_end", "entered", "exited",
                                 "purchases_expected", "purchases_made",
                                 "buyers_overdue_at_month_end"),
    "fct_buyer_status_moves": ("month", "account", "from_status_id", "from_status_name",
                               "to_status_id", "to_status_name", "moves", "buyers"),
    "fct_campaign_performance_monthly": ("month", "channel", "platform", "account", "campaign_id",
                                         "campaign_name", "spend", "impressions", "clicks",
                                         "acquisition_leads", "repeat_leads", "all_leads",
                                         "new_customers", "cpl", "cpl_all_leads", "cac", "cv",
                                         "cv_all_leads", "month_complete",
                                         "open_acquisition_lead_share", "cv_immature",
                                         "cac_undefined", "attributed_revenue",
                                         "attributed_gross_margin", "gross_margin_known",
                                         "margin_known_share", "romi", "romi_gross",
                                         "ltv_horizon", "ltv_cac", "cac_payback_months",
                                         "cohort_margin_known_share", "spend_covered"),
    "fct_cohort_ltv_by_channel": ("cohort_month", "channel", "month_offset", "cohort_size",
                                  "revenue", "cumulative_revenue", "ltv",
                                  "cumulative_gross_margin", "gross_margin_per_customer", "cac",
                                  "payback_reached", "month_complete", "spend_covered",
                                  "is_observable"),
    "fct_cohort_retention": ("cohort_month", "month_offset", "cohort_size", "active_customers",
                             "retention_rate", "cumulative_revenue", "ltv", "is_observable"),
    "fct_crr_monthly": ("month", "period_end", "customers_active_start", "customers_active_end",
                        "new_customers", "retained_customers", "crr", "strict_retention",
                        "month_complete", "is_warm_up"),
    "fct_customer_value_monthly": ("month", "period_end", "month_complete", "orders", "revenue",
                                   "customers_with_order", "aov", "purchase_frequency",
                                   "orders_12m", "revenue_12m", "customers_with_order_12m",
                                   "aov_12m", "purchase_frequency_per_year",
                                   "customers_active_year_before", "customers_retained_year",
                                   "annual_retention", "expected_lifetime_years", "margin_rate",
                                   "margin_12m", "margin_known_share",
                                   "formula_ltv", "customers_to_date", "repeat_customers",
                                   "repeat_purchase_rate", "active_customers",
                                   "churned_customers", "lapsed_90d", "lapsed_180d",
                                   "lapsed_365d"),
    "fct_funnel_loss_reasons": ("crm", "account", "pipeline_id", "pipeline_name",
                                "last_open_status_id", "last_open_stage_name",
                                "last_open_stage_order", "loss_reason_name", "channel",
                                "responsible_user_id", "manager_name", "created_month",
                                "leads_lost"),
    "fct_funnel_stage_conversion": ("crm", "account", "pipeline_id", "pipeline_name", "status_id",
                                    "stage_name", "stage_order", "leads_reached",
                                    "next_status_id", "leads_reached_next", "conversion_to_next",
                                    "win_rate", "leads_dropped_off", "median_hours_in_stage",
                                    "p90_hours_in_stage"),
    "fct_funnel_stage_slices": ("crm", "account", "pipeline_id", "pipeline_name", "status_id",
                                "stage_name", "stage_order", "next_status_id", "by_channel",
                                "by_manager", "by_month", "channel", "responsible_user_id",
                                "manager_name", "created_month", "leads_in_pipeline",
                                "leads_reached", "leads_reached_next", "conversion_to_next",
                                "leads_won", "win_rate", "leads_dropped_off",
                                "median_hours_in_stage", "p90_hours_in_stage"),
    "fct_lead_stages": ("crm", "account", "lead_id", "pipeline_id", "pipeline_name", "status_id",
                        "stage_name", "stage_order", "is_won_step", "next_status_id", "reached",
                        "reached_next", "entered_at", "left_at", "hours_in_stage",
                        "pipeline_outcome", "is_closed_in_pipeline", "dropped_off_here",
                        "loss_reason_name", "won_at", "created_at", "created_month", "channel",
                        "responsible_user_id", "manager_name"),
    "fct_leads": ("lead_id", "crm", "account", "pipeline_id", "status_id", "stage_name", "is_won",
                  "is_lost", "is_open", "created_at", "created_month", "closed_at", "amount",
                  "responsible_user_id", "manager_name", "loss_reason_name", "utm_source",
                  "utm_medium", "utm_campaign", "channel", "company_id", "customer_id",
                  "pipeline_kind", "lead_kind", "lead_kind_reason"),
    "fct_lookalike_seed": ("customer_id", "lookalike_rank", "lookalike_value", "channel",
                           "orders_count", "last_order_date", "contactable_customers",
                           "seed_size"),
    "fct_manager_performance_monthly": ("crm", "account", "responsible_user_id", "manager_name",
                                        "month", "leads_assigned", "leads_open", "leads_won",
                                        "leads_lost", "win_rate", "revenue", "aov",
                                        "median_sales_cycle_days", "won_closed_in_month",
                                        "revenue_closed_in_month", "month_complete"),
    "fct_orders": ("order_id", "order_source", "lead_id", "customer_id", "order_date",
                   "order_month", "amount", "currency", "gross_margin", "margin_known",
                   "product_category", "order_number", "is_first_order", "channel"),
    "fct_sales_cycle": ("crm", "account", "pipeline_id", "pipeline_name", "by_channel",
                        "by_manager", "by_month", "channel", "responsible_user_id",
                        "manager_name", "created_month", "leads_won", "mean_sales_cycle_days",
                        "median_sales_cycle_days", "p90_sales_cycle_days"),
    "fct_sales_formula_monthly": ("month", "month_complete", "leads", "customers", "orders",
                                  "revenue", "margin_rate", "gross_margin",
                                  "margin_known_share", "cv", "aov", "orders_per_customer",
                                  "margin", "value", "contribution_leads",
                                  "contribution_cv", "contribution_aov",
                                  "contribution_orders_per_customer", "contribution_margin",
                                  "value_log_change"),
}


def _e(kind: str, expected: str, **kwargs: Any) -> Any:
    return getattr(expectations_module(), kind)(meta={"expected": expected}, **kwargs)


def _not_null(column: str) -> Any:
    return _e("ExpectColumnValuesToNotBeNull", "not null", column=column)


def _unique(column: str) -> Any:
    return _e("ExpectColumnValuesToBeUnique", "unique", column=column)


def _at_least(column: str, low: float, strict: bool = False) -> Any:
    expected = f"{'>' if strict else '>='} {low:g} (or null)"
    return _e("ExpectColumnValuesToBeBetween", expected, column=column, min_value=low,
              strict_min=strict)


def _share(column: str) -> Any:
    return _e("ExpectColumnValuesToBeBetween", "between 0 and 1 (or null)", column=column,
              min_value=0, max_value=1)


def _when(kind: str, expected: str, condition: str, **kwargs: Any) -> Any:
    """An expectation over the rows matching a pandas `condition` only."""
    return _e(kind, f"{expected} where {condition}", row_condition=condition,
              condition_parser="pandas", **kwargs)


def _a_at_least_b(column_a: str, column_b: str) -> Any:
    return _e("ExpectColumnPairValuesAToBeGreaterThanB", f"{column_a} >= {column_b}",
              column_A=column_a, column_B=column_b, or_equal=True,
              ignore_row_if="either_value_is_missing")


def _in_set(column: str, values: tuple[Any, ...]) -> Any:
    return _e("ExpectColumnValuesToBeInSet", f"one of {list(values)}", column=column,
              value_set=list(values))


def _fct_orders() -> list[Any]:
    return [
        _not_null("order_id"), _unique("order_id"),
        # a 0.00 order (a free sample, a 100% discount) is a real order
        _not_null("amount"), _at_least("amount", 0),
        _not_null("customer_id"), _in_set("order_source", ORDER_SOURCES),
        # marts add amounts up: two currencies in one mart would be summed as one (the dbt
        # test keeps currency not null)
        _e("ExpectColumnUniqueValueCountToBeBetween", "one currency (the account currency)",
           column="currency", min_value=0, max_value=1),
    ]


def _dim_customers() -> list[Any]:
    return [
        _not_null("customer_id"), _unique("customer_id"),
        _at_least("orders_count", 1), _at_least("revenue", 0),
        _not_null("channel"), _in_set("channel", CHANNELS),
        *(_score(c) for c in ("recency_score", "frequency_score", "monetary_score")),
        _not_null("rfm_segment"), _at_least("days_since_last_order", 0),
        _a_at_least_b("last_order_date", "first_order_date"),
        _not_null("is_contactable"),
        # RFM is scored over active customers only
        _when("ExpectColumnValuesToBeNull", "no RFM score", "is_active == False",
              column="recency_score"),
        _when("ExpectColumnValuesToBeInSet", "not contactable", "consent_withdrawn == True",
              column="is_contactable", value_set=[False]),
        _when("ExpectColumnValuesToBeInSet", "not contactable", "do_not_contact == True",
              column="is_contactable", value_set=[False]),
    ]


def _score(column: str) -> Any:
    return _e("ExpectColumnValuesToBeBetween", "a score 1..5 (or null)", column=column,
              min_value=1, max_value=5)


def _fct_cohort_retention() -> list[Any]:
    return [
        _share("retention_rate"), _at_least("month_offset", 0),
        # month 0 is the cohort's own first-order month: 100 % by construction
        _when("ExpectColumnValuesToBeBetween", "retention_rate = 1", "month_offset == 0",
              column="retention_rate", min_value=1, max_value=1),
        _at_least("cohort_size", 0, strict=True), _at_least("ltv", 0),
        _e("ExpectCompoundColumnsToBeUnique", "unique per (cohort_month, month_offset)",
           column_list=["cohort_month", "month_offset"]),
    ]


def _fct_acquisition_monthly() -> list[Any]:
    return [
        _at_least("spend", 0), _at_least("cpl", 0), _at_least("cac", 0), _share("cv"),
        _share("cv_all_leads"), _share("open_acquisition_lead_share"),
        _in_set("channel", (*CHANNELS, BLENDED_CHANNEL)),
        *_unit_economics(),
    ]


def _unit_economics() -> list[Any]:
    """Attributed revenue, ROMI, LTV/CAC and payback, shared by the channel and campaign marts."""
    return [
        _at_least("attributed_revenue", 0), _at_least("attributed_gross_margin", 0),
        # (revenue - spend) / spend x 100 can lose at most the whole spend
        _at_least("romi", -100), _at_least("romi_gross", -100),
        _at_least("ltv_horizon", 0), _at_least("ltv_cac", 0), _at_least("cac_payback_months", 0),
        _a_at_least_b("attributed_revenue", "attributed_gross_margin"),
        _share("margin_known_share"), _share("cohort_margin_known_share"),
        *_uncovered_is_null("cpl", "cac", "romi"),
    ]


def _uncovered_is_null(*columns: str) -> list[Any]:
    """Spend coverage: a month whose spend is incomplete publishes no spend ratio (a paid
    channel with missing spend must not read as free)."""
    return [_when("ExpectColumnValuesToBeNull", "null (spend not covered)",
                  "spend_covered == False", column=c) for c in columns]


def _fct_campaign_performance_monthly() -> list[Any]:
    return [
        *(_at_least(c, 0) for c in ("spend", "acquisition_leads", "repeat_leads", "all_leads",
                                    "new_customers", "cpl", "cpl_all_leads", "cac")),
        _not_null("month"), _in_set("channel", (*AD_CHANNELS, "other")),
        *_unit_economics(),
    ]


def _fct_crr_monthly() -> list[Any]:
    return [
        *(_at_least(c, 0) for c in ("customers_active_start", "customers_active_end",
                                    "new_customers", "retained_customers")),
        _share("strict_retention"),
    ]


def _fct_funnel_stage_conversion() -> list[Any]:
    # reach never grows from one stage to the next (leads skip stages, never come from nowhere)
    return _reach_and_time()


def _fct_customer_value_monthly() -> list[Any]:
    return [
        _not_null("month"), _unique("month"),
        *(_at_least(c, 0) for c in ("orders", "revenue", "customers_with_order", "aov",
                                    "formula_ltv", "active_customers", "churned_customers")),
        _at_least("purchase_frequency", 1), _at_least("expected_lifetime_years", 1),
        _share("annual_retention"), _share("repeat_purchase_rate"), _share("margin_rate"),
        _share("margin_known_share"),
        _a_at_least_b("orders", "customers_with_order"),
        _a_at_least_b("customers_to_date", "repeat_customers"),
        _a_at_least_b("lapsed_90d", "lapsed_180d"), _a_at_least_b("lapsed_180d", "lapsed_365d"),
    ]


def _fct_sales_formula_monthly() -> list[Any]:
    return [
        _not_null("month"), _unique("month"),
        *(_at_least(c, 0) for c in ("leads", "customers", "orders", "revenue", "aov")),
        _share("margin_rate"), _share("margin_known_share"), _at_least("margin", 0),
        _at_least("orders_per_customer", 1),
        # the product of the five factors is the month's gross margin, to the cent
        _e("ExpectColumnPairValuesToBeEqual", "value = gross_margin (to the cent)",
           column_A="value", column_B="gross_margin", ignore_row_if="either_value_is_missing"),
    ]


def _fct_cohort_ltv_by_channel() -> list[Any]:
    return [
        _at_least("month_offset", 0), _at_least("cohort_size", 0, strict=True),
        _at_least("ltv", 0), _at_least("revenue", 0),
        _a_at_least_b("cumulative_revenue", "revenue"),
        _in_set("channel", (*CHANNELS, BLENDED_CHANNEL)),
        *_uncovered_is_null("cac"),
        _e("ExpectCompoundColumnsToBeUnique", "unique per (cohort_month, channel, month_offset)",
           column_list=["cohort_month", "channel", "month_offset"]),
    ]


def _reach_and_time(reached: str = "leads_reached") -> list[Any]:
    return [
        _share("conversion_to_next"), _share("win_rate"),
        _a_at_least_b(reached, "leads_reached_next"),
        _at_least("median_hours_in_stage", 0),
        _a_at_least_b("p90_hours_in_stage", "median_hours_in_stage"),
    ]


def _fct_funnel_stage_slices() -> list[Any]:
    return [*_reach_and_time(), _a_at_least_b("leads_in_pipeline", "leads_reached"),
            _a_at_least_b("leads_in_pipeline", "leads_won")]


def _fct_funnel_loss_reasons() -> list[Any]:
    return [_at_least("leads_lost", 1), _not_null("last_open_status_id")]


def _fct_lead_stages() -> list[Any]:
    return [
        _not_null("lead_id"), _at_least("hours_in_stage", 0),
        _in_set("pipeline_outcome", ("won", "lost", "open", "moved_out")),
        _e("ExpectCompoundColumnsToBeUnique", "unique per (lead, pipeline, stage)",
           column_list=["lead_id", "pipeline_id", "status_id"]),
    ]


def _fct_sales_cycle() -> list[Any]:
    return [_at_least("leads_won", 1), _at_least("median_sales_cycle_days", 0),
            _a_at_least_b("p90_sales_cycle_days", "median_sales_cycle_days")]


def _fct_manager_performance_monthly() -> list[Any]:
    return [
        _not_null("month"), _share("win_rate"), _at_least("aov", 0),
        _a_at_least_b("leads_assigned", "leads_won"), _a_at_least_b("leads_assigned", "leads_lost"),
        _at_least("median_sales_cycle_days", 0),
    ]


def _fct_buyer_funnel_monthly() -> list[Any]:
    counts = ("buyers_at_month_end", "entered", "exited", "purchases_expected",
              "purchases_made", "buyers_overdue_at_month_end")
    return [_not_null("month"), _not_null("status_id"), *(_at_least(c, 0) for c in counts),
            # an overdue buyer is one of the buyers in the status at the month end
            _a_at_least_b("buyers_at_month_end", "buyers_overdue_at_month_end")]


def _fct_buyer_status_moves() -> list[Any]:
    return [_not_null("month"), _not_null("from_status_id"), _not_null("to_status_id"),
            _at_least("buyers", 1), _a_at_least_b("moves", "buyers")]


def _fct_lookalike_seed() -> list[Any]:
    return [
        _not_null("customer_id"), _unique("customer_id"), _unique("lookalike_rank"),
        _at_least("lookalike_value", 0), _at_least("lookalike_rank", 1),
        _a_at_least_b("seed_size", "lookalike_rank"),
    ]


def _fct_customer_predictions() -> list[Any]:
    purchases = ("expected_purchases_30d", "expected_purchases_90d", "expected_purchases_365d")
    return [
        _not_null("customer_id"), _unique("customer_id"),
        *(_not_null(c) for c in ("p_alive", *purchases, "expected_order_value",
                                 "predicted_value_12m", "fit_date")),
        _share("p_alive"), _share("p_alive_30d_ago"),
        _at_least("frequency", 0), _at_least("recency_weeks", 0),
        _at_least("t_weeks", 0, strict=True), _a_at_least_b("t_weeks", "recency_weeks"),
        *(_at_least(c, 0) for c in purchases),
        # a longer horizon never expects fewer purchases
        _a_at_least_b("expected_purchases_90d", "expected_purchases_30d"),
        _a_at_least_b("expected_purchases_365d", "expected_purchases_90d"),
        _at_least("expected_order_value", 0, strict=True), _at_least("predicted_value_12m", 0),
    ]


@dataclass(frozen=True)
class MartSuite:
    model: str
    columns: tuple[str, ...]
    rules: Callable[[], list[Any]]

    @property
    def name(self) -> str:
        return f"mart.{self.model}"

    def build(self) -> list[Any]:
        exist = [_e("ExpectColumnToExist", "present (mart contract)", column=c)
                 for c in self.columns]
        return [*exist, *self.rules()]


#: The marts that have a suite (the Dagster checks iterate over this).
MART_SUITES: dict[str, MartSuite] = {
    model: MartSuite(model, MART_COLUMNS[model], rules)
    for model, rules in (
        ("fct_orders", _fct_orders),
        ("dim_customers", _dim_customers),
        ("fct_cohort_retention", _fct_cohort_retention),
        ("fct_acquisition_monthly", _fct_acquisition_monthly),
        ("fct_crr_monthly", _fct_crr_monthly),
        ("fct_campaign_performance_monthly", _fct_campaign_performance_monthly),
        ("fct_funnel_stage_conversion", _fct_funnel_stage_conversion),
        ("fct_customer_value_monthly", _fct_customer_value_monthly),
        ("fct_sales_formula_monthly", _fct_sales_formula_monthly),
        ("fct_cohort_ltv_by_channel", _fct_cohort_ltv_by_channel),
        ("fct_funnel_stage_slices", _fct_funnel_stage_slices),
        ("fct_funnel_loss_reasons", _fct_funnel_loss_reasons),
        ("fct_lead_stages", _fct_lead_stages),
        ("fct_sales_cycle", _fct_sales_cycle),
        ("fct_manager_performance_monthly", _fct_manager_performance_monthly),
        ("fct_lookalike_seed", _fct_lookalike_seed),
        ("fct_buyer_funnel_monthly", _fct_buyer_funnel_monthly),
        ("fct_buyer_status_moves", _fct_buyer_status_moves),
    )
}


#: Marts written by Python assets, not dbt (validated before they are written).
PYTHON_MART_SUITES: dict[str, MartSuite] = {
    PREDICTIONS_MODEL: MartSuite(PREDICTIONS_MODEL, ddl_columns(PREDICTIONS_DDL),
                                 _fct_customer_predictions),
}


def jsonable(value: Any) -> Any:
    """Plain JSON types for Dagster metadata (numpy scalars, Decimal, dates, NaN, tuples)."""
    if isinstance(value, dict):
        return {str(k): jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [jsonable(v) for v in value]
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, Decimal):
        value = float(value)
    if isinstance(value, float) and math.isnan(value):
        return None
    if isinstance(value, dt.date | dt.datetime | pd.Timestamp):
        return value.isoformat()
    if value is pd.NaT or value is pd.NA:
        return None
    return value


def _numeric_objects_to_float(df: pd.DataFrame) -> pd.DataFrame:
    """DB drivers hand back DECIMAL as `Decimal` objects; compare them as floats."""
    out = df.copy()
    for col in out.columns:
        if out[col].dtype != object:
            continue
        values = out[col].dropna()
        if len(values) and all(
            isinstance(v, Decimal | int | float) and not isinstance(v, bool) for v in values
        ):
            out[col] = pd.to_numeric(out[col], errors="coerce").astype(float)
    return out


def validate_mart(model: str, df: pd.DataFrame) -> MartValidation:
    """Run the mart's GX suite over its rows; failures name the expectation and column."""
    suite = MART_SUITES.get(model) or PYTHON_MART_SUITES.get(model)
    if suite is None:
        raise ValueError(f"no mart suite for {model!r}; known: "
                         f"{sorted(MART_SUITES) + sorted(PYTHON_MART_SUITES)}")
    frame = _numeric_objects_to_float(df.reset_index(drop=True))
    result = run_suite(suite.name, suite.build, frame, "SUMMARY")
    failures = []
    for res in result.results:
        if res.success:
            continue
        config = res.expectation_config
        kw = config.kwargs
        column = kw.get("column") or ",".join(
            kw.get("column_list") or [c for c in (kw.get("column_A"), kw.get("column_B")) if c])
        expected = (config.meta or {}).get("expected", "")
        error = exception_message(res)
        count = res.result.get("unexpected_count")
        sample = jsonable(list(res.result.get("partial_unexpected_list") or [])[:10])
        if error is not None:
            message = f"{model}.{column}: could not evaluate {config.type}: {error}"
        elif count is None:
            message = f"{model}.{column}: expected {expected} ({config.type})"
        else:
            message = (f"{model}.{column}: {count} row(s) break '{expected}', "
                       f"e.g. {sample[:3]} ({config.type})")
        failures.append({
            "expectation": config.type, "column": column,
            "unexpected_count": None if count is None else int(count),
            "sample": sample, "message": message,
        })
    stats = {k: jsonable(v) for k, v in dict(result.statistics).items()}
    stats["row_count"] = len(frame)
    return MartValidation(passed=not failures, failures=failures, statistics=stats)


#: fct_orders joined to dim_customers: one row per order, has_customer = its customer is there.
ORDERS_WITH_CUSTOMER_SQL = """
select orders.order_id, orders.customer_id, customers.customer_id is not null as has_customer
from {fct_orders} as orders
left join {dim_customers} as customers on orders.customer_id = customers.customer_id
"""


def mart_relation(wh: Any, model: str) -> str:
    """Where the mart's latest build is (on PostgreSQL `marts_build` until published); any
    object with only `query_df` reads `marts`."""
    locate = getattr(wh, "mart_table", None)
    return locate(model) if locate else f"marts.{model}"


def _orders_belong_to_customers() -> list[Any]:
    return [_not_null("customer_id"),
            _in_set("has_customer", (True,)),
            _unique("order_id")]


def validate_orders_belong_to_customers(wh: Any) -> MartValidation:
    """Every order belongs to a customer of dim_customers (a cross-mart GX suite)."""
    frame = wh.query_df(ORDERS_WITH_CUSTOMER_SQL.format(
        fct_orders=mart_relation(wh, "fct_orders"),
        dim_customers=mart_relation(wh, "dim_customers"),
    )).reset_index(drop=True)
    frame["has_customer"] = frame["has_customer"].astype(bool)
    result = run_suite("mart.fct_orders.customers", _orders_belong_to_customers, frame,
                       "SUMMARY")
    orphans = jsonable(frame.loc[~frame["has_customer"], "order_id"].head(10).tolist())
    failures = []
    for res in result.results:
        if res.success:
            continue
        column = res.expectation_config.kwargs.get("column")
        count = res.result.get("unexpected_count")
        # for has_customer the offending values are all False: name the orders instead
        sample = (orphans if column == "has_customer"
                  else jsonable(list(res.result.get("partial_unexpected_list") or [])[:10]))
        failures.append({
            "expectation": res.expectation_config.type, "column": column,
            "unexpected_count": None if count is None else int(count), "sample": sample,
            "message": f"fct_orders.{column}: {count} row(s) break the orders-to-customers "
                       f"suite, e.g. {sample[:3]}",
        })
    return MartValidation(passed=not failures, failures=failures,
                          statistics={"row_count": len(frame)})

