"""Normalised phones and e-mails of CRM contacts: the keys of identity resolution.

Phone parsing needs libphonenumber (E.164, default region RU), which SQL cannot do portably,
so this small derived table is computed in Python and read by dbt as a source. It is rebuilt
from the newest version of every raw contact on each run, so it is a pure function of raw.
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


def amocrm_contact_points(account: str, contact: dict[str, Any]) -> Iterator[tuple]:
    """(source, account, contact_id, kind, raw, normalised) for each phone and e-mail."""
    for field in contact.get("custom_fields_values") or []:
        kind = _FIELD_KIND.get(field.get("field_code") or "")
        if kind is None:
            continue
        for item in field.get("values") or []:
            raw = str(item.get("value") or "")
            normalized = normalize_phone(raw) if kind == "phone" else normalize_email(raw)
            yield ("amocrm", account, str(contact["id"]), kind, raw, normalized)


def latest_payloads(wh: Warehouse, table: str) -> Iterable[tuple[str, dict[str, Any]]]:
    """Newest version of each record of a raw table, as (account, payload)."""
    frame = wh.query_df(
        f"""select account, payload from (
              select account, payload, row_number() over (
                partition by account, record_id
                order by updated_at desc nulls last, extracted_at desc) as version_rank
              from {table}) versions
            where version_rank = 1"""
    )
    for account, payload in frame.itertuples(index=False):
        yield account, json_loads(payload)


def build_contact_points(wh: Warehouse) -> int:
    """Rebuild raw.contact_points from raw amoCRM contacts; returns the number of rows."""
    rows: list[tuple] = []
    if "amocrm__contacts" in wh.list_tables("raw"):
        for account, contact in latest_payloads(wh, "raw.amocrm__contacts"):
            rows.extend(amocrm_contact_points(account, contact))
    frame = pd.DataFrame(rows, columns=CONTACT_POINT_COLUMNS)
    wh.replace_table("raw", "contact_points", frame, CONTACT_POINT_DDL)
    return len(frame)
