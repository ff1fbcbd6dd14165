"""Identity resolution by union-find (warehouse/identity.py): chains, transitivity, stable roots,
the cap on shared identifiers, and the dbt models that read its tables on both backends."""

from __future__ import annotations

import hashlib
import itertools
import random
from collections import Counter
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path

import dagster as dg
import pytest
from _support import failed_nodes, run_dbt, scratch_warehouse

from orchestration.assets.identity import CLUSTERS_KEY, SHARED_KEY, build_identity_asset
from orchestration.resources import WarehouseResource
from warehouse.contact_points import build_contact_points
from warehouse.identity import (
    DEFAULT_MAX_SHARED,
    MAX_SHARED_ENV,
    SHOP_KEY,
    UnionFind,
    build_identity,
    mask,
    max_shared_from_env,
    node_id,
    resolve,
    value_md5,
)
from warehouse.records import RawRecord


def groups(points: list[tuple[str, str, str]], max_shared: int = 50) -> set[frozenset[str]]:
    """The clusters of a resolution as a set of frozen node sets (order-free comparison)."""
    roots = resolve(points, max_shared).roots
    by_root: dict[str, set[str]] = {}
    for node, root in roots.items():
        by_root.setdefault(root, set()).add(node)
    return {frozenset(nodes) for nodes in by_root.values()}


# -- the union-find ----------------------------------------------------------------------------
def test_union_find_joins_transitively_and_roots_on_the_smallest_member() -> None:
    uf = UnionFind()
    uf.union("c", "d")
    uf.union("e", "b")
    uf.union("d", "e")  # c-d and e-b become one set through d-e
    uf.add("z")
    roots = uf.smallest_member()
    assert roots == {"c": "b", "d": "b", "e": "b", "b": "b", "z": "z"}


def test_a_chain_of_phone_and_email_links_is_one_customer() -> None:
    points = [("a", "phone", "+1"), ("b", "phone", "+1"), ("b", "email", "x@y"),
              ("c", "email", "x@y"), ("c", "phone", "+2"), ("d", "phone", "+2"),
              ("e", "email", "alone@y")]
    resolution = resolve(points, 50)
    assert groups(points) == {frozenset("abcd"), frozenset("e")}
    assert {resolution.roots[n] for n in "abcd"} == {"a"}
    assert resolution.clusters() == {"a": ["a", "b", "c", "d"]}  # singletons are not listed


def test_a_long_chain_resolves_in_one_pass() -> None:
    """n records, each sharing one phone with the next: one customer, rooted on the smallest."""
    n = 5000
    points = [(f"n{i:05d}", "phone", f"+{i}") for i in range(n)]
    points += [(f"n{i + 1:05d}", "phone", f"+{i}") for i in range(n - 1)]
    roots = resolve(points, 50).roots
    assert set(roots.values()) == {"n00000"}


def test_the_same_data_in_any_order_gives_the_same_roots() -> None:
    points = [(f"amocrm:a:{i}", "phone", f"+7{i % 7}") for i in range(60)]
    points += [(f"files:f:r{i}", "email", f"m{i % 11}@x.ru") for i in range(60)]
    points += [(f"files:f:r{i}", "phone", f"+7{i % 5}") for i in range(0, 60, 9)]
    expected = resolve(points, 50).roots
    shuffled = list(points)
    for seed in range(5):
        random.Random(seed).shuffle(shuffled)
        assert resolve(shuffled, 50).roots == expected
    # the root is the smallest node id of the cluster in code-point order, as dbt hashed before
    for node, root in expected.items():
        members = [n for n, r in expected.items() if r == root]
        assert root == min(members) and node in members


def test_an_identifier_on_more_people_than_the_cap_merges_nobody_and_is_reported() -> None:
    switchboard = [(f"amocrm:a:{i}", "phone", "+74951234567") for i in range(5)]
    own_mail = [(f"amocrm:a:{i}", "email", f"p{i}@x.ru") for i in range(5)]
    resolution = resolve(switchboard + own_mail, max_shared=4)
    assert len(set(resolution.roots.values())) == 5, "the switchboard merged people"
    [shared] = resolution.shared
    assert (shared.kind, shared.value, shared.records, shared.people) == (
        "phone", "+74951234567", 5, 5)
    # at the cap it still links: 5 people on a cap of 5
    assert len(set(resolve(switchboard + own_mail, max_shared=5).roots.values())) == 1


