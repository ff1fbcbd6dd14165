"""Extended truth over customers: cohort x offset retention and LTV, CRR per month,
CAC per channel-month, funnel reach per stage, per-customer RFM inputs and due dates, manager
figures. Computed from the simulator's people, orders and lead paths (never from the marts).

Every table name starts with ``cust_``. Definitions follow ``metrics.md``; where it leaves a
choice open the choice is the dbt project's default (activity window 180 days, medians
continuous). A person is the unit of identity: the marts' identity resolution is checked by
mapping each person's orders (``cust_orders.order_key``, the marts' own order / lead ids) to
the mart's customer ids.
"""

from __future__ import annotations

import itertools
import math
import statistics
from collections import defaultdict
from dataclasses import dataclass
from datetime import date, timedelta
from decimal import ROUND_HALF_UP, Decimal
from typing import TYPE_CHECKING

import pandas as pd

from synthetic import amocrm_extra, truth
from synthetic import catalog as C
from synthetic.model import DAY, Person, month_of, msk_date, msk_ts

if TYPE_CHECKING:
    from synthetic.business import _Simulator

ACTIVITY_WINDOW_DAYS = 180  # dbt var activity_window_days (default)
LTV_HORIZON_MONTHS = 12  # dbt var ltv_horizon_months (default)
DUE_WINDOW_DAYS = 14  # dbt var due_window_days (default)
EXPIRY_GAP_MULTIPLE, EXPIRY_MIN_DAYS = 2, 90  # dbt vars overdue_expiry_gap_multiple / _min_days
MARGIN_RATE = Decimal(1)  # dbt var margin_rate (default): the margin of an order without one
CHANNELS_ALL = "all"


@dataclass(frozen=True)
class KeyedOrder:
    """One order with the key the marts give it (fct_orders.lead_id / order_id)."""

    person: Person
    ts: int  # the order moment (a file order: the day's midnight)
    day: date
    amount: Decimal
    source: str  # truth.ORDER_SOURCES
    order_key: str  # amocrm_<lead id>, bitrix24_deal_<id>, amocrm_tx_<id>, files_<SHOP id>
    category: str | None  # the file order's product; CRM orders carry none
    margin: Decimal | None = None  # the source's own gross margin (the shop's files)

    @property
    def gross_margin(self) -> Decimal:
        """The order's own margin where the source has one, else amount x margin_rate."""
        if self.margin is not None:
            return self.margin
        return (self.amount * MARGIN_RATE).quantize(Decimal("0.01"), ROUND_HALF_UP)


def keyed_orders(sim: _Simulator) -> list[KeyedOrder]:
    """The same orders as truth.orders, with their mart keys, up to the as-of date."""
    out = [KeyedOrder(x.person, x.closed_ts, msk_date(x.closed_ts), Decimal(x.price),
                      "amocrm_lead", f"amocrm_{x.id}", None)
           for x in sim.leads if x.status_id == C.WON_STATUS_ID]
    out += [KeyedOrder(d.person, d.closed_ts, msk_date(d.closed_ts), d.opportunity,
                       "bitrix24_deal", f"bitrix24_deal_{d.id}", None)
            for d in sim.b24.deals if d.is_won]
    out += [KeyedOrder(t.customer.person, t.completed_ts, msk_date(t.completed_ts),
                       Decimal(t.price), "amocrm_transaction", f"amocrm_tx_{t.id}", None)
            for t in sim.transactions]
    out += [KeyedOrder(o.person, msk_ts(o.day), o.day, o.amount, "files",
                       f"files_{o.order_id}", o.product, _shop_margin(o.amount))
            for o in sim.shop_orders]
    return [o for o in out if o.day <= sim.end]


def _shop_margin(amount: Decimal) -> Decimal:
    """The gross margin the shop's files carry (shop.order_rows)."""
    return (amount * Decimal(str(C.SHOP_MARGIN))).quantize(Decimal("0.01"), ROUND_HALF_UP)


def _money(value: Decimal) -> float:
    return float(value.quantize(Decimal("0.01"), ROUND_HALF_UP))


def _next_month(m: date) -> date:
    return (m + timedelta(days=32)).replace(day=1)


