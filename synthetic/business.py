"""A seeded, deterministic synthetic business (two brands, two CRMs, an online shop and four ad
platforms), API-shaped.

``generate(seed, scale, start, end)`` simulates an online-education business that advertises on
Yandex Direct, VK Ads, Google Ads and Meta. New people arrive through eight channels (the volume
of the four paid ones is driven by the day's spend per campaign or ad plan). Most inquiries go
to the main brand, which sells three courses through amoCRM: each gets a lead that moves stage
by stage and is won, lost or still open at the as-of date (``end``); customers come back for
repeat purchases (a second "repeat sales" pipeline, or transactions of the buyer funnel); some
people are entered twice as duplicate contacts, a few leads are B2B (a company), and spam leads
get deleted. About a fifth of the inquiries go to the second brand, which sells through a
Bitrix24 portal (``synthetic.bitrix24``); the brand's online shop exports its orders as files
(``synthetic.shop``). Some people buy from both brands: their records in the two CRMs share a
phone or an e-mail, which is how the warehouse can tell it is one person.

The ground truth (``synthetic.truth``) is computed from the simulation's own model (who is the
same person, which inquiries were won), never by re-parsing the emitted payloads.

All times are Moscow local (UTC+3, fixed); amoCRM gets Unix seconds, Bitrix24 ISO strings with
the +03:00 offset. Only ``random.Random`` seeded from ``seed`` is used: the same arguments give
identical payloads.
"""

from __future__ import annotations

import math
import random
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from decimal import ROUND_HALF_UP, Decimal
from pathlib import Path
from typing import Any

import pandas as pd

from synthetic import amocrm_extra, shop, truth
from synthetic import catalog as C
from synthetic.bitrix24 import Bitrix24Brand, bitrix24_payloads
from synthetic.model import (
    DAY,
    MSK,
    SAME_PRODUCT_P,
    Company,
    Contact,
    Customer,
    Lead,
    Person,
    ShopOrder,
    SpamLead,
    Transaction,
    msk_date,
    msk_ts,
    repeat_chance_and_gap,
)

__all__ = ["DAY", "MSK", "GroundTruth", "SyntheticBusiness", "generate"]

# first-lead win probability by channel, and how the losses spread over the 4 steps
# (incoming->qualification, ->proposal, ->invoice, ->won): step pass prob q_i = w ** share_i
CHANNEL_WIN = {
    "yandex_direct": 0.31, "vk_ads": 0.19, "google_ads": 0.33, "meta_ads": 0.17,
    "organic": 0.38, "referral": 0.54, "direct": 0.45, "other": 0.25,
}
CHANNEL_LOSS_SHAPE = {
    "yandex_direct": (0.35, 0.30, 0.20, 0.15),
    "vk_ads": (0.55, 0.25, 0.12, 0.08),  # mostly not target, lost early
    "google_ads": (0.30, 0.30, 0.22, 0.18),  # search intent: lost later, on price
    "meta_ads": (0.50, 0.28, 0.14, 0.08),  # impulse form fills, lost early
    "organic": (0.30, 0.30, 0.25, 0.15),
    "referral": (0.15, 0.25, 0.30, 0.30),  # warm, lost late (price, competitor)
    "direct": (0.25, 0.30, 0.25, 0.20),
    "other": (0.45, 0.30, 0.15, 0.10),
}
# mean days spent before each step of the main pipeline, and of the repeat pipeline
MAIN_STEP_DAYS = (0.4, 2.5, 4.0, 5.0)
REPEAT_STEP_DAYS = (0.7, 3.0)
# first products by channel (weights over catalog.PRODUCTS, and over catalog.B24_PRODUCTS)
CHANNEL_PRODUCTS = {
    "yandex_direct": (6, 2, 3), "vk_ads": (6, 1, 3), "google_ads": (5, 3, 2),
    "meta_ads": (7, 1, 2), "organic": (5, 3, 2), "referral": (3, 5, 2), "direct": (4, 3, 3),
    "other": (5, 1, 4),
}
# unpaid arrivals of new people per day at growth 1.0, scale 1.0 (the paid channels' volume
# follows their spend: cost / cpl per campaign)
CHANNEL_RATE = {"organic": 0.58, "referral": 0.24, "direct": 0.38, "other": 0.10}
# the channel of a returning customer's next purchase, and of a lost person's new inquiry
REPEAT_CHANNELS = {"direct": 50, "yandex_direct": 18, "organic": 14, "other": 12, "vk_ads": 4,
                   "meta_ads": 2}
REINQUIRY_CHANNELS = {"yandex_direct": 25, "vk_ads": 10, "google_ads": 8, "meta_ads": 5,
                      "organic": 25, "referral": 10, "direct": 25, "other": 5}
META_SOURCES = (("instagram", 6), ("facebook", 4))  # utm_source of a Meta lead
SEASON = {1: 0.95, 2: 1.0, 3: 1.05, 4: 1.0, 5: 0.9, 6: 0.8, 7: 0.75, 8: 0.85, 9: 1.1,
          10: 1.15, 11: 1.15, 12: 1.05}
WEEKDAY = (1.1, 1.1, 1.1, 1.05, 1.0, 0.75, 0.7)
HOUR_WEIGHTS = (1, 1, 0, 0, 0, 0, 1, 2, 4, 7, 9, 10, 10, 9, 9, 9, 8, 8, 7, 7, 6, 5, 3, 2)
STALL_P = 0.012  # a lead that nobody touches again and stays open forever
REINQUIRY_P = 0.12  # a lost first lead comes back later with a new inquiry
DUPLICATE_P = 0.11  # a later lead of a person gets a new (duplicate) contact
B24_SHARE = 0.22  # share of new people's inquiries that go to the Bitrix24 brand
CROSS_BRAND_P = 0.09  # a buyer of one brand later also inquires at the other
B2B_P = 0.02  # a first amoCRM lead that comes from a company (B2B)
CUSTOMER_P = 0.3  # a first amoCRM win opens a buyer-funnel customer
TRANSACTION_P = 0.6  # a buyer-funnel customer's repeat purchase is a transaction, not a lead
SPAM_RATE = 0.03  # spam leads per day at scale 1 (deleted by a manager within hours)

