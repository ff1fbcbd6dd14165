"""Per-platform transform and hash of customer identifiers, and the platforms' payloads.

Identifiers are normalised once in the warehouse (``int_customer_identifiers``: phones E.164
with '+', e-mails trimmed and lower-cased). Each platform wants its own form before hashing
(ad_apis.md §B0), so the transform and the hash happen here, at export time, and only hashes
leave this module:

- Meta: phone digits without '+', e-mail trimmed + lower-cased, SHA-256 lowercase hex;
- Google (Data Manager API): phone E.164 with '+', e-mail lower-cased with all whitespace
  removed and, for gmail.com / googlemail.com only, the dots and the ``+tag`` of the local part
  dropped; SHA-256 hex (``encoding: HEX``);
- Yandex Audiences: phone digits, e-mail lower-cased, SHA-256 hex, a CSV with the header
  ``external_id,phone,email`` and at least 100 rows;
- VK Ads: phone digits (``79011234567``), e-mail plain lower-cased; one identifier type per
  list (``phones`` / ``emails``), 2,000..5,000,000 lines; MD5 hex (VK accepts raw or MD5;
  SHA-256 is unconfirmed), so no raw identifier is written.

Every transform re-normalises its input defensively with ``warehouse.contact_points``
(``normalize_phone`` / ``normalize_email``), so raw input such as ``8 (916) 123-45-67`` or
`` Name@Mail.RU `` gives the same hash as its normalised form. An identifier that is not valid
gives ``""`` and is left out (an empty string is never hashed).

A *members frame* has one row per (customer, identifier): columns ``customer_id``, ``kind``
(``phone`` | ``email``) and ``value`` (as ``audiences.identifiers.customer_identifiers``
returns it), plus optionally a per-customer number column for a value-based look-alike seed.
"""

from __future__ import annotations

import csv
import hashlib
import io
import json
import math
import re
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import pandas as pd

from warehouse.contact_points import normalize_email, normalize_phone

KINDS = ("phone", "email")
GMAIL_DOMAINS = frozenset({"gmail.com", "googlemail.com"})
MAX_GOOGLE_IDENTIFIERS = 10  # UserIdentifiers per AudienceMember
_WHITESPACE = re.compile(r"\s+")


# -- hashing -------------------------------------------------------------------------------

def sha256_hex(text: str) -> str:
    """SHA-256 of the UTF-8 bytes of ``text``, lowercase hex; refuses an empty string."""
    if not text:
        raise ValueError("refusing to hash an empty identifier")
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def md5_hex(text: str) -> str:
    """MD5 of the UTF-8 bytes of ``text``, lowercase hex; refuses an empty string."""
    if not text:
        raise ValueError("refusing to hash an empty identifier")
    return hashlib.md5(text.encode("utf-8")).hexdigest()


# -- normalisation shared by the platforms -------------------------------------------------

def e164(value: Any) -> str:
    """E.164 phone ('+79161234567') of a normalised or raw phone; "" when invalid."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return ""
    return normalize_phone(str(value)) or ""


def phone_digits(value: Any) -> str:
    """Digits with the country code, no '+' ('79161234567'); "" when invalid."""
    return e164(value).lstrip("+")


def plain_email(value: Any) -> str:
    """Trimmed, lower-cased e-mail; "" when it is not an address."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return ""
    return normalize_email(str(value)) or ""


def google_email(value: Any) -> str:
    """Data Manager API form: lower-cased, every whitespace removed; for gmail.com and
    googlemail.com the dots and the ``+tag`` of the local part are dropped."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return ""
    email = plain_email(_WHITESPACE.sub("", str(value)))
    if not email:
        return ""
    local, _, domain = email.rpartition("@")
    if domain in GMAIL_DOMAINS:
        local = local.split("+", 1)[0].replace(".", "")
    return f"{local}@{domain}" if local and domain else ""


# -- platforms -----------------------------------------------------------------------------

@dataclass(frozen=True)
class Platform:
    """One ad platform's identifier rules and size limits.

    ``min_rows``: fewest rows (VK: lines per list) the platform accepts or can target;
    ``max_rows``: most rows in one list/file (None: no practical limit);
    ``max_batch``: most rows per upload call."""

    name: str
    min_rows: int
    max_batch: int
    hash_algorithm: str
    phone_fn: Callable[[Any], str] = field(repr=False)
    email_fn: Callable[[Any], str] = field(repr=False)
    hash_fn: Callable[[str], str] = field(repr=False)
    max_rows: int | None = None

    def phone(self, value: Any) -> str:
        """The platform's unhashed form of a phone (E.164 or raw); "" when invalid."""
        return self.phone_fn(value)

    def email(self, value: Any) -> str:
        """The platform's unhashed form of an e-mail; "" when invalid."""
        return self.email_fn(value)

    def hash(self, text: str) -> str:
        """The platform's hash of an already transformed identifier (never of "")."""
        return self.hash_fn(text)

    def hashed(self, kind: str, value: Any) -> str:
        """Transform then hash one identifier; "" (not hashed) when it is invalid."""
        if kind not in KINDS:
            raise ValueError(f"unknown identifier kind {kind!r}; expected one of {KINDS}")
        text = self.phone(value) if kind == "phone" else self.email(value)
        return self.hash(text) if text else ""