def _months(first: date, last: date) -> list[date]:
    out, m = [], month_of(first)
    while m <= last:
        out.append(m)
        m = _next_month(m)
    return out


def _by_person(orders: list[KeyedOrder]) -> dict[int, list[KeyedOrder]]:
    """Each customer's orders in the marts' order (time, then key)."""
    out: dict[int, list[KeyedOrder]] = defaultdict(list)
    for o in sorted(orders, key=lambda o: (o.ts, o.order_key)):
        out[o.person.idx].append(o)
    return dict(out)


def _channels(sim: _Simulator, persons: dict[int, Person]) -> dict[int, str]:
    """Each customer's first-touch channel, by truth.customer_channel."""
    first: dict[int, truth.Inquiry] = {}
    for q in sorted(truth.inquiries(sim), key=lambda q: (q.ts, q.lead_id)):
        first.setdefault(q.person.idx, q)
    return {idx: truth.customer_channel(p, first.get(idx)) for idx, p in persons.items()}


# -- per-customer rows ----------------------------------------------------------------------
def _gaps(orders: list[KeyedOrder]) -> list[tuple[int, str | None]]:
    """(gap in days, earlier order's category) of consecutive orders."""
    return [((b.day - a.day).days, a.category) for a, b in itertools.pairwise(orders)]


def _expected_next(orders: list[KeyedOrder], category_median: dict[str, float],
                   overall: float | None) -> tuple[float | None, str | None]:
    """The median-gap expectation (metrics.md, without the CRM date): own median gap (when
    it rounds to at least a day), else the last order's category median, else the overall
    median."""
    gaps = [g for g, _ in _gaps(orders)]
    if gaps and statistics.median(gaps) >= 0.5:  # all repeats on the same day: no rhythm
        return statistics.median(gaps), "customer"
    category = orders[-1].category
    if category is not None and category in category_median:
        return category_median[category], "category"
    return (overall, "overall") if overall is not None else (None, None)


def _round_half_up(days: float) -> int:
    return int(Decimal(str(days)).quantize(Decimal(1), ROUND_HALF_UP))


def _crm_next_dates(sim: _Simulator) -> dict[int, list[date]]:
    """person_idx -> the next purchase dates amoCRM shows on the person's buyers at the
    as-of date: a manager's date (amocrm_extra.next_date_overrides) or the last purchase
    (or the buyer's creation) + the product's periodicity."""
    overrides_of = getattr(amocrm_extra, "next_date_overrides", None)
    overrides = overrides_of(sim) if overrides_of is not None else {}
    out: dict[int, list[date]] = defaultdict(list)
    for c in sim.customers:
        last = max([c.created_ts, *(t.completed_ts for t in c.transactions)])
        next_ts = overrides.get(c.id, last + c.product.cycle_days * DAY)
        out[c.person.idx].append(msk_date(next_ts))
    return out


def _expiry(gap: float) -> int:
    """The overdue expiry: twice the expected gap (rounded up), at least 90 days."""
    return max(math.ceil(EXPIRY_GAP_MULTIPLE * gap), EXPIRY_MIN_DAYS)


def _repurchase(last: date, median_gap: float | None, median_basis: str | None,
                crm_dates: list[date], as_of: date) -> dict:
    """metrics.md "Expected next order": the earliest CRM date after the last order and past
    by at most its expiry, else last order + the median-rule gap; then due / overdue."""
    applying = [d for d in crm_dates
                if d > last and (as_of - d).days <= _expiry((d - last).days)]
    if applying:
        expected, basis = min(applying), "crm"
        gap: float | None = (expected - last).days
    elif median_gap is not None:
        expected, basis = last + timedelta(days=_round_half_up(median_gap)), median_basis
        gap = median_gap
    else:
        return {"expected_next_order_basis": None, "expected_next_order_date": None,
                "days_until_expected_order": None, "overdue_expiry_days": None,
                "repurchase_status": None}
    days = (expected - as_of).days
    expiry = _expiry(gap)
    status = ("upcoming" if days > DUE_WINDOW_DAYS else "due" if days >= 0
              else "overdue" if -days <= expiry else "lapsed")
    return {"expected_next_order_basis": basis, "expected_next_order_date": expected,
            "expected_gap_days": gap, "days_until_expected_order": days,
            "overdue_expiry_days": expiry, "repurchase_status": status}


