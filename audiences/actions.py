"""Actions on entry: the tasks and deals a segment file declares (``actions:``), created in a
CRM once per customer per entry into the segment.

An entry is a stint in ``audiences.membership_history`` (keyed by the run that opened it), so a
customer who leaves and comes back is acted on again, and only then. Each (segment, CRM,
customer, entry, action) has one record in ``audiences.actions``, written *before* the CRM is
called (status ``pending``) and updated after (``created`` with the CRM record's id, or
``failed`` with the error). So:

- a re-run skips what was created;
- a run after a failure (or a crash between the call and the record) first asks the CRM for
  the marker every created record carries (``vrn-…`` in the task text / deal name / origin id)
  and records what it finds instead of creating it again; a CRM that cannot be asked is not
  written to for those records this run;
- two runs never act on the same segment and CRM at once: the sync's (segment, platform) lock
  is held around the whole sync, actions included.

The task goes on the customer's primary contact in that CRM, for that contact's responsible
manager (``responsible: customer_manager``) or a fixed user id. Its text is rendered from
whitelisted customer fields only (``audiences.actions_spec``). ``now`` is passed in.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, time, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import pandas as pd

from audiences import state
from audiences.actions_spec import TEMPLATE_FIELDS, Action, render, template_context

TIMEZONE_VAR = "VORONKA_CRM_TIMEZONE"
DEFAULT_TIMEZONE = "Europe/Moscow"  # the reporting time zone (dbt var reporting_timezone)
DONE = ("created", "skipped")


@dataclass(frozen=True)
class ActionItem:
    """One action for one customer's entry, ready for the CRM."""

    key: str
    customer_id: str
    entered_run: str
    index: int
    action: Action
    contact_id: int
    responsible: int | None
    text: str
    due: datetime

    @property
    def marker(self) -> str:
        """Written into the CRM record so a retry can find it (no idempotency key exists)."""
        return f"vrn-{self.key[:16]}"

    @property
    def kind(self) -> str:
        return self.action.kind

    @property
    def task_type(self) -> int:
        return int(getattr(self.action, "task_type", 1))

    @property
    def pipeline(self) -> str:
        return str(getattr(self.action, "pipeline", ""))

    @property
    def stage(self) -> str:
        return str(getattr(self.action, "stage", "first"))


@dataclass
class ActionsResult:
    """What one run did with a segment's actions on one CRM."""

    created: dict[str, int] = field(default_factory=dict)  # kind -> records created now
    recovered: int = 0  # created by an earlier attempt, found by their marker
    failed: int = 0
    skipped: int = 0  # the customer has no contact in this CRM
    planned: dict[str, int] = field(default_factory=dict)  # dry run: kind -> would create
    errors: list[str] = field(default_factory=list)

    @property
    def total_created(self) -> int:
        return sum(self.created.values())

    def summary(self) -> str:
        parts = [f"{n} {kind}s created" for kind, n in sorted(self.created.items()) if n]
        parts += [f"{n} {kind}s would be created" for kind, n in sorted(self.planned.items())
                  if n]
        if self.recovered:
            parts.append(f"{self.recovered} found already created")
        if self.skipped:
            parts.append(f"{self.skipped} skipped (no contact in this CRM)")
        if self.failed:
            parts.append(f"{self.failed} failed (retried next run): {self.errors[0]}")
        return ", ".join(parts)


def action_key(segment: str, platform: str, customer_id: str, entered_run: str,
               index: int) -> str:
    """The stable id of one action of one entry."""
    text = "|".join((segment, platform, customer_id, entered_run, str(index)))
    return hashlib.sha256(text.encode()).hexdigest()[:32]


def due_at(now: datetime, days: int) -> datetime:
    """The end (23:59 local time) of the day ``days`` after ``now``: a task due "today"."""
    tz = ZoneInfo(os.environ.get(TIMEZONE_VAR) or DEFAULT_TIMEZONE)
    day = now.astimezone(tz).date() + timedelta(days=days)
    return datetime.combine(day, time(23, 59), tz)


