"""Identity resolution in linear time: union-find over record–identifier edges.

Records (identity-graph nodes: CRM contacts, Bitrix24 leads, file orders) that share a
normalised phone or e-mail (raw.contact_points), or file orders of one files account that
share the shop's own customer id, are one customer, directly or through a chain. The old
SQL transitive closure grew with the cube of a cluster's size (one phone on 1,600 records:
157 s); here every identifier links its records in one pass, near O(records + identifiers).

An identifier on more than ``max_shared`` *people* (VORONKA_IDENTITY_MAX_SHARED, default
``DEFAULT_MAX_SHARED``) is non-identifying: a switchboard number, ``test@test.ru``, a
manager's own phone typed into every lead. It links nothing and is reported in
raw.identity_shared_identifiers (kind, masked value, md5 of the value, records, people).
"People" are the distinct clusters among its records when every suspect identifier (one on
more than ``max_shared`` records) is left out: two contacts of one person that also share an
ordinary e-mail count once behind a family phone, 1,600 leads of a call centre count as
1,600, and a switchboard plus ``test@test.ru`` typed on the same leads cannot vouch for each
other. The price: records linked by nothing but over-shared values (a regular buyer's orders
with one phone and e-mail, more than the cap of them) count one each, so the default sits
well above the orders one person places. The shop's customer id is a key the shop assigned,
not something people type: never capped, it keeps a regular buyer's orders together.

Output (raw.identity_clusters): one row per record of a multi-record cluster with the
cluster's smallest node id (code-point order), the root dbt hashes into customer_id exactly
as before, so the same data gives the same ids on every backend.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Iterable
from dataclasses import dataclass, field

import pandas as pd

from warehouse.base import Warehouse

MAX_SHARED_ENV = "VORONKA_IDENTITY_MAX_SHARED"
# Families and small offices share a phone among a handful of people; a switchboard or a
# placeholder is on dozens to thousands. A regular buyer's orders linked by nothing but their
# phone (and e-mail) count as one person per order, so the cap stays well above the orders a
# real person places; the demo business's largest identifier is on a handful of records.
DEFAULT_MAX_SHARED = 50
SHOP_KEY = "files_customer_id"  # the shop's own customer id: a key, never capped
CLUSTERS_TABLE = "identity_clusters"
SHARED_TABLE = "identity_shared_identifiers"
CLUSTERS_DDL = "node_id varchar, root_node_id varchar"
SHARED_DDL = ("kind varchar, value_masked varchar, value_md5 varchar, records integer, "
              "people integer, max_shared integer")
SHARED_COLUMNS = ["kind", "value_masked", "value_md5", "records", "people", "max_shared"]
_INTEGER_IDS = {"amocrm", "bitrix24", "bitrix24_lead"}  # dbt casts their ids to bigint

Identifier = tuple[str, str]  # (kind, normalised value)


class UnionFind:
    """Disjoint sets of string items with path halving and union by size."""

    def __init__(self) -> None:
        self._index: dict[str, int] = {}
        self._items: list[str] = []
        self._parent: list[int] = []
        self._size: list[int] = []

    def add(self, item: str) -> int:
        """The item's index, adding it as its own set the first time."""
        index = self._index.get(item)
        if index is None:
            index = self._index[item] = len(self._items)
            self._items.append(item)
            self._parent.append(index)
            self._size.append(1)
        return index

    def _find(self, index: int) -> int:
        parent = self._parent
        while parent[index] != index:
            parent[index] = parent[parent[index]]
            index = parent[index]
        return index

    def find(self, item: str) -> int:
        """The representative index of the item's set (an arbitrary member, not the root id)."""
        return self._find(self.add(item))

    def union(self, a: str, b: str) -> None:
        ra, rb = self.find(a), self.find(b)
        if ra == rb:
            return
        if self._size[ra] < self._size[rb]:
            ra, rb = rb, ra
        self._parent[rb] = ra
        self._size[ra] += self._size[rb]

    def union_all(self, items: Iterable[str]) -> None:
        """Put every item into one set (a star on the first: linear in the items)."""
        first: str | None = None
        for item in items:
            if first is None:
                first = item
                self.add(item)
            else:
                self.union(first, item)

    def smallest_member(self) -> dict[str, str]:
        """Item -> the smallest item (code-point order) of its set: a root that does not
        depend on the order of unions, so the same sets always give the same roots."""
        reps = [self._find(i) for i in range(len(self._items))]
        smallest: dict[int, str] = {}
        for item, rep in zip(self._items, reps, strict=True):
            current = smallest.get(rep)
            if current is None or item < current:
                smallest[rep] = item
        return {item: smallest[rep] for item, rep in zip(self._items, reps, strict=True)}


