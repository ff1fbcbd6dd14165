"""Yandex Audiences (``audiences.clients.yandex``): SHA-256 hex of digits-only phones and
lower-cased e-mails, one CSV row per customer.

One CSV shape, ``phone,email``, for the API upload, the full export and the diff files of a
sync alike: Yandex requires a segment's later files (``modify_data``) to have the structure of
its first upload (ad_apis.md B3), so a segment created from a hand-uploaded export can take
the diffs. ``external_id`` is optional there and would add nothing."""

from __future__ import annotations

import csv
import io
from collections.abc import Iterable, Sequence
from typing import TYPE_CHECKING, Any

import pandas as pd

from audiences.destinations.base import (
    SINGLE,
    HashedCustomer,
    HashedDestination,
    PlatformFile,
    Rows,
    hashed_customers,
)

if TYPE_CHECKING:
    from audiences.clients.yandex import YandexAudienceClient

YANDEX_HEADER = ("phone", "email")


def _csv(header: Sequence[str], rows: Iterable[Sequence[str]]) -> str:
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(header)
    writer.writerows(rows)
    return buffer.getvalue()


def yandex_row(c: HashedCustomer) -> dict[str, str]:
    """First phone hash, first e-mail hash ("" when missing)."""
    return {"phone": c.phones[0] if c.phones else "", "email": c.emails[0] if c.emails else ""}


class YandexDestination(HashedDestination):
    """Yandex: one segment, created with its first rows (the upload is the creation)."""

    name = "yandex"
    min_rows = 100
    max_batch = 1_000_000

    def customer_rows(self, customers: Sequence[HashedCustomer],
                      value_based: bool) -> dict[str, Rows]:
        return {SINGLE: {c.customer_id: [yandex_row(c)] for c in customers}}

    def create(self, client: YandexAudienceClient, name: str, description: str,
               list_type: str, rows: list[Any], *, value_based: bool,
               small: bool) -> tuple[str, bool]:
        created = client.create_segment(rows, name, check_size=not small)
        return str(created["id"]), True

    def send(self, client: YandexAudienceClient, audience_id: str, list_type: str, op: str,
             rows: list[Any], *, value_based: bool) -> None:
        getattr(client, op)(audience_id, rows, check_size=False)

    def diff_file(self, list_type: str, rows: list[Any], *, value_based: bool,
                  what: str) -> PlatformFile:
        text = _csv(YANDEX_HEADER, ((r["phone"], r["email"]) for r in rows))
        return PlatformFile(f"{what}__yandex.csv", text, len(rows))

    def export_files(self, members: pd.DataFrame,
                     value_column: str | None = None) -> list[PlatformFile]:
        text = yandex_csv(members)
        return [PlatformFile("yandex.csv", text, text.count("\n") - 1)]


YANDEX = YandexDestination()


def yandex_rows(members: pd.DataFrame) -> list[tuple[str, str]]:
    """Yandex CRM rows: (phone hash or "", e-mail hash or "")."""
    return [(row["phone"], row["email"])
            for row in map(yandex_row, hashed_customers(YANDEX, members))]


def yandex_csv(members: pd.DataFrame) -> str:
    """The Yandex Audiences CRM CSV: header ``phone,email`` then one row each."""
    return _csv(YANDEX_HEADER, yandex_rows(members))
