"""amoCRM payloads beyond leads and contacts: B2B companies, the buyer funnel (customers,
their statuses and transactions) and deleted spam leads, API-shaped (crm_apis.md §1.9).

Kept apart from ``synthetic.business`` so the core lead simulation stays readable; the objects
come from the simulator (``synthetic.model``).
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from typing import TYPE_CHECKING

from synthetic import catalog as C
from synthetic.model import DAY, Company, Customer, SpamLead, Transaction, Utm

if TYPE_CHECKING:
    from synthetic.business import _Simulator

RECENT_DAYS = 30  # "recently purchased" in the buyer funnel
SPAM_NAME = "Заявка с сайта"


def utm_fields(utm: Utm) -> list[dict] | None:
    """UTM tracking fields of a lead (amoCRM leaves out the empty ones; none at all -> null)."""
    if utm is None:
        return None
    return [
        {"field_id": C.FIELD_UTM[code], "field_name": code.lower(), "field_code": code,
         "field_type": "tracking_data", "values": [{"value": value}]}
        for code, value in zip(("UTM_SOURCE", "UTM_MEDIUM", "UTM_CAMPAIGN"), utm, strict=True)
        if value is not None
    ] or None


def spam_payloads(spam: list[SpamLead]) -> list[dict]:
    """Deleted spam leads as the full lead objects the emulator keeps in its bin
    (``is_deleted: true``; only ``with=only_deleted`` shows them, as ``{id, updated_at}``)."""
    admin = next(m.id for m in C.MANAGERS if m.is_admin)
    return [{
        "id": s.id, "name": SPAM_NAME, "price": 0, "responsible_user_id": admin, "group_id": 0,
        "status_id": C.MAIN_OPEN[0], "pipeline_id": C.MAIN_PIPELINE_ID, "loss_reason_id": None,
        "created_by": 0, "updated_by": admin, "created_at": s.created_ts,
        "updated_at": s.deleted_ts, "closed_at": None, "closest_task_at": None,
        "is_deleted": True, "score": None, "account_id": C.ACCOUNT_ID, "labor_cost": None,
        "custom_fields_values": utm_fields(s.utm),
        "_embedded": {"tags": [], "companies": [], "contacts": []},
    } for s in spam]


def company_payload(c: Company) -> dict:
    return {
        "id": c.id, "name": c.name, "responsible_user_id": c.responsible, "group_id": 0,
        "created_by": c.responsible, "updated_by": c.responsible, "created_at": c.created_ts,
        "updated_at": c.updated_ts, "closest_task_at": None, "custom_fields_values": None,
        "is_deleted": False, "account_id": C.ACCOUNT_ID, "_embedded": {"tags": []},
    }


@dataclass(frozen=True)
class BuyerPeriod:
    """One stretch of a buyer's life between purchases: from the buyer's creation or a
    purchase (``start_ts``) to the next purchase; ``next_ts`` is the next purchase date amoCRM
    shows meanwhile, ``purchases`` the transactions completed by ``start_ts``."""

    start_ts: int
    next_ts: int
    purchases: int


def next_date_overrides(sim: _Simulator) -> dict[int, int]:
    """Buyer id -> the next purchase date a manager typed in for the buyer's open period (set
    when recording its last purchase or opening the buyer), so amoCRM's own date differs from
    last purchase + periodicity. Own random stream: every other payload stays the same."""
    rng = random.Random(f"{sim.seed}:buyer_next_date")
    out: dict[int, int] = {}
    for c in sorted(sim.customers, key=lambda x: x.id):
        chosen = rng.random() < C.BUYER_NEXT_DATE_SET_P
        shift = rng.randint(*C.BUYER_NEXT_DATE_SHIFT_DAYS)
        if chosen and shift != 0:
            start = max([c.created_ts, *(t.completed_ts for t in c.transactions)])
            out[c.id] = max(start + DAY, start + (c.product.cycle_days + shift) * DAY)
    return out


def buyer_periods(c: Customer, next_override: int | None = None) -> list[BuyerPeriod]:
    """The buyer's periods in time order; only the open (last) one may carry a manager-set
    next date, the earlier ones expect the next purchase one periodicity after their start."""
    starts = [c.created_ts, *sorted(t.completed_ts for t in c.transactions)]
    periods = [BuyerPeriod(ts, ts + c.product.cycle_days * DAY, i) for i, ts in enumerate(starts)]
    if next_override is not None:
        last = periods[-1]
        periods[-1] = BuyerPeriod(last.start_ts, next_override, last.purchases)
    return periods


def status_at(c: Customer, periods: list[BuyerPeriod], ts: int) -> int | None:
    """The buyer's funnel status at moment ``ts`` (None before the buyer exists): the rule of
    the payload's status_id applied to the period ``ts`` falls in."""
    current = None
    for period in periods:
        if period.start_ts <= ts:
            current = period
    if current is None:
        return None
    return _customer_status(c, current.purchases, current.start_ts, current.next_ts, ts)