_ULID_ALPHABET = "0123456789abcdefghjkmnpqrstvwxyz"


# -- public dataclasses -------------------------------------------------------------------------
@dataclass(eq=False)
class GroundTruth:
    """Known answers, computed from the generator's model (pandas DataFrames)."""

    new_customers_by_channel_month: pd.DataFrame  # month, channel, new_customers
    revenue_by_month: pd.DataFrame  # month, revenue, orders
    spend_by_channel_month: pd.DataFrame  # month, channel, spend
    cohort_sizes: pd.DataFrame  # cohort_month, customers
    leads_by_channel_month: pd.DataFrame  # month, channel, leads
    orders_by_source_month: pd.DataFrame  # month, order_source, orders, revenue
    leads_by_crm_month: pd.DataFrame  # month, crm, leads
    leads_by_campaign_month: pd.DataFrame  # month, channel, campaign_id, leads (paid leads)

    TABLES = (
        "new_customers_by_channel_month", "revenue_by_month", "spend_by_channel_month",
        "cohort_sizes", "leads_by_channel_month", "orders_by_source_month",
        "leads_by_crm_month", "leads_by_campaign_month",
    )

    # the extended truth (metric tables, per-customer rows): computed on first use, since most
    # callers of generate() never need it
    _sim: Any = field(default=None, repr=False)
    _extended: dict[str, pd.DataFrame] | None = field(default=None, repr=False)

    def tables(self) -> dict[str, pd.DataFrame]:
        return {name: getattr(self, name) for name in self.TABLES}

    def extended(self) -> dict[str, pd.DataFrame]:
        """The extended truth tables (synthetic.truth_* modules), by name; see truth.py."""
        if self._extended is None:
            self._extended = truth.extended_truth(self._sim)
        return self._extended

    def table(self, name: str) -> pd.DataFrame:
        """One ground-truth table, base or extended, by name."""
        if name in self.TABLES:
            return getattr(self, name)
        return self.extended()[name]


@dataclass(eq=False)
class SyntheticBusiness:
    seed: int
    scale: float
    start: date
    end: date  # the as-of date of the business
    account_id: int
    subdomain: str
    # users, pipelines, loss_reasons, contacts, leads (deleted spam leads too, is_deleted true),
    # events, companies, customers, customer_statuses, transactions
    amocrm: dict[str, list[dict]]
    # users, statuses, categories, leads, deals, contacts, stagehistory: native values, in the
    # shape emulators.bitrix24.Bitrix24Emulator(data=...) takes (it stringifies on output)
    bitrix24: dict[str, list[dict]]
    # rows of the online shop's orders files: extractors.files.ORDER_COLUMNS, all strings
    file_orders: list[dict[str, str]]
    # daily rows, money Decimal RUB without VAT (2 decimals), date 'YYYY-MM-DD', one row per
    # campaign (ad plan) per day, in the shape the platform's emulator takes:
    yandex_direct: list[dict]  # date, campaign_id, campaign_name, impressions, clicks, cost
    vk_ads: list[dict]  # date, ad_plan_id, ad_plan_name, shows, clicks, spent
    google_ads: list[dict]  # date, campaign_id, campaign_name, impressions, clicks, cost
    meta_ads: list[dict]  # date, campaign_id (str), campaign_name, impressions, clicks, spend
    ground_truth: GroundTruth
    bitrix24_account: str = C.B24_PORTAL  # the portal host: the Bitrix24 `account`

    def ad_rows(self) -> dict[str, list[dict]]:
        """The daily spend rows of every ad platform, by channel."""
        return {"yandex_direct": self.yandex_direct, "vk_ads": self.vk_ads,
                "google_ads": self.google_ads, "meta_ads": self.meta_ads}

    @property
    def as_of_ts(self) -> int:
        """Unix seconds of the last second of ``end`` in Moscow time."""
        return msk_ts(self.end + timedelta(days=1)) - 1

    def write_ground_truth(self, folder: Path) -> None:
        """Write one CSV per ground-truth table (``<table>.csv``, dates as YYYY-MM-DD)."""
        folder = Path(folder)
        folder.mkdir(parents=True, exist_ok=True)
        for name, frame in self.ground_truth.tables().items():
            frame.to_csv(folder / f"{name}.csv", index=False)

    def write_order_files(self, folder: Path) -> list[Path]:
        """Write the shop's orders as files under ``<folder>/orders/`` (see ``shop.write``):
        the files source reads that folder."""
        return shop.write_order_files(self.file_orders, Path(folder) / "orders")