def test_people_are_clusters_without_the_suspects_not_records() -> None:
    """Six records on one phone, but two of them also share an ordinary e-mail (on fewer
    records than the cap): five people, not six."""
    phone = [(f"r{i}", "phone", "+74951234567") for i in range(6)]
    mail = [("r0", "email", "same@x.ru"), ("r1", "email", "same@x.ru")]
    resolution = resolve(phone + mail, max_shared=5)
    assert [(s.records, s.people) for s in resolution.shared] == []
    assert len(set(resolution.roots.values())) == 1  # 5 people <= 5: linked
    resolution = resolve(phone + mail, max_shared=4)
    assert [(s.records, s.people) for s in resolution.shared] == [(6, 5)]
    assert len(set(resolution.roots.values())) == 5  # r0+r1, r2, r3, r4, r5


def test_two_placeholders_on_the_same_records_do_not_vouch_for_each_other() -> None:
    """A switchboard and test@test.ru typed on the same leads: both suspects are left out
    when counting people, so the pair cannot make the leads look like one person."""
    points = [(f"lead{i}", kind, value) for i in range(8)
              for kind, value in (("phone", "+74950000000"), ("email", "test@test.ru"))]
    resolution = resolve(points, max_shared=3)
    assert {(s.kind, s.people) for s in resolution.shared} == {("phone", 8), ("email", 8)}
    assert len(set(resolution.roots.values())) == 8


def test_the_shops_customer_key_is_never_capped() -> None:
    orders = [(f"files:f:r{i:02d}", SHOP_KEY, "f:C-1") for i in range(30)]
    resolution = resolve(orders, max_shared=3)
    assert resolution.shared == [] and set(resolution.roots.values()) == {"files:f:r00"}


