"""VK Ads users lists (``audiences.clients.vk``): MD5 hex of digits-only phones and
lower-cased e-mails, one list per identifier type (``phones`` / ``emails``), 2,000..5,000,000
lines; a differential upload needs at least 25 lines, so a smaller change waits."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

import pandas as pd

from audiences.destinations.base import (
    AudienceTooSmall,
    HashedCustomer,
    HashedDestination,
    PlatformFile,
    Rows,
    distinct_rows,
    hashed_customers,
)
from audiences.destinations.hashing import md5_hex

if TYPE_CHECKING:
    from audiences.clients.vk import VKAudienceClient

VK_LIST_TYPES = {"phone": "phones", "email": "emails"}
VK_MIN_DIFF_LINES = 25


class VKDestination(HashedDestination):
    """VK: a users list per identifier type, each created with its lines."""

    name = "vk"
    min_rows = 2_000
    max_batch = 5_000_000
    max_rows = 5_000_000
    hash_algorithm = "MD5"
    list_types = ("phones", "emails")
    creates_empty = False
    size_unit = "lines per users list"
    held_back_note = f"VK minimums: {VK_MIN_DIFF_LINES} lines per differential list"

    def hash(self, text: str) -> str:
        return md5_hex(text)

    def customer_rows(self, customers: Sequence[HashedCustomer],
                      value_based: bool) -> dict[str, Rows]:
        return {"phones": {c.customer_id: list(c.phones) for c in customers if c.phones},
                "emails": {c.customer_id: list(c.emails) for c in customers if c.emails}}

    def create(self, client: VKAudienceClient, name: str, description: str,
               list_type: str, rows: list[Any], *, value_based: bool,
               small: bool) -> tuple[str, bool]:
        return str(client.create_list(name, list_type, rows)["id"]), True

    def send(self, client: VKAudienceClient, audience_id: str, list_type: str, op: str,
             rows: list[Any], *, value_based: bool) -> None:
        getattr(client, op)(audience_id, rows, list_type=list_type)

    def held_back(self, add_rows: Sequence[Any],
                  remove_rows: Sequence[Any]) -> tuple[bool, bool]:
        return (not add_rows or len(add_rows) >= VK_MIN_DIFF_LINES,
                not remove_rows or len(remove_rows) >= VK_MIN_DIFF_LINES)

    def audience_ids(self, audience_id: str | Mapping[str, str] | None) -> dict[str, str]:
        if audience_id is not None and not isinstance(audience_id, Mapping):
            raise ValueError("VK keeps one users list per type: pass audience_id as "
                             "{'phones': id, 'emails': id}")
        return super().audience_ids(audience_id)

    def too_small(self, rows: Mapping[str, Rows]) -> AudienceTooSmall | None:
        """Per users list, in lines; no line at all is too small too."""
        sizes = {lt: len(distinct_rows([r for rs in by_c.values() for r in rs]))
                 for lt, by_c in rows.items()}
        if not any(sizes.values()):
            return AudienceTooSmall(self.name, self.min_rows, 0, self.size_unit)
        for lt, n in sizes.items():
            if 0 < n < self.min_rows:
                return AudienceTooSmall(self.name, self.min_rows, n, f"{self.size_unit} ({lt})")
        return None

    def diff_file(self, list_type: str, rows: list[Any], *, value_based: bool,
                  what: str) -> PlatformFile:
        return PlatformFile(f"{what}__vk_{list_type}.txt", "".join(f"{r}\n" for r in rows),
                            len(rows), list_type)

    def export_files(self, members: pd.DataFrame,
                     value_column: str | None = None) -> list[PlatformFile]:
        return [PlatformFile(f"vk_{list_type}.txt", text, text.count("\n"), list_type)
                for list_type, text in vk_files(members).items()]


VK = VKDestination()


def vk_lines(members: pd.DataFrame) -> dict[str, list[str]]:
    """Distinct MD5 lines per list type (``phones`` / ``emails``) of every customer."""
    lines: dict[str, dict[str, None]] = {"phones": {}, "emails": {}}
    for c in hashed_customers(VK, members):
        lines["phones"].update(dict.fromkeys(c.phones))
        lines["emails"].update(dict.fromkeys(c.emails))
    return {list_type: list(found) for list_type, found in lines.items()}


def vk_files(members: pd.DataFrame) -> dict[str, str]:
    """VK file text per list type (one MD5 per line); a type with no line is left out."""
    return {list_type: "".join(f"{line}\n" for line in found)
            for list_type, found in vk_lines(members).items() if found}