class _Simulator:
    def __init__(self, seed: int, scale: float, start: date, end: date) -> None:
        if scale <= 0:
            raise ValueError("scale must be > 0")
        if end < start:
            raise ValueError("end must not be before start")
        self.rng = random.Random(seed)
        self.seed = seed
        self.scale = scale
        self.start = start
        self.end = end
        self.start_ts = msk_ts(start)
        self.end_ts = msk_ts(end + timedelta(days=1)) - 1
        self.n_days = (end - start).days + 1
        self.persons: list[Person] = []
        self.contacts: list[Contact] = []
        self.leads: list[Lead] = []
        self.ad_rows: dict[str, list[dict]] = {channel: [] for channel in C.AD_CAMPAIGNS}
        self._phones: set[str] = set()
        self._emails: set[str] = set()
        self.companies: list[Company] = []
        self.customers: list[Customer] = []
        self.transactions: list[Transaction] = []
        self.spam: list[SpamLead] = []
        self.shop_orders: list[ShopOrder] = []
        self.b24 = Bitrix24Brand(self)

    # ---- small random helpers ----
    def _poisson(self, lam: float) -> int:
        if lam <= 0:
            return 0
        if lam > 30:  # normal approximation, never hit at sane scales
            return max(0, round(self.rng.gauss(lam, math.sqrt(lam))))
        limit, k, p = math.exp(-lam), 0, 1.0
        while True:
            p *= self.rng.random()
            if p <= limit:
                return k
            k += 1

    def _weighted(self, items, weights):
        return self.rng.choices(items, weights=weights, k=1)[0]

    def _time_of_day(self) -> int:
        hour = self._weighted(range(24), HOUR_WEIGHTS)
        return hour * 3600 + self.rng.randrange(3600)

    def _growth(self, d: date) -> float:
        frac = (d - self.start).days / max(1, self.n_days - 1)
        return 0.75 + 0.5 * frac

    def _manager(self, d: date, prefer: int | None = None) -> C.Manager:
        active = [m for m in C.MANAGERS if m.active_on(d)]
        for m in active:
            if m.id == prefer:
                return m
        return self._weighted(active, [m.weight for m in active])

    # ---- people and contacts ----
    def _new_phone(self) -> str:
        while True:
            prefix = self.rng.choice((900, 903, 905, 906, 909, 910, 912, 915, 916, 917, 919,
                                      920, 921, 925, 926, 929, 950, 951, 960, 963, 965, 967,
                                      977, 980, 985, 987, 991, 995, 999))
            number = f"{prefix}{self.rng.randrange(10**7):07d}"
            if number not in self._phones:
                self._phones.add(number)
                return number

    def _format_phone(self, n: str, avoid: set[str] = frozenset()) -> str:
        a, b, c, d = n[:3], n[3:6], n[6:8], n[8:]
        styles = [
            f"+7 {a} {b}-{c}-{d}", f"8 ({a}) {b} {c} {d}", f"7{n}", n, f"+7({a}){b}{c}{d}",
            f"8-{a}-{b}-{c}-{d}", f"+7 ({a}) {b}-{c}-{d}", f"8{n}", f"+7{n}",
        ]
        options = [s for s in styles if s not in avoid] or styles
        return self.rng.choices(options, weights=[6, 5, 3, 3, 2, 2, 3, 2, 3][: len(options)])[0]

    def _new_email(self, first: str, last: str) -> str:
        f, l_ = C.translit(first), C.translit(last)
        domain = self._weighted([d for d, _ in C.EMAIL_DOMAINS], [w for _, w in C.EMAIL_DOMAINS])
        style = self.rng.randrange(4)
        local = (f"{f}.{l_}", f"{f[0]}.{l_}", f"{l_}{f[0]}", f"{f}{l_[:3]}")[style]
        candidate = f"{local}@{domain}"
        while candidate in self._emails:
            candidate = f"{local}{self.rng.randrange(1, 2000)}@{domain}"
        self._emails.add(candidate)
        return candidate

    def _email_variant(self, email: str) -> str:
        """The same address typed differently (case, spaces): normalises to the same value."""
        local, domain = email.split("@")
        kind = self.rng.randrange(3)
        if kind == 0:
            return email.upper()
        if kind == 1:
            return f"{local.capitalize()}@{domain.capitalize()}"
        return f" {email} "

    def _new_person(self) -> Person:
        gender = "f" if self.rng.random() < 0.58 else "m"
        first = self.rng.choice(C.FEMALE_FIRST if gender == "f" else C.MALE_FIRST)
        last = self.rng.choice(C.SURNAMES) + ("а" if gender == "f" else "")
        r = self.rng.random()
        phone = self._new_phone() if r < 0.965 else None
        email = self._new_email(first, last) if self.rng.random() < 0.7 else None
        person = Person(len(self.persons), gender, first, last, phone, email)
        self.persons.append(person)
        return person

    def _add_contact(self, person: Person, ts: int, responsible: int, phones: list[str],
                     emails: list[tuple[str, str]], name_style: int = 0) -> Contact:
        first, last = person.first_name, person.last_name
        if name_style == 1:  # only the first name was typed
            last = ""
        elif name_style == 2:  # lower-case
            first, last = first.lower(), last.lower()
        name = f"{first} {last}".strip() if name_style != 3 else f"{last} {first}"
        ts = max(ts, self.start_ts)
        contact = Contact(len(self.contacts), person, ts, name, first, last, phones, emails,
                           responsible)
        contact.updated_ts = ts
        person.contacts.append(contact)
        self.contacts.append(contact)
        return contact

    def _first_contact(self, person: Person, ts: int, responsible: int) -> Contact:
        phones: list[str] = []
        if person.phone:
            phones.append(self._format_phone(person.phone))
        elif self.rng.random() < 0.6:  # typed something that is not a phone number
            phones.append(self.rng.choice(C.JUNK_PHONES))
        emails = []
        if person.email:
            raw = person.email if self.rng.random() < 0.9 else self._email_variant(person.email)
            emails.append((raw, "WORK" if self.rng.random() < 0.3 else "PRIV"))
        return self._add_contact(person, ts, responsible, phones, emails)

    def _duplicate_contact(self, person: Person, ts: int, responsible: int) -> Contact | None:
        """A second (or third) contact for the same person, findable by phone or e-mail."""
        used = {p for c in person.contacts for p in c.phones}
        name_style = self._weighted([0, 1, 2, 3], [5, 3, 1, 1])
        kinds, weights = [], []
        if person.phone:
            kinds += ["phone", "chain"]
            weights += [6, 2.5]
        if person.email or person.alt_email:
            kinds.append("email")
            weights.append(2.5)
        if not kinds:
            return None
        kind = self._weighted(kinds, weights)
        if len(person.contacts) >= 2:
            # a third contact: only via the alternative e-mail of a chain (transitive match)
            if not person.alt_email:
                return None
            kind = "email"
        if kind == "phone":
            phones = [self._format_phone(person.phone, avoid=used)]
            emails = []
            if person.email:
                r = self.rng.random()
                if r < 0.45:
                    emails.append((self._email_variant(person.email), "PRIV"))
                elif r < 0.6:
                    emails.append((person.email, "WORK"))
            return self._add_contact(person, ts, responsible, phones, emails, name_style)
        if kind == "chain":
            # same phone, a brand-new e-mail that a later contact may use on its own
            person.alt_email = self._new_email(person.first_name, person.last_name)
            phones = [self._format_phone(person.phone, avoid=used)]
            return self._add_contact(person, ts, responsible, phones,
                                     [(person.alt_email, "WORK")], name_style)
        address = person.alt_email or person.email
        phones = [self.rng.choice(C.JUNK_PHONES)] if self.rng.random() < 0.5 else []
        return self._add_contact(person, ts, responsible, phones,
                                 [(self._email_variant(address), "PRIV")], name_style)

    def _contact_for_next_lead(self, person: Person, ts: int, responsible: int) -> Contact:
        # a person who introduced a second e-mail (a "chain") often writes again from it alone
        chain = person.alt_email is not None and len(person.contacts) == 2
        if self.rng.random() < (0.6 if chain else DUPLICATE_P):
            dup = self._duplicate_contact(person, ts - self.rng.randrange(30, 600), responsible)
            if dup is not None:
                return dup
        if len(person.contacts) > 1 and self.rng.random() < 0.5:
            return self.rng.choice(person.contacts[1:])
        return person.contacts[0]

    # ---- UTM ----
    def _utm(self, channel: str, campaign: C.Campaign | None = None):
        rng = self.rng
        if channel == "yandex_direct":
            camp = campaign or self._weighted(C.CAMPAIGNS, [1, 2, 3, 1])
            return ("yandex", "cpc", str(camp.id))
        if channel in ("vk_ads", "google_ads"):
            camp = campaign or rng.choice(C.AD_CAMPAIGNS[channel])
            return ("vk" if channel == "vk_ads" else "google", "cpc", str(camp.id))
        if channel == "meta_ads":
            camp = campaign or rng.choice(C.META_CAMPAIGNS)
            source = self._weighted([s for s, _ in META_SOURCES], [w for _, w in META_SOURCES])
            return (source, "cpc", str(camp.id))
        if channel == "organic":
            return (self._weighted(["yandex", "google"], [6, 4]), "organic", None)
        if channel == "referral":
            return (rng.choice(["vc.ru", "partner_blog", "habr.com", "dzen.ru"]), "referral",
                    None)
        if channel == "direct":
            return None
        return rng.choice([("telegram", "social", "tg_channel"), ("post", "email", "digest"),
                           ("telegram", None, None), ("partner_chat", "messenger", None)])

    # ---- leads ----
    def _new_lead(self, person: Person, contact: Contact, ts: int, channel: str,
                  utm, product: C.Product, manager: C.Manager, repeat: bool) -> Lead:
        created_by = manager.id if channel == "direct" or repeat else 0
        lead = Lead(len(self.leads), person, contact, ts, channel, utm,
                    C.REPEAT_PIPELINE_ID if repeat else C.MAIN_PIPELINE_ID, product,
                    manager.id, created_by, repeat, company=person.company)
        person.leads.append(lead)
        self.leads.append(lead)
        contact.updated_ts = max(contact.updated_ts, ts)
        return lead

    def _price(self, product: C.Product, ts: int) -> int:
        base = product.price * (C.PRICE_RISE if msk_date(ts) >= C.PRICE_RISE_DATE else 1.0)
        discount = self._weighted([1.0, 0.95, 0.9, 0.85], [10, 3, 2, 1])
        return int(round(base * discount / 10.0) * 10)

    def _play(self, lead: Lead, win_p: float) -> None:
        """Move the lead through its pipeline; cut everything after the as-of moment."""
        rng = self.rng
        repeat = lead.is_repeat
        stages = C.REPEAT_OPEN if repeat else C.MAIN_OPEN
        step_days = REPEAT_STEP_DAYS if repeat else MAIN_STEP_DAYS
        shape = (0.5, 0.5) if repeat else CHANNEL_LOSS_SHAPE[lead.channel]
        n_steps = len(stages)  # steps: to each later open stage, then to "won"
        t = lead.created_ts
        pos = 0  # index of the current open stage
        moves: list[tuple[int, int, int]] = []
        outcome = "stalled"  # every path below ends in a decision
        for step in range(n_steps):
            t += int(rng.expovariate(1.0 / (step_days[step] * DAY))) + rng.randrange(60, 1800)
            if rng.random() < STALL_P:
                outcome = "stalled"
                break
            if rng.random() >= win_p ** shape[step]:
                reasons = C.LOSS_BY_STAGE[min(pos, 3)]
                lead.loss_reason_id = self._weighted([r for r, _ in reasons],
                                                     [w for _, w in reasons])
                moves.append((t, stages[pos], C.LOST_STATUS_ID))
                outcome = "lost"
                break
            if step == n_steps - 1:
                moves.append((t, stages[pos], C.WON_STATUS_ID))
                outcome = "won"
                break
            # pass to the next stage; sometimes a manager skips stages
            nxt = step + 1
            if nxt < n_steps - 1 and rng.random() < 0.18:
                continue  # skipped: the next move will jump over this stage
            if repeat and rng.random() < 0.25:
                continue  # repeat buyers often pay straight away
            moves.append((t, stages[pos], stages[nxt]))
            pos = nxt
        # fix "from" statuses after skips: each move starts where the previous one ended
        fixed, cur = [], stages[0]
        for ts, _src, dst in moves:
            if ts > self.end_ts:
                break
            fixed.append((ts, cur, dst))
            cur = dst
        lead.moves = fixed
        lead.status_id = cur
        last_ts = fixed[-1][0] if fixed else lead.created_ts
        closed = cur in (C.WON_STATUS_ID, C.LOST_STATUS_ID)
        if cur != C.LOST_STATUS_ID:
            lead.loss_reason_id = None
        lead.closed_ts = last_ts if closed else None
        if cur == C.WON_STATUS_ID:
            lead.price = self._price(lead.product, lead.created_ts)
        elif rng.random() < (0.6 if not closed else 0.3):
            lead.price = self._price(lead.product, lead.created_ts)  # expected budget
        upd = last_ts
        if rng.random() < 0.3:  # a later edit (note, field) without a status change
            upd += rng.randrange(60, 3 * DAY)
        lead.updated_ts = min(max(upd, lead.created_ts), self.end_ts)
        if not closed and outcome != "stalled":
            lead.closest_task_ts = self.end_ts + 1 + rng.randrange(0, 4) * DAY + 10 * 3600
        lead.contact.updated_ts = max(lead.contact.updated_ts, min(lead.updated_ts,
                                                                   lead.created_ts + 600))

    def _win_p(self, channel: str, product: C.Product, manager: C.Manager, ts: int) -> float:
        frac = (ts - self.start_ts) / max(1, self.end_ts - self.start_ts)
        w = CHANNEL_WIN[channel] * manager.skill * product.win_factor * (0.9 + 0.2 * frac)
        return min(0.95, max(0.02, w))

    def _person_journey(self, ts: int, channel: str, campaign: C.Campaign | None,
                        person: Person | None = None) -> None:
        """A person's life at the main brand: a first amoCRM lead, then repeat purchases
        (leads, or buyer-funnel transactions) or a re-inquiry after a loss."""
        rng = self.rng
        person = person or self._new_person()
        d = msk_date(ts)
        manager = self._manager(d)
        contact = self._first_contact(person, ts - rng.randrange(5, 120), manager.id)
        if person.company is None and rng.random() < B2B_P:
            self._open_company(person, contact, ts, manager.id)
        product = self._weighted(C.PRODUCTS, CHANNEL_PRODUCTS[channel])
        lead = self._new_lead(person, contact, ts, channel, self._utm(channel, campaign),
                              product, manager, repeat=False)
        self._play(lead, self._win_p(channel, product, manager, ts))
        self._purchases(person, lead)
        self._maybe_cross_brand(person, to_bitrix24=True)

    def _purchases(self, person: Person, last: Lead | Transaction) -> None:
        """Repeat purchases after a win, a new inquiry after a loss, until the person stops."""
        rng = self.rng
        n_orders = 0
        retries = 0
        while True:
            if last.status_id == C.WON_STATUS_ID:
                n_orders += 1
                if n_orders == 1:
                    self._maybe_open_customer(person, last)
                p, gap = repeat_chance_and_gap(person, last.product, self.seed, rng)
                next_product = (last.product if rng.random() < SAME_PRODUCT_P else
                                self._weighted(C.PRODUCTS, C.NEXT_PRODUCT[last.product.code]))
                repeat = True
            elif last.status_id == C.LOST_STATUS_ID and n_orders == 0 and retries == 0:
                p, gap, next_product, repeat = REINQUIRY_P, rng.uniform(20, 240), None, False
                retries += 1
            elif last.status_id == C.LOST_STATUS_ID and n_orders > 0 and retries < 2:
                p, gap = 0.35, last.product.cycle_days * rng.uniform(0.3, 0.8)
                next_product, repeat = last.product, True
                retries += 1
            else:
                return
            if rng.random() >= p:
                return
            start = last.closed_ts or last.created_ts
            nts = start + int(gap * DAY)
            nd = msk_date(nts)
            nts = msk_ts(nd) + self._time_of_day()
            if nts > self.end_ts or nts <= last.created_ts:
                return
            if repeat:
                ch = self._weighted(list(REPEAT_CHANNELS), list(REPEAT_CHANNELS.values()))
                camp = next((c for c in C.AD_CAMPAIGNS.get(ch, ()) if c.retargeting), None)
                manager = self._manager(nd, prefer=last.responsible)
                customer = person.customer
                if (customer is not None and customer.created_ts < nts
                        and rng.random() < TRANSACTION_P):
                    last = self._transaction(customer, nts, next_product, manager.id)
                    continue
            else:
                ch = self._weighted(list(REINQUIRY_CHANNELS), list(REINQUIRY_CHANNELS.values()))
                camp = None
                next_product = self._weighted(C.PRODUCTS, CHANNEL_PRODUCTS[ch])
                manager = self._manager(nd)
            contact = self._contact_for_next_lead(person, nts, manager.id)
            last = self._new_lead(person, contact, nts, ch, self._utm(ch, camp), next_product,
                                  manager, repeat=repeat)
            win_p = (min(0.95, 0.82 * math.sqrt(manager.skill)) if repeat
                     else self._win_p(ch, next_product, manager, nts))
            self._play(last, win_p)

    # ---- B2B, buyer funnel, the other brand ----
    def _open_company(self, person: Person, contact: Contact, ts: int, responsible: int) -> None:
        """A B2B buyer: the company is created with the first lead and linked to it."""
        name = self.rng.choice(C.COMPANY_FORMS) + " «" + self.rng.choice(C.COMPANY_NAMES) + "»"
        company = Company(len(self.companies), name, contact.created_ts, responsible,
                          updated_ts=ts)
        self.companies.append(company)
        person.company = company
        contact.company = company

    def _maybe_open_customer(self, person: Person, won: Lead | Transaction) -> None:
        """After a first win a manager sometimes opens a buyer-funnel customer for the main
        contact; later repeat purchases may then be recorded as its transactions."""
        if person.customer is not None or not isinstance(won, Lead):
            return
        if self.rng.random() >= CUSTOMER_P:
            return
        created = won.closed_ts + self.rng.randrange(600, 2 * DAY)
        if created > self.end_ts:
            return
        customer = Customer(len(self.customers), person, won.contact, created, won.responsible,
                            won.product)
        self.customers.append(customer)
        person.customer = customer

    def _transaction(self, customer: Customer, ts: int, product: C.Product,
                     responsible: int) -> Transaction:
        recorded = min(self.end_ts, ts + self.rng.randrange(60, 4 * 3600))
        tx = Transaction(len(self.transactions), customer, ts, recorded,
                         self._price(product, ts), product, responsible)
        customer.transactions.append(tx)
        customer.person.transactions.append(tx)
        self.transactions.append(tx)
        return tx

    def _cross_ts(self, person: Person) -> int | None:
        """When a buyer of one brand first inquires at the other (None: never, or too late)."""
        wins = [x.closed_ts for x in person.leads if x.status_id == C.WON_STATUS_ID]
        wins += [x.closed_ts for x in person.b24_deals if x.is_won and x.closed_ts]
        if not wins or not person.has_point or self.rng.random() >= CROSS_BRAND_P:
            return None
        ts = min(wins) + int(self.rng.uniform(20, 300) * DAY)
        ts = msk_ts(msk_date(ts)) + self._time_of_day()
        return ts if ts <= self.end_ts else None

    def _maybe_cross_brand(self, person: Person, to_bitrix24: bool) -> None:
        """Some buyers also buy from the other brand: one person in two CRMs, matched by a
        shared phone or e-mail (the other CRM's contact always carries one of them)."""
        if person.b24_contact is not None and person.contacts:
            return  # already in both
        ts = self._cross_ts(person)
        if ts is None:
            return
        ch = self._weighted(list(REINQUIRY_CHANNELS), list(REINQUIRY_CHANNELS.values()))
        if to_bitrix24 and person.b24_contact is None:
            self.b24.journey(ts, ch, None, person)
        elif not to_bitrix24 and not person.contacts:
            self._person_journey(ts, ch, None, person)

    # ---- the run ----
    def run(self) -> None:
        rng = self.rng
        arrivals: list[tuple[int, str, C.Campaign | None]] = []
        for i in range(self.n_days):
            d = self.start + timedelta(days=i)
            g = self._growth(d) * SEASON[d.month]
            wd = WEEKDAY[d.weekday()]
            for channel, campaigns in C.AD_CAMPAIGNS.items():
                id_key, name_key, shows_key, money_key = C.AD_ROW_KEYS[channel]
                for camp in campaigns:
                    spend = camp.budget * self.scale * g * (0.85 if d.weekday() >= 5 else 1.0)
                    spend *= rng.lognormvariate(0.0, 0.15)
                    cost = Decimal(str(round(spend, 2))).quantize(Decimal("0.01"),
                                                                  ROUND_HALF_UP)
                    cpc = camp.cpc * rng.lognormvariate(0.0, 0.1)
                    clicks = max(1, round(float(cost) / cpc))
                    ctr = camp.ctr * rng.lognormvariate(0.0, 0.12)
                    impressions = max(clicks, round(clicks / ctr))
                    self.ad_rows[channel].append({
                        "date": d.isoformat(),
                        id_key: str(camp.id) if channel == "meta_ads" else camp.id,
                        name_key: camp.name, shows_key: impressions, "clicks": clicks,
                        money_key: cost,
                    })
                    lam = float(cost) / camp.cpl * wd * rng.lognormvariate(0.0, 0.2)
                    for _ in range(self._poisson(lam)):
                        arrivals.append((msk_ts(d) + self._time_of_day(), channel, camp))
            for channel, rate in CHANNEL_RATE.items():
                for _ in range(self._poisson(rate * self.scale * g * wd)):
                    arrivals.append((msk_ts(d) + self._time_of_day(), channel, None))
        brand_rng = random.Random(f"{self.seed}:brand")
        for ts, channel, camp in arrivals:
            if brand_rng.random() < B24_SHARE:
                self.b24.journey(ts, channel, camp)
            else:
                self._person_journey(ts, channel, camp)
        self._spam_leads(random.Random(f"{self.seed}:spam"))
        shop.simulate(self)
        self._assign_ids()
        self.b24.assign_ids()

    def _spam_leads(self, rng: random.Random) -> None:
        """Bots filling the site form: a manager deletes the lead within hours."""
        for i in range(self.n_days):
            d = self.start + timedelta(days=i)
            lam = SPAM_RATE * self.scale
            if rng.random() >= lam:
                continue
            created = msk_ts(d) + rng.randrange(DAY)
            deleted = created + rng.randrange(600, 12 * 3600)
            if deleted > self.end_ts:
                continue
            utm = rng.choice([None, ("yandex", "cpc", str(C.CAMPAIGNS[3].id)),
                              ("telegram", None, None)])
            self.spam.append(SpamLead(len(self.spam), created, deleted, utm))

    def _assign_ids(self) -> None:
        """amoCRM ids grow with creation time (gaps: other users' entities in between)."""
        rng = self.rng
        next_id = 51_020_000
        for c in sorted(self.contacts, key=lambda c: (c.created_ts, c.seq)):
            next_id += rng.randrange(1, 40)
            c.id = next_id
        next_id = 30_410_000
        leads: list[Lead | SpamLead] = [*self.leads, *self.spam]
        for lead in sorted(leads, key=lambda x: (x.created_ts, isinstance(x, SpamLead), x.seq)):
            next_id += rng.randrange(1, 30)
            lead.id = next_id
        for start, items in ((60_220_000, self.companies), (1_530_000, self.customers),
                             (880_000, self.transactions)):
            next_id = start
            for item in sorted(items, key=lambda x: (x.created_ts, x.seq)):
                next_id += rng.randrange(1, 20)
                item.id = next_id