def test_a_cap_below_one_and_a_bad_env_value_fail_clearly(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    with pytest.raises(ValueError, match=MAX_SHARED_ENV):
        resolve([], 0)
    monkeypatch.delenv(MAX_SHARED_ENV, raising=False)
    assert max_shared_from_env() == DEFAULT_MAX_SHARED
    monkeypatch.setenv(MAX_SHARED_ENV, "7")
    assert max_shared_from_env() == 7
    for bad in ("many", "0", "-3"):
        monkeypatch.setenv(MAX_SHARED_ENV, bad)
        with pytest.raises(ValueError, match=MAX_SHARED_ENV):
            max_shared_from_env()


def test_masks_keep_no_more_than_a_hint() -> None:
    assert mask("phone", "+74951234567") == "+7********67"
    assert mask("email", "test@test.ru") == "t***@test.ru"
    assert value_md5("+74950000000") == hashlib.md5(b"+74950000000").hexdigest()


def test_node_ids_match_what_dbt_builds() -> None:
    assert node_id("amocrm", "acme", "0042") == "amocrm:acme:42"  # cast to bigint in dbt
    assert node_id("files", "shop", "0042") == "files:shop:0042"  # the raw record_id, as text
    with pytest.raises(ValueError, match="bitrix24_lead record 'L-1' of account 'p'"):
        node_id("bitrix24_lead", "p", "L-1")


def test_clusters_do_not_depend_on_which_identifier_comes_first() -> None:
    """Every permutation of a small graph's edges gives the same partition."""
    points = [("a", "phone", "1"), ("b", "phone", "1"), ("c", "email", "m"), ("a", "email", "m"),
              ("d", "phone", "2")]
    partitions = {frozenset(groups(list(p))) for p in itertools.permutations(points)}
    assert partitions == {frozenset({frozenset("abc"), frozenset("d")})}


# -- the warehouse tables, the dbt models and the Dagster asset, on both backends -------------
SWITCHBOARD, PLACEHOLDER = "+74951234567", "test@test.ru"
CAP = 3


def _contact(cid: int, phones: list[str], emails: list[str]) -> RawRecord:
    fields = [{"field_code": code, "field_type": "multitext",
               "values": [{"value": v} for v in values]}
              for code, values in (("PHONE", phones), ("EMAIL", emails)) if values]
    return RawRecord("amocrm", "acme", "contacts", str(cid),
                     {"id": cid, "name": f"Contact {cid}", "custom_fields_values": fields})


def identity_contacts() -> list[RawRecord]:
    """Contacts 1-6 on a switchboard (1 and 2 also share an e-mail: five people on six
    records); 7 and 8 share a mobile (two people, under the cap: one customer); 9-10-11 a
    phone-then-e-mail chain; 12-16 only the placeholder e-mail (five people)."""
    board = [_contact(1, [SWITCHBOARD], ["same@firm.ru"]),
             _contact(2, ["8 (495) 123-45-67"], ["same@firm.ru"])]
    board += [_contact(i, [SWITCHBOARD], [f"p{i}@firm.ru"]) for i in range(3, 7)]
    pair = [_contact(7, ["+79161112233"], []), _contact(8, ["89161112233"], [])]
    chain = [_contact(9, ["+79160000009"], []),
             _contact(10, ["+79160000009"], ["ten@x.ru"]), _contact(11, [], ["ten@x.ru"])]
    placeholder = [_contact(i, [], [PLACEHOLDER.upper()]) for i in range(12, 17)]
    return board + pair + chain + placeholder


def customer_of(rid: int) -> str:
    return "c_" + hashlib.md5(f"amocrm:acme:{rid}".encode()).hexdigest()[:16]


@pytest.fixture(scope="module", params=["duckdb", pytest.param("postgres",
                                                                marks=pytest.mark.postgres)])
def identity_build(request: pytest.FixtureRequest,
                   tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple]:
    """The contacts above landed, contact points and identity built with a cap of 3 through
    the Dagster asset, then dbt up to int_customer_identifiers (data tests included)."""
    workdir = tmp_path_factory.mktemp(f"identity_{request.param}")
    with scratch_warehouse(request.param, workdir, "identity") as (wh, env):
        wh.land(identity_contacts(), run_id="r")
        build_contact_points(wh)
        with pytest.MonkeyPatch.context() as mp:
            for key, value in {**env, MAX_SHARED_ENV: str(CAP)}.items():
                mp.setenv(key, value)
            result = dg.materialize([build_identity_asset({"amocrm": ("contacts",)})],
                                    resources={"warehouse": WarehouseResource()})
        assert result.success
        code, out, results = run_dbt(workdir, env, "build", "--select",
                                     "+int_customer_identifiers", "--indirect-selection",
                                     "cautious", "--exclude-resource-type", "unit_test")
        assert code == 0 and not failed_nodes(results), out[-3000:]
        yield wh, result


def test_a_shared_identifier_above_the_cap_merges_nobody_in_the_warehouse(identity_build) -> None:
    wh, _ = identity_build
    frame = wh.query_df("select node_id, customer_id from intermediate.int_customers__resolved")
    customer = dict(zip(frame.node_id, frame.customer_id, strict=True))
    by_id = {int(n.rsplit(":", 1)[1]): c for n, c in customer.items()}
    assert len(by_id) == 16
    board = {by_id[i] for i in range(1, 7)}
    assert len(board) == 5, f"the switchboard merged people: {sorted(board)}"
    assert by_id[1] == by_id[2] == customer_of(1)  # their own e-mail still links them
    assert len({by_id[i] for i in range(12, 17)}) == 5, "the placeholder merged people"
    assert by_id[7] == by_id[8] == customer_of(7)  # two people on one phone: under the cap
    # transitively, rooted on the smallest id as text: "amocrm:acme:10" < "amocrm:acme:9"
    assert by_id[9] == by_id[10] == by_id[11] == customer_of(10)
    assert [by_id[i] for i in (3, 4, 5, 6, 12)] == [customer_of(i) for i in (3, 4, 5, 6, 12)]


def test_the_report_lists_kind_masked_value_and_counts_never_the_value(identity_build) -> None:
    wh, _ = identity_build
    report = wh.query_df("select kind, value_masked, value_md5, records, people, max_shared "
                         "from raw.identity_shared_identifiers order by kind")
    assert [tuple(r) for r in report.itertuples(index=False)] == [
        ("email", "t***@test.ru", value_md5(PLACEHOLDER), 5, 5, CAP),
        ("phone", "+7********67", value_md5(SWITCHBOARD), 6, 5, CAP),
    ]
    identifiers = wh.query_df("select value_normalized from intermediate.int_customer_identifiers")
    values = set(identifiers.value_normalized)
    assert not values & {SWITCHBOARD, PLACEHOLDER}, "a non-identifying value is exported"
    assert {"+79161112233", "ten@x.ru", "p3@firm.ru"} <= values


def test_the_asset_metadata_has_counts_and_masks_only(identity_build) -> None:
    _, result = identity_build
    clusters = result.asset_materializations_for_node("identity_resolution")
    metadata = {m.asset_key: {k: v.value for k, v in m.metadata.items()} for m in clusters}
    assert metadata[CLUSTERS_KEY]["records"] == 16
    assert metadata[CLUSTERS_KEY]["non_identifying"] == 2
    assert metadata[CLUSTERS_KEY]["largest_cluster"] == 3
    shared = metadata[SHARED_KEY]
    assert shared["max_shared"] == CAP and shared["by_kind"] == {"email": 1, "phone": 1}
    text = repr(metadata)
    assert SWITCHBOARD not in text and PLACEHOLDER not in text and "79161112233" not in text
    assert "+7********67" in text


def _components_by_search(points: list[tuple[str, str, str]]) -> dict[str, str]:
    """Node -> smallest node of its component, by breadth-first search: an independent
    reimplementation of what the SQL transitive closure computed."""
    by_node: dict[str, set[tuple[str, str]]] = {}
    by_key: dict[tuple[str, str], set[str]] = {}
    for node, kind, value in points:
        by_node.setdefault(node, set()).add((kind, value))
        by_key.setdefault((kind, value), set()).add(node)
    roots: dict[str, str] = {}
    for start in by_node:
        if start in roots:
            continue
        seen, frontier = {start}, [start]
        while frontier:
            node = frontier.pop()
            for key in by_node[node]:
                fresh = by_key[key] - seen
                seen |= fresh
                frontier.extend(fresh)
        root = min(seen)
        roots.update(dict.fromkeys(seen, root))
    return roots


def test_the_demo_business_resolves_as_the_closure_did_under_the_default_cap(
    tmp_path: Path,
) -> None:
    """The seeded business's largest identifier is on a handful of records: the default cap
    reports nothing, and every record gets the root a plain graph search gives."""
    import synthetic
    from synthetic.landing import land_business
    from warehouse.duckdb_backend import DuckDBWarehouse
    from warehouse.identity import contact_point_rows, shop_key_rows

    wh = DuckDBWarehouse(tmp_path / "w.duckdb", tmp_path / "v.duckdb")
    land_business(synthetic.generate(seed=7, scale=0.3), wh)
    resolution = build_identity(wh, DEFAULT_MAX_SHARED)
    assert resolution.shared == []
    assert wh.count_rows("raw.identity_shared_identifiers") == 0
    points = [*contact_point_rows(wh), *shop_key_rows(wh)]
    assert resolution.roots == _components_by_search(points)
    stored = wh.query_df("select node_id, root_node_id from raw.identity_clusters")
    size = Counter(resolution.roots.values())
    clustered = {n: r for n, r in resolution.roots.items() if size[r] > 1}
    assert dict(zip(stored.node_id, stored.root_node_id, strict=True)) == clustered
    assert len(clustered) > 100


@pytest.mark.parametrize("backend", ["duckdb", pytest.param("postgres",
                                                            marks=pytest.mark.postgres)])
def test_file_orders_link_by_the_shops_key_of_their_newest_version(
    backend: str, tmp_path: Path,
) -> None:
    """The shop's customer id is read in the database from the newest version of each order
    (trimmed; empty = none), namespaced by the files account."""
    def order(rid: str, customer: str | None, updated: str) -> RawRecord:
        payload = {"order_id": rid, "customer_id": customer, "amount": "10"}
        return RawRecord("files", "shop", "orders", rid, payload,
                         updated_at=datetime.fromisoformat(updated))

    with scratch_warehouse(backend, tmp_path, "identity_keys") as (wh, _):
        wh.land([order("A1", " C-1 ", "2026-01-01T00:00:00"),
                 order("A2", "C-1", "2026-01-01T00:00:00"),
                 order("A3", "C-1", "2026-01-01T00:00:00"),
                 order("A3", "C-2", "2026-02-01T00:00:00"),  # re-exported: now C-2's
                 order("A4", "  ", "2026-01-01T00:00:00"),
                 order("A5", None, "2026-01-01T00:00:00")], run_id="r")
        resolution = build_identity(wh, 3)
    assert resolution.clusters() == {"files:shop:A1": ["files:shop:A1", "files:shop:A2"]}
    assert resolution.roots["files:shop:A3"] == "files:shop:A3"
    assert "files:shop:A4" not in resolution.roots and "files:shop:A5" not in resolution.roots


def test_the_dbt_models_hang_below_the_identity_asset_in_the_graph(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """dbt's sources resolve to raw/identity_* (the translator's raw/<table> keys), which the
    identity step materialises after raw/contact_points and the orders files."""
    from orchestration.definitions import build_defs

    monkeypatch.setenv("VORONKA_FILES_DIR", "/tmp/voronka-files")
    graph = build_defs().resolve_asset_graph()
    resolved = graph.get(dg.AssetKey(["intermediate", "int_customers__resolved"]))
    assert CLUSTERS_KEY in resolved.parent_keys
    identifiers = graph.get(dg.AssetKey(["intermediate", "int_customer_identifiers"]))
    assert SHARED_KEY in identifiers.parent_keys
    for key in (CLUSTERS_KEY, SHARED_KEY):
        node = graph.get(key)
        assert node.is_materializable
        assert {"raw/contact_points", "raw/files__orders"} <= {
            k.to_user_string() for k in node.parent_keys}


def test_nothing_landed_still_gives_both_tables_empty(tmp_path: Path) -> None:
    """A setup without contact sources (ad platforms only): dbt's sources must still exist."""
    from warehouse.duckdb_backend import DuckDBWarehouse

    wh = DuckDBWarehouse(tmp_path / "w.duckdb", tmp_path / "v.duckdb")
    assert build_identity(wh, 5).roots == {}
    assert wh.table_counts("raw") == {"identity_clusters": 0, "identity_shared_identifiers": 0}
