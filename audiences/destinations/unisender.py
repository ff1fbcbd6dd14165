"""UniSender (``audiences.clients.unisender``): a list per segment, its members' e-mails (for
e-mail campaigns) and phones (for SMS) imported on entry and excluded on leaving.

E-mail and SMS services need the addresses themselves, so this is the one destination that
sends raw identifiers; it does so only for contactable members (marketing consent, not
do-not-contact: the segment's rule) and only inside the request to the service. What the
warehouse records as synced are SHA-256 hashes, as for the ad platforms; the raw values behind
them are looked up in the warehouse for the one sync that sends them (``bind``), and there is
no file mode, so an address never reaches a file, a log line or Dagster metadata.

Leaving uses ``exclude`` (the contact can be re-added later), never ``unsubscribe``, which only
the contact may undo (activation_apis.md §3.b).
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

import pandas as pd

from audiences.destinations.base import SINGLE, Destination, Rows
from audiences.destinations.hashing import e164

if TYPE_CHECKING:
    from audiences.clients.unisender import UniSenderClient

log = logging.getLogger("voronka.audiences")


class RawIdentifiers:
    """A UniSender client together with the raw identifiers of one sync's customers, by hash.

    Built per sync by ``UniSenderDestination.bind`` and dropped with it; it is never logged
    (its repr names only the counts)."""

    def __init__(self, client: UniSenderClient, lookup: Mapping[str, tuple[str, str]]) -> None:
        self.client = client
        self._lookup = dict(lookup)

    def __repr__(self) -> str:
        return f"RawIdentifiers({len(self._lookup)} identifiers)"

    def resolve(self, rows: Sequence[Mapping[str, str]]) -> tuple[dict[str, list[str]], int]:
        """kind -> raw values of ``rows`` (hash rows), and how many hashes had none."""
        out: dict[str, list[str]] = {"email": [], "phone": []}
        missing = 0
        for row in rows:
            for digest in row.values():
                found = self._lookup.get(digest)
                if found is None:
                    missing += 1
                else:
                    out[found[0]].append(found[1])
        return out, missing


class UniSenderDestination(Destination):
    """UniSender: one list per segment holding e-mails and phones (raw, API only)."""

    name = "unisender"
    max_batch = 500
    hash_algorithm = "SHA256"  # of what the warehouse records; the service gets raw values
    size_unit = "contacts"

    def phone(self, value: Any) -> str:
        return e164(value)

    def desired_rows(self, members: pd.DataFrame,
                     values: Mapping[str, float] | None = None) -> dict[str, Rows]:
        rows: Rows = {}
        for c in self.customers(members):
            rows[c.customer_id] = ([{"email": h} for h in c.emails]
                                   + [{"phone": h} for h in c.phones])
        return {SINGLE: rows}

    def bind(self, client: UniSenderClient, wh: Any, customer_ids: Sequence[str]
             ) -> RawIdentifiers:
        frame = self.identifiers(wh, customer_ids)
        lookup: dict[str, tuple[str, str]] = {}
        for kind, value in zip(frame["kind"], frame["value"], strict=True):
            text = self.phone(value) if kind == "phone" else self.email(value)
            if text:
                lookup[self.hash(text)] = (str(kind), text)
        return RawIdentifiers(client, lookup)

    def create(self, client: RawIdentifiers, name: str, description: str, list_type: str,
               rows: list[Any], *, value_based: bool, small: bool) -> tuple[str, bool]:
        return str(client.client.list_id(name)), False

    def send(self, client: RawIdentifiers, audience_id: str, list_type: str, op: str,
             rows: list[Any], *, value_based: bool) -> None:
        raw, missing = client.resolve(rows)
        if missing:  # an address changed since it was sent: the old one is unknown now
            log.warning("unisender list %s: %d of %d identifiers to %s are no longer in the "
                        "warehouse and were skipped", audience_id, missing, len(rows), op)
        for kind, values in raw.items():
            if not values:
                continue
            if op == "add":
                client.client.import_contacts(audience_id, kind, values)
            else:
                client.client.exclude(audience_id, kind, values)


UNISENDER = UniSenderDestination()
