"""GX suites for the marts dbt cannot check: the tables a Python asset writes (predictions).

The marts dbt builds are checked by dbt alone: their columns and types by the model contract
(dbt_project/models/marts/_*.yml, read back in `expectations.contract`), their rules by dbt
data tests (not null, unique, accepted values, ranges, relationships, cross-column and
cross-mart invariants), which fail `dbt build` before anything is published. A rule belongs in
`MART_SUITES` only when a dbt test cannot express it well (a distribution, a statistical
test); none of the former GX mart rules was such a rule, so no dbt mart has a suite today
(docs/ARCHITECTURE.md, "Mart checks").
"""

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


def _a_at_least_b(column_a: str, column_b: str) -> Any:
    return _e("ExpectColumnPairValuesAToBeGreaterThanB", f"{column_a} >= {column_b}",
              column_A=column_a, column_B=column_b, or_equal=True,
              ignore_row_if="either_value_is_missing")


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
    """A mart's GX suite; `columns` are checked to exist where no dbt contract does it."""

    model: str
    rules: Callable[[], list[Any]]
    columns: tuple[str, ...] = ()

    @property
    def name(self) -> str:
        return f"mart.{self.model}"

    def build(self) -> list[Any]:
        exist = [_e("ExpectColumnToExist", "present (table DDL)", column=c)
                 for c in self.columns]
        return [*exist, *self.rules()]


#: dbt marts with a GX suite, each a blocking Dagster check (orchestration.checks). Only rules
#: a dbt test cannot express well belong here (module docstring): none today.
MART_SUITES: dict[str, MartSuite] = {}


#: Marts written by Python assets, not dbt (validated before they are written).
PYTHON_MART_SUITES: dict[str, MartSuite] = {
    PREDICTIONS_MODEL: MartSuite(PREDICTIONS_MODEL, _fct_customer_predictions,
                                 ddl_columns(PREDICTIONS_DDL)),
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
        raise ValueError(f"no mart suite for {model!r} (dbt's tests and contract check the "
                         f"dbt marts); known: {sorted(MART_SUITES) + sorted(PYTHON_MART_SUITES)}")
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
