"""The Bitrix24 brand's online shop: orders that reach the warehouse only as files.

Some shop buyers are people a CRM already knows (they typed their phone differently, e.g.
``8 (916) 123-45-67`` against ``+79161234567`` in the CRM, or only their e-mail); the rest never
had a lead, so their channel comes from the order's UTM (none = ``direct``). Every order carries
the buyer's primary point (the phone, or the e-mail when there is no phone): that point is also
on each of the person's CRM contacts, so identity resolution can join them.

``write_order_files`` writes the rows in the two shapes the files contract allows: a UTF-8
comma CSV (the site's export) and a Windows-1251 semicolon CSV with a decimal comma (the
accounting export).
"""

from __future__ import annotations

import csv
import math
from datetime import timedelta
from decimal import ROUND_HALF_UP, Decimal
from pathlib import Path
from typing import TYPE_CHECKING

from synthetic import catalog as C
from synthetic.model import Person, ShopOrder, Utm, msk_ts

if TYPE_CHECKING:
    import random

    from synthetic.business import _Simulator

SHOP_RATE = 0.45  # orders per day at scale 1, growth 1
KNOWN_BUYER_P = 0.4  # share of orders placed by people a CRM already knows
REPEAT_ORDER_P = 0.3  # a new shop buyer orders again
FILE_PREFIX = "shop_orders_"
COLUMNS = ("order_id", "order_date", "amount", "currency", "customer_phone", "customer_email",
           "customer_name", "product", "gross_margin", "utm_source", "utm_medium",
           "utm_campaign")
# UTM of an order by a new buyer, and by a known one (weights)
NEW_BUYER_UTMS: list[tuple[Utm, int]] = [
    (("yandex", "cpc", str(C.CAMPAIGNS[1].id)), 3), (("yandex", "organic", None), 3),
    (None, 4), (("vk", "cpc", str(C.VK_AD_PLANS[2].id)), 1), (("post", "email", "digest"), 1),
    (("instagram", "cpc", str(C.META_CAMPAIGNS[0].id)), 1), (("vc.ru", "referral", None), 1),
]
KNOWN_BUYER_UTMS: list[tuple[Utm, int]] = [
    (None, 6), (("post", "email", "digest"), 3), (("yandex", "cpc", str(C.CAMPAIGNS[2].id)), 1),
]


def _poisson(rng: random.Random, lam: float) -> int:
    limit, k, p = math.exp(-lam), 0, 1.0
    while True:
        p *= rng.random()
        if p <= limit:
            return k
        k += 1


def shop_phone(national: str, rng: random.Random) -> str:
    """A phone as people type it into a checkout form."""
    a, b, c, d = national[:3], national[3:6], national[6:8], national[8:]
    return rng.choice([f"8 ({a}) {b}-{c}-{d}", f"+7{national}", f"+7 ({a}) {b}-{c}-{d}",
                       f"8{national}"])


def _first_seen(person: Person) -> int:
    """When a CRM first knew the person (their earliest contact)."""
    times = [c.created_ts for c in person.contacts]
    if person.b24_contact is not None:
        times.append(person.b24_contact.created_ts)
    return min(times)


def _order(sim: _Simulator, person: Person, day, utm: Utm) -> ShopOrder:
    """One order; always with the person's primary point, sometimes the other one too."""
    rng = sim.rng
    name, price, _ = rng.choices(C.SHOP_PRODUCTS, weights=[w for *_, w in C.SHOP_PRODUCTS])[0]
    qty = 2 if rng.random() < 0.1 else 1
    discount = Decimal("0.93") if rng.random() < 0.2 else Decimal(1)
    amount = (Decimal(price * qty) * discount).quantize(Decimal("0.01"), ROUND_HALF_UP)
    phone = shop_phone(person.phone, rng) if person.phone else ""
    email = person.email or ""
    if phone and email:  # the second point is optional
        if rng.random() < 0.35:
            email = ""
        elif rng.random() < 0.2:
            email = sim._email_variant(email).strip()
    full = f"{person.first_name} {person.last_name}" if rng.random() < 0.7 else person.first_name
    order = ShopOrder(len(sim.shop_orders), person, day, amount, name, phone, email, full, utm)
    sim.shop_orders.append(order)
    person.shop_orders.append(order)
    return order


