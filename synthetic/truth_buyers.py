"""Extended truth of the amoCRM buyer funnel («Покупатели»): buyers per status per month,
moves between statuses, expected vs actual purchases, overdue buyers.

Computed from the simulator's buyers (``sim.customers``, their transactions and the manager's
hand-set next dates) with the funnel's own status rule evaluated at each moment
(``amocrm_extra.status_at``), never from the events or payloads the warehouse parses. Months
are Moscow calendar months from the first buyer's creation to the as-of month, which stops at
the end of the as-of date. Definitions as in fct_buyer_funnel_monthly's documentation.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from datetime import date
from typing import TYPE_CHECKING

import pandas as pd

from synthetic import amocrm_extra as X
from synthetic import catalog as C
from synthetic.model import Customer, msk_date, msk_ts

if TYPE_CHECKING:
    from synthetic.business import _Simulator

FUNNEL_COLUMNS = ["buyers_at_month_end", "entered", "exited", "purchases_expected",
                  "purchases_made", "buyers_overdue_at_month_end"]


@dataclass(frozen=True)
class _Month:
    month: date
    start_ts: int  # first second of the month
    stop_ts: int  # first second after the month's reporting period (as-of month: as-of end)
    next_ts: int  # first second of the next calendar month


@dataclass(frozen=True)
class _Buyer:
    customer: Customer
    periods: list[X.BuyerPeriod]
    changes: list[tuple[int, int, int]]


def _next_month(d: date) -> date:
    return date(d.year + d.month // 12, d.month % 12 + 1, 1)


def _months(first: date, end: date, end_ts: int) -> list[_Month]:
    """Calendar months from ``first``'s month to ``end``'s; the last stops after ``end_ts``."""
    out, m = [], date(first.year, first.month, 1)
    while m <= end:
        nxt = msk_ts(_next_month(m))
        out.append(_Month(m, msk_ts(m), min(nxt, end_ts + 1), nxt))
        m = _next_month(m)
    return out


def _buyers(sim: _Simulator) -> list[_Buyer]:
    """Every buyer with its purchase periods (manager-set next date included) and status
    changes up to the as-of moment."""
    overrides = X.next_date_overrides(sim)
    out = []
    for c in sorted(sim.customers, key=lambda x: x.id):
        periods = X.buyer_periods(c, overrides.get(c.id))
        out.append(_Buyer(c, periods, X.status_changes(c, periods, sim.end_ts)))
    return out


def _month_counts(b: _Buyer, m: _Month) -> dict[tuple[int, str], int]:
    """(status id, column) -> count contributed by one buyer to one month."""
    c, counts = b.customer, Counter()
    if c.created_ts >= m.stop_ts:
        return counts
    end_status = X.status_at(c, b.periods, m.stop_ts - 1)
    start_status = X.status_at(c, b.periods, max(m.start_ts - 1, c.created_ts))
    counts[(end_status, "buyers_at_month_end")] += 1
    if m.start_ts <= c.created_ts:
        counts[(X.status_at(c, b.periods, c.created_ts), "entered")] += 1
    for ts, before, after in b.changes:
        if m.start_ts <= ts < m.stop_ts:
            counts[(after, "entered")] += 1
            counts[(before, "exited")] += 1
    known = [p for p in b.periods if p.start_ts < m.stop_ts]
    counts[(start_status, "purchases_expected")] += sum(
        m.start_ts <= p.next_ts < m.next_ts for p in known)
    counts[(start_status, "purchases_made")] += sum(
        m.start_ts <= p.start_ts < m.stop_ts for p in known if p.purchases > 0)
    if known[-1].next_ts < m.stop_ts:
        counts[(end_status, "buyers_overdue_at_month_end")] += 1
    return counts


def buyer_funnel_monthly(sim: _Simulator, buyers: list[_Buyer]) -> pd.DataFrame:
    """month x status_id: the FUNNEL_COLUMNS, every status of the funnel in every month."""
    if not buyers:
        return pd.DataFrame(columns=["month", "status_id", *FUNNEL_COLUMNS])
    first = msk_date(min(b.customer.created_ts for b in buyers))
    rows = []
    for m in _months(first, sim.end, sim.end_ts):
        total: Counter = Counter()
        for b in buyers:
            total.update(_month_counts(b, m))
        for sid, *_ in C.CUSTOMER_STATUSES:
            rows.append({"month": m.month, "status_id": sid,
                         **{col: total[(sid, col)] for col in FUNNEL_COLUMNS}})
    return pd.DataFrame(rows).sort_values(["month", "status_id"]).reset_index(drop=True)


def buyer_status_moves(buyers: list[_Buyer]) -> pd.DataFrame:
    """month, from_status_id, to_status_id: moves and distinct buyers moved."""
    moves: Counter = Counter()
    movers: dict[tuple, set[int]] = {}
    for b in buyers:
        for ts, before, after in b.changes:
            d = msk_date(ts)
            key = (date(d.year, d.month, 1), before, after)
            moves[key] += 1
            movers.setdefault(key, set()).add(b.customer.id)
    rows = [{"month": k[0], "from_status_id": k[1], "to_status_id": k[2], "moves": n,
             "buyers": len(movers[k])} for k, n in moves.items()]
    columns = ["month", "from_status_id", "to_status_id", "moves", "buyers"]
    return (pd.DataFrame(rows, columns=columns)
            .sort_values(columns[:3]).reset_index(drop=True))


def tables(sim: _Simulator) -> dict[str, pd.DataFrame]:
    """Truth tables by name (each a DataFrame sorted by its key columns)."""
    buyers = _buyers(sim)
    return {"buyer_funnel_monthly": buyer_funnel_monthly(sim, buyers),
            "buyer_status_moves": buyer_status_moves(buyers)}