PLATFORMS: dict[str, Platform] = {
    "meta": Platform("meta", min_rows=100, max_batch=10_000, hash_algorithm="SHA256",
                     phone_fn=phone_digits, email_fn=plain_email, hash_fn=sha256_hex),
    "google": Platform("google", min_rows=100, max_batch=10_000, hash_algorithm="SHA256",
                       phone_fn=e164, email_fn=google_email, hash_fn=sha256_hex),
    "yandex": Platform("yandex", min_rows=100, max_batch=1_000_000, hash_algorithm="SHA256",
                       phone_fn=phone_digits, email_fn=plain_email, hash_fn=sha256_hex),
    "vk": Platform("vk", min_rows=2_000, max_batch=5_000_000, hash_algorithm="MD5",
                   phone_fn=phone_digits, email_fn=plain_email, hash_fn=md5_hex,
                   max_rows=5_000_000),
}


def get_platform(name: str) -> Platform:
    """The platform called ``name``; a clear error naming the known ones otherwise."""
    try:
        return PLATFORMS[name]
    except KeyError:
        raise ValueError(
            f"unknown platform {name!r}; expected one of {sorted(PLATFORMS)}") from None


# -- members -> per-customer hashed identifiers ----------------------------------------------

@dataclass
class HashedCustomer:
    """One customer's distinct hashed identifiers for one platform, in input order."""

    customer_id: str
    phones: list[str] = field(default_factory=list)
    emails: list[str] = field(default_factory=list)
    value: float | int | None = None


def _lookalike_value(raw: Any, customer_id: str) -> float | int:
    if pd.isna(raw):
        return 0
    number = float(raw)
    if number < 0:
        raise ValueError(f"LOOKALIKE_VALUE of customer {customer_id} is negative ({number})")
    return int(number) if number.is_integer() else number


def hashed_customers(platform: Platform, members: pd.DataFrame,
                     value_column: str | None = None) -> list[HashedCustomer]:
    """Per customer (first-seen order), the platform's distinct hashes of its phones and
    e-mails; customers with no valid identifier for the platform are left out."""
    missing = {"customer_id", "kind", "value"} - set(members.columns)
    if missing:
        raise ValueError(f"members frame lacks columns {sorted(missing)}")
    if value_column is not None and value_column not in members.columns:
        raise ValueError(f"members frame has no value column {value_column!r}")
    customers: dict[str, HashedCustomer] = {}
    values = members[value_column] if value_column else [None] * len(members)
    for customer_id, kind, value, number in zip(
            members["customer_id"], members["kind"], members["value"], values, strict=True):
        cid = str(customer_id)
        entry = customers.setdefault(cid, HashedCustomer(cid))
        if value_column is not None and entry.value is None and not pd.isna(number):
            entry.value = _lookalike_value(number, cid)
        digest = platform.hashed(str(kind), value)
        bucket = entry.phones if kind == "phone" else entry.emails
        if digest and digest not in bucket:
            bucket.append(digest)
    out = [c for c in customers.values() if c.phones or c.emails]
    if value_column is not None:
        for c in out:
            if c.value is None:
                c.value = 0
    return out


def batches(rows: Sequence[Any], size: int) -> Iterator[list[Any]]:
    """``rows`` in consecutive lists of at most ``size`` (the platform's ``max_batch``)."""
    if size < 1:
        raise ValueError("batch size must be positive")
    for start in range(0, len(rows), size):
        yield list(rows[start:start + size])


# -- payload builders ----------------------------------------------------------------------

def meta_payload(members: pd.DataFrame, value_column: str | None = None) -> dict[str, Any]:
    """Meta ``payload``: ``{"schema": ["EMAIL", "PHONE"(, "LOOKALIKE_VALUE")], "data": rows}``,
    one row per customer (first e-mail, first phone, "" when missing); ``LOOKALIKE_VALUE`` is
    the unhashed number of ``value_column`` (value-based seeds)."""
    platform = PLATFORMS["meta"]
    schema = ["EMAIL", "PHONE"] + (["LOOKALIKE_VALUE"] if value_column else [])
    data: list[list[Any]] = []
    for c in hashed_customers(platform, members, value_column):
        row: list[Any] = [c.emails[0] if c.emails else "", c.phones[0] if c.phones else ""]
        if value_column:
            row.append(c.value)
        data.append(row)
    return {"schema": schema, "data": data}


