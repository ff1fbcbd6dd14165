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

#: The marts' channel values (mirrors synthetic.catalog.CHANNELS, the dbt channel rule).
CHANNELS = ("yandex_direct", "vk_ads", "google_ads", "meta_ads", "organic", "referral", "direct",
            "other")
BLENDED_CHANNEL = "all"
AD_CHANNELS = CHANNELS[:4]  # the channels that buy ads: yandex_direct, vk_ads, google_ads, meta_ads
#: Kinds of sale in fct_orders (docs/SOURCES_CONTRACT.md §3).
ORDER_SOURCES = ("amocrm_lead", "bitrix24_deal", "amocrm_transaction", "files")

#: Column contract per mart (docs/ARCHITECTURE.md, "Mart contract").
MART_COLUMNS: dict[str, tuple[str, ...]] = {
    "fct_orders": ("order_id", "order_source", "lead_id", "customer_id", "order_date",
                   "order_month", "amount", "order_number", "is_first_order", "channel"),
    "dim_customers": ("customer_id", "first_order_date", "cohort_month", "channel",
                      "first_lead_id", "first_lead_created_at", "orders_count", "revenue",
                      "last_order_date", "contact_count"),
    "fct_cohort_retention": ("cohort_month", "month_offset", "cohort_size", "active_customers",
                             "retention_rate", "cumulative_revenue", "ltv"),
    "fct_acquisition_monthly": ("month", "channel", "spend", "leads", "new_customers", "cpl",
                                "cac", "cv", "cac_undefined"),
    "fct_crr_monthly": ("month", "period_end", "customers_active_start", "customers_active_end",
                        "new_customers", "retained_customers", "crr", "strict_retention"),
    "fct_campaign_performance_monthly": ("month", "channel", "platform", "account",
                                         "campaign_id", "campaign_name", "spend",
                                         "impressions", "clicks", "leads", "new_customers",
                                         "cpl", "cac", "cac_undefined"),
    "fct_funnel_stage_conversion": ("crm", "account", "pipeline_id", "pipeline_name",
                                    "status_id", "stage_name", "stage_order", "leads_reached",
                                    "next_status_id", "leads_reached_next",
                                    "conversion_to_next", "win_rate"),
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


def _in_set(column: str, values: tuple[str, ...]) -> Any:
    return _e("ExpectColumnValuesToBeInSet", f"one of {list(values)}", column=column,
              value_set=list(values))


def _fct_orders() -> list[Any]:
    return [
        _not_null("order_id"), _unique("order_id"),
        _not_null("amount"), _at_least("amount", 0, strict=True),
        _not_null("customer_id"), _in_set("order_source", ORDER_SOURCES),
    ]


def _dim_customers() -> list[Any]:
    return [
        _not_null("customer_id"), _unique("customer_id"),
        _at_least("orders_count", 1), _at_least("revenue", 0),
        _not_null("channel"), _in_set("channel", CHANNELS),
    ]


def _fct_cohort_retention() -> list[Any]:
    return [
        _share("retention_rate"), _at_least("month_offset", 0),
        _at_least("cohort_size", 0, strict=True), _at_least("ltv", 0),
        _e("ExpectCompoundColumnsToBeUnique", "unique per (cohort_month, month_offset)",
           column_list=["cohort_month", "month_offset"]),
    ]


def _fct_acquisition_monthly() -> list[Any]:
    return [
        _at_least("spend", 0), _at_least("cpl", 0), _at_least("cac", 0), _share("cv"),
        _in_set("channel", (*CHANNELS, BLENDED_CHANNEL)),
    ]


def _fct_campaign_performance_monthly() -> list[Any]:
    return [
        *(_at_least(c, 0) for c in ("spend", "leads", "new_customers", "cpl", "cac")),
        _not_null("month"), _in_set("channel", (*AD_CHANNELS, "other")),
    ]


def _fct_crr_monthly() -> list[Any]:
    return [
        *(_at_least(c, 0) for c in ("customers_active_start", "customers_active_end",
                                    "new_customers", "retained_customers")),
        _share("strict_retention"),
    ]


def _fct_funnel_stage_conversion() -> list[Any]:
    return [_share("conversion_to_next"), _share("win_rate")]


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
    )
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
    suite = MART_SUITES.get(model)
    if suite is None:
        raise ValueError(f"no mart suite for {model!r}; known: {sorted(MART_SUITES)}")
    frame = _numeric_objects_to_float(df.reset_index(drop=True))
    result = run_suite(suite.name, suite.build, frame, "SUMMARY")
    failures = []
    for res in result.results:
        if res.success:
            continue
        config = res.expectation_config
        kw = config.kwargs
        column = kw.get("column") or ",".join(kw.get("column_list") or [])
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
