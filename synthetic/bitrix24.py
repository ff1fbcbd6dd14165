"""The second brand, which sells through a Bitrix24 portal, and its payloads.

Each inquiry is a Bitrix24 lead (``NEW`` → ``IN_PROCESS`` [→ ``PROCESSED``] → ``CONVERTED`` or
``JUNK``); a converted lead becomes a deal in category 0 ("Продажи") a little later, with
``LEAD_ID`` set and the lead's UTM; repeat purchases are deals in category 1 (``C1:`` stages)
without a lead. The stage history (``crm.stagehistory.list``) is written from the same moves, so
it always ends at the record's current stage. A lost record ends in one of its funnel's several
``F`` stages (``catalog.B24_LOSS_WEIGHTS``: LOSE, APOLOGY "analyse why it failed", custom ones),
drawn after the simulation from a separate RNG stream, so every other value stays the same; some
deals being analysed carry the reason in a string user field (``catalog.B24_LOSS_REASON_FIELD``).
The payloads hold native values (ints, Decimal money, ISO dates with +03:00) in the shape
``emulators.bitrix24.Bitrix24Emulator`` takes; the emulator stringifies them on output as the
legacy list methods do.
"""

from __future__ import annotations

import math
import random
from datetime import date, datetime
from decimal import Decimal
from typing import TYPE_CHECKING

from synthetic import catalog as C
from synthetic.model import (
    DAY,
    MSK,
    SAME_PRODUCT_P,
    B24Contact,
    B24Deal,
    B24Lead,
    Person,
    msk_date,
    msk_ts,
    repeat_chance_and_gap,
)

if TYPE_CHECKING:
    from synthetic.business import _Simulator

LEAD_ENTITY_TYPE, DEAL_ENTITY_TYPE = 1, 2  # crm.stagehistory.list entityTypeId
# first products by channel (weights over catalog.B24_PRODUCTS)
CHANNEL_PRODUCTS = {"referral": (3, 4, 3), "google_ads": (4, 4, 2), "direct": (4, 3, 3)}
DEFAULT_PRODUCTS = (5, 2, 3)
LEAD_STEP_DAYS = (0.2, 1.5, 1.0)  # before each step of a lead
DEAL_STEP_DAYS = (1.0, 2.5, 3.0, 3.0)
REPEAT_STEP_DAYS = (0.8, 2.0)
LEAD_SHARE = 0.35  # the part of the inquiry's win probability spent on lead qualification
PROCESSED_P = 0.2  # a lead that passes through PROCESSED before conversion
SKIP_PREPARATION_P = 0.2
FINAL_STAGES = {sid: sem for stages in (C.B24_LEAD_STATUSES, *C.B24_DEAL_STAGES.values())
                for sid, _name, _sort, sem, _color in stages if sem is not None}


def iso(ts: int) -> str:
    """The portal's date format: ISO 8601 with the +03:00 offset."""
    return datetime.fromtimestamp(ts, MSK).isoformat(timespec="seconds")


def semantic(stage: str) -> str:
    """``P`` open, ``S`` won/converted, ``F`` lost/junk."""
    return FINAL_STAGES.get(stage, "P")