# -- payload builders ---------------------------------------------------------------------------
def _user_payload(m: C.Manager, end: date) -> dict:
    full = {"view": "A", "edit": "A", "add": "A", "delete": "A" if m.is_admin else "D",
            "export": "A" if m.is_admin else "D"}
    return {
        "id": m.id, "name": m.name, "email": m.email, "lang": "ru",
        "rights": {
            "leads": dict(full), "contacts": dict(full), "companies": dict(full),
            "tasks": {"edit": "A", "delete": "A"}, "mail_access": True, "catalog_access": True,
            "files_access": True, "status_rights": [], "catalog_rights": None,
            "custom_fields_rights": None, "oper_day_reports_view_access": m.is_admin,
            "oper_day_user_tracking": m.is_admin, "is_admin": m.is_admin, "is_free": False,
            "is_active": m.active_on(end), "group_id": None, "role_id": None,
        },
    }


def _pipeline_payload(pid: int, name: str, sort: int, is_main: bool, statuses) -> dict:
    return {
        "id": pid, "name": name, "sort": sort, "is_main": is_main, "is_unsorted_on": True,
        "is_archive": False, "account_id": C.ACCOUNT_ID,
        "_embedded": {"statuses": [
            {"id": sid, "name": sname, "sort": ssort, "is_editable": editable,
             "pipeline_id": pid, "color": color, "type": stype, "account_id": C.ACCOUNT_ID}
            for sid, sname, ssort, stype, color, editable in statuses
        ]},
    }


