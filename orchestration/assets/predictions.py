"""Customer predictions after the marts: BG/NBD + Gamma-Gamma (``predictions.customers``).

One step fits both models on ``marts.fct_orders`` up to the marts' as-of date and writes, next
to the fct_orders it read (``marts`` on DuckDB, ``marts_build`` on PostgreSQL, so publication
copies them with the rest):

- ``marts/fct_clv_model_fit`` (every run): the fit's status and message, parameters,
  log-likelihoods and the holdout check per customer group and in total;
- ``marts/fct_customer_predictions`` (only when the fit is usable): one row per customer.

The asset check ``clv_fit_converged_and_within_bound`` fails when the fit did not converge,
the data does not suit the models, or the holdout error exceeds VORONKA_CLV_MAX_HOLDOUT_ERROR.
Then the predictions are not rewritten: the previous ones stay (and stay published), and a
warehouse that never had any gets an empty table with the columns, so BI and segments still
find them. The check is WARN severity: a business the models do not fit must not hold back
the publication of every other mart.
"""

from datetime import date
from typing import Any

import dagster as dg
import pandas as pd

from expectations import validate_mart
from orchestration.resources import WarehouseResource
from predictions.customers import (
    ModelFit,
    Settings,
    customer_predictions,
    fit_models,
    fit_table,
)
from predictions.tables import FIT_DDL, FIT_MODEL, PREDICTIONS_DDL, PREDICTIONS_MODEL, ddl_columns
from warehouse.publication import REPORT_DATES_MODEL

FIT_KEY = dg.AssetKey(["marts", FIT_MODEL])
PREDICTIONS_KEY = dg.AssetKey(["marts", PREDICTIONS_MODEL])
FIT_CHECK = "clv_fit_converged_and_within_bound"
#: published with the marts but not gated by the marts' checks (publication_blockers)
PREDICTION_MODELS = (FIT_MODEL, PREDICTIONS_MODEL)
UPSTREAM = [dg.AssetKey(["marts", "fct_orders"]), dg.AssetKey(["marts", REPORT_DATES_MODEL])]
AS_OF_FALLBACK = ("intermediate", "int_as_of_date")


def _settings() -> Settings:
    """VORONKA_CLV_* settings; a value that is not a number fails the step naming it."""
    try:
        return Settings.from_env()
    except ValueError as exc:
        raise dg.Failure(description=f"Customer predictions not fitted: {exc}") from None


def _as_date(value: Any) -> date:
    return value if isinstance(value, date) else date.fromisoformat(str(value)[:10])


def marts_as_of(wh: Any) -> date:
    """The date the marts report up to (dim_report_dates of the same build as fct_orders, else
    intermediate.int_as_of_date): the fit must see what the marts saw, never the wall clock."""
    schema, table = wh.mart_table(REPORT_DATES_MODEL).split(".")
    for schema_name, table_name in ((schema, table), AS_OF_FALLBACK):
        if table_name in wh.list_tables(schema_name):
            value = wh.scalar(f"select max(as_of_date) from {schema_name}.{table_name}")
            if value is not None:
                return _as_date(value)
    raise dg.Failure(description="Customer predictions not fitted: the marts have no as-of "
                                 f"date ({schema}.{table} and intermediate.int_as_of_date are "
                                 "missing or empty); build the marts first.")


def _params(fit: ModelFit) -> dict[str, float]:
    """The fitted parameters by their published names (none when there is no fit)."""
    named: dict[str, float] = {}
    if fit.bgnbd is not None:
        named.update(r=fit.bgnbd.r, alpha=fit.bgnbd.alpha, a=fit.bgnbd.a, b=fit.bgnbd.b)
    if fit.gamma_gamma is not None:
        named.update(p=fit.gamma_gamma.p, q=fit.gamma_gamma.q, v=fit.gamma_gamma.v)
    return {name: round(float(value), 6) for name, value in named.items()}


def _number(value: float | None) -> dg.MetadataValue:
    return dg.MetadataValue.float(float(value)) if value is not None else \
        dg.MetadataValue.null()


def fit_metadata(fit: ModelFit, settings: Settings) -> dict[str, Any]:
    """What the fit and its check say, for the asset and the check (no data, no settings
    beyond the three VORONKA_CLV_* numbers)."""
    return {
        "status": fit.status,
        "message": fit.message,
        "fit_date": fit.as_of.isoformat(),
        "holdout_error": _number(fit.holdout_error),
        "max_holdout_error": dg.MetadataValue.float(settings.max_holdout_error),
        "holdout_weeks": settings.holdout_weeks,
        "params": dg.MetadataValue.json(_params(fit)),
        "bgnbd_log_likelihood": _number(fit.bgnbd_log_likelihood),
        "gg_log_likelihood": _number(fit.gg_log_likelihood),
    }