class Bitrix24Brand:
    """The Bitrix24 brand's side of the simulation; shares the simulator's people and RNG."""

    def __init__(self, sim: _Simulator) -> None:
        self.sim = sim
        self.contacts: list[B24Contact] = []
        self.leads: list[B24Lead] = []
        self.deals: list[B24Deal] = []
        self.loss_reason_texts: dict[int, str] = {}  # deal seq -> the loss-reason user field

    # ---- people ----
    def _manager(self, d: date, prefer: int | None = None) -> C.Manager:
        active = [m for m in C.B24_MANAGERS if m.active_on(d)]
        for m in active:
            if m.id == prefer:
                return m
        return self.sim._weighted(active, [m.weight for m in active])

    def _contact(self, person: Person, ts: int, responsible: int) -> B24Contact:
        """The person's one Bitrix24 contact. It always carries the phone (or, without one,
        the e-mail) of the person, so a cross-brand buyer matches their amoCRM contact."""
        sim, rng = self.sim, self.sim.rng
        phones: list[tuple[str, str]] = []
        if person.phone:
            phones.append((sim._format_phone(person.phone),
                           "MOBILE" if rng.random() < 0.85 else "WORK"))
        elif rng.random() < 0.3:
            phones.append((rng.choice(C.JUNK_PHONES), "WORK"))
        emails: list[tuple[str, str]] = []
        if person.email and (not person.phone or rng.random() < 0.8):
            raw = person.email if rng.random() < 0.9 else sim._email_variant(person.email)
            emails.append((raw, "HOME" if rng.random() < 0.6 else "WORK"))
        last = person.last_name if rng.random() < 0.85 else ""
        ts = max(ts, sim.start_ts)
        contact = B24Contact(len(self.contacts), person, ts, person.first_name, last, phones,
                             emails, responsible, updated_ts=ts)
        self.contacts.append(contact)
        person.b24_contact = contact
        return contact

    # ---- stage walks ----
    def _walk(self, t0: int, path: list[str], won: str, lost: str,
              step_days: tuple[float, ...], pass_p: float) -> list[tuple[int, str]]:
        """Moves from ``path[0]`` to each later stage and then ``won``; each step passes with
        ``pass_p`` or ends in ``lost``; a stalled record stops moving. Cut at the as-of."""
        rng, sim = self.sim.rng, self.sim
        t, moves = t0, []
        for i, nxt in enumerate([*path[1:], won]):
            t += int(rng.expovariate(1.0 / (step_days[i] * DAY))) + rng.randrange(60, 1800)
            if rng.random() < 0.012:
                break  # nobody touches it again: stays open
            if rng.random() >= pass_p:
                moves.append((t, lost))
                break
            moves.append((t, nxt))
        return [(ts, stage) for ts, stage in moves if ts <= sim.end_ts]

    def _expected(self, product: C.Product, ts: int, p: float) -> Decimal:
        """The amount a manager typed as the expected budget (often nothing)."""
        if self.sim.rng.random() >= p:
            return Decimal("0.00")
        return Decimal(self.sim._price(product, ts)).quantize(Decimal("0.01"))

    def _finish(self, record: B24Lead | B24Deal, final: bool) -> None:
        """Close time and a later edit (a note, a field) after the last move."""
        rng = self.sim.rng
        last = record.moves[-1][0] if record.moves else record.created_ts
        record.closed_ts = last if final else None
        upd = last + (rng.randrange(60, 3 * DAY) if rng.random() < 0.3 else 0)
        record.updated_ts = min(max(upd, record.created_ts), self.sim.end_ts)
        contact = record.contact
        contact.updated_ts = max(contact.updated_ts, min(record.created_ts + 600,
                                                         self.sim.end_ts))

    # ---- leads and deals ----
    def _new_lead(self, person: Person, contact: B24Contact, ts: int, channel: str,
                  campaign: C.Campaign | None, product: C.Product,
                  manager: C.Manager) -> B24Lead:
        sim = self.sim
        lead = B24Lead(len(self.leads), person, contact, ts, channel,
                       sim._utm(channel, campaign), product, manager.id)
        self.leads.append(lead)
        person.b24_leads.append(lead)
        win_p = sim._win_p(channel, product, manager, ts)
        path = ["NEW", "IN_PROCESS"] + (["PROCESSED"] if sim.rng.random() < PROCESSED_P else [])
        moves = self._walk(ts, path, "CONVERTED", "JUNK", LEAD_STEP_DAYS,
                           win_p ** (LEAD_SHARE / len(path)))
        deal_ts = moves[-1][0] + sim.rng.randrange(5, 300) if moves else 0
        if moves and moves[-1][1] == "CONVERTED" and deal_ts > sim.end_ts:
            moves.pop()  # converted after the as-of moment: not yet
        lead.moves = moves
        lead.status = moves[-1][1] if moves else "NEW"
        lead.opportunity = self._expected(product, ts, 0.5)
        self._finish(lead, lead.status in ("CONVERTED", "JUNK"))
        if lead.status == "CONVERTED":
            deal = self._new_deal(person, contact, deal_ts, 0, lead.channel, lead.utm, product,
                                  manager, lead)
            self._play_deal(deal, win_p ** ((1 - LEAD_SHARE) / 4))
        return lead

    def _new_deal(self, person: Person, contact: B24Contact, ts: int, category: int,
                  channel: str, utm, product: C.Product, manager: C.Manager,
                  lead: B24Lead | None) -> B24Deal:
        deal = B24Deal(len(self.deals), person, contact, ts, category, channel, utm, product,
                       manager.id, manager.id, lead)
        if lead is not None:
            lead.deal = deal
        self.deals.append(deal)
        person.b24_deals.append(deal)
        contact.updated_ts = max(contact.updated_ts, ts)
        return deal

    def _play_deal(self, deal: B24Deal, pass_p: float) -> None:
        stages = C.B24_DEAL_STAGES[deal.category]
        won = next(s[0] for s in stages if s[3] == "S")
        lost = next(s[0] for s in stages if s[3] == "F")  # spread later: assign_loss_stages
        path = [s[0] for s in stages if s[3] is None]
        if deal.category == 0 and self.sim.rng.random() < SKIP_PREPARATION_P:
            path.remove("PREPARATION")
        step_days = DEAL_STEP_DAYS if deal.category == 0 else REPEAT_STEP_DAYS
        deal.moves = self._walk(deal.created_ts, path, won, lost, step_days, pass_p)
        deal.stage = deal.moves[-1][1] if deal.moves else path[0]
        final = semantic(deal.stage) != "P"
        if deal.stage == won:
            deal.opportunity = Decimal(self.sim._price(deal.product, deal.created_ts)).quantize(
                Decimal("0.01"))
        else:
            deal.opportunity = self._expected(deal.product, deal.created_ts, 0.8)
        self._finish(deal, final)
        deal.planned_close_ts = min(deal.created_ts + 14 * DAY, self.sim.end_ts)

    # ---- a person's life at this brand ----
    def journey(self, ts: int, channel: str, campaign: C.Campaign | None,
                person: Person | None = None) -> None:
        """A new inquiry (a new person, or a buyer of the other brand), then repeat deals or
        one re-inquiry after a junk lead; then perhaps the other brand."""
        sim = self.sim
        person = person or sim._new_person()
        manager = self._manager(msk_date(ts))
        contact = self._contact(person, ts - sim.rng.randrange(5, 120), manager.id)
        weights = CHANNEL_PRODUCTS.get(channel, DEFAULT_PRODUCTS)
        product = sim._weighted(C.B24_PRODUCTS, weights)
        lead = self._new_lead(person, contact, ts, channel, campaign, product, manager)
        self._purchases(person, lead.deal or lead)
        sim._maybe_cross_brand(person, to_bitrix24=False)

    def _next_step(self, person: Person, last: B24Lead | B24Deal, n_orders: int,
                   retries: int) -> tuple[float, float, str] | None:
        """(probability, gap in days, kind) of the person's next inquiry, or None."""
        rng = self.sim.rng
        lost = (isinstance(last, B24Lead) and semantic(last.status) == "F") or (
            isinstance(last, B24Deal) and semantic(last.stage) == "F")
        if isinstance(last, B24Deal) and last.is_won:
            p, gap = repeat_chance_and_gap(person, last.product, self.sim.seed, rng)
            return p, gap, "repeat"
        if lost and n_orders == 0 and retries == 0:
            return 0.12, rng.uniform(20, 240), "reinquiry"
        if lost and n_orders > 0 and retries < 2:
            return 0.35, last.product.cycle_days * rng.uniform(0.3, 0.8), "retry"
        return None

    def _purchases(self, person: Person, last: B24Lead | B24Deal) -> None:
        from synthetic.business import REINQUIRY_CHANNELS, REPEAT_CHANNELS  # no import cycle

        sim, rng = self.sim, self.sim.rng
        n_orders = retries = 0
        while True:
            if isinstance(last, B24Deal) and last.is_won:
                n_orders += 1
            step = self._next_step(person, last, n_orders, retries)
            if step is None or rng.random() >= step[0]:
                return
            _, gap, kind = step
            retries += kind != "repeat"
            nts = (last.closed_ts or last.created_ts) + int(gap * DAY)
            nd = msk_date(nts)
            nts = msk_ts(nd) + sim._time_of_day()
            if nts > sim.end_ts or nts <= last.created_ts:
                return
            if kind == "reinquiry":
                ch = sim._weighted(list(REINQUIRY_CHANNELS), list(REINQUIRY_CHANNELS.values()))
                product = sim._weighted(C.B24_PRODUCTS, CHANNEL_PRODUCTS.get(ch, DEFAULT_PRODUCTS))
                lead = self._new_lead(person, person.b24_contact, nts, ch, None, product,
                                      self._manager(nd))
                last = lead.deal or lead
                continue
            ch = sim._weighted(list(REPEAT_CHANNELS), list(REPEAT_CHANNELS.values()))
            camp = next((c for c in C.AD_CAMPAIGNS.get(ch, ()) if c.retargeting), None)
            same = kind == "retry" or rng.random() < SAME_PRODUCT_P
            product = (last.product if same else sim._weighted(
                C.B24_PRODUCTS, C.B24_NEXT_PRODUCT[last.product.code]))
            manager = self._manager(nd, prefer=last.responsible)
            deal = self._new_deal(person, person.b24_contact, nts, 1, ch, sim._utm(ch, camp),
                                  product, manager, None)
            self._play_deal(deal, math.sqrt(min(0.95, 0.8 * math.sqrt(manager.skill))))
            last = deal

    def assign_ids(self) -> None:
        """Ids grow with creation time, each entity its own sequence (with gaps)."""
        rng = self.sim.rng
        for start, items in ((5000, self.contacts), (1200, self.leads), (3400, self.deals)):
            next_id = start
            for item in sorted(items, key=lambda x: (x.created_ts, x.seq)):
                next_id += rng.randrange(1, 4)
                item.id = next_id
        self.assign_loss_stages(random.Random(f"{self.sim.seed}:b24_loss"))

    def assign_loss_stages(self, rng: random.Random) -> None:
        """Spread the lost leads and deals over their funnel's failure stages (the walk loses
        into the first one), and fill the loss-reason user field of some deals being analysed
        (an APOLOGY stage). Own RNG stream: nothing else the simulation drew changes."""
        records: list[tuple[B24Lead | B24Deal, dict[str, float]]] = [
            (lead, C.B24_LOSS_WEIGHTS["lead"]) for lead in self.leads]
        records += [(deal, C.B24_LOSS_WEIGHTS[deal.category]) for deal in self.deals]
        for record, weights in records:
            current = record.status if isinstance(record, B24Lead) else record.stage
            if semantic(current) != "F":
                continue
            stage = rng.choices(list(weights), weights=list(weights.values()))[0]
            record.moves[-1] = (record.moves[-1][0], stage)
            if isinstance(record, B24Lead):
                record.status = stage
                continue
            record.stage = stage
            if stage.endswith("APOLOGY") and rng.random() < C.B24_LOSS_REASON_FILLED_P:
                self.loss_reason_texts[record.seq] = rng.choice(C.B24_LOSS_REASON_TEXTS)