def status_changes(c: Customer, periods: list[BuyerPeriod],
                   end_ts: int) -> list[tuple[int, int, int]]:
    """(ts, status before, status after) for every status change up to ``end_ts``: the status
    is a step function of time, so it can change only at a purchase or one second after a
    threshold of the rule (recent window, regular window, next date) is passed."""
    points: set[int] = set()
    for i, period in enumerate(periods):
        stop = periods[i + 1].start_ts if i + 1 < len(periods) else end_ts + 1
        candidates = (period.start_ts, period.start_ts + RECENT_DAYS * DAY + 1,
                      period.start_ts + 2 * c.product.cycle_days * DAY + 1, period.next_ts + 1)
        points.update(ts for ts in candidates if period.start_ts <= ts < stop and ts <= end_ts)
    changes = []
    before = None
    for ts in sorted(points):
        after = status_at(c, periods, ts)
        if before is not None and after != before:
            changes.append((ts, before, after))
        before = after
    return changes


def _customer_status(c: Customer, purchases: int, last_ts: int, next_ts: int,
                     as_of: int) -> int:
    """The funnel status at the as-of moment, by how recent and how regular the purchases are."""
    if as_of - last_ts <= RECENT_DAYS * DAY:
        return C.CUSTOMER_STATUS_BY_TYPE[4]
    if purchases >= 2 and as_of - last_ts <= 2 * c.product.cycle_days * DAY:
        return C.CUSTOMER_STATUS_BY_TYPE[0]
    if next_ts >= as_of:
        return C.CUSTOMER_STATUS_BY_TYPE[1]
    return C.CUSTOMER_STATUS_BY_TYPE[2]


def customer_payload(c: Customer, as_of: int, next_override: int | None = None) -> dict:
    """ltv, purchases_count and average_check count the customer's transactions (the purchases
    the buyer funnel knows about); the expected next purchase follows the product's cycle
    unless a manager set it (``next_override``)."""
    txs = sorted(c.transactions, key=lambda t: t.completed_ts)
    last_ts = txs[-1].completed_ts if txs else c.created_ts
    next_ts = next_override if next_override is not None else last_ts + c.product.cycle_days * DAY
    ltv = sum(t.price for t in txs)
    updated = max([c.created_ts, *(t.created_ts for t in txs)])
    return {
        "id": c.id, "name": c.contact.name, "next_price": c.product.price, "next_date": next_ts,
        "responsible_user_id": c.responsible,
        "status_id": _customer_status(c, len(txs), last_ts, next_ts, as_of),
        "periodicity": c.product.cycle_days, "created_by": c.responsible,
        "updated_by": c.responsible, "created_at": c.created_ts, "updated_at": updated,
        "closest_task_at": None, "is_deleted": False, "custom_fields_values": None,
        "ltv": ltv, "purchases_count": len(txs), "average_check": ltv // len(txs) if txs else 0,
        "account_id": C.ACCOUNT_ID, "group_id": 0,
        "_embedded": {"tags": [], "contacts": [{"id": c.contact.id, "is_main": True}],
                      "companies": []},
    }


def transaction_payload(t: Transaction) -> dict:
    return {
        "id": t.id, "price": t.price, "completed_at": t.completed_ts,
        "comment": f"Повторная покупка: {t.product.name}", "customer_id": t.customer.id,
        "created_by": t.responsible, "updated_by": t.responsible, "created_at": t.created_ts,
        "updated_at": t.created_ts, "is_deleted": False, "account_id": C.ACCOUNT_ID,
        "_embedded": {"customer": {"id": t.customer.id}},
    }


def customer_status_payloads() -> list[dict]:
    return [{"id": sid, "name": name, "sort": sort, "is_default": default, "color": color,
             "type": stype, "account_id": C.ACCOUNT_ID}
            for sid, name, sort, default, color, stype in C.CUSTOMER_STATUSES]


def customer_event_payloads(sim: _Simulator, overrides: dict[int, int]) -> list[dict]:
    """amoCRM ``customer_status_changed`` events of every buyer, as /api/v4/events serves them
    (sorted by created_at, id); ids from their own random stream."""
    from synthetic.business import _ulid  # business imports this module

    rng = random.Random(f"{sim.seed}:customer_events")
    events = []
    for c in sorted(sim.customers, key=lambda x: x.id):
        for ts, before, after in status_changes(c, buyer_periods(c, overrides.get(c.id)),
                                                sim.end_ts):
            events.append({
                "id": _ulid(ts, rng), "type": "customer_status_changed", "entity_id": c.id,
                "entity_type": "customer", "created_by": c.responsible, "created_at": ts,
                "value_before": [{"customer_status": {"id": before}}],
                "value_after": [{"customer_status": {"id": after}}],
                "account_id": C.ACCOUNT_ID, "_embedded": {"entity": {"id": c.id}},
            })
    events.sort(key=lambda e: (e["created_at"], e["id"]))
    return events


def buyer_payloads(sim: _Simulator) -> dict[str, list[dict]]:
    """companies, customers, customer_statuses and transactions, each sorted by id, and the
    buyers' status-change events (``customer_events``: served by /api/v4/events beside the
    lead events, kept apart so the lead events stay as they were)."""
    overrides = next_date_overrides(sim)
    return {
        "companies": [company_payload(c) for c in sorted(sim.companies, key=lambda x: x.id)],
        "customers": [customer_payload(c, sim.end_ts, overrides.get(c.id))
                      for c in sorted(sim.customers, key=lambda x: x.id)],
        "customer_events": customer_event_payloads(sim, overrides),
        "customer_statuses": customer_status_payloads(),
        "transactions": [transaction_payload(t)
                         for t in sorted(sim.transactions, key=lambda x: x.id)],
    }