def assign_consent(contacts: list[Contact], b24_contacts: list, rng: random.Random) -> None:
    """Marketing consent of every CRM contact (amoCRM, then Bitrix24, each by id): mostly
    given, a few percent withdrawn, the rest never asked; a few are marked do-not-contact."""
    for c in [*sorted(contacts, key=lambda x: x.id), *sorted(b24_contacts, key=lambda x: x.id)]:
        r = rng.random()
        if r < C.CONSENT_GIVEN_P:
            c.consent = True
        elif r < C.CONSENT_GIVEN_P + C.CONSENT_WITHDRAWN_P:
            c.consent = False
        c.do_not_contact = rng.random() < C.DO_NOT_CONTACT_P


def assign_birthdays(contacts: list[Contact], b24_contacts: list, rng: random.Random) -> None:
    """Each person's birthday (ages about 20 to 55), recorded on a share of their CRM contacts
    (amoCRM, then Bitrix24, each by id), so some customers have none known."""
    born: dict[int, date] = {}
    first, span = date(1971, 1, 1), (date(2006, 12, 31) - date(1971, 1, 1)).days
    for c in [*sorted(contacts, key=lambda x: x.id), *sorted(b24_contacts, key=lambda x: x.id)]:
        birthday = born.setdefault(c.person.idx, first + timedelta(days=rng.randrange(span)))
        if rng.random() < C.BIRTHDAY_KNOWN_P:
            c.birthday = birthday


