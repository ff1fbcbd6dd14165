"""CRM destinations: a segment's membership marked on the customers' own CRM contacts, and the
segment's actions (a task, a deal) created for them on entry.

amoCRM (``audiences.clients.amocrm``): a tag ``voronka_<segment>`` on every contact of a
member, added with ``tags_to_add`` and taken off with ``tags_to_delete`` so no other tag is
touched (writing ``_embedded.tags`` would replace the contact's whole tag set). Bitrix24
(``audiences.clients.bitrix24``) has no tags on contacts: a boolean contact user field
``UF_CRM_VRNK_<SEGMENT>`` per segment, created if missing, set to Y on entry and N on leaving.

Rows are the CRM contact ids (``intermediate.int_customer_crm_contacts``), not hashes: the CRM
already holds the person, so nothing personal leaves the warehouse. There is no file mode.

Actions (``audiences.actions``) are created through ``create_actions``; each CRM record carries
a marker (``vrn-…``) so ``find_created`` can tell, after a lost answer, that a task or deal was
in fact created: neither API has an idempotency key (activation_apis.md).
"""

from __future__ import annotations

import hashlib
import re
from abc import abstractmethod
from collections.abc import Callable, Mapping, Sequence
from datetime import UTC
from typing import TYPE_CHECKING, Any

import pandas as pd

from audiences.destinations.base import SINGLE, Destination, Rows

if TYPE_CHECKING:
    from audiences.actions import ActionItem
    from audiences.clients.amocrm import AmoCRMWriteClient
    from audiences.clients.bitrix24 import Bitrix24WriteClient

CRM_CONTACTS_TABLE = "intermediate.int_customer_crm_contacts"
CONTACT_COLUMNS = ["customer_id", "contact_id", "responsible_user_id", "is_primary"]
BITRIX24_CONTACT_TYPE = 3  # CRM object type id of a contact (crm.activity.todo.add ownerTypeId)
BITRIX24_UF_MAX = 50  # the final UF_CRM_<CODE> name, in characters
_CHUNK = 500


def crm_contacts(wh: Any, crm: str, customer_ids: Sequence[str],
                 account: str | None = None) -> pd.DataFrame:
    """The ``crm`` contacts of ``customer_ids`` (of one account when given): customer_id,
    contact_id, responsible_user_id, is_primary; ids are bound parameters."""
    ids = list(dict.fromkeys(str(c) for c in customer_ids))
    rows: list[tuple] = []
    p = wh._param
    account_sql, account_params = (f" and account = {p}", [account]) if account else ("", [])
    with wh.connect() as conn:
        cur = conn.cursor()
        for start in range(0, len(ids), _CHUNK):
            chunk = ids[start:start + _CHUNK]
            cur.execute(f"select {', '.join(CONTACT_COLUMNS)} from {CRM_CONTACTS_TABLE} "
                        f"where crm = {p}{account_sql} and customer_id in "
                        f"({wh._marks(len(chunk))})", [crm, *account_params, *chunk])
            rows += cur.fetchall()
    frame = pd.DataFrame(rows, columns=CONTACT_COLUMNS)
    frame["customer_id"] = frame["customer_id"].astype(str)
    return frame.sort_values(["customer_id", "contact_id"], kind="stable").reset_index(drop=True)


def client_account(client: Any) -> str | None:
    """The CRM account a write client works on (its extractor source's ``account``), so only
    that account's contacts are addressed; None (every account) without a client."""
    source = getattr(client, "source", None)
    account = getattr(source, "account", None)
    return str(account) if account else None


def marker_text(text: str, marker: str) -> str:
    """The text a manager sees, ending with the marker ``find_created`` looks for."""
    return f"{text} [{marker}]"


