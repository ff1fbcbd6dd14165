"""Google Data Manager API (``audiences.clients.google``): SHA-256 hex of E.164 phones and
Google-normalised e-mails, one ``audienceMembers`` entry per customer."""

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
from audiences.destinations.hashing import e164, google_email

if TYPE_CHECKING:
    from audiences.clients.google import GoogleAudienceClient

MAX_GOOGLE_IDENTIFIERS = 10  # UserIdentifiers per AudienceMember


def google_member(c: HashedCustomer) -> dict[str, Any]:
    """One member whose ``userIdentifiers`` each hold one e-mail or phone hash (at most 10)."""
    identifiers = ([{"emailAddress": h} for h in c.emails]
                   + [{"phoneNumber": h} for h in c.phones])
    return {"userData": {"userIdentifiers": identifiers[:MAX_GOOGLE_IDENTIFIERS]}}


class GoogleDestination(HashedDestination):
    """Google: one user list, created empty, members added in batches of 10,000."""

    name = "google"
    min_rows = 100
    max_batch = 10_000

    def phone(self, value: Any) -> str:
        return e164(value)

    def email(self, value: Any) -> str:
        return google_email(value)

    def customer_rows(self, customers: Sequence[HashedCustomer],
                      value_based: bool) -> dict[str, Rows]:
        return {SINGLE: {c.customer_id: [google_member(c)] for c in customers}}

    def create(self, client: GoogleAudienceClient, name: str, description: str,
               list_type: str, rows: list[Any], *, value_based: bool,
               small: bool) -> tuple[str, bool]:
        return str(client.create_user_list(name, description)), False

    def send(self, client: GoogleAudienceClient, audience_id: str, list_type: str, op: str,
             rows: list[Any], *, value_based: bool) -> None:
        getattr(client, op)(audience_id, rows)

    def diff_file(self, list_type: str, rows: list[Any], *, value_based: bool,
                  what: str) -> PlatformFile:
        text = json.dumps({"encoding": "HEX", "audienceMembers": rows}, indent=1) + "\n"
        return PlatformFile(f"{what}__google.json", text, len(rows))

    def export_files(self, members: pd.DataFrame,
                     value_column: str | None = None) -> list[PlatformFile]:
        body = {"encoding": "HEX", "audienceMembers": google_members(members)}
        return [PlatformFile("google.json", json.dumps(body, indent=1) + "\n",
                             len(body["audienceMembers"]))]


GOOGLE = GoogleDestination()


def google_members(members: pd.DataFrame) -> list[dict[str, Any]]:
    """Data Manager ``audienceMembers``: one member per customer with a usable identifier."""
    return [google_member(c) for c in hashed_customers(GOOGLE, members)]


def google_batches(audience_members: Sequence[Mapping[str, Any]],
                   size: int | None = None) -> list[dict[str, Any]]:
    """Request bodies (without ``destinations``/``consent``) of at most 10,000 members."""
    return [{"audienceMembers": chunk, "encoding": "HEX"}
            for chunk in batches(list(audience_members), size or GOOGLE.max_batch)]