def _customer_rows(sim: _Simulator, per: dict[int, list[KeyedOrder]]) -> pd.DataFrame:
    persons = {idx: os_[0].person for idx, os_ in per.items()}
    channels = _channels(sim, persons)
    all_gaps = [g for os_ in per.values() for g in _gaps(os_)]
    by_category: dict[str, list[int]] = defaultdict(list)
    for g, cat in all_gaps:
        if cat is not None:
            by_category[cat].append(g)
    category_median = {c: statistics.median(v) for c, v in by_category.items()}
    overall = statistics.median([g for g, _ in all_gaps]) if all_gaps else None
    crm_dates = _crm_next_dates(sim)
    rows = []
    for idx, os_ in per.items():
        p = persons[idx]
        gap, basis = _expected_next(os_, category_median, overall)
        last = os_[-1].day
        own = [g for g, _ in _gaps(os_)]
        chosen = _repurchase(last, gap, basis, crm_dates.get(idx, []), sim.end)
        rows.append({
            "person_idx": idx, "phone": f"+7{p.phone}" if p.phone else None, "email": p.email,
            "has_amocrm_buyer": p.customer is not None,
            "cohort_month": month_of(os_[0].day), "channel": channels[idx],
            "first_order_date": os_[0].day, "last_order_date": last,
            "orders_count": len(os_), "order_days": len({o.day for o in os_}),
            "revenue": _money(sum((o.amount for o in os_), Decimal(0))),
            "days_since_last_order": (sim.end - last).days,
            "median_gap_days": statistics.median(own) if own else None,
            "median_rule_gap_days": gap, "expected_gap_basis": basis,
            "median_rule_next_order_date": (last + timedelta(days=_round_half_up(gap))
                                            if gap is not None else None),
            "expected_gap_days": None, **chosen,
        })
    return pd.DataFrame(rows).sort_values("person_idx", ignore_index=True)


def _order_rows(orders: list[KeyedOrder]) -> pd.DataFrame:
    rows = [(o.order_key, o.person.idx, o.source, o.day, _money(o.amount)) for o in orders]
    return pd.DataFrame(sorted(rows), columns=["order_key", "person_idx", "order_source",
                                               "order_date", "amount"])


# -- cohort matrix ----------------------------------------------------------------------------
def _month_complete(month: date, as_of: date) -> bool:
    """metrics.md "Periods": complete when the as-of date is after the month's last day."""
    return _next_month(month) <= as_of


def _cohort_matrix(customers: pd.DataFrame, per: dict[int, list[KeyedOrder]],
                   as_of: date) -> pd.DataFrame:
    """cohort x channel ('all' too) x offset k: size, customers ordering in month cohort + k,
    revenue of the month and cumulative, retention_rate, ltv (cumulative / size), the
    cumulative gross margin (and per customer: the CAC payback curve) and is_observable
    (month cohort + k complete)."""
    last_month = month_of(as_of)
    cells: dict[tuple, list] = defaultdict(lambda: [set(), Decimal(0), Decimal(0)])
    sizes: dict[tuple, int] = defaultdict(int)
    for row in customers.itertuples():
        for ch in (row.channel, CHANNELS_ALL):
            sizes[(row.cohort_month, ch)] += 1
            for o in per[row.person_idx]:
                cell = cells[(row.cohort_month, ch, month_of(o.day))]
                cell[0].add(row.person_idx)
                cell[1] += o.amount
                cell[2] += o.gross_margin
    rows = []
    for (cohort, ch), size in sizes.items():
        cum, cum_gm = Decimal(0), Decimal(0)
        for k, m in enumerate(_months(cohort, last_month)):
            active, revenue, gm = cells.get((cohort, ch, m), (set(), Decimal(0), Decimal(0)))
            cum, cum_gm = cum + revenue, cum_gm + gm
            rows.append((cohort, ch, k, m, size, len(active), _money(revenue), _money(cum),
                         len(active) / size, _money(cum / size), _money(cum_gm),
                         _money(cum_gm / size), _month_complete(m, as_of)))
    return pd.DataFrame(sorted(rows), columns=[
        "cohort_month", "channel", "month_offset", "activity_month", "cohort_size",
        "active_customers", "revenue", "cumulative_revenue", "retention_rate", "ltv",
        "cumulative_gross_margin", "gross_margin_per_customer", "is_observable"])


