"""What every audience destination provides, so the sync, the export and the CLI never ask
which destination they talk to.

A destination turns a members frame (``customer_id``, ``kind``, ``value``) into its own
hashed rows, creates an audience, adds and removes batches of rows through its client
(``audiences.clients``) and writes the same rows as files for a manual upload. Rows are kept
per *list type*: one list (``SINGLE``) for most destinations, several where the platform keeps
one list per identifier type (VK).
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import pandas as pd

from audiences.destinations.hashing import phone_digits, plain_email, sha256_hex
from audiences.state import row_key

KINDS = ("phone", "email")
SINGLE = ""  # list type of destinations with one list per audience
Rows = dict[str, list[Any]]  # customer_id -> hashed rows


class AudienceTooSmall(ValueError):
    """An export below the platform's minimum size."""

    def __init__(self, platform: str, minimum: int, count: int, what: str = "rows") -> None:
        self.platform, self.minimum, self.count, self.what = platform, minimum, count, what
        super().__init__(
            f"{platform} needs at least {minimum} {what}, this audience has {count}; "
            f"not exported (--allow-small / allow_small=True writes it anyway, marked "
            f"below_minimum)"
        )


@dataclass(frozen=True)
class PlatformFile:
    """One export file's content: ``suffix`` names it (``meta.json``, ``vk_phones.txt``),
    ``rows`` counts its data rows (VK: lines), ``list_type`` is VK's users-list ``type``."""

    suffix: str
    content: str
    rows: int
    list_type: str | None = None


@dataclass
class HashedCustomer:
    """One customer's distinct hashed identifiers for one destination, in input order."""

    customer_id: str
    phones: list[str] = field(default_factory=list)
    emails: list[str] = field(default_factory=list)
    value: float | int | None = None


def batches(rows: Sequence[Any], size: int) -> Iterator[list[Any]]:
    """``rows`` in consecutive lists of at most ``size`` (the destination's ``max_batch``)."""
    if size < 1:
        raise ValueError("batch size must be positive")
    for start in range(0, len(rows), size):
        yield list(rows[start:start + size])


def distinct_rows(rows: Sequence[Any]) -> list[Any]:
    """Rows in order without repeats (rows may be lists or dicts, so keyed by their JSON)."""
    seen: set[str] = set()
    out = []
    for row in rows:
        key = row_key(row)
        if key not in seen:
            seen.add(key)
            out.append(row)
    return out