def _primary_contacts(contacts: pd.DataFrame) -> dict[str, tuple[int, int | None]]:
    """customer -> (primary contact id, its responsible user id)."""
    out: dict[str, tuple[int, int | None]] = {}
    primary = contacts[contacts["is_primary"].astype(bool)]
    for customer, contact, user in zip(primary["customer_id"], primary["contact_id"],
                                       primary["responsible_user_id"], strict=True):
        out[str(customer)] = (int(contact), None if pd.isna(user) else int(user))
    return out


def _record(item_or_key: Any, *, seg: str, platform: str, status: str, run_id: str,
            now: datetime, previous: Mapping[str, Any] | None, **values: Any) -> dict[str, Any]:
    """A full ``audiences.actions`` row, keeping what an earlier attempt recorded."""
    base = dict(previous or {})
    base.update(segment=seg, platform=platform, status=status, last_run=run_id, updated_at=now)
    base.setdefault("first_run", run_id)
    base.setdefault("created_at", now)
    base.setdefault("attempts", 0)
    base.setdefault("crm_id", None)
    base.setdefault("message", None)
    base.update(values)
    if isinstance(item_or_key, str):
        base["action_key"] = item_or_key
    if isinstance(item_or_key, ActionItem):
        i = item_or_key
        base.update(action_key=i.key, customer_id=i.customer_id, entered_run=i.entered_run,
                    action_index=i.index, action_kind=i.kind, contact_id=str(i.contact_id),
                    responsible_user_id=None if i.responsible is None else str(i.responsible))
    return base


@dataclass
class _Pending:
    customer_id: str
    entered_run: str
    index: int
    action: Action
    key: str


def _pending(wh: Any, seg: Any, platform: str, members: set[str] | None = None,
             entering: Sequence[str] = ()) -> tuple[list[_Pending], dict[str, dict]]:
    """The actions of open stints (of ``members``, when given, plus the ``entering`` ones a
    dry run foresees) not yet created (or skipped), and the records so far."""
    with wh.connect() as conn:
        state.ensure_state(wh, conn)
        stints = state.open_stints(wh, conn, seg.name)
        records = state.action_records(wh, conn, seg.name, platform)
    if members is not None:
        stints = {c: r for c, r in stints.items() if c in members}
    stints.update({c: "(next run)" for c in entering if c not in stints})
    todo = []
    for customer, entered_run in sorted(stints.items()):
        for index, action in enumerate(seg.actions):
            key = action_key(seg.name, platform, customer, entered_run, index)
            if records.get(key, {}).get("status") not in DONE:
                todo.append(_Pending(customer, entered_run, index, action, key))
    return todo, records


def _items(wh: Any, seg: Any, todo: Sequence[_Pending], contacts: pd.DataFrame,
           now: datetime) -> tuple[list[ActionItem], list[_Pending]]:
    """(the items to create, the pending actions whose customer has no contact here)."""
    primary = _primary_contacts(contacts)
    context = template_context(wh, sorted({p.customer_id for p in todo}), seg.name)
    blank = dict.fromkeys(TEMPLATE_FIELDS) | {"segment": seg.name}
    items, skipped = [], []
    for p in todo:
        contact = primary.get(p.customer_id)
        if contact is None:
            skipped.append(p)
            continue
        responsible = (contact[1] if p.action.responsible == "customer_manager"
                       else int(p.action.responsible))
        template = p.action.text if p.action.kind == "task" else p.action.name
        text = render(template, blank | context.get(p.customer_id, {}))
        due = due_at(now, int(getattr(p.action, "due_in_days", 0)))
        items.append(ActionItem(p.key, p.customer_id, p.entered_run, p.index, p.action,
                                contact[0], responsible, text, due))
    return items, skipped


