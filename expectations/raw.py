"""Raw batch suites: validate a page of `RawRecord`s before it lands.

Python only flattens each payload into one row of the columns that matter for its entity
(plus `__num` / `__text` shadow columns, so that GX never meets a value it cannot compare) and
maps GX's `unexpected_index_list` back to records. Every row-level decision is a GX
expectation; its `meta` carries the field name and the wording of the quarantine reason.
Nested payload keys are flattened to dotted columns (`base.spent`, `metrics.costMicros`), and
reasons name them that way.

Every raw entity that lands has a suite (validate_records refuses one without). amoCRM payloads
are JSON ints and Unix times; Bitrix24's legacy `crm.*.list` rows are all strings (ids of
digits, decimal-string amounts, ISO date-times with offset, "" meaning no value) while its stage
history keeps native ints.

File sources (`files` orders / ad_spend) first go through the column contract of
`extractors.files.validate_file_rows` (its reason names file, line and field and is kept
verbatim); the rows it accepts are then validated by a GX suite over parsed values, whose
reasons use the same "<file> line <n>: field ..." wording.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from datetime import UTC, date, datetime
from typing import Any

import pandas as pd

from expectations._gx import exception_message, expectations_module, run_suite
from expectations.results import BatchValidation
from warehouse.records import QuarantinedRecord, RawRecord

EPOCH_MIN = 946684800  # 2000-01-01T00:00:00Z
EPOCH_MAX = 4102444800  # 2100-01-01T00:00:00Z
WON_STATUS_ID = 142
_DIGITS = re.compile(r"\d+")


class FlattenError(ValueError):
    """The payload does not have the shape the suite needs (missing keys, not an object)."""

    def __init__(self, message: str, fields: Sequence[str] = ()) -> None:
        super().__init__(message)
        self.fields = tuple(fields)


# -- flattening helpers -----------------------------------------------------------------------


def _int_num(value: Any) -> float:
    """The number behind a JSON integer; NaN for anything else (the type check reports it)."""
    if isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    return math.nan


def _text(value: Any) -> str | None:
    """A string to match a regex against; non-scalar values render as `<type>` and fail."""
    if value is None:
        return None
    if isinstance(value, str):
        return value
    if isinstance(value, int) and not isinstance(value, bool):
        return str(value)
    return f"<{type(value).__name__}>"


def _digits_num(value: Any) -> float:
    text = _text(value)
    return float(text) if text is not None and _DIGITS.fullmatch(text) else math.nan


def _require(payload: Any, keys: Sequence[str]) -> dict[str, Any]:
    if not isinstance(payload, dict):
        raise FlattenError(f"payload is {type(payload).__name__}, expected a JSON object")
    missing = [k for k in keys if k not in payload]
    if missing:
        names = ", ".join(repr(k) for k in missing)
        raise FlattenError(f"payload is missing key(s) {names}", missing)
    return payload


def _with_num(row: dict[str, Any], payload: dict[str, Any], *fields: str) -> dict[str, Any]:
    for f in fields:
        row[f] = payload.get(f)
        row[f"{f}__num"] = _int_num(payload.get(f))
    return row


def _flatten_lead(p: Any) -> dict[str, Any]:
    p = _require(p, ("id", "pipeline_id", "status_id", "created_at", "updated_at"))
    return _with_num({}, p, "id", "pipeline_id", "status_id", "price", "created_at",
                     "updated_at", "closed_at")


def _flatten_contact(p: Any) -> dict[str, Any]:
    p = _require(p, ("id",))
    return {"id": p.get("id"), "custom_fields_values": p.get("custom_fields_values")}


def _lead_status_after(value_after: Any) -> Any:
    if not isinstance(value_after, list):
        return None
    for item in value_after:
        status = item.get("lead_status") if isinstance(item, dict) else None
        if isinstance(status, dict) and status.get("id") is not None:
            return status["id"]
    return None


def _customer_status_after(value_after: Any) -> Any:
    """The status id a ``customer_status_changed`` event moved the buyer to, if stated."""
    if not isinstance(value_after, list):
        return None
    for item in value_after:
        status = item.get("customer_status") if isinstance(item, dict) else None
        if isinstance(status, dict) and status.get("id") is not None:
            return status["id"]
    return None


def _flatten_customer_event(p: Any) -> dict[str, Any]:
    p = _require(p, ("id", "type", "entity_id", "created_at", "value_after"))
    row = _with_num({"id": p.get("id"), "type": p.get("type"), "entity_id": p.get("entity_id")},
                    p, "created_at")
    row["value_after"] = p.get("value_after")
    row["customer_status_after_id"] = _customer_status_after(p.get("value_after"))
    return row


def _flatten_event(p: Any) -> dict[str, Any]:
    p = _require(p, ("id", "type", "entity_id", "created_at", "value_after"))
    row = _with_num({"id": p.get("id"), "type": p.get("type"), "entity_id": p.get("entity_id")},
                    p, "created_at")
    row["value_after"] = p.get("value_after")
    row["lead_status_after_id"] = _lead_status_after(p.get("value_after"))
    return row


def _flatten_pipeline(p: Any) -> dict[str, Any]:
    p = _require(p, ("id",))
    embedded = p.get("_embedded")
    statuses = embedded.get("statuses") if isinstance(embedded, dict) else None
    return {
        "id": p.get("id"),
        "_embedded.statuses": statuses,
        "statuses_count": float(len(statuses)) if isinstance(statuses, list) else math.nan,
    }


def _flatten_id_only(p: Any) -> dict[str, Any]:
    p = _require(p, ("id",))
    return {"id": p.get("id")}


DIRECT_FIELDS = ("Date", "CampaignId", "Impressions", "Clicks", "Cost")


def _flatten_campaign_stats(p: Any) -> dict[str, Any]:
    p = _require(p, DIRECT_FIELDS)
    row: dict[str, Any] = {}
    for f in DIRECT_FIELDS:
        row[f] = p.get(f)
        row[f"{f}__text"] = _text(p.get(f))
    row["Impressions__num"] = _digits_num(p.get("Impressions"))
    row["Clicks__num"] = _digits_num(p.get("Clicks"))
    return row


# -- expectation helpers ----------------------------------------------------------------------


def _e(kind: str, field: str, expected: str, show: Sequence[str] | None = None,
       **kwargs: Any) -> Any:
    """An expectation whose meta says which payload field it guards and how to word a failure."""
    cls = getattr(expectations_module(), kind)
    return cls(meta={"field": field, "expected": expected, "show": list(show or [field])},
               **kwargs)


def _not_null(field: str, what: str | None = None) -> Any:
    return _e("ExpectColumnValuesToNotBeNull", field, what or "a value", column=field)


def _integer(field: str, expected: str = "an integer") -> Any:
    return _e("ExpectColumnValuesToBeInTypeList", field, expected, column=field,
              type_list=["int"])


def _epoch(field: str) -> list[Any]:
    return [
        _integer(field, "an integer Unix time"),
        _e("ExpectColumnValuesToBeBetween", field,
           "a Unix time between 2000-01-01 and 2100-01-01", column=f"{field}__num",
           min_value=EPOCH_MIN, max_value=EPOCH_MAX),
    ]


def _regex(field: str, pattern: str, expected: str) -> Any:
    return _e("ExpectColumnValuesToMatchRegex", field, expected, column=f"{field}__text",
              regex=pattern)


def _lead_suite() -> list[Any]:
    non_negative = "a non-negative integer"
    return [
        _not_null("id", "a lead id"),
        _integer("id"),
        _e("ExpectCompoundColumnsToBeUnique", "id",
           "(account, id, updated_at) unique within the batch", show=["id", "updated_at"],
           column_list=["account", "id__num", "updated_at__num"],
           ignore_row_if="any_value_is_missing"),
        _not_null("pipeline_id"), _integer("pipeline_id"),
        _not_null("status_id"), _integer("status_id"),
        _integer("price", non_negative),
        _e("ExpectColumnValuesToBeBetween", "price", non_negative, column="price__num",
           min_value=0),
        _not_null("created_at"), *_epoch("created_at"),
        _not_null("updated_at"), *_epoch("updated_at"),
        *_epoch("closed_at"),
        _e("ExpectColumnPairValuesAToBeGreaterThanB", "updated_at", "updated_at >= created_at",
           show=["updated_at", "created_at"], column_A="updated_at__num",
           column_B="created_at__num", or_equal=True, ignore_row_if="either_value_is_missing"),
        _e("ExpectColumnValuesToNotBeNull", "closed_at",
           f"a closed_at on a won lead (status_id {WON_STATUS_ID})", column="closed_at",
           row_condition=f"status_id__num == {WON_STATUS_ID}", condition_parser="pandas"),
    ]


def _contact_suite() -> list[Any]:
    return [
        _not_null("id", "a contact id"),
        _e("ExpectColumnValuesToBeInTypeList", "custom_fields_values", "null or a list",
           column="custom_fields_values", type_list=["list"]),
    ]


def _event_suite() -> list[Any]:
    return [
        _not_null("id", "an event id"),
        _not_null("type"),
        _e("ExpectColumnValuesToBeInSet", "type", "type 'lead_status_changed'", column="type",
           value_set=["lead_status_changed"]),
        _not_null("entity_id", "the lead id the event belongs to"),
        _not_null("created_at"), *_epoch("created_at"),
        _e("ExpectColumnValuesToNotBeNull", "value_after",
           "a value_after holding a lead_status with an id", column="lead_status_after_id"),
    ]


def _customer_event_suite() -> list[Any]:
    return [
        _not_null("id", "an event id"),
        _e("ExpectColumnValuesToBeInSet", "type", "type 'customer_status_changed'",
           column="type", value_set=["customer_status_changed"]),
        _not_null("entity_id", "the customer id the event belongs to"),
        _not_null("created_at"), *_epoch("created_at"),
        _e("ExpectColumnValuesToNotBeNull", "value_after",
           "a value_after holding a customer_status with an id",
           column="customer_status_after_id"),
    ]


def _pipeline_suite() -> list[Any]:
    expected = "a non-empty list of statuses"
    return [
        _not_null("id", "a pipeline id"),
        _e("ExpectColumnValuesToNotBeNull", "_embedded.statuses", expected,
           column="statuses_count"),
        _e("ExpectColumnValuesToBeBetween", "_embedded.statuses", expected,
           column="statuses_count", min_value=1),
    ]


def _id_suite(what: str) -> Callable[[], list[Any]]:
    return lambda: [_not_null("id", what)]


def _campaign_stats_suite() -> list[Any]:
    count = "a non-negative integer string"
    return [
        *(_not_null(f) for f in DIRECT_FIELDS),
        _regex("Date", r"^\d{4}-\d{2}-\d{2}$", "a date YYYY-MM-DD"),
        _regex("CampaignId", r"^\d+$", "a string of digits"),
        _regex("Impressions", r"^\d+$", count),
        _regex("Clicks", r"^\d+$", count),
        _regex("Cost", r"^\d+(?:\.\d+)?$", "a non-negative number string"),
        _e("ExpectColumnPairValuesAToBeGreaterThanB", "Clicks", "Clicks <= Impressions",
           show=["Clicks", "Impressions"], column_A="Impressions__num", column_B="Clicks__num",
           or_equal=True, ignore_row_if="either_value_is_missing"),
        _e("ExpectCompoundColumnsToBeUnique", "CampaignId",
           "(account, Date, CampaignId) unique within the batch", show=["Date", "CampaignId"],
           column_list=["account", "Date__text", "CampaignId__text"],
           ignore_row_if="any_value_is_missing"),
    ]


# -- ad platforms: VK Ads, Google Ads, Meta Ads -------------------------------------------------

ISO_DATE = r"^\d{4}-\d{2}-\d{2}$"
DIGITS = r"^\d+$"
DECIMAL = r"^\d+(?:\.\d+)?$"
CURRENCY = r"^[A-Z]{3}$"
ISO_DATE_OK = "an ISO date YYYY-MM-DD"


def _count_num(value: Any) -> float:
    """A JSON integer or a string of digits as a number (for comparisons); NaN otherwise."""
    return _int_num(value) if isinstance(value, int) else _digits_num(value)


def _nested(payload: dict[str, Any], path: str) -> Any:
    """`payload["a"]["b"]` for "a.b"; None when a level is absent; FlattenError when a level
    that is present is not an object."""
    value: Any = payload
    parts = path.split(".")
    for n, key in enumerate(parts):
        if value is None:
            return None
        if not isinstance(value, dict):
            where = ".".join(parts[:n])
            raise FlattenError(f"'{where}' is {type(value).__name__}, expected a JSON object",
                               [where])
        value = value.get(key)
    return value


def _columns(payload: dict[str, Any], fields: Sequence[str]) -> dict[str, Any]:
    """For each (dotted) field: the value, its `__text` rendering and its `__num` count."""
    row: dict[str, Any] = {}
    for f in fields:
        value = _nested(payload, f)
        row[f] = value
        row[f"{f}__text"] = _text(value)
        row[f"{f}__num"] = _count_num(value)
    return row


VK_PLAN_FIELDS = ("id", "status", "created", "updated")
VK_PLAN_STATUSES = ("active", "blocked", "deleted")  # extractors.vk_ads.ALL_STATUSES
VK_STATS_FIELDS = ("date", "ad_plan_id", "base.shows", "base.clicks", "base.spent", "_currency")
GOOGLE_FIELDS = ("segments.date", "campaign.id", "metrics.impressions", "metrics.clicks",
                 "metrics.costMicros", "customer.currencyCode")
META_FIELDS = ("date_start", "date_stop", "campaign_id", "impressions", "clicks", "spend",
               "account_currency")


def _flatten_vk_plan(p: Any) -> dict[str, Any]:
    return _columns(_require(p, ("id",)), VK_PLAN_FIELDS)


def _flatten_vk_stats(p: Any) -> dict[str, Any]:
    p = _require(p, ("date", "ad_plan_id", "base"))
    if not isinstance(p["base"], dict):
        raise FlattenError(f"'base' is {type(p['base']).__name__}, expected a JSON object",
                           ["base"])
    return _columns(p, VK_STATS_FIELDS)


def _flatten_google_stats(p: Any) -> dict[str, Any]:
    # proto3 JSON omits zero values, so metrics (even the whole object) may be absent
    return _columns(_require(p, ("segments", "campaign")), GOOGLE_FIELDS)


def _flatten_meta_insights(p: Any) -> dict[str, Any]:
    return _columns(_require(p, ("date_start", "campaign_id")), META_FIELDS)


def _non_negative_int(field: str) -> list[Any]:
    """A JSON integer >= 0 (VK Ads counts). GX's type check takes a JSON `true` for an int;
    the regex over the `__text` rendering (`<bool>`) does not."""
    expected = "a non-negative integer"
    return [_integer(field, expected), _regex(field, DIGITS, expected)]


def _clicks_le(clicks: str, impressions: str) -> Any:
    return _e("ExpectColumnPairValuesAToBeGreaterThanB", clicks, f"{clicks} <= {impressions}",
              show=[clicks, impressions], column_A=f"{impressions}__num",
              column_B=f"{clicks}__num", or_equal=True, ignore_row_if="either_value_is_missing")


def _unique(field: str, keys: Sequence[str]) -> Any:
    return _e("ExpectCompoundColumnsToBeUnique", field,
              f"(account, {', '.join(keys)}) unique within the batch", show=list(keys),
              column_list=["account", *(f"{k}__text" for k in keys)],
              ignore_row_if="any_value_is_missing")


def _vk_plan_suite() -> list[Any]:
    when = r"^\d{4}-\d{2}-\d{2}(?:[ T]\d{2}:\d{2}:\d{2})?$"
    return [
        _not_null("id", "an ad plan id"),
        _regex("id", DIGITS, "a digit-like ad plan id"),
        _unique("id", ["id"]),
        _e("ExpectColumnValuesToBeInSet", "status", f"a status in {list(VK_PLAN_STATUSES)}",
           column="status", value_set=list(VK_PLAN_STATUSES)),
        _regex("created", when, "a date-time YYYY-MM-DD HH:MM:SS"),
        _regex("updated", when, "a date-time YYYY-MM-DD HH:MM:SS"),
    ]


def _vk_stats_suite() -> list[Any]:
    return [
        *(_not_null(f) for f in VK_STATS_FIELDS[:5]),
        _regex("date", ISO_DATE, ISO_DATE_OK),
        _regex("ad_plan_id", DIGITS, "a digit-like ad plan id"),
        *_non_negative_int("base.shows"),
        *_non_negative_int("base.clicks"),
        _regex("base.spent", DECIMAL, "a non-negative decimal string"),
        _clicks_le("base.clicks", "base.shows"),
        _regex("_currency", CURRENCY, "an ISO 4217 currency code"),
        _unique("ad_plan_id", ["date", "ad_plan_id"]),
    ]


def _google_stats_suite() -> list[Any]:
    count = "a non-negative int64 (a string of digits)"
    return [
        _not_null("segments.date"), _not_null("campaign.id", "a campaign id"),
        _regex("segments.date", ISO_DATE, ISO_DATE_OK),
        _regex("campaign.id", DIGITS, "a digit-like campaign id"),
        _regex("metrics.impressions", DIGITS, count),
        _regex("metrics.clicks", DIGITS, count),
        _regex("metrics.costMicros", DIGITS, "non-negative micros (an int64 string of digits)"),
        _clicks_le("metrics.clicks", "metrics.impressions"),
        _regex("customer.currencyCode", CURRENCY, "an ISO 4217 currency code"),
        _unique("campaign.id", ["segments.date", "campaign.id"]),
    ]


def _meta_insights_suite() -> list[Any]:
    count = "a non-negative integer string"
    return [
        _not_null("date_start"), _not_null("date_stop"),
        _not_null("campaign_id", "a campaign id"),
        _regex("date_start", ISO_DATE, ISO_DATE_OK),
        _regex("date_stop", ISO_DATE, ISO_DATE_OK),
        _e("ExpectColumnPairValuesToBeEqual", "date_stop",
           "date_stop equal to date_start (time_increment=1)", show=["date_start", "date_stop"],
           column_A="date_start", column_B="date_stop", ignore_row_if="either_value_is_missing"),
        _regex("campaign_id", DIGITS, "a digit-like campaign id"),
        _regex("impressions", DIGITS, count),
        _regex("clicks", DIGITS, count),
        _regex("spend", DECIMAL, "a non-negative decimal string"),
        _clicks_le("clicks", "impressions"),
        _regex("account_currency", CURRENCY, "an ISO 4217 currency code"),
        _unique("campaign_id", ["date_start", "campaign_id"]),
    ]


# -- amoCRM: companies, the buyer funnel (customers, statuses, transactions), the bin --------

CUSTOMER_STATUS_TYPES = (0, 1, 2, 3, 4)  # regular, expected, did not buy, closed, recent
NON_NEGATIVE_NUMBER = "a non-negative number"


def _number_num(value: Any) -> float:
    """A JSON number (int or float, not a boolean) as float; NaN for anything else."""
    if isinstance(value, int | float) and not isinstance(value, bool):
        return float(value)
    return math.nan


def _with_amount(row: dict[str, Any], payload: dict[str, Any], *fields: str) -> dict[str, Any]:
    for f in fields:
        row[f] = payload.get(f)
        row[f"{f}__num"] = _number_num(payload.get(f))
    return row


def _flatten_company(p: Any) -> dict[str, Any]:
    p = _require(p, ("id", "created_at", "updated_at"))
    row = _with_num({}, p, "id", "responsible_user_id", "created_at", "updated_at")
    row["custom_fields_values"] = p.get("custom_fields_values")
    return row


def _flatten_customer(p: Any) -> dict[str, Any]:
    p = _require(p, ("id", "status_id", "created_at", "updated_at"))
    row = _with_num({}, p, "id", "status_id", "created_at", "updated_at", "next_date",
                    "periodicity", "purchases_count")
    _with_amount(row, p, "next_price", "ltv", "average_check")
    row["_embedded.contacts"] = _nested(p, "_embedded.contacts")
    return row


def _flatten_customer_status(p: Any) -> dict[str, Any]:
    p = _require(p, ("id", "name"))
    row = _with_num({"name": p.get("name")}, p, "id", "sort", "type")
    row["id__text"] = _text(p.get("id"))
    return row


def _flatten_transaction(p: Any) -> dict[str, Any]:
    p = _require(p, ("id", "price", "completed_at", "customer_id"))
    row = _with_num({}, p, "id", "customer_id", "completed_at", "created_at", "updated_at")
    _with_amount(row, p, "price")
    row["_embedded.customer.id"] = _nested(p, "_embedded.customer.id")
    return row


def _flatten_deleted_lead(p: Any) -> dict[str, Any]:
    p = _require(p, ("id", "updated_at", "is_deleted"))
    return _with_num({"is_deleted": p.get("is_deleted")}, p, "id", "updated_at")


def _versioned_id(what: str) -> list[Any]:
    """A JSON-integer id, one version per (account, id, updated_at) in the batch."""
    return [
        _not_null("id", what), _integer("id"),
        _e("ExpectCompoundColumnsToBeUnique", "id",
           "(account, id, updated_at) unique within the batch", show=["id", "updated_at"],
           column_list=["account", "id__num", "updated_at__num"],
           ignore_row_if="any_value_is_missing"),
    ]


def _created_updated(required: bool = True) -> list[Any]:
    out = [*_epoch("created_at"), *_epoch("updated_at"),
           _e("ExpectColumnPairValuesAToBeGreaterThanB", "updated_at", "updated_at >= created_at",
              show=["updated_at", "created_at"], column_A="updated_at__num",
              column_B="created_at__num", or_equal=True, ignore_row_if="either_value_is_missing")]
    if required:
        out[:0] = [_not_null("created_at"), _not_null("updated_at")]
    return out


def _amount(field: str, required: bool = False) -> list[Any]:
    out = [_e("ExpectColumnValuesToBeInTypeList", field, NON_NEGATIVE_NUMBER, column=field,
              type_list=["int", "float"]),
           _e("ExpectColumnValuesToBeBetween", field, NON_NEGATIVE_NUMBER, column=f"{field}__num",
              min_value=0)]
    if required:
        out.insert(0, _not_null(field, NON_NEGATIVE_NUMBER))
    return out


def _count(field: str) -> list[Any]:
    expected = "a non-negative integer"
    return [_integer(field, expected),
            _e("ExpectColumnValuesToBeBetween", field, expected, column=f"{field}__num",
               min_value=0)]


def _list_or_null(field: str) -> Any:
    return _e("ExpectColumnValuesToBeInTypeList", field, "null or a list", column=field,
              type_list=["list"])


def _company_suite() -> list[Any]:
    return [*_versioned_id("a company id"), *_created_updated(),
            _integer("responsible_user_id"), _list_or_null("custom_fields_values")]


def _customer_suite() -> list[Any]:
    return [
        *_versioned_id("a customer id"), *_created_updated(),
        _not_null("status_id"), _integer("status_id"),
        *_amount("next_price"), *_epoch("next_date"), *_count("periodicity"),
        *_amount("ltv"), *_count("purchases_count"), *_amount("average_check"),
        _list_or_null("_embedded.contacts"),
    ]


def _customer_status_suite() -> list[Any]:
    return [
        _not_null("id", "a customer status id"), _integer("id"),
        _unique("id", ["id"]),
        _not_null("name"), _integer("sort"),
        _e("ExpectColumnValuesToBeInSet", "type",
           f"a status type in {list(CUSTOMER_STATUS_TYPES)}", column="type__num",
           value_set=[float(t) for t in CUSTOMER_STATUS_TYPES]),
        _integer("type"),
    ]


def _transaction_suite() -> list[Any]:
    return [
        *_versioned_id("a transaction id"),
        _not_null("customer_id", "the id of the customer who bought"), _integer("customer_id"),
        *_amount("price", required=True),
        _not_null("completed_at", "the moment of the purchase"), *_epoch("completed_at"),
        *_created_updated(required=False),
        _e("ExpectColumnPairValuesToBeEqual", "_embedded.customer.id",
           "the transaction's customer_id", show=["_embedded.customer.id", "customer_id"],
           column_A="_embedded.customer.id", column_B="customer_id",
           ignore_row_if="either_value_is_missing"),
    ]


def _deleted_lead_suite() -> list[Any]:
    return [
        *_versioned_id("a lead id"),
        _not_null("updated_at", "the moment of the deletion"), *_epoch("updated_at"),
        _e("ExpectColumnValuesToBeInSet", "is_deleted", "true (a lead in the bin)",
           column="is_deleted", value_set=[True]),
        _not_null("is_deleted", "true (a lead in the bin)"),
    ]


# -- Bitrix24: legacy crm.*.list rows (every scalar a string), stage history (native ints) --

_B24_TIME = r"T\d{2}:\d{2}:\d{2}(?:\.\d+)?(?:[+-]\d{2}:?\d{2}|Z)?"
B24_DATETIME = rf"^\d{{4}}-\d{{2}}-\d{{2}}{_B24_TIME}$"
B24_DATE_OR_DATETIME = rf"^\d{{4}}-\d{{2}}-\d{{2}}(?:{_B24_TIME})?$"
B24_DATETIME_OK = "an ISO 8601 date-time (YYYY-MM-DDTHH:MM:SS+03:00)"
B24_SEMANTICS = ("P", "S", "F")
B24_YES_NO = ("Y", "N")
B24_HISTORY_TYPES = (1, 2, 3, 5)  # created, moved, final, category changed
B24_MULTIFIELDS = ("PHONE", "EMAIL")
B24_DATES = ("DATE_CREATE", "DATE_MODIFY", "DATE_CLOSED", "CLOSEDATE", "CREATED_TIME")
B24_USER_FIELDS = ("ID", "ACTIVE", "EMAIL")
B24_STATUS_FIELDS = ("ID", "ENTITY_ID", "STATUS_ID", "NAME", "SORT", "CATEGORY_ID", "SEMANTICS")
B24_CATEGORY_FIELDS = ("id", "name", "sort", "isDefault")
B24_LEAD_FIELDS = ("ID", "STATUS_ID", "STATUS_SEMANTIC_ID", "OPPORTUNITY", "CURRENCY_ID",
                   "ASSIGNED_BY_ID", "CONTACT_ID", "DATE_CREATE", "DATE_MODIFY", "DATE_CLOSED")
B24_DEAL_FIELDS = ("ID", "CATEGORY_ID", "STAGE_ID", "STAGE_SEMANTIC_ID", "OPPORTUNITY",
                   "CURRENCY_ID", "ASSIGNED_BY_ID", "CONTACT_ID", "LEAD_ID", "COMPANY_ID",
                   "DATE_CREATE", "DATE_MODIFY", "CLOSEDATE", "CLOSED")
B24_CONTACT_FIELDS = ("ID", "ASSIGNED_BY_ID", "DATE_CREATE", "DATE_MODIFY")
B24_HISTORY_FIELDS = ("ID", "_entityTypeId", "TYPE_ID", "OWNER_ID", "CREATED_TIME",
                      "CATEGORY_ID", "STAGE_SEMANTIC_ID", "STATUS_SEMANTIC_ID")


def _iso_epoch(text: str | None) -> float:
    """Seconds since the epoch of an ISO date-time, to compare DATE_MODIFY with DATE_CREATE;
    NaN when it does not parse (the regex reports that)."""
    if text is None:
        return math.nan
    try:
        parsed = datetime.fromisoformat(text)
    except ValueError:
        return math.nan
    return (parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)).timestamp()


def _b24_columns(p: dict[str, Any], fields: Sequence[str]) -> dict[str, Any]:
    """Like `_columns`, with two Bitrix24 habits: an empty string is how the legacy lists say
    "no value" (so it counts as null), and dates get a comparable `__num`."""
    row = _columns(p, fields)
    for f in fields:
        row[f"{f}__text"] = row[f"{f}__text"] or None
        if f in B24_DATES:
            row[f"{f}__num"] = _iso_epoch(row[f"{f}__text"])
    for f in B24_MULTIFIELDS:
        row[f] = p.get(f)
    return row


def _b24_flatten(fields: Sequence[str], required: Sequence[str]) -> Callable[[Any], dict]:
    def flatten(p: Any) -> dict[str, Any]:
        return _b24_columns(_require(p, required), fields)
    return flatten


def _b24_required(field: str, what: str | None = None) -> Any:
    return _e("ExpectColumnValuesToNotBeNull", field, what or "a value", column=f"{field}__text")


def _b24_id(field: str = "ID", what: str = "an id of digits") -> list[Any]:
    return [_b24_required(field, what), _regex(field, DIGITS, what)]


def _b24_in(field: str, values: Sequence[Any]) -> Any:
    return _e("ExpectColumnValuesToBeInSet", field, f"one of {list(values)}",
              column=f"{field}__text", value_set=[str(v) for v in values])


def _b24_dates_and_version() -> list[Any]:
    """DATE_CREATE/DATE_MODIFY present and ordered; one version per (ID, DATE_MODIFY)."""
    return [
        _b24_required("DATE_CREATE"), _regex("DATE_CREATE", B24_DATETIME, B24_DATETIME_OK),
        _b24_required("DATE_MODIFY"), _regex("DATE_MODIFY", B24_DATETIME, B24_DATETIME_OK),
        _e("ExpectColumnPairValuesAToBeGreaterThanB", "DATE_MODIFY", "DATE_MODIFY >= DATE_CREATE",
           show=["DATE_MODIFY", "DATE_CREATE"], column_A="DATE_MODIFY__num",
           column_B="DATE_CREATE__num", or_equal=True, ignore_row_if="either_value_is_missing"),
        _unique("ID", ["ID", "DATE_MODIFY"]),
    ]


def _b24_optional_ids(*fields: str) -> list[Any]:
    return [_regex(f, DIGITS, "null or an id of digits") for f in fields]


def _b24_money() -> list[Any]:
    return [_regex("OPPORTUNITY", DECIMAL, "a non-negative decimal string"),
            _regex("CURRENCY_ID", CURRENCY, "an ISO 4217 currency code")]


def _b24_user_suite() -> list[Any]:
    return [*_b24_id(what="a user id of digits"), _unique("ID", ["ID"]),
            _e("ExpectColumnValuesToBeInSet", "ACTIVE", "Y/N or true/false", column="ACTIVE",
               value_set=["Y", "N", True, False])]


def _b24_status_suite() -> list[Any]:
    return [
        *_b24_id(), _b24_required("ENTITY_ID"), _b24_required("STATUS_ID"),
        _unique("STATUS_ID", ["ENTITY_ID", "STATUS_ID"]),
        _regex("SORT", DIGITS, "a sort number of digits"),
        *_b24_optional_ids("CATEGORY_ID"),
        _b24_in("SEMANTICS", ("S", "F")),
    ]


def _b24_category_suite() -> list[Any]:
    return [*_b24_id("id", "a category id of digits"), _unique("id", ["id"]),
            _b24_required("name"), _regex("sort", DIGITS, "a sort number of digits"),
            _b24_in("isDefault", B24_YES_NO)]


def _b24_lead_suite() -> list[Any]:
    return [
        *_b24_id(what="a lead id of digits"), _b24_required("STATUS_ID"),
        _b24_in("STATUS_SEMANTIC_ID", B24_SEMANTICS), *_b24_money(),
        *_b24_optional_ids("ASSIGNED_BY_ID", "CONTACT_ID"), *_b24_dates_and_version(),
        _regex("DATE_CLOSED", B24_DATE_OR_DATETIME, "null or an ISO 8601 date(-time)"),
        *(_list_or_null(f) for f in B24_MULTIFIELDS),
    ]


def _b24_deal_suite() -> list[Any]:
    return [
        *_b24_id(what="a deal id of digits"),
        _b24_required("CATEGORY_ID"), *_b24_optional_ids("CATEGORY_ID"),
        _b24_required("STAGE_ID"),
        _b24_required("STAGE_SEMANTIC_ID", f"one of {list(B24_SEMANTICS)}"),
        _b24_in("STAGE_SEMANTIC_ID", B24_SEMANTICS), *_b24_money(),
        *_b24_optional_ids("ASSIGNED_BY_ID", "CONTACT_ID", "LEAD_ID", "COMPANY_ID"),
        *_b24_dates_and_version(),
        _regex("CLOSEDATE", B24_DATE_OR_DATETIME, "null or an ISO 8601 date(-time)"),
        _b24_in("CLOSED", B24_YES_NO),
    ]


def _b24_contact_suite() -> list[Any]:
    return [*_b24_id(what="a contact id of digits"), *_b24_optional_ids("ASSIGNED_BY_ID"),
            *_b24_dates_and_version(), *(_list_or_null(f) for f in B24_MULTIFIELDS)]


def _b24_history_suite() -> list[Any]:
    return [
        _not_null("ID", "a history id"), _integer("ID"),
        _unique("ID", ["_entityTypeId", "ID"]),
        _not_null("_entityTypeId", "1 (lead) or 2 (deal)"),
        _b24_in("_entityTypeId", (1, 2)),
        _integer("TYPE_ID"), _b24_in("TYPE_ID", B24_HISTORY_TYPES),
        _not_null("OWNER_ID", "the lead or deal id"), _integer("OWNER_ID"),
        _b24_required("CREATED_TIME"), _regex("CREATED_TIME", B24_DATETIME, B24_DATETIME_OK),
        _integer("CATEGORY_ID"),
        _b24_in("STAGE_SEMANTIC_ID", B24_SEMANTICS), _b24_in("STATUS_SEMANTIC_ID", B24_SEMANTICS),
    ]


# -- files: the column contract first, then GX over the conforming rows ----------------------

# the contract (extractors.files) already cuts dates to 1970-01-01 .. the as-of date; this is
# the suite's own sanity range over parsed values
DATE_MIN = date(1970, 1, 1)
DATE_MAX = date(2100, 1, 1)
MONEY_MAX = 10**12  # also rejects "Infinity", which Decimal parses and the contract lets by


def _file_where(record: RawRecord) -> str:
    """The wording `extractors.files.validate_file_rows` uses: "<file> line <n>"."""
    payload = record.payload if isinstance(record.payload, dict) else {}
    return f"{payload.get('_file')} line {payload.get('_line')}"


def _file_contract(
    records: list[RawRecord],
) -> tuple[list[RawRecord], list[QuarantinedRecord]]:
    from extractors.files import validate_file_rows  # imported on first use, like GX

    return validate_file_rows(records)


def _file_date(row: dict[str, Any], payload: dict[str, Any], field: str) -> None:
    from extractors.files import parse_date

    value = payload.get(field) or ""
    row[field] = value
    try:
        parsed = parse_date(value) if value else None
    except ValueError:
        raise FlattenError(f"field '{field}' is not a date: {value!r}", [field]) from None
    row[f"{field}__text"] = parsed.isoformat() if parsed else None
    row[f"{field}__num"] = float(parsed.toordinal()) if parsed else math.nan


def _file_number(row: dict[str, Any], payload: dict[str, Any], field: str, kind: str) -> None:
    from extractors.files import parse_money

    value = payload.get(field) or ""
    row[field] = value
    try:
        number = (float(parse_money(value)) if kind == "money" else float(int(value))
                  ) if value else math.nan
    except (ArithmeticError, ValueError):
        raise FlattenError(f"field '{field}' is not a number: {value!r}", [field]) from None
    row[f"{field}__num"] = number


def _flatten_order(p: Any) -> dict[str, Any]:
    p = _require(p, ("order_id", "order_date", "amount"))
    row: dict[str, Any] = {"order_id": p["order_id"], "order_id__text": p["order_id"] or None}
    _file_date(row, p, "order_date")
    _file_number(row, p, "amount", "money")
    _file_number(row, p, "gross_margin", "money")
    _file_number(row, p, "quantity", "money")  # a count or a weight: decimals allowed
    return row


def _flatten_ad_spend(p: Any) -> dict[str, Any]:
    p = _require(p, ("date", "platform", "campaign_id", "spend"))
    row: dict[str, Any] = {}
    for f in ("platform", "campaign_id"):
        row[f] = p[f]
        row[f"{f}__text"] = p[f] or None
    _file_date(row, p, "date")
    _file_number(row, p, "spend", "money")
    _file_number(row, p, "impressions", "int")
    _file_number(row, p, "clicks", "int")
    return row


def _file_date_range(field: str) -> Any:
    return _e("ExpectColumnValuesToBeBetween", field,
              f"a date between {DATE_MIN} and {DATE_MAX}", column=f"{field}__num",
              min_value=DATE_MIN.toordinal(), max_value=DATE_MAX.toordinal())


def _file_money(field: str, required: bool) -> list[Any]:
    expected = f"a non-negative finite amount (below {MONEY_MAX:.0e})"
    out = [_e("ExpectColumnValuesToBeBetween", field, expected, column=f"{field}__num",
              min_value=0, max_value=MONEY_MAX)]
    if required:
        out.insert(0, _e("ExpectColumnValuesToNotBeNull", field, expected,
                         column=f"{field}__num"))
    return out


def _orders_suite() -> list[Any]:
    return [
        _e("ExpectColumnValuesToNotBeNull", "order_id", "an order id", column="order_id__text"),
        _unique("order_id", ["order_id"]),
        _file_date_range("order_date"),
        *_file_money("amount", required=True),
        *_file_money("gross_margin", required=False),
        _e("ExpectColumnValuesToBeBetween", "quantity", "a non-negative number",
           column="quantity__num", min_value=0),
        # the contract refuses it first with the line; this keeps the suite honest on its own
        _e("ExpectColumnPairValuesAToBeGreaterThanB", "gross_margin", "gross_margin <= amount",
           show=["gross_margin", "amount"], column_A="amount__num",
           column_B="gross_margin__num", or_equal=True, ignore_row_if="either_value_is_missing"),
    ]


def _ad_spend_suite() -> list[Any]:
    count = "a non-negative whole number"
    return [
        _unique("campaign_id", ["date", "platform", "campaign_id"]),
        _file_date_range("date"),
        *_file_money("spend", required=True),
        _e("ExpectColumnValuesToBeBetween", "impressions", count, column="impressions__num",
           min_value=0),
        _e("ExpectColumnValuesToBeBetween", "clicks", count, column="clicks__num", min_value=0),
        _clicks_le("clicks", "impressions"),
    ]


Contract = Callable[[list[RawRecord]], tuple[list[RawRecord], list[QuarantinedRecord]]]


@dataclass(frozen=True)
class RawSuite:
    """How to flatten a payload and which expectations to run. `contract`, when set, runs
    first (records it refuses are quarantined with its own reason and never reach GX); `where`,
    when set, names a record in reasons instead of "<source> <entity> id=<id>"."""

    name: str
    flatten: Callable[[Any], dict[str, Any]]
    build: Callable[[], list[Any]]
    contract: Contract | None = None
    where: Callable[[RawRecord], str] | None = None


#: The raw suites by (source, entity). Entities without a suite are refused by validate_records.
RAW_SUITES: dict[tuple[str, str], RawSuite] = {
    ("amocrm", "leads"): RawSuite("raw.amocrm.leads", _flatten_lead, _lead_suite),
    ("amocrm", "contacts"): RawSuite("raw.amocrm.contacts", _flatten_contact, _contact_suite),
    ("amocrm", "events"): RawSuite("raw.amocrm.events", _flatten_event, _event_suite),
    ("amocrm", "pipelines"): RawSuite("raw.amocrm.pipelines", _flatten_pipeline,
                                      _pipeline_suite),
    ("amocrm", "users"): RawSuite("raw.amocrm.users", _flatten_id_only, _id_suite("a user id")),
    ("amocrm", "loss_reasons"): RawSuite("raw.amocrm.loss_reasons", _flatten_id_only,
                                         _id_suite("a loss reason id")),
    ("amocrm", "companies"): RawSuite("raw.amocrm.companies", _flatten_company,
                                      _company_suite),
    ("amocrm", "customers"): RawSuite("raw.amocrm.customers", _flatten_customer,
                                      _customer_suite),
    ("amocrm", "customer_statuses"): RawSuite(
        "raw.amocrm.customer_statuses", _flatten_customer_status, _customer_status_suite),
    ("amocrm", "transactions"): RawSuite("raw.amocrm.transactions", _flatten_transaction,
                                         _transaction_suite),
    ("amocrm", "deleted_leads"): RawSuite("raw.amocrm.deleted_leads", _flatten_deleted_lead,
                                          _deleted_lead_suite),
    ("amocrm", "customer_events"): RawSuite("raw.amocrm.customer_events",
                                            _flatten_customer_event, _customer_event_suite),
    ("bitrix24", "users"): RawSuite(
        "raw.bitrix24.users", _b24_flatten(B24_USER_FIELDS, ("ID",)), _b24_user_suite),
    ("bitrix24", "statuses"): RawSuite(
        "raw.bitrix24.statuses", _b24_flatten(B24_STATUS_FIELDS, ("ID", "ENTITY_ID", "STATUS_ID")),
        _b24_status_suite),
    ("bitrix24", "categories"): RawSuite(
        "raw.bitrix24.categories", _b24_flatten(B24_CATEGORY_FIELDS, ("id",)),
        _b24_category_suite),
    ("bitrix24", "leads"): RawSuite(
        "raw.bitrix24.leads", _b24_flatten(B24_LEAD_FIELDS, ("ID", "DATE_CREATE", "DATE_MODIFY")),
        _b24_lead_suite),
    ("bitrix24", "deals"): RawSuite(
        "raw.bitrix24.deals",
        _b24_flatten(B24_DEAL_FIELDS, ("ID", "STAGE_ID", "DATE_CREATE", "DATE_MODIFY")),
        _b24_deal_suite),
    ("bitrix24", "contacts"): RawSuite(
        "raw.bitrix24.contacts",
        _b24_flatten(B24_CONTACT_FIELDS, ("ID", "DATE_CREATE", "DATE_MODIFY")),
        _b24_contact_suite),
    ("bitrix24", "stagehistory"): RawSuite(
        "raw.bitrix24.stagehistory",
        _b24_flatten(B24_HISTORY_FIELDS, ("ID", "_entityTypeId", "OWNER_ID", "CREATED_TIME")),
        _b24_history_suite),
    ("yandex_direct", "campaign_stats"): RawSuite(
        "raw.yandex_direct.campaign_stats", _flatten_campaign_stats, _campaign_stats_suite),
    ("vk_ads", "ad_plans"): RawSuite("raw.vk_ads.ad_plans", _flatten_vk_plan, _vk_plan_suite),
    ("vk_ads", "ad_plan_stats"): RawSuite("raw.vk_ads.ad_plan_stats", _flatten_vk_stats,
                                          _vk_stats_suite),
    ("google_ads", "campaign_stats"): RawSuite(
        "raw.google_ads.campaign_stats", _flatten_google_stats, _google_stats_suite),
    ("meta_ads", "campaign_insights"): RawSuite(
        "raw.meta_ads.campaign_insights", _flatten_meta_insights, _meta_insights_suite),
    ("files", "orders"): RawSuite("raw.files.orders", _flatten_order, _orders_suite,
                                  contract=_file_contract, where=_file_where),
    ("files", "ad_spend"): RawSuite("raw.files.ad_spend", _flatten_ad_spend, _ad_spend_suite,
                                    contract=_file_contract, where=_file_where),
}


# -- validation -------------------------------------------------------------------------------


def _render(value: Any) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "null"
    text = repr(value) if isinstance(value, str | list | dict) else str(value)
    return text if len(text) <= 120 else text[:117] + "..."


def _label(record: RawRecord, position: int) -> str:
    label = f"{record.source} {record.entity} id={record.record_id}"
    payload_id = record.payload.get("id") if isinstance(record.payload, dict) else None
    if record.source == "amocrm" and payload_id is None:
        label += f" (batch position {position})"
    return label


def _columns_of(config: Any) -> str | None:
    kw = config.kwargs
    if "column" in kw:
        return kw["column"]
    if "column_list" in kw:
        return ",".join(kw["column_list"])
    if "column_A" in kw:
        return f"{kw['column_A']},{kw['column_B']}"
    return None


def validate_records(records: Sequence[RawRecord]) -> BatchValidation:
    """Split a batch into good and quarantined records with the (source, entity) suite.

    A record failing any expectation (or whose payload cannot be flattened) is quarantined
    with a reason naming the record, the field, the value and the expectation (for file rows:
    the file and line; rows refused by the file contract keep its reason). Identical
    records (same account, record_id and payload) are validated once and share the verdict.
    Raises ValueError for a (source, entity) without a suite, RuntimeError if GX itself
    could not evaluate an expectation (a bug, not bad data).
    """
    out = BatchValidation()
    groups: dict[tuple[str, str], list[int]] = {}
    for i, r in enumerate(records):
        groups.setdefault((r.source, r.entity), []).append(i)
    reasons: dict[int, list[str]] = {}
    fields: dict[int, list[str]] = {}
    refused: dict[int, QuarantinedRecord] = {}  # by a suite's contract, before GX
    for key, positions in groups.items():
        suite = RAW_SUITES.get(key)
        if suite is None:
            raise ValueError(f"no raw suite for {key[0]} {key[1]}; known: {sorted(RAW_SUITES)}")
        if suite.contract is not None:
            positions = _apply_contract(suite, records, positions, refused, out.results)
        _validate_group(suite, records, positions, reasons, fields, out.results)
    for i, r in enumerate(records):
        if i in refused:
            out.quarantined.append(refused[i])
        elif i in reasons:
            suite = RAW_SUITES[(r.source, r.entity)]
            if suite.where is not None:
                where = suite.where(r)
                reason = "; ".join(f"{where}: {text}" for text in reasons[i])
            else:
                reason = f"{_label(r, i)}: " + "; ".join(reasons[i])
            failed = tuple(dict.fromkeys(fields[i]))
            out.quarantined.append(QuarantinedRecord(r, reason, failed))
        else:
            out.good.append(r)
    return out


def _apply_contract(
    suite: RawSuite,
    records: Sequence[RawRecord],
    positions: list[int],
    refused: dict[int, QuarantinedRecord],
    results: list[dict[str, Any]],
) -> list[int]:
    """Run the suite's contract over the group; return the positions it lets through."""
    assert suite.contract is not None
    # distinct objects, so that a record repeated in the batch maps back to its own position
    copies = {i: replace(records[i]) for i in positions}
    position_of = {id(c): i for i, c in copies.items()}
    _, bad = suite.contract(list(copies.values()))
    for q in bad:
        i = position_of[id(q.record)]
        refused[i] = QuarantinedRecord(records[i], q.reason, q.failed_fields)
    rejected = [i for i in positions if i in refused]
    results.append({
        "suite": suite.name, "expectation": "file_contract", "field": None, "column": None,
        "success": not rejected, "unexpected_count": len(rejected),
        "records": [records[i].record_id for i in rejected[:20]],
    })
    return [i for i in positions if i not in refused]