@dataclass(frozen=True)
class SharedIdentifier:
    """An identifier on more than max_shared people: linked nothing."""

    kind: str
    value: str
    records: int
    people: int


@dataclass
class Resolution:
    """Roots of every record that has an identifier, and the identifiers left unlinked."""

    roots: dict[str, str]
    shared: list[SharedIdentifier] = field(default_factory=list)

    def clusters(self) -> dict[str, list[str]]:
        """Root -> its records, for multi-record clusters only."""
        members: dict[str, list[str]] = {}
        for node, root in self.roots.items():
            members.setdefault(root, []).append(node)
        return {root: sorted(nodes) for root, nodes in members.items() if len(nodes) > 1}


def _bearers(points: Iterable[tuple[str, str, str]]) -> dict[Identifier, list[str]]:
    """(kind, value) -> the distinct records carrying it, in first-seen order."""
    bearers: dict[Identifier, dict[str, None]] = {}
    for node, kind, value in points:
        bearers.setdefault((kind, value), {})[node] = None
    return {key: list(nodes) for key, nodes in bearers.items()}


def resolve(points: Iterable[tuple[str, str, str]], max_shared: int) -> Resolution:
    """Cluster records by shared identifiers; ``points`` are (node_id, kind, value) rows.

    Two passes of union-find: first over every identifier on at most ``max_shared`` records
    (and the shop's keys), which tells the people behind each suspect apart; then each
    suspect on at most ``max_shared`` of those people links its records too. Suspects are
    judged against the same first-pass graph, so the outcome ignores input order.
    """
    if max_shared < 1:
        raise ValueError(f"{MAX_SHARED_ENV} must be at least 1, got {max_shared}")
    bearers = _bearers(points)
    uf = UnionFind()
    suspects: list[tuple[Identifier, list[str]]] = []
    for key, nodes in bearers.items():
        if len(nodes) > max_shared and key[0] != SHOP_KEY:
            suspects.append((key, nodes))
        else:
            uf.union_all(nodes)
    shared, accepted = [], []
    for (kind, value), nodes in suspects:
        people = len({uf.find(node) for node in nodes})
        if people > max_shared:
            shared.append(SharedIdentifier(kind, value, len(nodes), people))
        else:
            accepted.append(nodes)
    for nodes in accepted:
        uf.union_all(nodes)
    shared.sort(key=lambda s: (-s.people, s.kind, s.value))
    return Resolution(uf.smallest_member(), shared)


def max_shared_from_env() -> int:
    """VORONKA_IDENTITY_MAX_SHARED as a positive integer; a clear error otherwise."""
    text = os.environ.get(MAX_SHARED_ENV, "").strip()
    if not text:
        return DEFAULT_MAX_SHARED
    try:
        value = int(text)
    except ValueError:
        raise ValueError(f"{MAX_SHARED_ENV} must be a whole number, got {text!r}") from None
    if value < 1:
        raise ValueError(f"{MAX_SHARED_ENV} must be at least 1, got {value}")
    return value


def mask(kind: str, value: str) -> str:
    """A value a person can recognise without it being the value: '+7********67',
    't***@test.ru'. Metadata and logs get this, never the phone or e-mail itself."""
    if kind == "email" and "@" in value:
        local, domain = value.rsplit("@", 1)
        return f"{local[:1]}***@{domain}"
    if kind == "phone":
        return value[:2] + "*" * max(len(value) - 4, 0) + value[-2:]
    return value[:1] + "***"


