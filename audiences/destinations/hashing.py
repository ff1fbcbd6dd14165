"""Identifier transforms and hashes shared by the destinations (ad_apis.md §B0).

Every transform re-normalises its input with ``warehouse.contact_points``, so raw input such
as ``8 (916) 123-45-67`` hashes like its normalised form; an invalid identifier gives ``""``,
which is never hashed.
"""

from __future__ import annotations

import hashlib
import math
import re
from typing import Any

from warehouse.contact_points import normalize_email, normalize_phone

GMAIL_DOMAINS = frozenset({"gmail.com", "googlemail.com"})
_WHITESPACE = re.compile(r"\s+")


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


def _missing(value: Any) -> bool:
    return value is None or (isinstance(value, float) and math.isnan(value))


def e164(value: Any) -> str:
    """E.164 phone ('+79161234567') of a normalised or raw phone; "" when invalid."""
    return "" if _missing(value) else normalize_phone(str(value)) or ""


def phone_digits(value: Any) -> str:
    """Digits with the country code, no '+' ('79161234567'); "" when invalid."""
    return e164(value).lstrip("+")


def plain_email(value: Any) -> str:
    """Trimmed, lower-cased e-mail; "" when it is not an address."""
    return "" if _missing(value) else normalize_email(str(value)) or ""


def google_email(value: Any) -> str:
    """Data Manager API form: lower-cased, every whitespace removed; for gmail.com and
    googlemail.com the dots and the ``+tag`` of the local part are dropped."""
    if _missing(value):
        return ""
    email = plain_email(_WHITESPACE.sub("", str(value)))
    if not email:
        return ""
    local, _, domain = email.rpartition("@")
    if domain in GMAIL_DOMAINS:
        local = local.split("+", 1)[0].replace(".", "")
    return f"{local}@{domain}" if local and domain else ""