def _validate_group(
    suite: RawSuite,
    records: Sequence[RawRecord],
    positions: list[int],
    reasons: dict[int, list[str]],
    fields: dict[int, list[str]],
    results: list[dict[str, Any]],
) -> None:
    rows: list[dict[str, Any]] = []
    row_records: list[list[int]] = []  # frame row -> positions of the records it stands for
    row_of_key: dict[tuple[str, str, str], int] = {}
    unflattened: list[int] = []
    for i in positions:
        r = records[i]
        try:
            row = suite.flatten(r.payload)
        except FlattenError as exc:
            reasons.setdefault(i, []).append(f"{exc} (flatten)")
            fields.setdefault(i, []).extend(exc.fields or ["payload"])
            unflattened.append(i)
            continue
        key = (r.account, r.record_id, r.hash)
        if key in row_of_key:
            row_records[row_of_key[key]].append(i)
            continue
        row_of_key[key] = len(rows)
        row["account"] = r.account
        rows.append(row)
        row_records.append([i])
    results.append({
        "suite": suite.name, "expectation": "flatten", "field": None, "column": None,
        "success": not unflattened, "unexpected_count": len(unflattened),
        "records": [records[i].record_id for i in unflattened[:20]],
    })
    if not rows:
        return
    frame = pd.DataFrame(rows, dtype=object)  # keep JSON ints as ints, not NaN-able floats
    for col in frame.columns:
        if col.endswith("__num"):
            frame[col] = frame[col].astype(float)
    gx_result = run_suite(suite.name, suite.build, frame, "COMPLETE")
    for res in gx_result.results:
        config = res.expectation_config
        meta = config.meta or {}
        error = exception_message(res)
        if error is not None or (not res.success and "unexpected_index_list" not in res.result):
            raise RuntimeError(f"GX could not evaluate {config.type} in {suite.name}: {error}")
        failing = [] if res.success else list(res.result["unexpected_index_list"])
        bad_positions: list[int] = []
        for idx in failing:
            row = rows[int(idx)]
            shown = meta.get("show") or [meta.get("field")]
            if len(shown) == 1:
                got = _render(row.get(shown[0]))
            else:
                got = ", ".join(f"{c}={_render(row.get(c))}" for c in shown)
            text = (f"field '{meta.get('field')}' expected {meta.get('expected')}, "
                    f"got {got} ({config.type})")
            for i in row_records[int(idx)]:
                reasons.setdefault(i, []).append(text)
                fields.setdefault(i, []).append(meta.get("field") or "")
                bad_positions.append(i)
        results.append({
            "suite": suite.name, "expectation": config.type, "field": meta.get("field"),
            "column": _columns_of(config), "success": bool(res.success),
            "unexpected_count": len(bad_positions),
            "records": [records[i].record_id for i in bad_positions[:20]],
        })
