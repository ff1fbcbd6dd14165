"""Reconciliation: revenue of amoCRM lead orders in `marts.fct_orders` against won deals in
raw amoCRM leads (the other order sources are reconciled by the dbt test
`assert_order_revenue_equals_sources`)."""

from __future__ import annotations

from typing import Any

import pandas as pd

from expectations.marts import jsonable
from expectations.results import MartValidation
from warehouse.base import json_loads

WON_STATUS_ID = 142
REPORTING_TZ = "Europe/Moscow"
NO_MONTH = "no closed_at"
TOLERANCE = 0.005  # money is compared to the kopeck


def _month(value: Any) -> str:
    if value is None or (not isinstance(value, str) and pd.isna(value)):
        return NO_MONTH
    return pd.Timestamp(value).strftime("%Y-%m")


DeletedLeads = dict[tuple[str, str], float]  # (account, lead id) -> deletion time (Unix s)


def _deleted_after_version(latest: pd.DataFrame, payloads: list[dict],
                           deleted: DeletedLeads) -> list[bool]:
    """True where the lead was deleted at or after the version we hold (as staging decides)."""
    flags = []
    for account, record_id, payload in zip(latest["account"], latest["record_id"], payloads,
                                           strict=True):
        deleted_at = deleted.get((str(account), str(record_id)))
        updated = pd.to_numeric(payload.get("updated_at"), errors="coerce")
        flags.append(deleted_at is not None and (pd.isna(updated) or deleted_at >= updated))
    return flags


def raw_won_by_month(raw: pd.DataFrame, tz: str = REPORTING_TZ,
                     deleted: DeletedLeads | None = None) -> pd.DataFrame:
    """Won deals per month from raw lead versions: month, raw_revenue, raw_orders, won_zero_price.

    Keeps the newest version per (account, record_id) by updated_at, then extracted_at (as
    staging does); month is closed_at in the reporting time zone. A won deal with price 0 or
    null adds no revenue and is not an order (fct_orders.amount > 0); it is counted apart.
    """
    columns = ["month", "raw_revenue", "raw_orders", "won_zero_price"]
    if raw.empty:
        return pd.DataFrame(columns=columns)
    latest = (
        raw.sort_values(["updated_at", "extracted_at"], na_position="first", kind="stable")
        .drop_duplicates(["account", "record_id"], keep="last")
    )
    payloads = [json_loads(p) for p in latest["payload"]]
    if deleted:
        keep = [not gone for gone in _deleted_after_version(latest, payloads, deleted)]
        latest = latest[keep]
        payloads = [p for p, k in zip(payloads, keep, strict=True) if k]
    leads = pd.DataFrame({
        "status_id": [p.get("status_id") for p in payloads],
        "price": [p.get("price") for p in payloads],
        "closed_at": [p.get("closed_at") for p in payloads],
    })
    won = leads[pd.to_numeric(leads["status_id"], errors="coerce") == WON_STATUS_ID].copy()
    if won.empty:
        return pd.DataFrame(columns=columns)
    won["price"] = pd.to_numeric(won["price"], errors="coerce").fillna(0.0)
    closed = pd.to_datetime(pd.to_numeric(won["closed_at"], errors="coerce"), unit="s", utc=True)
    won["month"] = [
        NO_MONTH if pd.isna(ts) else ts.tz_convert(tz).strftime("%Y-%m") for ts in closed
    ]
    won["is_order"] = won["price"] > 0
    return (
        won.groupby("month")
        .agg(raw_revenue=("price", "sum"), raw_orders=("is_order", "sum"),
             won_zero_price=("is_order", lambda s: int((~s).sum())))
        .reset_index()
    )


def mart_by_month(orders: pd.DataFrame) -> pd.DataFrame:
    """fct_orders per month: month, mart_revenue, mart_orders."""
    if orders.empty:
        return pd.DataFrame(columns=["month", "mart_revenue", "mart_orders"])
    frame = pd.DataFrame({
        "month": [_month(v) for v in orders["order_month"]],
        "amount": pd.to_numeric(orders["amount"], errors="coerce").fillna(0.0).astype(float),
    })
    return (
        frame.groupby("month")
        .agg(mart_revenue=("amount", "sum"), mart_orders=("amount", "size"))
        .reset_index()
    )


