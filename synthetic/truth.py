"""The ground truth of the synthetic business, over every source (SOURCES_CONTRACT.md §3).

Computed from the simulator's model, where the person behind every record is known, never by
re-parsing the emitted payloads: the marts' identity resolution, channel mapping and order
rules are checked against what happened, not against a second copy of the same logic.

- an inquiry (lead) is an amoCRM lead (deleted spam never is one), a Bitrix24 deal (dated by
  and with the channel of the lead it was converted from) or an unconverted Bitrix24 lead;
- an order is a won amoCRM lead (at closed_at), a won Bitrix24 deal (at CLOSEDATE), an amoCRM
  transaction (at completed_at) or an orders-file row (at order_date), by Moscow dates;
- a customer is a person with at least one order; their cohort is the month of the first
  order, their channel that of their first inquiry in either CRM or, with none, of their first
  shop order's UTM.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from datetime import date
from decimal import Decimal
from typing import TYPE_CHECKING

import pandas as pd

from synthetic import catalog as C
from synthetic.model import Person, month_of, msk_date

if TYPE_CHECKING:
    from synthetic.business import GroundTruth, _Simulator

ORDER_SOURCES = ("amocrm_lead", "bitrix24_deal", "amocrm_transaction", "files")
CRMS = ("amocrm", "bitrix24")


@dataclass(frozen=True)
class Inquiry:
    person: Person
    ts: int
    channel: str
    crm: str  # amocrm | bitrix24
    lead_id: str  # the unified lead id (amocrm_<id>, bitrix24_deal_<id>, bitrix24_lead_<id>)
    campaign_id: str | None = None  # utm_campaign of a paid inquiry: the ad campaign's id


@dataclass(frozen=True)
class Order:
    person: Person
    day: date
    amount: Decimal
    source: str  # one of ORDER_SOURCES


def _campaign(channel: str, utm) -> str | None:
    """The campaign a paid inquiry's utm_campaign names (the platform's campaign id)."""
    return utm[2] if channel in C.AD_CAMPAIGNS and utm is not None else None


def inquiries(sim: _Simulator) -> list[Inquiry]:
    out = [Inquiry(x.person, x.created_ts, x.channel, "amocrm", f"amocrm_{x.id}",
                   _campaign(x.channel, x.utm)) for x in sim.leads]
    out += [Inquiry(d.person, d.inquiry_ts, d.channel, "bitrix24", f"bitrix24_deal_{d.id}",
                    _campaign(d.channel, d.utm)) for d in sim.b24.deals]
    out += [Inquiry(x.person, x.created_ts, x.channel, "bitrix24", f"bitrix24_lead_{x.id}",
                    _campaign(x.channel, x.utm)) for x in sim.b24.leads if x.deal is None]
    return out


def orders(sim: _Simulator) -> list[Order]:
    out = [Order(x.person, msk_date(x.closed_ts), Decimal(x.price), "amocrm_lead")
           for x in sim.leads if x.status_id == C.WON_STATUS_ID]
    out += [Order(d.person, msk_date(d.closed_ts), d.opportunity, "bitrix24_deal")
            for d in sim.b24.deals if d.is_won]
    out += [Order(t.customer.person, msk_date(t.completed_ts), Decimal(t.price),
                  "amocrm_transaction") for t in sim.transactions]
    out += [Order(o.person, o.day, o.amount, "files") for o in sim.shop_orders]
    return out


def customer_channel(person: Person, first_inquiry: Inquiry | None) -> str:
    """The first inquiry's channel; a shop-only buyer's first order's UTM channel."""
    if first_inquiry is not None:
        return first_inquiry.channel
    first = min(person.shop_orders, key=lambda o: (o.day, o.order_id))
    source, medium, _ = first.utm if first.utm is not None else (None, None, None)
    return C.channel_for(source, medium)


def _frame(rows, columns: list[str]) -> pd.DataFrame:
    return pd.DataFrame(sorted(rows), columns=columns)


def _money(value: Decimal) -> float:
    return round(float(value), 2)


