"""The synthetic business's internal model: people and every record they leave in each source.

The generator simulates *people*; a source record (an amoCRM contact, a Bitrix24 contact, a
row of an orders file) always points back to its person. The ground truth is computed from
these objects, never by re-parsing the emitted payloads, so the marts are checked against what
really happened rather than against a second implementation of the same parsing.

All times are Moscow local (UTC+3, fixed) held as Unix seconds.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field
from datetime import date, datetime, time, timedelta, timezone
from decimal import Decimal

from synthetic import catalog as C

MSK = timezone(timedelta(hours=3), "MSK")
DAY = 86_400

Utm = tuple[str | None, str | None, str | None] | None  # (source, medium, campaign) or no UTM


def msk_ts(d: date, t: time = time(0, 0)) -> int:
    """Unix seconds of a Moscow wall-clock moment."""
    return int(datetime.combine(d, t, tzinfo=MSK).timestamp())


def msk_date(ts: int) -> date:
    """The Moscow calendar date of a Unix moment (reports group by Moscow days)."""
    return datetime.fromtimestamp(ts, MSK).date()


def month_of(d: date) -> date:
    return d.replace(day=1)


# -- repeat behaviour --------------------------------------------------------------------------
# Buyers differ: each has a chance of coming back after a purchase (Beta across buyers) and a
# pace relative to the product's cycle (Gamma, mean 1), and the gaps vary around that pace.
# That is the heterogeneity repeat-purchase models (BG/NBD) expect of a real customer base.
STAY_BETA = (1.6, 0.9)  # mean 0.64
MEAN_STAY = STAY_BETA[0] / sum(STAY_BETA)
PACE_SHAPE = 3.0
GAP_SHAPE = 1.5
SAME_PRODUCT_P = 0.7  # a repeat purchase is of the same product: buyers differ in spend too


def loyalty(person: Person, seed: int) -> tuple[float, float]:
    """The person's (stay, pace), drawn once from a generator of their own: the same person
    gets the same loyalty whatever else the simulation draws."""
    if person.loyalty is None:
        rng = random.Random(f"{seed}:loyalty:{person.idx}")
        person.loyalty = (rng.betavariate(*STAY_BETA),
                          rng.gammavariate(PACE_SHAPE, 1 / PACE_SHAPE))
    return person.loyalty


def repeat_chance_and_gap(person: Person, product: C.Product, seed: int,
                          rng: random.Random) -> tuple[float, float]:
    """After a purchase of ``product``: the chance the person buys again, and the gap in
    days until they do."""
    stay, pace = loyalty(person, seed)
    chance = min(0.97, product.repeat_p * stay / MEAN_STAY)
    gap = product.cycle_days * pace * rng.gammavariate(GAP_SHAPE, 1 / GAP_SHAPE)
    return chance, gap


# -- people -------------------------------------------------------------------------------------
@dataclass(eq=False)
class Person:
    """One real human. Phones and e-mails are unique across persons (identity is by person)."""

    idx: int
    gender: str
    first_name: str
    last_name: str
    phone: str | None  # national 10 digits (valid RU mobile) or None
    email: str | None  # lower-case, unique
    contacts: list[Contact] = field(default_factory=list)  # amoCRM contacts
    leads: list[Lead] = field(default_factory=list)  # amoCRM leads (never deleted ones)
    alt_email: str | None = None  # second address introduced by a duplicate contact
    company: Company | None = None  # a B2B buyer's company (amoCRM)
    customer: Customer | None = None  # amoCRM buyer-funnel customer
    transactions: list[Transaction] = field(default_factory=list)
    b24_contact: B24Contact | None = None
    b24_leads: list[B24Lead] = field(default_factory=list)
    loyalty: tuple[float, float] | None = None  # (stay, pace): see repeat_chance_and_gap
    b24_deals: list[B24Deal] = field(default_factory=list)
    shop_orders: list[ShopOrder] = field(default_factory=list)

    @property
    def has_point(self) -> bool:
        """Can another source's record be matched to this person at all?"""
        return bool(self.phone or self.email)


# -- amoCRM -------------------------------------------------------------------------------------
@dataclass(eq=False)
class Contact:
    seq: int
    person: Person
    created_ts: int
    name: str
    first_name: str
    last_name: str
    phones: list[str]  # raw strings as typed
    emails: list[tuple[str, str]]  # (raw value, enum_code)
    responsible: int
    id: int = 0
    updated_ts: int = 0
    company: Company | None = None
    consent: bool | None = None  # marketing consent: given / withdrawn / never asked (None)
    do_not_contact: bool = False
    birthday: date | None = None  # the person's birthday, when this contact records it