def _new_buyer(sim: _Simulator) -> Person:
    person = sim._new_person()
    if not person.has_point:  # a checkout needs a phone or an e-mail
        person.email = sim._new_email(person.first_name, person.last_name)
    return person


def simulate(sim: _Simulator) -> None:
    """Orders day by day; a new buyer may come back; ids follow the order date."""
    rng = sim.rng
    known = sorted((p for p in sim.persons if p.has_point and (p.contacts or p.b24_contact)),
                   key=lambda p: (_first_seen(p), p.idx))
    seen = 0
    for i in range(sim.n_days):
        day = sim.start + timedelta(days=i)
        day_ts = msk_ts(day)
        while seen < len(known) and _first_seen(known[seen]) < day_ts:
            seen += 1
        lam = SHOP_RATE * sim.scale * sim._growth(day)
        for _ in range(_poisson(rng, lam)):
            if seen and rng.random() < KNOWN_BUYER_P:
                utm = rng.choices(*zip(*KNOWN_BUYER_UTMS, strict=True))[0]
                _order(sim, known[rng.randrange(seen)], day, utm)
                continue
            buyer = _new_buyer(sim)
            utm = rng.choices(*zip(*NEW_BUYER_UTMS, strict=True))[0]
            _order(sim, buyer, day, utm)
            next_day = day + timedelta(days=rng.randrange(20, 200))
            if rng.random() < REPEAT_ORDER_P and next_day <= sim.end:
                _order(sim, buyer, next_day, None)
    for n, order in enumerate(sorted(sim.shop_orders, key=lambda o: (o.day, o.seq)), start=1):
        order.order_id = f"SHOP-{n:06d}"


def order_rows(orders: list[ShopOrder]) -> list[dict[str, str]]:
    """The files contract's columns, every value a string ("" for nothing), by order id."""
    rows = []
    for o in sorted(orders, key=lambda x: x.order_id):
        source, medium, campaign = o.utm if o.utm is not None else (None, None, None)
        margin = (o.amount * Decimal(str(C.SHOP_MARGIN))).quantize(Decimal("0.01"),
                                                                   ROUND_HALF_UP)
        rows.append({
            "order_id": o.order_id, "order_date": o.day.isoformat(), "amount": f"{o.amount:.2f}",
            "currency": "RUB", "customer_phone": o.phone, "customer_email": o.email,
            "customer_name": o.name, "product": o.product, "gross_margin": f"{margin:.2f}",
            "utm_source": source or "", "utm_medium": medium or "", "utm_campaign": campaign or "",
        })
    return rows


def _write_csv(path: Path, rows: list[dict[str, str]], *, encoding: str, delimiter: str,
               decimal_comma: bool) -> None:
    with path.open("w", newline="", encoding=encoding) as fh:
        writer = csv.DictWriter(fh, fieldnames=COLUMNS, delimiter=delimiter,
                                quoting=csv.QUOTE_ALL if delimiter == ";" else csv.QUOTE_MINIMAL)
        writer.writeheader()
        for row in rows:
            if decimal_comma:
                row = {**row, "amount": row["amount"].replace(".", ","),
                       "gross_margin": row["gross_margin"].replace(".", ",")}
            writer.writerow(row)


def write_order_files(rows: list[dict[str, str]], folder: Path) -> list[Path]:
    """The first half of the orders (by date) as the site's UTF-8 comma CSV, the rest as the
    accounting tool's cp1251 semicolon CSV with a decimal comma. Earlier files of ours in the
    folder are replaced (an empty file would break the contract, so none is written)."""
    folder.mkdir(parents=True, exist_ok=True)
    for old in folder.glob(f"{FILE_PREFIX}*"):
        old.unlink()
    ordered = sorted(rows, key=lambda r: (r["order_date"], r["order_id"]))
    half = (len(ordered) + 1) // 2
    parts = [(folder / f"{FILE_PREFIX}site.csv", ordered[:half], "utf-8", ",", False),
             (folder / f"{FILE_PREFIX}1c_cp1251.csv", ordered[half:], "cp1251", ";", True)]
    written = []
    for path, part, encoding, delimiter, decimal_comma in parts:
        if part:
            _write_csv(path, part, encoding=encoding, delimiter=delimiter,
                       decimal_comma=decimal_comma)
            written.append(path)
    return written