class CrmDestination(Destination):
    """What the two CRMs share: contacts as rows, no minimum size, no file mode."""

    crm = ""
    hash_algorithm = "none"  # contact ids, not personal data
    supports_actions = True
    size_unit = "contacts"

    def identifiers(self, wh: Any, customer_ids: Sequence[str], client: Any = None
                    ) -> pd.DataFrame:
        return crm_contacts(wh, self.crm, customer_ids, client_account(client))

    def desired_rows(self, members: pd.DataFrame,
                     values: Mapping[str, float] | None = None) -> dict[str, Rows]:
        rows: Rows = {}
        for customer_id, contact_id in zip(members["customer_id"], members["contact_id"],
                                           strict=True):
            rows.setdefault(str(customer_id), []).append(int(contact_id))
        return {SINGLE: rows}

    def mark_name(self, segment: str) -> str:
        """The tag / field that marks the members of ``segment``."""
        return f"voronka_{segment}"

    @abstractmethod
    def find_created(self, client: Any, items: Sequence[ActionItem]) -> dict[str, str]:
        """action key -> id of the CRM record an earlier attempt already created."""

    def create_actions(self, client: Any, items: Sequence[ActionItem]
                       ) -> list[str | Exception]:
        """Create the tasks / deals of ``items`` in batches: per item the new record's id or
        the error (a call that fails as a whole fails each item of its batch: it is retried
        next run, after ``find_created``)."""
        out: dict[str, str | Exception] = {}
        tasks = [i for i in items if i.kind == "task"]
        deals = [i for i in items if i.kind == "deal"]
        for batch in _batches(tasks, self.max_batch):
            _collect(out, batch, lambda b=batch: self.create_tasks(client, b))
        if deals:
            try:
                stages = self.deal_stages(client, deals)
            except Exception as exc:  # an unknown pipeline or stage: every deal fails
                out.update({i.key: exc for i in deals})
                deals = []
            for batch in _batches(deals, self.max_batch):
                _collect(out, batch, lambda b=batch: self.create_deals(client, b, stages))
        return [out[i.key] for i in items]

    @abstractmethod
    def create_tasks(self, client: Any, batch: Sequence[ActionItem]) -> list[Any]:
        """One call creating ``batch``'s tasks: per item its id or its error."""

    @abstractmethod
    def create_deals(self, client: Any, batch: Sequence[ActionItem],
                     stages: Mapping[str, tuple[int, Any]]) -> list[Any]:
        """One call creating ``batch``'s deals at their stages: per item its id or error."""

    @abstractmethod
    def deal_stages(self, client: Any, deals: Sequence[ActionItem]
                    ) -> dict[str, tuple[int, Any]]:
        """action key -> (pipeline id, stage id) of each deal; raises naming what exists
        when a pipeline or stage is not there."""