def meta_batches(payload: Mapping[str, Any], size: int | None = None) -> list[dict[str, Any]]:
    """A Meta payload split into payloads of at most ``max_batch`` rows (same schema)."""
    size = size or PLATFORMS["meta"].max_batch
    return [{"schema": list(payload["schema"]), "data": chunk}
            for chunk in batches(payload["data"], size)]


def google_members(members: pd.DataFrame) -> list[dict[str, Any]]:
    """Data Manager ``audienceMembers``: one member per customer whose ``userIdentifiers``
    each hold exactly one of ``emailAddress`` / ``phoneNumber`` (SHA-256 hex, at most 10)."""
    out = []
    for c in hashed_customers(PLATFORMS["google"], members):
        identifiers = ([{"emailAddress": h} for h in c.emails]
                       + [{"phoneNumber": h} for h in c.phones])
        out.append({"userData": {"userIdentifiers": identifiers[:MAX_GOOGLE_IDENTIFIERS]}})
    return out


def google_batches(audience_members: Sequence[Mapping[str, Any]],
                   size: int | None = None) -> list[dict[str, Any]]:
    """Request bodies (without ``destinations``/``consent``) of at most 10,000 members."""
    size = size or PLATFORMS["google"].max_batch
    return [{"audienceMembers": chunk, "encoding": "HEX"}
            for chunk in batches(list(audience_members), size)]


YANDEX_HEADER = ("external_id", "phone", "email")


def yandex_rows(members: pd.DataFrame) -> list[tuple[str, str, str]]:
    """Yandex CRM rows: (external_id = row number, phone hash or "", e-mail hash or ""),
    one per customer (first phone, first e-mail). The row number, not the customer id, is the
    external id, so the file carries nothing that identifies a person without the hashes."""
    return [(str(n), c.phones[0] if c.phones else "", c.emails[0] if c.emails else "")
            for n, c in enumerate(hashed_customers(PLATFORMS["yandex"], members), start=1)]


def yandex_csv(members: pd.DataFrame) -> str:
    """The Yandex Audiences CRM CSV: header ``external_id,phone,email`` then one row each."""
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(YANDEX_HEADER)
    writer.writerows(yandex_rows(members))
    return buffer.getvalue()


VK_LIST_TYPES = {"phone": "phones", "email": "emails"}


def vk_lines(members: pd.DataFrame) -> dict[str, list[str]]:
    """VK users-list lines per list type (``phones`` / ``emails``): distinct MD5 hex of the
    digits-only phones / lower-cased e-mails of every customer."""
    lines: dict[str, dict[str, None]] = {"phones": {}, "emails": {}}
    for c in hashed_customers(PLATFORMS["vk"], members):
        for digest in c.phones:
            lines["phones"][digest] = None
        for digest in c.emails:
            lines["emails"][digest] = None
    return {list_type: list(found) for list_type, found in lines.items()}


def vk_files(members: pd.DataFrame) -> dict[str, str]:
    """VK file text per list type (one MD5 per line); a type with no line is left out."""
    return {list_type: "".join(f"{line}\n" for line in found)
            for list_type, found in vk_lines(members).items() if found}


@dataclass(frozen=True)
class PlatformFile:
    """One export file's content: ``suffix`` names it (``meta.json``, ``vk_phones.txt``),
    ``rows`` counts its data rows (VK: lines), ``list_type`` is VK's users-list ``type``."""

    suffix: str
    content: str
    rows: int
    list_type: str | None = None


def platform_files(platform: str | Platform, members: pd.DataFrame,
                   value_column: str | None = None) -> tuple[list[PlatformFile], int]:
    """(the platform's export files, customers with at least one usable identifier) for a
    members frame. Only hashes are written: Meta a ``{"schema", "data"}`` payload, Google a
    ``{"encoding": "HEX", "audienceMembers"}`` body, Yandex the CRM CSV, VK one MD5 list per
    identifier type. ``value_column`` (a look-alike value) is only meaningful for Meta."""

    p = platform if isinstance(platform, Platform) else get_platform(platform)
    if value_column is not None and p.name != "meta":
        raise ValueError(f"a value-based seed (LOOKALIKE_VALUE) is a Meta feature, not {p.name}")
    customers = len(hashed_customers(p, members, value_column))
    if p.name == "meta":
        payload = meta_payload(members, value_column)
        files = [PlatformFile("meta.json", json.dumps(payload, indent=1) + "\n",
                              len(payload["data"]))]
    elif p.name == "google":
        body = {"encoding": "HEX", "audienceMembers": google_members(members)}
        files = [PlatformFile("google.json", json.dumps(body, indent=1) + "\n",
                              len(body["audienceMembers"]))]
    elif p.name == "yandex":
        text = yandex_csv(members)
        files = [PlatformFile("yandex.csv", text, text.count("\n") - 1)]
    else:
        files = [PlatformFile(f"vk_{list_type}.txt", text, text.count("\n"), list_type)
                 for list_type, text in vk_files(members).items()]
    return files, customers
