"""Compatibility names for the per-destination rules, which live in ``audiences.destinations``.

Identifiers are normalised once in the warehouse (``int_customer_identifiers``); each
destination transforms and hashes them its own way at export time (ad_apis.md §B0), so only
hashes leave ``audiences.destinations``. This module keeps the older names (``PLATFORMS``,
``Platform``, ``platform_files``, the payload builders) importable.
"""

from __future__ import annotations

import pandas as pd

from audiences.destinations import FILE_DESTINATIONS, get_destination
from audiences.destinations.base import (
    KINDS,
    Destination,
    HashedCustomer,
    PlatformFile,
    batches,
    hashed_customers,
)
from audiences.destinations.google import MAX_GOOGLE_IDENTIFIERS, google_batches, google_members
from audiences.destinations.hashing import (
    GMAIL_DOMAINS,
    e164,
    google_email,
    md5_hex,
    phone_digits,
    plain_email,
    sha256_hex,
)
from audiences.destinations.meta import meta_batches, meta_payload
from audiences.destinations.vk import VK_LIST_TYPES, vk_files, vk_lines
from audiences.destinations.yandex import YANDEX_HEADER, yandex_csv, yandex_rows

Platform = Destination
PLATFORMS = FILE_DESTINATIONS  # the ad platforms (the older name)
get_platform = get_destination


def platform_files(platform: str | Destination, members: pd.DataFrame,
                   value_column: str | None = None) -> tuple[list[PlatformFile], int]:
    """(the destination's export files, customers with at least one usable identifier) for a
    members frame; ``value_column`` (a look-alike value) only where the destination takes one."""
    p = platform if isinstance(platform, Destination) else get_destination(platform)
    if value_column is not None and not p.value_based_seeds:
        raise ValueError(f"a value-based seed (LOOKALIKE_VALUE) is a Meta feature, not {p.name}")
    customers = len(hashed_customers(p, members, value_column))
    return p.export_files(members, value_column), customers


__all__ = ["GMAIL_DOMAINS", "KINDS", "MAX_GOOGLE_IDENTIFIERS", "PLATFORMS", "VK_LIST_TYPES",
           "YANDEX_HEADER", "HashedCustomer", "Platform", "PlatformFile", "batches", "e164",
           "get_platform", "google_batches", "google_email", "google_members",
           "hashed_customers", "md5_hex", "meta_batches", "meta_payload", "phone_digits",
           "plain_email", "platform_files", "sha256_hex", "vk_files", "vk_lines", "yandex_csv",
           "yandex_rows"]