# -- payloads -----------------------------------------------------------------------------------
class _MultiIds:
    """Multifield values get their own ids in Bitrix24 (one sequence for the portal)."""

    def __init__(self) -> None:
        self.next = 10_000

    def values(self, items: list[tuple[str, str]], type_id: str) -> list[dict]:
        out = []
        for value, value_type in items:
            self.next += 1
            out.append({"ID": self.next, "VALUE_TYPE": value_type, "VALUE": value,
                        "TYPE_ID": type_id})
        return out


def _multifields(contact: B24Contact, ids: _MultiIds) -> dict:
    """PHONE/EMAIL keys, left out when there is nothing (as the portal does)."""
    out = {}
    if contact.phones:
        out["PHONE"] = ids.values(contact.phones, "PHONE")
    if contact.emails:
        out["EMAIL"] = ids.values(contact.emails, "EMAIL")
    return out


def _utm_fields(utm) -> dict:
    source, medium, campaign = utm if utm is not None else (None, None, None)
    return {"UTM_SOURCE": source, "UTM_MEDIUM": medium, "UTM_CAMPAIGN": campaign,
            "UTM_CONTENT": None, "UTM_TERM": None}


def contact_payload(c: B24Contact, ids: _MultiIds) -> dict:
    # EXPORT 'N' = excluded from exports (do not contact); the consent user field is absent
    # when the contact was never asked
    consent = {} if c.consent is None else {C.B24_CONSENT_FIELD: "Y" if c.consent else "N"}
    return {"ID": c.id, "NAME": c.first_name, "LAST_NAME": c.last_name,
            "ASSIGNED_BY_ID": c.responsible, "DATE_CREATE": iso(c.created_ts),
            "DATE_MODIFY": iso(c.updated_ts), "EXPORT": "N" if c.do_not_contact else "Y",
            # a standard field: "" when unknown, else the day's midnight with the offset
            "BIRTHDATE": "" if c.birthday is None else f"{c.birthday.isoformat()}T00:00:00+03:00",
            **consent, **_multifields(c, ids)}


