"""Benchmark identity resolution (issue 17, point 3): union-find instead of a SQL closure.

Usage: .venv/bin/python benchmarks/bench_identity.py [--shared 1600] [--scales 1 10]
       [--repeat 3] [--postgres]

Cases, each timed as the best of ``--repeat``:

- ``shared``: ``--shared`` amoCRM contacts on one phone, each with its own e-mail (the
  issue's 1,600 records that took the WITH RECURSIVE closure 157 s). Timed twice: under the
  default cap (the phone is non-identifying: reported, merges nobody) and with the cap above
  the count (everything merges into one customer: the closure's worst case).
- ``demo``: the demo business (seed 42) at each of ``--scales``.

For each: ``resolve_s`` is the union-find alone (points in memory); ``build_s`` is
``build_identity`` end to end on a fresh DuckDB warehouse (read raw.contact_points and
raw.files__orders, resolve, write both tables): what the Dagster asset raw/identity_clusters
does. ``--postgres`` adds ``build_pg_s`` on a scratch database of the local server
(127.0.0.1:5432, user postgres), dropped afterwards.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from warehouse.base import Warehouse  # noqa: E402
from warehouse.contact_points import build_contact_points  # noqa: E402
from warehouse.identity import (  # noqa: E402
    DEFAULT_MAX_SHARED,
    build_identity,
    contact_point_rows,
    resolve,
    shop_key_rows,
)
from warehouse.records import RawRecord  # noqa: E402

SWITCHBOARD = "+74951234567"


def best_of(repeat: int, step: Callable[[], Any]) -> float:
    """The fastest of ``repeat`` runs: the machine is shared, the minimum is the cost."""
    times = []
    for _ in range(repeat):
        started = time.perf_counter()
        step()
        times.append(time.perf_counter() - started)
    return min(times)


def shared_phone_records(n: int) -> list[RawRecord]:
    """n amoCRM contacts on one switchboard phone, each with an e-mail of its own."""
    def contact(cid: int) -> RawRecord:
        fields = [{"field_code": "PHONE", "values": [{"value": SWITCHBOARD}]},
                  {"field_code": "EMAIL", "values": [{"value": f"person{cid}@firm.ru"}]}]
        return RawRecord("amocrm", "acme", "contacts", str(cid),
                         {"id": cid, "custom_fields_values": fields})
    return [contact(cid) for cid in range(1, n + 1)]


@contextmanager
def duckdb_warehouse() -> Iterator[Warehouse]:
    from warehouse.duckdb_backend import DuckDBWarehouse

    with tempfile.TemporaryDirectory() as tmp:
        yield DuckDBWarehouse(Path(tmp) / "w.duckdb", Path(tmp) / "v.duckdb")


@contextmanager
def postgres_warehouse() -> Iterator[Warehouse]:
    import psycopg2

    from warehouse.postgres_backend import PostgresWarehouse

    host = os.environ.get("VORONKA_POSTGRES_HOST", "127.0.0.1")
    db = f"voronka_bench_identity_{uuid.uuid4().hex[:8]}"
    admin = psycopg2.connect(host=host, user="postgres", dbname="postgres")
    admin.autocommit = True
    admin.cursor().execute(f"create database {db}")
    try:
        yield PostgresWarehouse(f"postgresql://postgres@{host}/{db}")
    finally:
        admin.cursor().execute(f"drop database if exists {db} with (force)")
        admin.close()


def land(wh: Warehouse, records: list[RawRecord] | None, scale: float | None) -> None:
    if records is not None:
        wh.land(records, run_id="bench")
        build_contact_points(wh)
        return
    from synthetic import generate
    from synthetic.landing import land_business

    land_business(generate(seed=42, scale=scale or 1.0), wh)


def measure(label: str, repeat: int, postgres: bool, max_shared: int,
            records: list[RawRecord] | None = None, scale: float | None = None) -> dict:
    """resolve_s and build_s (and build_pg_s) of one case, with what the resolution found."""
    with duckdb_warehouse() as wh:
        land(wh, records, scale)
        points = [*contact_point_rows(wh), *shop_key_rows(wh)]
        resolution = resolve(points, max_shared)
        result = {
            "case": label, "max_shared": max_shared, "records": len(resolution.roots),
            "points": len(points), "clusters": len(resolution.clusters()),
            "largest_cluster": max(map(len, resolution.clusters().values()), default=1),
            "non_identifying": len(resolution.shared),
            "resolve_s": best_of(repeat, lambda: resolve(points, max_shared)),
            "build_s": best_of(repeat, lambda: build_identity(wh, max_shared)),
        }
    if postgres:
        with postgres_warehouse() as pg:
            land(pg, records, scale)
            result["build_pg_s"] = best_of(repeat, lambda: build_identity(pg, max_shared))
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--shared", type=int, default=1600)
    parser.add_argument("--scales", type=float, nargs="+", default=[1.0])
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--postgres", action="store_true")
    args = parser.parse_args()
    records = shared_phone_records(args.shared)
    results = [
        measure(f"{args.shared} on one phone, default cap", args.repeat, args.postgres,
                DEFAULT_MAX_SHARED, records=records),
        measure(f"{args.shared} on one phone, all merged", args.repeat, args.postgres,
                args.shared + 1, records=records),
        *(measure(f"demo x{scale:g}", args.repeat, args.postgres, DEFAULT_MAX_SHARED,
                  scale=scale) for scale in args.scales),
    ]
    for row in results:
        print(json.dumps({k: round(v, 4) if isinstance(v, float) else v
                          for k, v in row.items()}))


if __name__ == "__main__":
    main()