def birthday_epoch(day: date) -> int:
    """amoCRM keeps date fields as Unix time: the day's midnight in Moscow."""
    return int(datetime(day.year, day.month, day.day, tzinfo=MSK).timestamp())


def _contact_payload(c: Contact) -> dict:
    cfv = []
    if c.phones:
        cfv.append({"field_id": C.FIELD_PHONE, "field_name": "Телефон", "field_code": "PHONE",
                    "field_type": "multitext",
                    "values": [{"value": p, "enum_id": C.ENUM_PHONE_MOB, "enum_code": "MOB"}
                               for p in c.phones]})
    if c.emails:
        cfv.append({"field_id": C.FIELD_EMAIL, "field_name": "Email", "field_code": "EMAIL",
                    "field_type": "multitext",
                    "values": [{"value": e, "enum_code": code,
                                "enum_id": C.ENUM_EMAIL_WORK if code == "WORK"
                                else C.ENUM_EMAIL_PRIV} for e, code in c.emails]})
    if c.consent is not None:  # a checkbox field: absent when never asked
        cfv.append({"field_id": C.FIELD_CONSENT, "field_name": "Согласие на рассылку",
                    "field_code": C.CONSENT_FIELD_CODE, "field_type": "checkbox",
                    "values": [{"value": c.consent}]})
    if c.birthday is not None:  # user-created: no field_code, found by its type
        cfv.append({"field_id": C.FIELD_BIRTHDAY, "field_name": "День рождения",
                    "field_code": None, "field_type": "birthday",
                    "values": [{"value": birthday_epoch(c.birthday)}]})
    tags = [{"id": C.DNC_TAG_ID, "name": C.DNC_TAG, "color": None}] if c.do_not_contact else []
    return {
        "id": c.id, "name": c.name, "first_name": c.first_name, "last_name": c.last_name,
        "responsible_user_id": c.responsible, "group_id": 0, "created_by": c.responsible,
        "updated_by": c.responsible, "created_at": c.created_ts, "updated_at": c.updated_ts,
        "closest_task_at": None, "is_deleted": False, "is_unsorted": False,
        "account_id": C.ACCOUNT_ID, "custom_fields_values": cfv or None,
        "_embedded": {"tags": tags, "companies": _company_refs(c.company)},
    }