def lead_contact_id(lead: B24Lead) -> int | None:
    """Half of the junk leads that came with an e-mail (every other id) were never qualified,
    so nobody linked a contact: only the phone and e-mail typed into the form sit on the lead
    itself, and identity resolution must find the person through them."""
    unlinked = (semantic(lead.status) == "F" and lead.id % 2 == 0
                and bool(lead.contact.emails))
    return None if unlinked else lead.contact.id


def lead_payload(lead: B24Lead, ids: _MultiIds) -> dict:
    return {
        "ID": lead.id, "TITLE": f"Заявка: {lead.product.name}",
        "NAME": lead.contact.first_name, "LAST_NAME": lead.contact.last_name,
        "STATUS_ID": lead.status, "STATUS_SEMANTIC_ID": semantic(lead.status),
        "OPPORTUNITY": lead.opportunity, "CURRENCY_ID": "RUB",
        "ASSIGNED_BY_ID": lead.responsible, "DATE_CREATE": iso(lead.created_ts),
        "DATE_MODIFY": iso(lead.updated_ts),
        "DATE_CLOSED": iso(lead.closed_ts) if lead.closed_ts else None,
        "CONTACT_ID": lead_contact_id(lead), "SOURCE_ID": C.B24_SOURCE_ID[lead.channel],
        **_utm_fields(lead.utm), **_multifields(lead.contact, ids),
    }


