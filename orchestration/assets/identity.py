"""Identity resolution before dbt: union-find clusters and the non-identifying identifiers.

One step writes both tables dbt reads as source ``voronka_identity`` (warehouse/identity.py),
so the dbt assets of int_customers__resolved and int_customer_identifiers hang below it
through the translator's raw/<table> keys. Metadata carries counts and masked values only:
never a phone or an e-mail.
"""

import time
from collections.abc import Iterator

import dagster as dg

from orchestration.assets.raw import enabled_raw_entities, raw_asset_key
from orchestration.resources import WarehouseResource
from warehouse.identity import (
    CLUSTERS_TABLE,
    SHARED_TABLE,
    Resolution,
    build_identity,
    mask,
    max_shared_from_env,
)

CLUSTERS_KEY = dg.AssetKey(["raw", CLUSTERS_TABLE])
SHARED_KEY = dg.AssetKey(["raw", SHARED_TABLE])
CONTACT_POINTS_KEY = dg.AssetKey(["raw", "contact_points"])
MAX_SHARED_IN_METADATA = 10


def identity_deps(enabled: dict[str, tuple[str, ...]] | None = None) -> list[dg.AssetKey]:
    """raw.contact_points always; raw.files__orders (the shop's customer ids) when enabled."""
    enabled = enabled_raw_entities() if enabled is None else enabled
    files = [raw_asset_key("files", "orders")] if "orders" in enabled.get("files", ()) else []
    return [CONTACT_POINTS_KEY, *files]


def cluster_metadata(resolution: Resolution, seconds: float) -> dict[str, object]:
    clusters = resolution.clusters()
    return {
        "records": len(resolution.roots),
        "clusters": len(clusters),
        "records_in_clusters": sum(len(nodes) for nodes in clusters.values()),
        "largest_cluster": max((len(nodes) for nodes in clusters.values()), default=1),
        "non_identifying": len(resolution.shared),
        "seconds": round(seconds, 3),
    }


def shared_metadata(resolution: Resolution, max_shared: int) -> dict[str, object]:
    """Counts per kind and the most shared ones, masked ('+7********67', 't***@test.ru')."""
    by_kind: dict[str, int] = {}
    for item in resolution.shared:
        by_kind[item.kind] = by_kind.get(item.kind, 0) + 1
    top = [{"kind": s.kind, "value": mask(s.kind, s.value), "records": s.records,
            "people": s.people} for s in resolution.shared[:MAX_SHARED_IN_METADATA]]
    return {"max_shared": max_shared, "non_identifying": len(resolution.shared),
            "by_kind": dg.MetadataValue.json(by_kind),
            "most_shared": dg.MetadataValue.json(top)}


def build_identity_asset(
    enabled: dict[str, tuple[str, ...]] | None = None,
) -> dg.AssetsDefinition:
    deps = identity_deps(enabled)

    @dg.multi_asset(
        name="identity_resolution",
        group_name="raw_identity",
        specs=[
            dg.AssetSpec(
                CLUSTERS_KEY, deps=deps, kinds={"python"},
                description="Customers as clusters of records sharing a phone, an e-mail or "
                            "(file orders) the shop's customer id, by union-find (linear); "
                            "dbt's int_customers__resolved hashes each cluster's smallest "
                            "node id into customer_id."),
            dg.AssetSpec(
                SHARED_KEY, deps=deps, kinds={"python"},
                description="Phones and e-mails on more than VORONKA_IDENTITY_MAX_SHARED "
                            "people (default 50): switchboards, placeholders. They merge "
                            "nothing; masked value, md5, records and people."),
        ],
    )
    def identity_resolution(warehouse: WarehouseResource) -> Iterator[dg.MaterializeResult]:
        max_shared = max_shared_from_env()
        started = time.perf_counter()
        resolution = build_identity(warehouse.open(), max_shared)
        seconds = time.perf_counter() - started
        yield dg.MaterializeResult(asset_key=CLUSTERS_KEY,
                                   metadata=cluster_metadata(resolution, seconds))
        yield dg.MaterializeResult(asset_key=SHARED_KEY,
                                   metadata=shared_metadata(resolution, max_shared))

    return identity_resolution