class Destination(ABC):
    """One destination's rules; subclasses override what differs (see the module docstring).

    ``min_rows``: fewest rows (VK: lines per list) the platform accepts or can target;
    ``max_rows``: most rows in one list/file (None: no practical limit);
    ``max_batch``: most rows per upload call; ``file_export``: whether the rows can be written
    as files for a manual upload (only hashes can: a CRM or e-mail destination cannot)."""

    name: str = ""
    min_rows: int = 0
    max_batch: int = 1
    max_rows: int | None = None
    hash_algorithm: str = "SHA256"
    list_types: tuple[str, ...] = (SINGLE,)
    value_based_seeds = False  # accepts a per-customer value (a value-based look-alike seed)
    creates_empty = True  # an audience may be created with no row (allow_small)
    size_unit = "rows"  # how the minimum is counted, for messages
    held_back_note = ""  # why a diff may be held back, for the sync message
    file_export = False
    supports_actions = False  # creates tasks / deals on entry (a CRM)

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.name!r})"

    # -- identifiers --------------------------------------------------------------------

    def identifiers(self, wh: Any, customer_ids: Sequence[str], client: Any = None
                    ) -> pd.DataFrame:
        """What this destination addresses the customers by: their normalised phones and
        e-mails (customer_id, kind, value); a CRM overrides it with its contacts."""
        from audiences.identifiers import customer_identifiers

        return customer_identifiers(wh, customer_ids)

    def bind(self, client: Any, wh: Any, customer_ids: Sequence[str]) -> Any:
        """The client ``send`` gets for a sync touching ``customer_ids``; a destination that
        needs the raw identifiers behind its stored hashes (e-mail) wraps it here."""
        return client

    def phone(self, value: Any) -> str:
        """The destination's unhashed form of a phone (E.164 or raw); "" when invalid."""
        return phone_digits(value)

    def email(self, value: Any) -> str:
        """The destination's unhashed form of an e-mail; "" when invalid."""
        return plain_email(value)

    def hash(self, text: str) -> str:
        """The destination's hash of an already transformed identifier (never of "")."""
        return sha256_hex(text)

    def hashed(self, kind: str, value: Any) -> str:
        """Transform then hash one identifier; "" (not hashed) when it is invalid."""
        if kind not in KINDS:
            raise ValueError(f"unknown identifier kind {kind!r}; expected one of {KINDS}")
        text = self.phone(value) if kind == "phone" else self.email(value)
        return self.hash(text) if text else ""

    def customers(self, members: pd.DataFrame,
                  value_column: str | None = None) -> list[HashedCustomer]:
        """Per customer, this destination's distinct hashes (see ``hashed_customers``)."""
        return hashed_customers(self, members, value_column)

    # -- rows ----------------------------------------------------------------------------

    @abstractmethod
    def desired_rows(self, members: pd.DataFrame,
                     values: Mapping[str, float] | None = None) -> dict[str, Rows]:
        """list type -> customer -> the rows a members frame (``identifiers``) should have;
        ``values`` only for value-based seeds."""

    # -- the platform calls -----------------------------------------------------------------

    @abstractmethod
    def create(self, client: Any, name: str, description: str, list_type: str,
               rows: list[Any], *, value_based: bool, small: bool) -> tuple[str, bool]:
        """Create the audience; (its id, whether ``rows`` went with the creation)."""

    @abstractmethod
    def send(self, client: Any, audience_id: str, list_type: str, op: str, rows: list[Any],
             *, value_based: bool) -> None:
        """One ``add`` / ``remove`` of rows through the client."""

    def held_back(self, add_rows: Sequence[Any],
                  remove_rows: Sequence[Any]) -> tuple[bool, bool]:
        """(send adds, send removes) of a diff; a platform with a minimum diff says no."""
        return True, True

    def audience_ids(self, audience_id: str | Mapping[str, str] | None) -> dict[str, str]:
        """list type -> id of an existing audience the caller names."""
        if audience_id is None:
            return {}
        if isinstance(audience_id, Mapping):
            return {str(k): str(v) for k, v in audience_id.items()}
        return {SINGLE: str(audience_id)}

    # -- sizes ------------------------------------------------------------------------------

    def too_small(self, rows: Mapping[str, Rows]) -> AudienceTooSmall | None:
        """The first minimum-size violation of a new audience."""
        n = len(distinct_rows([r for rs in rows.get(SINGLE, {}).values() for r in rs]))
        return AudienceTooSmall(self.name, self.min_rows, n) if n < self.min_rows else None

    def files_too_small(self, files: Sequence[PlatformFile]) -> list[AudienceTooSmall]:
        """The minimum-size violations of export files (an empty export is one too)."""
        if not files:
            return [AudienceTooSmall(self.name, self.min_rows, 0, self.size_unit)]
        return [AudienceTooSmall(self.name, self.min_rows, f.rows,
                                 f"{self.size_unit} ({f.list_type})" if f.list_type
                                 else self.size_unit)
                for f in files if f.rows < self.min_rows]


class HashedDestination(Destination):
    """An ad platform: hashed phones and e-mails, uploaded through its API or as files."""

    file_export = True

    @abstractmethod
    def customer_rows(self, customers: Sequence[HashedCustomer],
                      value_based: bool) -> dict[str, Rows]:
        """list type -> customer -> the hashed rows this destination holds for them."""

    def desired_rows(self, members: pd.DataFrame,
                     values: Mapping[str, float] | None = None) -> dict[str, Rows]:
        """The rows a members frame should have; ``values`` only for value-based seeds."""
        value_column = None
        if self.value_based_seeds and values is not None:
            value_column = "lookalike_value"  # not "value": that is the identifier's column
            members = members.assign(lookalike_value=members["customer_id"].map(dict(values)))
        return self.customer_rows(self.customers(members, value_column), value_column is not None)

    # -- files ------------------------------------------------------------------------------

    @abstractmethod
    def diff_file(self, list_type: str, rows: list[Any], *, value_based: bool,
                  what: str) -> PlatformFile:
        """Rows to ``what`` (add / remove) in the platform's upload format."""

    @abstractmethod
    def export_files(self, members: pd.DataFrame,
                     value_column: str | None = None) -> list[PlatformFile]:
        """The whole audience of a members frame as upload files (hashes only)."""


def _lookalike_value(raw: Any, customer_id: str) -> float | int:
    if pd.isna(raw):
        return 0
    number = float(raw)
    if number < 0:
        raise ValueError(f"LOOKALIKE_VALUE of customer {customer_id} is negative ({number})")
    return int(number) if number.is_integer() else number


def hashed_customers(platform: Destination, members: pd.DataFrame,
                     value_column: str | None = None) -> list[HashedCustomer]:
    """Per customer (first-seen order), the destination's distinct hashes of its phones and
    e-mails; customers with no valid identifier for it are left out."""
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
