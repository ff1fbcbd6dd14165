"""Extended truth of acquisition vs repeat leads: acquisition leads per channel (and campaign)
per month, and the CPL / Cv inputs built on them, plus the gross margin the sales formula and
ROMI gross rest on.

From the simulator's model, never from the payloads: a lead is *repeat* when it is in a repeat
pipeline (amoCRM ``Lead.is_repeat``; a Bitrix24 deal in category 1) or when its person already
had an order strictly before the inquiry (an order's time: a won lead's or deal's close, a
transaction's completion, a shop order's Moscow midnight); every other lead is an
*acquisition* lead. A lead is open while it is neither won nor lost at the end of the data.
"""

from __future__ import annotations

from collections import Counter
from datetime import date
from decimal import ROUND_HALF_UP, Decimal
from typing import TYPE_CHECKING

import pandas as pd

from synthetic import catalog as C
from synthetic import truth
from synthetic.bitrix24 import semantic
from synthetic.model import month_of, msk_date, msk_ts

if TYPE_CHECKING:
    from synthetic.business import _Simulator

REPEAT_B24_CATEGORY = 1  # «Повторные продажи»


def _order_times(sim: _Simulator) -> dict[int, int]:
    """Each person's first order time (Unix seconds), keyed by id(person)."""
    times: list[tuple[int, int]] = [
        (id(x.person), x.closed_ts) for x in sim.leads if x.status_id == C.WON_STATUS_ID]
    times += [(id(d.person), d.closed_ts) for d in sim.b24.deals if d.is_won]
    times += [(id(t.customer.person), t.completed_ts) for t in sim.transactions]
    times += [(id(o.person), msk_ts(o.day)) for o in sim.shop_orders]
    first: dict[int, int] = {}
    for key, ts in times:
        if ts is not None and (key not in first or ts < first[key]):
            first[key] = ts
    return first


def _pipeline_facts(sim: _Simulator) -> dict[str, tuple[bool, bool]]:
    """lead_id -> (in a repeat pipeline, open at the end of the data)."""
    out = {f"amocrm_{x.id}": (x.is_repeat,
                              x.status_id not in (C.WON_STATUS_ID, C.LOST_STATUS_ID))
           for x in sim.leads}
    out |= {f"bitrix24_deal_{d.id}": (d.category == REPEAT_B24_CATEGORY,
                                      semantic(d.stage) == "P") for d in sim.b24.deals}
    out |= {f"bitrix24_lead_{x.id}": (False, semantic(x.status) == "P")
            for x in sim.b24.leads if x.deal is None}
    return out


def lead_kinds(sim: _Simulator) -> list[tuple[truth.Inquiry, str, bool]]:
    """Every inquiry with its kind (acquisition | repeat) and whether it is still open."""
    first_order = _order_times(sim)
    facts = _pipeline_facts(sim)
    out = []
    for q in truth.inquiries(sim):
        repeat_pipeline, is_open = facts[q.lead_id]
        bought_before = first_order.get(id(q.person), q.ts) < q.ts
        out.append((q, "repeat" if repeat_pipeline or bought_before else "acquisition", is_open))
    return out


def _frame(counter: dict[tuple, Counter], keys: list[str], columns: list[str]) -> pd.DataFrame:
    rows = [(*key, *(c[col] for col in columns)) for key, c in counter.items()]
    return pd.DataFrame(sorted(rows), columns=keys + columns)


LEAD_COLUMNS = ["acquisition_leads", "repeat_leads", "all_leads", "open_acquisition_leads"]


def _count(c: Counter, kind: str, is_open: bool) -> None:
    c[f"{kind}_leads"] += 1
    c["all_leads"] += 1
    c["open_acquisition_leads"] += kind == "acquisition" and is_open


def _lead_tables(kinds: list[tuple[truth.Inquiry, str, bool]]) -> dict[str, pd.DataFrame]:
    by_channel: dict[tuple, Counter] = {}
    by_campaign: dict[tuple, Counter] = {}
    for q, kind, is_open in kinds:
        m = month_of(msk_date(q.ts))
        _count(by_channel.setdefault((m, q.channel), Counter()), kind, is_open)
        if q.campaign_id is not None:
            _count(by_campaign.setdefault((m, q.channel, q.campaign_id), Counter()), kind,
                   is_open)
    return {
        "acq_leads_by_channel_month": _frame(by_channel, ["month", "channel"], LEAD_COLUMNS),
        "acq_leads_by_campaign_month": _frame(by_campaign, ["month", "channel", "campaign_id"],
                                              LEAD_COLUMNS),
    }


def _converted_table(sim: _Simulator,
                     kinds: list[tuple[truth.Inquiry, str, bool]]) -> pd.DataFrame:
    """Customers by their first inquiry's month and channel: all of them, and those whose
    first inquiry is an acquisition lead (Cv's numerators)."""
    buyers = {id(o.person) for o in truth.orders(sim)}
    first: dict[int, tuple[truth.Inquiry, str]] = {}
    for q, kind, _ in sorted(kinds, key=lambda k: (k[0].ts, k[0].lead_id)):
        first.setdefault(id(q.person), (q, kind))
    counts: dict[tuple, Counter] = {}
    for key, (q, kind) in first.items():
        if key in buyers:
            c = counts.setdefault((month_of(msk_date(q.ts)), q.channel), Counter())
            c["customers_from_month_leads"] += 1
            c["customers_from_month_acquisition_leads"] += kind == "acquisition"
    return _frame(counts, ["month", "channel"],
                  ["customers_from_month_leads", "customers_from_month_acquisition_leads"])


def _shop_margin(amount: Decimal) -> Decimal:
    """The gross margin the shop's orders file states for an order (rounded to the cent)."""
    return (amount * Decimal(str(C.SHOP_MARGIN))).quantize(Decimal("0.01"), ROUND_HALF_UP)


def _margin_table(sim: _Simulator, margin_rate: Decimal = Decimal(1)) -> pd.DataFrame:
    """Per month: revenue, gross margin (the shop's own margins, CRM orders x margin_rate)
    and the revenue that carries a source margin."""
    sums: dict[date, list[Decimal]] = {}
    for o in truth.orders(sim):
        row = sums.setdefault(month_of(o.day), [Decimal(0)] * 3)
        row[0] += o.amount
        if o.source == "files":
            row[1] += _shop_margin(o.amount)
            row[2] += o.amount
        else:
            row[1] += (o.amount * margin_rate).quantize(Decimal("0.01"), ROUND_HALF_UP)
    rows = [(m, *(round(float(v), 2) for v in vals)) for m, vals in sums.items()]
    return pd.DataFrame(sorted(rows),
                        columns=["month", "revenue", "gross_margin", "revenue_source_margin"])


def tables(sim: _Simulator) -> dict[str, pd.DataFrame]:
    """Truth tables by name (each a DataFrame sorted by its key columns)."""
    kinds = lead_kinds(sim)
    return {**_lead_tables(kinds),
            "acq_converted_by_channel_month": _converted_table(sim, kinds),
            "acq_gross_margin_by_month": _margin_table(sim)}
