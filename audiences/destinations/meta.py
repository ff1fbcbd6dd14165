"""Meta custom audiences (``audiences.clients.meta``): SHA-256 of digits-only phones and
lower-cased e-mails, one ``[EMAIL, PHONE(, LOOKALIKE_VALUE)]`` row per customer; the only
destination taking a value-based look-alike seed."""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

import pandas as pd

from audiences.destinations.base import (
    SINGLE,
    HashedCustomer,
    HashedDestination,
    PlatformFile,
    Rows,
    batches,
    hashed_customers,
)

if TYPE_CHECKING:
    from audiences.clients.meta import MetaAudienceClient


def meta_schema(value_based: bool) -> list[str]:
    """The payload ``schema``; ``LOOKALIKE_VALUE`` only for a value-based seed."""
    return ["EMAIL", "PHONE"] + (["LOOKALIKE_VALUE"] if value_based else [])


def meta_row(c: HashedCustomer, value_based: bool) -> list[Any]:
    """First e-mail, first phone ("" when missing)(, the unhashed look-alike value)."""
    row: list[Any] = [c.emails[0] if c.emails else "", c.phones[0] if c.phones else ""]
    return [*row, c.value] if value_based else row


class MetaDestination(HashedDestination):
    """Meta: one list, rows added after an empty audience is created."""

    name = "meta"
    min_rows = 100
    max_batch = 10_000
    value_based_seeds = True

    def customer_rows(self, customers: Sequence[HashedCustomer],
                      value_based: bool) -> dict[str, Rows]:
        return {SINGLE: {c.customer_id: [meta_row(c, value_based)] for c in customers}}

    def create(self, client: MetaAudienceClient, name: str, description: str,
               list_type: str, rows: list[Any], *, value_based: bool,
               small: bool) -> tuple[str, bool]:
        return str(client.create_audience(name, description, value_based=value_based)), False

    def send(self, client: MetaAudienceClient, audience_id: str, list_type: str, op: str,
             rows: list[Any], *, value_based: bool) -> None:
        getattr(client, op)(audience_id, rows, schema=meta_schema(value_based))

    def diff_file(self, list_type: str, rows: list[Any], *, value_based: bool,
                  what: str) -> PlatformFile:
        text = json.dumps({"schema": meta_schema(value_based), "data": rows}, indent=1) + "\n"
        return PlatformFile(f"{what}__meta.json", text, len(rows))

    def export_files(self, members: pd.DataFrame,
                     value_column: str | None = None) -> list[PlatformFile]:
        payload = meta_payload(members, value_column)
        return [PlatformFile("meta.json", json.dumps(payload, indent=1) + "\n",
                             len(payload["data"]))]


META = MetaDestination()


def meta_payload(members: pd.DataFrame, value_column: str | None = None) -> dict[str, Any]:
    """Meta ``payload``: ``{"schema": ["EMAIL", "PHONE"(, "LOOKALIKE_VALUE")], "data": rows}``,
    one row per customer; ``LOOKALIKE_VALUE`` is the unhashed number of ``value_column``."""
    value_based = value_column is not None
    return {"schema": meta_schema(value_based),
            "data": [meta_row(c, value_based)
                     for c in hashed_customers(META, members, value_column)]}


def meta_batches(payload: Mapping[str, Any], size: int | None = None) -> list[dict[str, Any]]:
    """A Meta payload split into payloads of at most ``max_batch`` rows (same schema)."""
    return [{"schema": list(payload["schema"]), "data": chunk}
            for chunk in batches(payload["data"], size or META.max_batch)]