def _company_refs(company: Company | None) -> list[dict]:
    return [] if company is None else [{"id": company.id}]


def _lead_payload(lead: Lead) -> dict:
    cfv = amocrm_extra.utm_fields(lead.utm)
    name = (f"Повторная покупка: {lead.product.name}" if lead.is_repeat
            else f"Заявка: {lead.product.name}")
    return {
        "id": lead.id, "name": name, "price": lead.price,
        "responsible_user_id": lead.responsible, "group_id": 0, "status_id": lead.status_id,
        "pipeline_id": lead.pipeline_id, "loss_reason_id": lead.loss_reason_id,
        "created_by": lead.created_by, "updated_by": lead.responsible,
        "created_at": lead.created_ts, "updated_at": lead.updated_ts, "closed_at": lead.closed_ts,
        "closest_task_at": lead.closest_task_ts, "is_deleted": False, "score": None,
        "account_id": C.ACCOUNT_ID, "labor_cost": None, "custom_fields_values": cfv,
        "_embedded": {
            "tags": [dict(C.TAG_REPEAT)] if lead.is_repeat else [],
            "companies": _company_refs(lead.company),
            "contacts": [{"id": lead.contact.id, "is_main": True}],
        },
    }


def _ulid(ts: int, rng: random.Random) -> str:
    value = (ts * 1000 + rng.randrange(1000)) << 80 | rng.getrandbits(80)
    chars = []
    for _ in range(26):
        chars.append(_ULID_ALPHABET[value & 31])
        value >>= 5
    return "".join(reversed(chars))