def reconcile_frames(raw: pd.DataFrame, orders: pd.DataFrame,
                     deleted: DeletedLeads | None = None) -> MartValidation:
    """Compare raw won deals (less deleted leads) with fct_orders, in total and per month."""
    merged = (
        raw_won_by_month(raw, deleted=deleted)
        .merge(mart_by_month(orders), on="month", how="outer")
        .fillna({"raw_revenue": 0.0, "raw_orders": 0, "won_zero_price": 0,
                 "mart_revenue": 0.0, "mart_orders": 0})
        .sort_values("month")
        .reset_index(drop=True)
    )
    merged["raw_revenue"] = merged["raw_revenue"].astype(float)
    merged["mart_revenue"] = merged["mart_revenue"].astype(float)
    merged["raw_orders"] = merged["raw_orders"].astype(int)
    merged["mart_orders"] = merged["mart_orders"].astype(int)
    differs = (
        ((merged["raw_revenue"] - merged["mart_revenue"]).abs() > TOLERANCE)
        | (merged["raw_orders"] != merged["mart_orders"])
    )
    bad = merged[differs]
    totals = {
        "raw_revenue": float(merged["raw_revenue"].sum()),
        "mart_revenue": float(merged["mart_revenue"].sum()),
        "raw_orders": int(merged["raw_orders"].sum()),
        "mart_orders": int(merged["mart_orders"].sum()),
    }
    failures = []
    if (abs(totals["raw_revenue"] - totals["mart_revenue"]) > TOLERANCE
            or totals["raw_orders"] != totals["mart_orders"]):
        failures.append({
            "expectation": "reconcile_total_revenue", "column": "amount",
            "unexpected_count": 1, "sample": [totals],
            "message": (f"total: raw won {totals['raw_revenue']:.2f} in "
                        f"{totals['raw_orders']} deal(s), fct_orders {totals['mart_revenue']:.2f}"
                        f" in {totals['mart_orders']} order(s)"),
        })
    if len(bad):
        rows = jsonable(bad.drop(columns=["won_zero_price"]).to_dict("records"))
        months = ", ".join(
            f"{r['month']} (raw {r['raw_revenue']:.2f}/{r['raw_orders']}, "
            f"mart {r['mart_revenue']:.2f}/{r['mart_orders']})" for r in rows[:12]
        )
        failures.append({
            "expectation": "reconcile_monthly_revenue", "column": "order_month",
            "unexpected_count": len(rows), "sample": rows[:24],
            "message": f"months differ (revenue/orders): {months}",
        })
    stats = {
        **totals,
        "months_compared": len(merged),
        "months_differing": [r for r in bad["month"]],
        "won_zero_price": int(merged["won_zero_price"].sum()),
    }
    return MartValidation(passed=not failures, failures=failures, statistics=stats)


def deleted_leads(wh: Any) -> DeletedLeads:
    """Leads amoCRM reports deleted (raw.amocrm__deleted_leads), with their deletion time."""
    if "amocrm__deleted_leads" not in wh.list_tables("raw"):
        return {}
    frame = wh.query_df("select account, record_id, payload from raw.amocrm__deleted_leads")
    found: DeletedLeads = {}
    for account, record_id, payload in frame.itertuples(index=False):
        ts = pd.to_numeric(json_loads(payload).get("updated_at"), errors="coerce")
        key = (str(account), str(record_id))
        found[key] = max(found.get(key, float("-inf")), 0.0 if pd.isna(ts) else float(ts))
    return found


def reconcile_revenue(wh: Any) -> MartValidation:
    """Revenue and order count of fct_orders' amoCRM lead orders equal the won deals in
    raw.amocrm__leads that were not deleted since.

    Works on DuckDB and PostgreSQL (payload comes back as str or as a parsed dict). No raw
    leads table (an account without a single lead yet) compares against no won deals.
    """
    columns = ["account", "record_id", "payload", "updated_at", "extracted_at"]
    raw = (wh.query_df(f"select {', '.join(columns)} from raw.amocrm__leads")
           if "amocrm__leads" in wh.list_tables("raw") else pd.DataFrame(columns=columns))
    orders = wh.query_df(f"select order_month, amount from {wh.mart_table('fct_orders')} "
                         "where order_source = 'amocrm_lead'")
    return reconcile_frames(raw, orders, deleted_leads(wh))
