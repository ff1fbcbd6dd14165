"""Normalised phones and e-mails of CRM contacts and file orders: the keys of identity resolution.

Phone parsing needs libphonenumber (E.164, default region RU), which SQL cannot do portably,
so this small derived table is computed in Python and read by dbt as a source. It is rebuilt
from the newest version of every raw contact (amoCRM, Bitrix24), every Bitrix24 lead and every
orders-file row on each run, so it is a pure function of raw. ``contact_id`` is the contact's
id, the lead's id (source ``bitrix24_lead``), or for a file order the order's raw record_id:
each is a node of the identity graph dbt resolves.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from typing import Any

import pandas as pd
import phonenumbers

from warehouse.base import Warehouse, json_loads

DEFAULT_REGION = "RU"
CONTACT_POINT_COLUMNS = ["source", "account", "contact_id", "kind", "value_raw", "value_normalized"]
CONTACT_POINT_DDL = (
    "source varchar, account varchar, contact_id varchar, kind varchar, "
    "value_raw varchar, value_normalized varchar"
)
_FIELD_KIND = {"PHONE": "phone", "EMAIL": "email"}


def normalize_phone(value: str, region: str = DEFAULT_REGION) -> str | None:
    """E.164 form of a phone as people write it ('8 (916) 123-45-67'), or None if invalid."""
    try:
        parsed = phonenumbers.parse(value, region)
    except phonenumbers.NumberParseException:
        return None
    if not phonenumbers.is_valid_number(parsed):
        return None
    return phonenumbers.format_number(parsed, phonenumbers.PhoneNumberFormat.E164)


def normalize_email(value: str) -> str | None:
    """Trimmed, lower-cased e-mail; None when it is not an address at all."""
    email = value.strip().lower()
    return email if "@" in email and " " not in email else None


def _point(source: str, account: str, node_id: str, kind: str, raw: Any) -> tuple:
    """One contact-point row; the normalised value is None when the raw one is junk."""
    text = str(raw or "")
    normalized = normalize_phone(text) if kind == "phone" else normalize_email(text)
    return (source, account, node_id, kind, text, normalized)


def amocrm_contact_points(account: str, contact: dict[str, Any]) -> Iterator[tuple]:
    """Phones and e-mails of an amoCRM contact (PHONE/EMAIL multitext custom fields)."""
    for field in contact.get("custom_fields_values") or []:
        kind = _FIELD_KIND.get(field.get("field_code") or "")
        if kind is None:
            continue
        for item in field.get("values") or []:
            yield _point("amocrm", account, str(contact["id"]), kind, item.get("value"))


def bitrix24_contact_points(account: str, record: dict[str, Any],
                            source: str = "bitrix24") -> Iterator[tuple]:
    """Phones and e-mails of a Bitrix24 contact, or of a lead (source ``bitrix24_lead``: a lead
    carries the phone and e-mail typed into the form, and often no contact at all), from the
    PHONE/EMAIL multifields ``[{VALUE, VALUE_TYPE, ...}]``."""
    for field, kind in _FIELD_KIND.items():
        items = record.get(field)
        for item in items if isinstance(items, list) else []:
            if isinstance(item, dict) and item.get("VALUE"):
                yield _point(source, account, str(record["ID"]), kind, item["VALUE"])


def file_order_contact_points(
    account: str, record_id: str, order: dict[str, Any]
) -> Iterator[tuple]:
    """The buyer's phone and e-mail of an orders-file row; the order itself is the node."""
    for column, kind in (("customer_phone", "phone"), ("customer_email", "email")):
        if (order.get(column) or "").strip():
            yield _point("files", account, record_id, kind, order[column])


def latest_payloads(wh: Warehouse, table: str) -> Iterable[tuple[str, str, dict[str, Any]]]:
    """Newest version of each record of a raw table, as (account, record_id, payload): the
    version staging's latest_version macro picks, ties on the timestamps included."""
    frame = wh.query_df(
        f"""select account, record_id, payload from (
              select account, record_id, payload, row_number() over (
                partition by account, record_id
                order by updated_at desc nulls last, extracted_at desc,
                         payload_hash desc) as version_rank
              from {table}) versions
            where version_rank = 1"""
    )
    for account, record_id, payload in frame.itertuples(index=False):
        yield account, record_id, json_loads(payload)


def _points_of_table(wh: Warehouse, table: str) -> Iterator[tuple]:
    for account, record_id, payload in latest_payloads(wh, f"raw.{table}"):
        if table == "amocrm__contacts":
            yield from amocrm_contact_points(account, payload)
        elif table == "bitrix24__contacts":
            yield from bitrix24_contact_points(account, payload)
        elif table == "bitrix24__leads":
            yield from bitrix24_contact_points(account, payload, source="bitrix24_lead")
        else:
            yield from file_order_contact_points(account, record_id, payload)


CONTACT_TABLES = ("amocrm__contacts", "bitrix24__contacts", "bitrix24__leads", "files__orders")


def build_contact_points(wh: Warehouse) -> int:
    """Rebuild raw.contact_points from every landed contact table; returns the row count."""
    landed = set(wh.list_tables("raw"))
    rows = [row for table in CONTACT_TABLES if table in landed
            for row in _points_of_table(wh, table)]
    frame = pd.DataFrame(rows, columns=CONTACT_POINT_COLUMNS)
    wh.replace_table("raw", "contact_points", frame, CONTACT_POINT_DDL)
    return len(frame)