class AmoCRMDestination(CrmDestination):
    """amoCRM: tag ``voronka_<segment>`` on contacts; tasks on the primary contact; deals
    (leads) in a named pipeline with the contact attached."""

    name = crm = "amocrm"
    max_batch = 50

    def create(self, client: AmoCRMWriteClient, name: str, description: str,
               list_type: str, rows: list[Any], *, value_based: bool,
               small: bool) -> tuple[str, bool]:
        tag = self.mark_name(name.removeprefix("voronka-"))
        client.ensure_contact_tag(tag)
        return tag, False

    def send(self, client: AmoCRMWriteClient, audience_id: str, list_type: str, op: str,
             rows: list[Any], *, value_based: bool) -> None:
        if op == "add":
            client.update_contact_tags(rows, add=[audience_id])
        else:
            client.update_contact_tags(rows, delete=[audience_id])

    def find_created(self, client: AmoCRMWriteClient,
                     items: Sequence[ActionItem]) -> dict[str, str]:
        found: dict[str, str] = {}
        tasks = [i for i in items if i.kind == "task"]
        if tasks:
            by_marker = {i.marker: i.key for i in tasks}
            for task in client.open_tasks("contacts", sorted({i.contact_id for i in tasks})):
                for marker, key in by_marker.items():
                    if f"[{marker}]" in str(task.get("text") or ""):
                        found[key] = str(task["id"])
        for item in (i for i in items if i.kind == "deal"):
            leads = [lead for lead in client.find_leads(item.marker)
                     if f"[{item.marker}]" in str(lead.get("name") or "")]
            if leads:
                found[item.key] = str(leads[0]["id"])
        return found

    def create_tasks(self, client: AmoCRMWriteClient,
                     batch: Sequence[ActionItem]) -> list[Any]:
        return client.create_tasks([self._task(i) for i in batch])

    def create_deals(self, client: AmoCRMWriteClient, batch: Sequence[ActionItem],
                     stages: Mapping[str, tuple[int, Any]]) -> list[Any]:
        return client.create_leads([self._lead(i, stages[i.key]) for i in batch])

    @staticmethod
    def _task(item: ActionItem) -> dict[str, Any]:
        body: dict[str, Any] = {
            "text": marker_text(item.text, item.marker),
            "complete_till": int(item.due.astimezone(UTC).timestamp()),
            "entity_id": item.contact_id, "entity_type": "contacts",
            "task_type_id": item.task_type, "request_id": item.marker}
        if item.responsible is not None:
            body["responsible_user_id"] = item.responsible
        return body

    @staticmethod
    def _lead(item: ActionItem, stage: tuple[int, Any]) -> dict[str, Any]:
        body: dict[str, Any] = {
            "name": marker_text(item.text, item.marker), "pipeline_id": stage[0],
            "status_id": stage[1], "request_id": item.marker,
            "_embedded": {"contacts": [{"id": item.contact_id, "is_main": True}]}}
        if item.responsible is not None:
            body["responsible_user_id"] = item.responsible
        return body

    def deal_stages(self, client: AmoCRMWriteClient, deals: Sequence[ActionItem]
                    ) -> dict[str, tuple[int, Any]]:
        pipelines = {str(p["name"]).strip().casefold(): p for p in client.pipelines()}
        out = {}
        for item in deals:
            pipeline = pipelines.get(item.pipeline.strip().casefold())
            if pipeline is None:
                raise ValueError(f"amoCRM has no pipeline {item.pipeline!r}; pipelines: "
                                 f"{', '.join(sorted(str(p['name']) for p in pipelines.values()))}")
            # 142/143 (won/lost) end a deal; type 1 is the "unsorted" inbox
            statuses = sorted((s for s in pipeline.get("statuses") or []
                               if int(s["id"]) not in (142, 143) and int(s.get("type") or 0) != 1),
                              key=lambda s: (int(s.get("sort") or 0), int(s["id"])))
            out[item.key] = (int(pipeline["id"]), _stage_id(item, statuses, "amoCRM"))
        return out