# -- CRR --------------------------------------------------------------------------------------
def _crr(customers: pd.DataFrame, per: dict[int, list[KeyedOrder]], first: date,
         end: date) -> pd.DataFrame:
    """Every month first .. as-of month: S (active at the start), E (active the day after the
    period, which ends on the as-of date in the as-of month), N, retained, crr, strict; flags
    month_complete and is_warm_up (the month starts less than W days after the first order
    in the data: nobody can have lapsed yet)."""
    window = timedelta(days=ACTIVITY_WINDOW_DAYS)
    days = {idx: sorted({o.day for o in os_}) for idx, os_ in per.items()}
    first_order = min(ds[0] for ds in days.values())

    def active(ds: list[date], on: date) -> bool:
        return any(on - window <= d < on for d in ds)

    rows = []
    for m in _months(first, end):
        stop = min(_next_month(m), end + timedelta(days=1))
        s = e = n = kept = 0
        for ds in days.values():
            at_start = active(ds, m)
            s += at_start
            e += active(ds, stop)
            n += m <= ds[0] < stop
            kept += at_start and any(m <= d < stop for d in ds)
        rows.append((m, s, e, n, kept, (e - n) / s * 100 if s else None,
                     kept / s if s else None, _month_complete(m, end),
                     m < first_order + window))
    return pd.DataFrame(rows, columns=["month", "customers_active_start",
                                       "customers_active_end", "new_customers",
                                       "retained_customers", "crr", "strict_retention",
                                       "month_complete", "is_warm_up"])


# -- CAC ---------------------------------------------------------------------------------------
def _cac(gt_spend: pd.DataFrame, customers: pd.DataFrame) -> pd.DataFrame:
    """month x channel ('all' = every channel, organic included): spend, new customers, CAC
    (null with no new customers)."""
    spend: dict[tuple, Decimal] = defaultdict(Decimal)
    new: dict[tuple, int] = defaultdict(int)
    for r in gt_spend.itertuples():
        cost = Decimal(str(r.spend))
        spend[(r.month, r.channel)] += cost
        spend[(r.month, CHANNELS_ALL)] += cost
    for r in customers.itertuples():
        new[(r.cohort_month, r.channel)] += 1
        new[(r.cohort_month, CHANNELS_ALL)] += 1
    rows = []
    for key in sorted(set(spend) | set(new)):
        s, n = spend.get(key, Decimal(0)), new.get(key, 0)
        rows.append((*key, _money(s), n, _money(s / n) if n else None))
    return pd.DataFrame(rows, columns=["month", "channel", "spend", "new_customers", "cac"])