@dataclass(eq=False)
class Lead:
    seq: int
    person: Person
    contact: Contact
    created_ts: int
    channel: str
    utm: Utm
    pipeline_id: int
    product: C.Product
    responsible: int
    created_by: int
    is_repeat: bool
    status_id: int = 0
    price: int = 0
    closed_ts: int | None = None
    loss_reason_id: int | None = None
    moves: list[tuple[int, int, int]] = field(default_factory=list)  # (ts, from, to)
    updated_ts: int = 0
    closest_task_ts: int | None = None
    id: int = 0
    company: Company | None = None


@dataclass(eq=False)
class SpamLead:
    """A junk form submission a manager deleted: exists only in amoCRM's bin."""

    seq: int
    created_ts: int
    deleted_ts: int
    utm: Utm
    id: int = 0


@dataclass(eq=False)
class Company:
    seq: int
    name: str
    created_ts: int
    responsible: int
    updated_ts: int = 0
    id: int = 0


@dataclass(eq=False)
class Customer:
    """An amoCRM buyer-funnel customer, opened for a person after their first won lead."""

    seq: int
    person: Person
    contact: Contact  # the main contact
    created_ts: int
    responsible: int
    product: C.Product  # what they are expected to buy again
    transactions: list[Transaction] = field(default_factory=list)
    id: int = 0


@dataclass(eq=False)
class Transaction:
    """A repeat purchase recorded in the buyer funnel instead of a repeat lead.

    Carries the lead-like attributes the purchase loop reads (status, product, times), so the
    loop goes on from a transaction exactly as from a won lead."""

    seq: int
    customer: Customer
    completed_ts: int
    created_ts: int  # when the manager recorded it (>= completed_ts)
    price: int
    product: C.Product
    responsible: int
    id: int = 0
    status_id: int = C.WON_STATUS_ID

    @property
    def closed_ts(self) -> int:
        return self.completed_ts


# -- Bitrix24 -----------------------------------------------------------------------------------
@dataclass(eq=False)
class B24Contact:
    seq: int
    person: Person
    created_ts: int
    first_name: str
    last_name: str
    phones: list[tuple[str, str]]  # (raw value, VALUE_TYPE)
    emails: list[tuple[str, str]]
    responsible: int
    updated_ts: int = 0
    id: int = 0
    consent: bool | None = None  # marketing consent: given / withdrawn / never asked (None)
    do_not_contact: bool = False
    birthday: date | None = None  # the person's birthday, when this contact records it


@dataclass(eq=False)
class B24Lead:
    seq: int
    person: Person
    contact: B24Contact
    created_ts: int
    channel: str
    utm: Utm
    product: C.Product
    responsible: int
    moves: list[tuple[int, str]] = field(default_factory=list)  # (ts, new status)
    status: str = "NEW"
    opportunity: Decimal = Decimal("0.00")
    closed_ts: int | None = None
    updated_ts: int = 0
    deal: B24Deal | None = None
    id: int = 0


@dataclass(eq=False)
class B24Deal:
    seq: int
    person: Person
    contact: B24Contact
    created_ts: int
    category: int
    channel: str
    utm: Utm
    product: C.Product
    responsible: int
    created_by: int
    lead: B24Lead | None
    moves: list[tuple[int, str]] = field(default_factory=list)  # (ts, new stage)
    stage: str = "NEW"
    opportunity: Decimal = Decimal("0.00")
    closed_ts: int | None = None
    planned_close_ts: int = 0
    updated_ts: int = 0
    id: int = 0

    @property
    def inquiry_ts(self) -> int:
        """A converted lead and its deal are one inquiry, dated by the lead."""
        return self.lead.created_ts if self.lead is not None else self.created_ts

    @property
    def is_won(self) -> bool:
        return self.stage.endswith("WON")


# -- the online shop (orders files) ------------------------------------------------------------
@dataclass(eq=False)
class ShopOrder:
    seq: int
    person: Person
    day: date
    amount: Decimal
    product: str
    phone: str  # as typed in the shop's checkout ("" when not given)
    email: str
    name: str
    utm: Utm
    order_id: str = ""