def deal_payload(deal: B24Deal, loss_reason: str | None = None) -> dict:
    """``loss_reason``: the loss-reason user field, sent only when the manager filled it."""
    uf = {} if loss_reason is None else {C.B24_LOSS_REASON_FIELD: loss_reason}
    closed = deal.closed_ts is not None
    title = (f"Повторная покупка: {deal.product.name}" if deal.category == 1
             else deal.product.name)
    return {
        "ID": deal.id, "TITLE": title, "TYPE_ID": "SALE", "CATEGORY_ID": deal.category,
        "STAGE_ID": deal.stage, "STAGE_SEMANTIC_ID": semantic(deal.stage),
        "OPPORTUNITY": deal.opportunity, "CURRENCY_ID": "RUB",
        "ASSIGNED_BY_ID": deal.responsible, "CREATED_BY_ID": deal.created_by,
        "DATE_CREATE": iso(deal.created_ts), "DATE_MODIFY": iso(deal.updated_ts),
        "CLOSEDATE": iso(deal.closed_ts if closed else deal.planned_close_ts),
        "CLOSED": "Y" if closed else "N",
        "LEAD_ID": deal.lead.id if deal.lead is not None else None,
        "CONTACT_ID": deal.contact.id, "COMPANY_ID": None,
        "SOURCE_ID": "REPEAT_SALE" if deal.category == 1 else C.B24_SOURCE_ID[deal.channel],
        **_utm_fields(deal.utm), **uf,
    }


def _history(owner: int, created: int, first: str, moves: list[tuple[int, str]],
             extra: dict) -> list[tuple[int, int, int, str, dict]]:
    """(time, owner, TYPE_ID, stage, extra) rows: created, then each move (final = 3)."""
    rows = [(created, owner, 1, first, extra)]
    rows += [(ts, owner, 3 if stage in FINAL_STAGES else 2, stage, extra) for ts, stage in moves]
    return rows