def _acquisition_value(cac: pd.DataFrame, matrix: pd.DataFrame,
                       per: dict[int, list[KeyedOrder]], customers: pd.DataFrame,
                       end: date) -> pd.DataFrame:
    """month x channel ('all' too), from the CAC rows: attributed revenue and gross margin
    (the month's orders of the channel's customers, first touch), ROMI and ROMI gross (null
    without spend), LTV at the horizon (once month cohort + horizon is complete), LTV / CAC
    and the CAC payback month (first offset whose gross margin per customer reaches CAC)."""
    channel = dict(zip(customers.person_idx, customers.channel, strict=True))
    revenue: dict[tuple, list[Decimal]] = defaultdict(lambda: [Decimal(0), Decimal(0)])
    for idx, os_ in per.items():
        for o in os_:
            for ch in (channel[idx], CHANNELS_ALL):
                cell = revenue[(month_of(o.day), ch)]
                cell[0] += o.amount
                cell[1] += o.gross_margin
    curves = {key: frame for key, frame in matrix.groupby(["cohort_month", "channel"])}
    costs = {(r.month, r.channel): (Decimal(str(r.spend)), None if pd.isna(r.cac) else r.cac)
             for r in cac.itertuples()}
    rows = []
    for key in sorted(set(costs) | set(revenue)):
        rev, gm = revenue.get(key, (Decimal(0), Decimal(0)))
        spend, cost = costs.get(key, (Decimal(0), None))
        curve = curves.get(key)
        horizon = _ltv_horizon(curve, end)
        payback = None
        if cost is not None and curve is not None:
            reached = curve[curve.gross_margin_per_customer >= cost]
            payback = int(reached.month_offset.min()) if len(reached) else None
        rows.append((*key, _money(rev), _money(gm),
                     float((rev - spend) / spend * 100) if spend else None,
                     float((gm - spend) / spend * 100) if spend else None, horizon,
                     horizon / cost if horizon is not None and cost else None, payback))
    return pd.DataFrame(rows, columns=[
        "month", "channel", "attributed_revenue", "attributed_gross_margin", "romi",
        "romi_gross", "ltv_horizon", "ltv_cac", "cac_payback_months"])


def _ltv_horizon(curve: pd.DataFrame | None, end: date) -> float | None:
    """The curve's LTV at offset LTV_HORIZON_MONTHS once that month is complete."""
    if curve is None:
        return None
    at = curve[curve.month_offset == LTV_HORIZON_MONTHS]
    if at.empty or not _month_complete(at.activity_month.iloc[0], end):
        return None
    return float(at.ltv.iloc[0])


# -- funnel reach ------------------------------------------------------------------------------
def _funnels() -> dict[tuple[str, str], tuple[list, object]]:
    """(crm, pipeline_id as the marts key it) -> (open stages in funnel order, won stage)."""
    out: dict[tuple[str, str], tuple[list, object]] = {}
    for pid, statuses in ((C.MAIN_PIPELINE_ID, C.MAIN_STATUSES),
                          (C.REPEAT_PIPELINE_ID, C.REPEAT_STATUSES)):
        open_ = [s for s in statuses if s[0] not in (C.WON_STATUS_ID, C.LOST_STATUS_ID)]
        ordered = sorted(open_, key=lambda s: (0 if s[3] == 1 else 1, s[2], s[0]))
        out[("amocrm", str(pid))] = ([s[0] for s in ordered], C.WON_STATUS_ID)
    b24 = [("lead", C.B24_LEAD_STATUSES)]
    b24 += [(f"deal_{cat}", stages) for cat, stages in C.B24_DEAL_STAGES.items()]
    for key, stages in b24:
        open_ = sorted((s for s in stages if s[3] is None), key=lambda s: (s[2], s[0]))
        won = next(s[0] for s in stages if s[3] == "S")
        out[("bitrix24", key)] = ([s[0] for s in open_], won)
    return out


def _paths(sim: _Simulator) -> list[tuple[str, str, list]]:
    """(crm, pipeline key, every stage the record was in) of each CRM record."""
    out = []
    for x in sim.leads:
        first = x.moves[0][1] if x.moves else x.status_id
        out.append(("amocrm", str(x.pipeline_id), [first] + [to for _, _, to in x.moves]))
    for lead in sim.b24.leads:
        out.append(("bitrix24", "lead", ["NEW"] + [s for _, s in lead.moves]))
    for d in sim.b24.deals:
        first = C.B24_DEAL_STAGES[d.category][0][0]
        out.append(("bitrix24", f"deal_{d.category}", [first] + [s for _, s in d.moves]))
    return out


def _lost_stages() -> set:
    """Every lost stage: amoCRM's 143 and each Bitrix24 `F`-semantic status or stage."""
    stages = [C.B24_LEAD_STATUSES, *C.B24_DEAL_STAGES.values()]
    return {C.LOST_STATUS_ID} | {s[0] for group in stages for s in group if s[3] == "F"}