def plan_actions(wh: Any, seg: Any, destination: Any, contacts: pd.DataFrame, *,
                 members: set[str], entering: Sequence[str], now: datetime) -> ActionsResult:
    """What ``run_actions`` would create for the current ``members`` (``entering``: those a
    sync would record as new entries), without writing anything (``--dry-run``)."""
    result = ActionsResult()
    if not seg.actions or not destination.supports_actions:
        return result
    todo, _ = _pending(wh, seg, destination.name, members, entering)
    items, no_contact = _items(wh, seg, todo, contacts, now)
    for item in items:
        result.planned[item.kind] = result.planned.get(item.kind, 0) + 1
    result.skipped = len(no_contact)
    return result


def run_actions(wh: Any, seg: Any, destination: Any, client: Any, contacts: pd.DataFrame, *,
                now: datetime, run_id: str) -> ActionsResult:
    """Create the tasks / deals of ``seg``'s open entries on ``destination`` (a CRM) that are
    not created yet; ``contacts``: the members' contacts in that CRM
    (``destination.identifiers``). Call it holding the (segment, platform) sync lock."""
    result = ActionsResult()
    if not seg.actions or not destination.supports_actions:
        return result
    todo, records = _pending(wh, seg, destination.name)
    items, no_contact = _items(wh, seg, todo, contacts, now)
    common = {"seg": seg.name, "platform": destination.name, "run_id": run_id, "now": now}
    skipped = [_record(p.key, status="skipped", previous=records.get(p.key),
                       message=f"customer has no {destination.name} contact",
                       customer_id=p.customer_id, entered_run=p.entered_run,
                       action_index=p.index, action_kind=p.action.kind, contact_id=None,
                       responsible_user_id=None, **common) for p in no_contact]
    result.skipped = len(skipped)
    # 1. the intent, before any call: a crash after the call is recovered by the marker
    retried = [i for i in items if i.key in records]
    attempts = {i.key: int(records.get(i.key, {}).get("attempts") or 0) + 1 for i in items}
    _write(wh, skipped + [_record(i, status="pending", **_prior(records, attempts, i),
                                  **common) for i in items])
    final: list[dict[str, Any]] = []
    # 2. what an earlier attempt may have created
    found: dict[str, str] = {}
    blocked: set[str] = set()
    if retried:
        try:
            found = destination.find_created(client, retried)
        except Exception as exc:  # cannot tell: do not risk a second record
            blocked = {i.key for i in retried}
            result.errors.append(_safe_message(exc))
    for item in items:
        if item.key in found:
            final.append(_record(item, status="created", **_prior(records, attempts, item),
                                 crm_id=found[item.key], message="found by its marker",
                                 **common))
            result.recovered += 1
    # 3. create the rest
    to_create = [i for i in items if i.key not in found and i.key not in blocked]
    answers = destination.create_actions(client, to_create) if to_create else []
    for item, answer in zip(to_create, answers, strict=True):
        if isinstance(answer, Exception):
            final.append(_record(item, status="failed", **_prior(records, attempts, item),
                                 message=_safe_message(answer), **common))
            result.errors.append(_safe_message(answer))
        else:
            final.append(_record(item, status="created", **_prior(records, attempts, item),
                                 crm_id=answer, message=None, **common))
            result.created[item.kind] = result.created.get(item.kind, 0) + 1
    for item in items:
        if item.key in blocked:
            final.append(_record(item, status="failed", **_prior(records, attempts, item),
                                 message=f"not checked: {result.errors[0]}", **common))
    result.failed = sum(1 for r in final if r["status"] == "failed")
    _write(wh, final)
    return result


def _prior(records: Mapping[str, dict[str, Any]], attempts: Mapping[str, int],
           item: ActionItem) -> dict[str, Any]:
    """The earlier record of ``item`` and this run's attempt number, as ``_record`` takes."""
    return {"previous": records.get(item.key), "attempts": attempts[item.key]}


def _write(wh: Any, rows: Sequence[dict[str, Any]]) -> None:
    """Write action records in one transaction."""
    with wh.connect() as conn:
        state.ensure_state(wh, conn)
        state.upsert_actions(wh, conn, rows)


def _safe_message(exc: BaseException) -> str:
    """The error text (client errors are redacted by the HTTP layer), capped."""
    text = str(exc) or type(exc).__name__
    return f"{type(exc).__name__}: {text}"[:500]