def stagehistory_payloads(brand: Bitrix24Brand) -> list[dict]:
    """Lead rows (STATUS_*) and deal rows (STAGE_*, CATEGORY_ID), each entity type with its
    own ID sequence in time order; ``ENTITY_TYPE_ID`` tells the emulator which is which."""
    out: list[dict] = []
    leads = sorted((row for lead in brand.leads
                    for row in _history(lead.id, lead.created_ts, "NEW", lead.moves, {})),
                   key=lambda r: r[:4])
    for n, (ts, owner, type_id, stage, _) in enumerate(leads, start=1):
        out.append({"ID": n, "ENTITY_TYPE_ID": LEAD_ENTITY_TYPE, "TYPE_ID": type_id,
                    "OWNER_ID": owner, "CREATED_TIME": iso(ts), "STATUS_ID": stage,
                    "STATUS_SEMANTIC_ID": semantic(stage)})
    deals = sorted((row for deal in brand.deals for row in _history(
        deal.id, deal.created_ts, C.B24_DEAL_STAGES[deal.category][0][0], deal.moves,
        {"CATEGORY_ID": deal.category})), key=lambda r: r[:4])
    for n, (ts, owner, type_id, stage, extra) in enumerate(deals, start=1):
        out.append({"ID": n, "ENTITY_TYPE_ID": DEAL_ENTITY_TYPE, "TYPE_ID": type_id,
                    "OWNER_ID": owner, "CREATED_TIME": iso(ts), **extra, "STAGE_ID": stage,
                    "STAGE_SEMANTIC_ID": semantic(stage)})
    return out


def status_payloads() -> list[dict]:
    """crm.status.list: lead statuses (STATUS) and the stages of each deal category."""
    entities = [("STATUS", None, C.B24_LEAD_STATUSES)]
    entities += [("DEAL_STAGE" if cat == 0 else f"DEAL_STAGE_{cat}", cat, stages)
                 for cat, stages in C.B24_DEAL_STAGES.items()]
    extra = {None: "process", "S": "success", "F": "failure"}
    # EXTRA.SEMANTICS spells an APOLOGY stage ("analyse why it failed") as apology
    out = []
    for entity_id, category, stages in entities:
        for status_id, name, sort, sem, color in stages:
            out.append({
                "ID": len(out) + 1, "ENTITY_ID": entity_id, "STATUS_ID": status_id,
                "NAME": name, "NAME_INIT": name, "SORT": sort,
                "SYSTEM": "Y" if (sem is not None and "UC_" not in status_id) or sort == 10
                else "N",
                "CATEGORY_ID": category, "COLOR": color, "SEMANTICS": sem,
                "EXTRA": {"SEMANTICS": "apology" if status_id.endswith("APOLOGY")
                          else extra[sem], "COLOR": color},
            })
    return out


def user_payloads(end: date) -> list[dict]:
    out = []
    for m in C.B24_MANAGERS:
        first, last = m.name.split(" ", 1)
        out.append({"ID": m.id, "ACTIVE": m.active_on(end), "NAME": first, "LAST_NAME": last,
                    "EMAIL": m.email,
                    "WORK_POSITION": C.B24_POSITIONS.get(m.id, "Менеджер по продажам")})
    return out


def bitrix24_payloads(brand: Bitrix24Brand) -> dict[str, list[dict]]:
    """Every entity of the portal, keyed as ``emulators.bitrix24.ENTITY_KEYS``, by ID."""
    ids = _MultiIds()

    def by_id(items: list) -> list:
        return sorted(items, key=lambda x: x.id)

    return {
        "users": user_payloads(brand.sim.end),
        "statuses": status_payloads(),
        "categories": [{"id": cid, "name": name, "sort": sort, "entityTypeId": 2,
                        "isDefault": "Y" if default else "N"}
                       for cid, name, sort, default in C.B24_CATEGORIES],
        "leads": [lead_payload(x, ids) for x in by_id(brand.leads)],
        "deals": [deal_payload(x, brand.loss_reason_texts.get(x.seq))
                  for x in by_id(brand.deals)],
        "contacts": [contact_payload(x, ids) for x in by_id(brand.contacts)],
        "stagehistory": stagehistory_payloads(brand),
    }