class Bitrix24Destination(CrmDestination):
    """Bitrix24: a boolean contact field per segment; to-do activities on the primary contact;
    deals in a named category with ORIGIN_ID = the marker."""

    name = crm = "bitrix24"
    max_batch = 50

    def mark_name(self, segment: str) -> str:
        """``VRNK_<SEGMENT>`` upper-cased; a name that would make ``UF_CRM_<CODE>`` longer
        than 50 characters is cut and given a hash of the whole, so it stays unique."""
        code = "VRNK_" + re.sub(r"[^A-Z0-9_]", "_", segment.upper())
        room = BITRIX24_UF_MAX - len("UF_CRM_")
        if len(code) > room:
            digest = hashlib.sha1(segment.encode()).hexdigest()[:8].upper()
            code = f"{code[:room - 9]}_{digest}"
        return code

    def create(self, client: Bitrix24WriteClient, name: str, description: str,
               list_type: str, rows: list[Any], *, value_based: bool,
               small: bool) -> tuple[str, bool]:
        segment = name.removeprefix("voronka-")
        field = client.ensure_contact_flag(self.mark_name(segment), f"voronka: {segment}")
        return field, False

    def send(self, client: Bitrix24WriteClient, audience_id: str, list_type: str, op: str,
             rows: list[Any], *, value_based: bool) -> None:
        client.set_contact_flag(rows, audience_id, op == "add")

    def find_created(self, client: Bitrix24WriteClient,
                     items: Sequence[ActionItem]) -> dict[str, str]:
        found: dict[str, str] = {}
        tasks = [i for i in items if i.kind == "task"]
        if tasks:
            by_marker = {i.marker: i.key for i in tasks}
            owners = sorted({i.contact_id for i in tasks})
            for todo in client.todos(BITRIX24_CONTACT_TYPE, owners, open_only=False):
                for marker, key in by_marker.items():
                    if f"[{marker}]" in str(todo.get("DESCRIPTION") or ""):
                        found[key] = str(todo["ID"])
        deals = {i.marker: i.key for i in items if i.kind == "deal"}
        if deals:
            for deal in client.deals_by_origin(sorted(deals)):
                key = deals.get(str(deal.get("ORIGIN_ID") or ""))
                if key:
                    found[key] = str(deal["ID"])
        return found

    def create_tasks(self, client: Bitrix24WriteClient,
                     batch: Sequence[ActionItem]) -> list[Any]:
        return client.add_todos([self._todo(i) for i in batch])

    def create_deals(self, client: Bitrix24WriteClient, batch: Sequence[ActionItem],
                     stages: Mapping[str, tuple[int, Any]]) -> list[Any]:
        return client.add_deals([self._deal(i, stages[i.key]) for i in batch])

    @staticmethod
    def _todo(item: ActionItem) -> dict[str, Any]:
        body: dict[str, Any] = {
            "ownerTypeId": BITRIX24_CONTACT_TYPE, "ownerId": item.contact_id,
            "deadline": item.due.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S+00:00"),
            "title": item.text, "description": marker_text(item.text, item.marker)}
        if item.responsible is not None:
            body["responsibleId"] = item.responsible
        return body

    @staticmethod
    def _deal(item: ActionItem, stage: tuple[int, Any]) -> dict[str, Any]:
        body: dict[str, Any] = {
            "TITLE": item.text, "CATEGORY_ID": stage[0], "STAGE_ID": stage[1],
            "CONTACT_ID": item.contact_id, "ORIGINATOR_ID": "voronka",
            "ORIGIN_ID": item.marker}
        if item.responsible is not None:
            body["ASSIGNED_BY_ID"] = item.responsible
        return body

    def deal_stages(self, client: Bitrix24WriteClient, deals: Sequence[ActionItem]
                    ) -> dict[str, tuple[int, Any]]:
        categories = {str(c["name"]).strip().casefold(): c for c in client.deal_categories()}
        open_stages: dict[int, list[dict[str, Any]]] = {}  # one stage list per category
        out = {}
        for item in deals:
            category = categories.get(item.pipeline.strip().casefold())
            if category is None:
                raise ValueError(
                    f"Bitrix24 has no deal category (pipeline) {item.pipeline!r}; categories: "
                    f"{', '.join(sorted(str(c['name']) for c in categories.values()))}")
            cat = int(category["id"])
            if cat not in open_stages:
                open_stages[cat] = [s for s in client.deal_stages(cat)  # P: in progress
                                    if s.get("semantics", "P") == "P"
                                    and not re.search(r"(^|:)(WON|LOSE|APOLOGY)$", str(s["id"]))]
            out[item.key] = (cat, str(_stage_id(item, open_stages[cat], "Bitrix24")))
        return out


def _stage_id(item: ActionItem, stages: Sequence[Mapping[str, Any]], crm: str) -> Any:
    """The id of the deal action's stage: the first open one, or the one named."""
    if not stages:
        raise ValueError(f"{crm} pipeline {item.pipeline!r} has no open stage")
    if item.stage == "first":
        return stages[0]["id"]
    for stage in stages:
        if str(stage["name"]).strip().casefold() == item.stage.strip().casefold():
            return stage["id"]
    raise ValueError(f"{crm} pipeline {item.pipeline!r} has no stage {item.stage!r}; stages: "
                     f"{', '.join(str(s['name']) for s in stages)}")


def _collect(out: dict[str, str | Exception], batch: Sequence[ActionItem],
             call: Callable[[], list[Any]]) -> None:
    """Record per item of ``batch`` what ``call`` answered: its id or its error."""
    try:
        answers = call()
        out.update({i.key: a if isinstance(a, Exception) else str(a)
                    for i, a in zip(batch, answers, strict=True)})
    except Exception as exc:  # the whole call failed: every item of it is retried
        out.update({i.key: exc for i in batch})


def _batches(items: Sequence[ActionItem], size: int) -> list[list[ActionItem]]:
    return [list(items[i:i + size]) for i in range(0, len(items), size)]


AMOCRM = AmoCRMDestination()
BITRIX24 = Bitrix24Destination()