def value_md5(value: str) -> str:
    """md5 hex of the normalised value: what dbt's hash() gives, to leave it out in SQL."""
    return hashlib.md5(value.encode("utf-8")).hexdigest()


def node_id(source: str, account: str, record_id: str) -> str:
    """The node id dbt builds ('<source>:<account>:<id>'), ids cast to integers as dbt does."""
    text = str(record_id)
    if source in _INTEGER_IDS:
        try:
            text = str(int(text.strip()))
        except ValueError:
            raise ValueError(f"raw.contact_points: {source} record {record_id!r} of account "
                             f"{account!r}: contact_id is not an integer") from None
    return f"{source}:{account}:{text}"


def contact_point_rows(wh: Warehouse) -> list[tuple[str, str, str]]:
    """(node_id, kind, value) of every valid phone and e-mail in raw.contact_points."""
    if "contact_points" not in wh.list_tables("raw"):
        return []
    frame = wh.query_df("select source, account, contact_id, kind, value_normalized "
                        "from raw.contact_points where value_normalized is not null")
    return [(node_id(source, account, contact_id), kind, value)
            for source, account, contact_id, kind, value in zip(
                frame["source"], frame["account"], frame["contact_id"], frame["kind"],
                frame["value_normalized"], strict=True)]


def _shop_key_sql(wh: Warehouse) -> str:
    """The newest version of each file order (staging's latest_version order) with its shop
    customer id, extracted in the database: no payload crosses into Python."""
    key = ("payload ->> 'customer_id'" if wh.kind == "postgres"
           else "json_extract_string(payload, '$.customer_id')")
    return f"""select account, record_id, trim({key}) as shop_key from (
                 select account, record_id, payload, row_number() over (
                   partition by account, record_id
                   order by updated_at desc nulls last, extracted_at desc,
                            payload_hash desc) as version_rank
                 from raw.files__orders) versions
               where version_rank = 1 and trim({key}) <> ''"""


def shop_key_rows(wh: Warehouse) -> list[tuple[str, str, str]]:
    """(node_id, 'files_customer_id', '<account>:<id>') of file orders with a shop customer
    id: the key stg_files__orders exposes (newest version, trimmed, empty = none)."""
    if "files__orders" not in wh.list_tables("raw"):
        return []
    frame = wh.query_df(_shop_key_sql(wh))
    return [(node_id("files", account, record_id), SHOP_KEY, f"{account}:{key}")
            for account, record_id, key in frame.itertuples(index=False)]


def clusters_frame(resolution: Resolution) -> pd.DataFrame:
    rows = sorted((node, root) for root, nodes in resolution.clusters().items()
                  for node in nodes)
    return pd.DataFrame(rows, columns=["node_id", "root_node_id"], dtype=object)


def shared_frame(resolution: Resolution, max_shared: int) -> pd.DataFrame:
    rows = [(s.kind, mask(s.kind, s.value), value_md5(s.value), s.records, s.people, max_shared)
            for s in resolution.shared]
    frame = pd.DataFrame(rows, columns=SHARED_COLUMNS)
    return frame.astype({"records": "int64", "people": "int64", "max_shared": "int64"})


def build_identity(wh: Warehouse, max_shared: int | None = None) -> Resolution:
    """Rebuild raw.identity_clusters and raw.identity_shared_identifiers from raw (a pure
    function of raw.contact_points and raw.files__orders); returns the resolution."""
    limit = max_shared_from_env() if max_shared is None else max_shared
    points = [*contact_point_rows(wh), *shop_key_rows(wh)]
    resolution = resolve(points, limit)
    wh.replace_table("raw", CLUSTERS_TABLE, clusters_frame(resolution), CLUSTERS_DDL)
    wh.replace_table("raw", SHARED_TABLE, shared_frame(resolution, limit), SHARED_DDL)
    return resolution