def _stage_reached(sim: _Simulator) -> pd.DataFrame:
    """Per pipeline step: leads that reached it (its history holds it or a later open stage,
    or it was won), leads dropped off there (lost, with it their last open stage), leads in
    the pipeline, leads won."""
    funnels, lost = _funnels(), _lost_stages()
    reached: dict[tuple, int] = defaultdict(int)
    dropped: dict[tuple, int] = defaultdict(int)
    totals: dict[tuple, list[int]] = defaultdict(lambda: [0, 0])
    for crm, pid, path in _paths(sim):
        steps, won = funnels[(crm, pid)]
        order = {s: i for i, s in enumerate([*steps, won], start=1)}
        furthest = max((order[s] for s in path if s in order), default=0)
        totals[(crm, pid)][0] += 1
        totals[(crm, pid)][1] += won in path
        for s, i in order.items():
            reached[(crm, pid, s)] += furthest >= i
        if path[-1] in lost:
            dropped[(crm, pid, [s for s in path if s in steps][-1])] += 1
    rows = []
    for (crm, pid), (steps, won) in funnels.items():
        for i, s in enumerate([*steps, won], start=1):
            rows.append((crm, pid, str(s), i, reached[(crm, pid, s)], dropped[(crm, pid, s)],
                         *totals[(crm, pid)]))
    return pd.DataFrame(rows, columns=["crm", "pipeline_id", "status_id", "stage_order",
                                       "leads_reached", "leads_dropped_off",
                                       "leads_in_pipeline", "leads_won"])


# -- managers ----------------------------------------------------------------------------------
def _manager_rows(sim: _Simulator) -> pd.DataFrame:
    """Per CRM, responsible user and lead-creation month: assigned, open, won, lost, revenue
    (the records of truth.inquiries; a Bitrix24 deal dated by the lead it came from)."""
    acc: dict[tuple, list] = defaultdict(lambda: [0, 0, 0, 0, Decimal(0)])

    def add(crm: str, user: int, ts: int, outcome: str, amount: Decimal) -> None:
        cell = acc[(crm, str(user), month_of(msk_date(ts)))]
        cell[0] += 1
        cell[{"open": 1, "won": 2, "lost": 3}[outcome]] += 1
        if outcome == "won":
            cell[4] += amount

    for x in sim.leads:
        outcome = {C.WON_STATUS_ID: "won", C.LOST_STATUS_ID: "lost"}.get(x.status_id, "open")
        add("amocrm", x.responsible, x.created_ts, outcome, Decimal(x.price))
    semantics = {s[0]: s[3] for stages in C.B24_DEAL_STAGES.values() for s in stages}
    for d in sim.b24.deals:
        outcome = {"S": "won", "F": "lost"}.get(semantics.get(d.stage), "open")
        add("bitrix24", d.responsible, d.inquiry_ts, outcome, d.opportunity)
    lead_semantics = {s[0]: s[3] for s in C.B24_LEAD_STATUSES}
    for lead in sim.b24.leads:
        if lead.deal is None:
            lost = lead_semantics.get(lead.status) == "F"
            add("bitrix24", lead.responsible, lead.created_ts, "lost" if lost else "open",
                Decimal(0))
    rows = [(*k, *v[:4], _money(v[4])) for k, v in acc.items()]
    return pd.DataFrame(sorted(rows), columns=[
        "crm", "responsible_user_id", "month", "leads_assigned", "leads_open", "leads_won",
        "leads_lost", "revenue"])


def tables(sim: _Simulator) -> dict[str, pd.DataFrame]:
    """Truth tables by name (each a DataFrame sorted by its key columns)."""
    orders = keyed_orders(sim)
    per = _by_person(orders)
    customers = _customer_rows(sim, per)
    matrix = _cohort_matrix(customers, per, sim.end)
    cac = _cac(truth._spend_table(sim), customers)
    return {
        "cust_orders": _order_rows(orders),
        "cust_customers": customers,
        "cust_cohort_matrix": matrix,
        "cust_crr_monthly": _crr(customers, per, sim.start, sim.end),
        "cust_cac_monthly": cac,
        "cust_acquisition_value": _acquisition_value(cac, matrix, per, customers, sim.end),
        "cust_stage_reached": _stage_reached(sim),
        "cust_manager_monthly": _manager_rows(sim),
    }