def fit_check_result(fit: ModelFit, settings: Settings,
                     kept: bool = True) -> dg.AssetCheckResult:
    """Passed iff the fit is usable; a failure is a WARN (see the module docstring). `kept`:
    earlier predictions exist and stay published."""
    metadata = fit_metadata(fit, settings)
    if not fit.usable:  # the line voronka.summary.check_lines shows for a failed check
        outcome = "the previous ones stay" if kept else "there are none yet"
        metadata["reasons"] = dg.MetadataValue.json(
            [f"{fit.message}; predictions not published, {outcome}"])
    return dg.AssetCheckResult(asset_key=FIT_KEY, check_name=FIT_CHECK, passed=fit.usable,
                               severity=dg.AssetCheckSeverity.WARN, metadata=metadata)


def validated(predictions: pd.DataFrame, fit: ModelFit) -> pd.DataFrame | None:
    """The predictions if they pass their Great Expectations suite (p_alive a probability,
    one row per customer, horizons that never expect fewer purchases, ...); else None, and
    the fit is marked unusable with the failures, so nothing wrong is published."""
    validation = validate_mart(PREDICTIONS_MODEL, predictions)
    if validation.passed:
        return predictions
    fit.status = "invalid_predictions"
    fit.message = ("the predictions break their Great Expectations suite: "
                   + "; ".join(f["message"] for f in validation.failures[:5]))
    return None


def _has_rows(wh: Any, schema: str, table: str) -> bool:
    return table in wh.list_tables(schema) and wh.count_rows(f"{schema}.{table}") > 0


def _empty_predictions() -> pd.DataFrame:
    columns = ddl_columns(PREDICTIONS_DDL)
    return pd.DataFrame({column: pd.Series(dtype=object) for column in columns})


@dg.multi_asset(
    name="customer_predictions",
    specs=[
        dg.AssetSpec(
            FIT_KEY, deps=UPSTREAM, group_name="marts", kinds={"python"},
            description="BG/NBD + Gamma-Gamma fit on fct_orders up to the marts' as-of date: "
                        "status and message, parameters, log-likelihoods, and the holdout "
                        "check (fit up to as-of minus VORONKA_CLV_HOLDOUT_WEEKS, predicted vs "
                        "actual repeat purchases per frequency group and in total). Written "
                        "every run."),
        dg.AssetSpec(
            PREDICTIONS_KEY, deps=UPSTREAM, group_name="marts", kinds={"python"},
            skippable=True,
            description="Per customer: frequency, recency and T in weeks, p_alive (now, 30 "
                        "days ago, change), expected purchases in 30/90/365 days, expected "
                        "order value, predicted 12-month value (discounted at "
                        "VORONKA_CLV_ANNUAL_DISCOUNT_RATE), model version and fit date. "
                        "Rewritten only when the fit passes its check; else the previous "
                        "predictions stay."),
    ],
    check_specs=[dg.AssetCheckSpec(
        FIT_CHECK, asset=FIT_KEY,
        description="The BG/NBD + Gamma-Gamma fit converged, suits the data and its holdout "
                    "error is within VORONKA_CLV_MAX_HOLDOUT_ERROR. A failure (WARN: the other "
                    "marts still publish) means the predictions were not published this run: "
                    "the previous ones stay in fct_customer_predictions.")],
)
def customer_predictions_asset(context: dg.AssetExecutionContext,
                               warehouse: WarehouseResource) -> Any:
    """Fit, write the fit, check it, and rewrite the predictions only when it is usable."""
    settings = _settings()
    wh = warehouse.open()
    orders_table = wh.mart_table("fct_orders")
    schema = orders_table.split(".")[0]
    as_of = marts_as_of(wh)
    orders = wh.query_df(f"select customer_id, order_date, amount from {orders_table}")
    fit = fit_models(orders, as_of, settings)
    predictions = validated(customer_predictions(orders, fit, settings), fit) \
        if fit.usable else None
    # both tables are written before any event: whatever runs after this step (publication)
    # sees them, on any executor
    wh.replace_table(schema, FIT_MODEL, fit_table(fit, settings), FIT_DDL)
    kept = predictions is None and _has_rows(wh, schema, PREDICTIONS_MODEL)
    if not kept:  # new predictions, or none yet: an empty table with the columns
        wh.replace_table(schema, PREDICTIONS_MODEL,
                         _empty_predictions() if predictions is None else predictions,
                         PREDICTIONS_DDL)
    yield dg.MaterializeResult(asset_key=FIT_KEY, metadata=fit_metadata(fit, settings))
    yield fit_check_result(fit, settings, kept)
    if predictions is None:
        context.log.warning(
            f"customer predictions not published ({fit.status}): {fit.message}. "
            + (f"{schema}.{PREDICTIONS_MODEL} keeps the previous predictions." if kept else
               f"{schema}.{PREDICTIONS_MODEL} holds none."))
        return
    context.log.info(f"customer predictions: {len(predictions)} customers, {fit.message}")
    yield dg.MaterializeResult(asset_key=PREDICTIONS_KEY, metadata={
        "rows": len(predictions), "fit_date": as_of.isoformat(),
        "holdout_error": _number(fit.holdout_error),
        "params": dg.MetadataValue.json(_params(fit))})