def _customer_tables(inqs: list[Inquiry], ords: list[Order]) -> dict[str, pd.DataFrame]:
    first_inquiry: dict[int, Inquiry] = {}
    for q in sorted(inqs, key=lambda q: (q.ts, q.lead_id)):
        first_inquiry.setdefault(id(q.person), q)
    first_order: dict[int, Order] = {}
    for o in sorted(ords, key=lambda o: o.day):
        first_order.setdefault(id(o.person), o)
    new_ct: Counter = Counter()
    cohorts: Counter = Counter()
    for key, o in first_order.items():
        cohort = month_of(o.day)
        new_ct[(cohort, customer_channel(o.person, first_inquiry.get(key)))] += 1
        cohorts[cohort] += 1
    return {
        "new_customers_by_channel_month": _frame(
            [(m, ch, n) for (m, ch), n in new_ct.items()], ["month", "channel", "new_customers"]),
        "cohort_sizes": _frame(list(cohorts.items()), ["cohort_month", "customers"]),
    }


def _order_tables(ords: list[Order]) -> dict[str, pd.DataFrame]:
    revenue: dict[date, Decimal] = {}
    count: Counter = Counter()
    by_source: dict[tuple[date, str], Decimal] = {}
    by_source_n: Counter = Counter()
    for o in ords:
        m = month_of(o.day)
        revenue[m] = revenue.get(m, Decimal(0)) + o.amount
        count[m] += 1
        by_source[(m, o.source)] = by_source.get((m, o.source), Decimal(0)) + o.amount
        by_source_n[(m, o.source)] += 1
    return {
        "revenue_by_month": _frame([(m, _money(v), count[m]) for m, v in revenue.items()],
                                   ["month", "revenue", "orders"]),
        "orders_by_source_month": _frame(
            [(m, s, by_source_n[(m, s)], _money(v)) for (m, s), v in by_source.items()],
            ["month", "order_source", "orders", "revenue"]),
    }


def _lead_tables(inqs: list[Inquiry]) -> dict[str, pd.DataFrame]:
    by_channel: Counter = Counter()
    by_crm: Counter = Counter()
    by_campaign: Counter = Counter()
    for q in inqs:
        m = month_of(msk_date(q.ts))
        by_channel[(m, q.channel)] += 1
        by_crm[(m, q.crm)] += 1
        if q.campaign_id is not None:
            by_campaign[(m, q.channel, q.campaign_id)] += 1
    return {
        "leads_by_campaign_month": _frame(
            [(m, ch, c, n) for (m, ch, c), n in by_campaign.items()],
            ["month", "channel", "campaign_id", "leads"]),
        "leads_by_channel_month": _frame([(m, ch, n) for (m, ch), n in by_channel.items()],
                                         ["month", "channel", "leads"]),
        "leads_by_crm_month": _frame([(m, crm, n) for (m, crm), n in by_crm.items()],
                                     ["month", "crm", "leads"]),
    }


def _spend_table(sim: _Simulator) -> pd.DataFrame:
    spend: dict[tuple[date, str], Decimal] = {}
    for channel, rows in sim.ad_rows.items():
        money_key = C.AD_ROW_KEYS[channel][3]
        for row in rows:
            key = (month_of(date.fromisoformat(row["date"])), channel)
            spend[key] = spend.get(key, Decimal("0")) + row[money_key]
    return _frame([(m, ch, float(v.quantize(Decimal("0.01")))) for (m, ch), v in spend.items()],
                  ["month", "channel", "spend"])


def ground_truth(sim: _Simulator) -> GroundTruth:
    from synthetic.business import GroundTruth  # the public dataclass lives with generate()

    inqs, ords = inquiries(sim), orders(sim)
    tables = {**_customer_tables(inqs, ords), **_order_tables(ords), **_lead_tables(inqs),
              "spend_by_channel_month": _spend_table(sim)}
    return GroundTruth(**tables, _sim=sim)


def extended_truth(sim: _Simulator) -> dict[str, pd.DataFrame]:
    """Every extended truth table: metric matrices and per-customer rows from the simulator's
    people, orders and lead paths (truth_customers), the amoCRM buyer funnel (truth_buyers)
    and acquisition vs repeat leads (truth_acquisition)."""
    from synthetic import truth_acquisition, truth_buyers, truth_customers

    out: dict[str, pd.DataFrame] = {}
    for module in (truth_customers, truth_buyers, truth_acquisition):
        tables = module.tables(sim)
        clash = set(tables) & set(out)
        if clash:
            raise ValueError(f"{module.__name__} redefines truth tables {sorted(clash)}")
        out.update(tables)
    return out
