"""amoCRM payloads beyond leads and contacts: B2B companies, the buyer funnel (customers,
their statuses and transactions) and deleted spam leads, API-shaped (crm_apis.md §1.9).

Kept apart from ``synthetic.business`` so the core lead simulation stays readable; the objects
come from the simulator (``synthetic.model``).
"""

from __future__ import annotations

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


def _customer_status(c: Customer, last_ts: int, next_ts: int, as_of: int) -> int:
    """The funnel status at the as-of moment, by how recent and how regular the purchases are."""
    if as_of - last_ts <= RECENT_DAYS * DAY:
        return C.CUSTOMER_STATUS_BY_TYPE[4]
    if len(c.transactions) >= 2 and as_of - last_ts <= 2 * c.product.cycle_days * DAY:
        return C.CUSTOMER_STATUS_BY_TYPE[0]
    if next_ts >= as_of:
        return C.CUSTOMER_STATUS_BY_TYPE[1]
    return C.CUSTOMER_STATUS_BY_TYPE[2]


def customer_payload(c: Customer, as_of: int) -> dict:
    """ltv, purchases_count and average_check count the customer's transactions (the purchases
    the buyer funnel knows about); the expected next purchase follows the product's cycle."""
    txs = sorted(c.transactions, key=lambda t: t.completed_ts)
    last_ts = txs[-1].completed_ts if txs else c.created_ts
    next_ts = last_ts + c.product.cycle_days * DAY
    ltv = sum(t.price for t in txs)
    updated = max([c.created_ts, *(t.created_ts for t in txs)])
    return {
        "id": c.id, "name": c.contact.name, "next_price": c.product.price, "next_date": next_ts,
        "responsible_user_id": c.responsible,
        "status_id": _customer_status(c, last_ts, next_ts, as_of),
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


def buyer_payloads(sim: _Simulator) -> dict[str, list[dict]]:
    """companies, customers, customer_statuses and transactions, each sorted by id."""
    return {
        "companies": [company_payload(c) for c in sorted(sim.companies, key=lambda x: x.id)],
        "customers": [customer_payload(c, sim.end_ts)
                      for c in sorted(sim.customers, key=lambda x: x.id)],
        "customer_statuses": customer_status_payloads(),
        "transactions": [transaction_payload(t)
                         for t in sorted(sim.transactions, key=lambda x: x.id)],
    }