def _event_payloads(leads: list[Lead], rng: random.Random) -> list[dict]:
    """amoCRM's lead_status_changed events. Their nested values are read, never edited, so
    one object serves every event with the same status (and a lead's events share their
    `_embedded`): a copy in each of 57k events was a fifth of the emulators' memory at
    scale 10."""
    statuses: dict[tuple[int, int], list[dict]] = {}

    def status(status_id: int, pipeline_id: int) -> list[dict]:
        return statuses.setdefault((status_id, pipeline_id), [
            {"lead_status": {"id": status_id, "pipeline_id": pipeline_id}}])

    events = []
    for lead in sorted(leads, key=lambda x: x.id):
        embedded = {"entity": {"id": lead.id}}
        for ts, src, dst in lead.moves:
            events.append({
                "id": _ulid(ts, rng), "type": "lead_status_changed", "entity_id": lead.id,
                "entity_type": "lead", "created_by": lead.responsible, "created_at": ts,
                "value_before": status(src, lead.pipeline_id),
                "value_after": status(dst, lead.pipeline_id),
                "account_id": C.ACCOUNT_ID, "_embedded": embedded,
            })
    events.sort(key=lambda e: (e["created_at"], e["id"]))
    return events


# -- entry point --------------------------------------------------------------------------------
def generate(seed: int = 42, scale: float = 1.0, start: date = date(2024, 11, 1),
             end: date = date(2026, 10, 31)) -> SyntheticBusiness:
    """Simulate the business from ``start`` to ``end`` (inclusive, Moscow dates)."""
    sim = _Simulator(seed, scale, start, end)
    sim.run()
    # consent draws come last, from their own generator: every other value stays the same
    assign_consent(sim.contacts, sim.b24.contacts, random.Random(f"{seed}:consent"))
    assign_birthdays(sim.contacts, sim.b24.contacts, random.Random(f"{seed}:birthday"))
    id_rng = random.Random(f"{seed}:events")
    created = sim.start_ts - 200 * DAY
    amocrm = {
        "users": [_user_payload(m, end) for m in C.MANAGERS],
        "pipelines": [
            _pipeline_payload(C.MAIN_PIPELINE_ID, "Продажи", 1, True, C.MAIN_STATUSES),
            _pipeline_payload(C.REPEAT_PIPELINE_ID, "Повторные продажи", 2, False,
                              C.REPEAT_STATUSES),
        ],
        "loss_reasons": [
            {"id": rid, "name": name, "sort": sort, "created_at": created + sort * 3600,
             "updated_at": created + sort * 3600}
            for rid, name, sort in C.LOSS_REASONS
        ],
        "contacts": [_contact_payload(c) for c in sorted(sim.contacts, key=lambda c: c.id)],
        "leads": [_lead_payload(x) for x in sorted(sim.leads, key=lambda x: x.id)],
        "events": _event_payloads(sim.leads, id_rng),
    }
    # deleted spam leads sit in the same list: the emulator serves them only to with=only_deleted
    amocrm["leads"] = sorted(amocrm["leads"] + amocrm_extra.spam_payloads(sim.spam),
                             key=lambda x: x["id"])
    amocrm |= amocrm_extra.buyer_payloads(sim)
    return SyntheticBusiness(
        seed=seed, scale=scale, start=start, end=end, account_id=C.ACCOUNT_ID,
        subdomain=C.SUBDOMAIN, amocrm=amocrm, bitrix24=bitrix24_payloads(sim.b24),
        file_orders=shop.order_rows(sim.shop_orders), yandex_direct=sim.ad_rows["yandex_direct"],
        vk_ads=sim.ad_rows["vk_ads"], google_ads=sim.ad_rows["google_ads"],
        meta_ads=sim.ad_rows["meta_ads"], ground_truth=truth.ground_truth(sim),
    )
