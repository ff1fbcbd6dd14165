"""Benchmark the customer-value fit (issue 16): time and memory at 1x and 10x the demo's
customers.

Usage: .venv/bin/python benchmarks/bench_clv.py [--scales 1 10] [--repeat 3]

The orders are the synthetic business's own (`cust_orders` of the ground truth: the rows
`marts.fct_orders` holds after the pipeline), so the fit sees what the Dagster asset sees. Each
measurement runs in a fresh process: the time of `fit_models` (both fits and the holdout refit)
and of `customer_predictions`, and the peak memory they allocate (tracemalloc, which numpy
reports to: the fit's own memory, not the generator's or the interpreter's).
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent

MEASURE = r"""
import json, sys, time, tracemalloc
sys.path.insert(0, {repo!r})
from synthetic.business import generate
from predictions.customers import Settings, customer_predictions, fit_models

business = generate(seed=42, scale={scale})
orders = business.ground_truth.table("cust_orders").rename(columns={{"person_idx": "customer_id"}})
orders = orders[["customer_id", "order_date", "amount"]].copy()
del business
tracemalloc.start()
started = time.perf_counter()
fit = fit_models(orders, orders["order_date"].max(), Settings())
fitted = time.perf_counter()
table = customer_predictions(orders, fit, Settings()) if fit.usable else None
done = time.perf_counter()
peak = tracemalloc.get_traced_memory()[1]
print(json.dumps({{"customers": int(orders["customer_id"].nunique()), "orders": len(orders),
                  "status": fit.status, "holdout_error": fit.holdout_error,
                  "fit_s": fitted - started, "predict_s": done - fitted,
                  "peak_mib": peak / 2**20,
                  "predicted": 0 if table is None else len(table)}}))
"""


def measure(scale: float) -> dict:
    """One fresh-process measurement at ``scale`` times the demo business."""
    proc = subprocess.run([sys.executable, "-c", MEASURE.format(repo=str(REPO), scale=scale)],
                          capture_output=True, text=True, check=True)
    return json.loads(proc.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--scales", type=float, nargs="+", default=[1.0, 10.0])
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    print("| scale | customers | orders | status | holdout error | fit (s) | predictions (s) "
          "| peak memory (MiB) |")
    print("|---|---|---|---|---|---|---|---|")
    for scale in args.scales:
        runs = [measure(scale) for _ in range(args.repeat)]
        first = runs[0]
        error = first["holdout_error"]
        print(f"| {scale:g}x | {first['customers']:,} | {first['orders']:,} | {first['status']} "
              f"| {'n/a' if error is None else f'{error:.1%}'} "
              f"| {statistics.median(r['fit_s'] for r in runs):.2f} "
              f"| {statistics.median(r['predict_s'] for r in runs):.2f} "
              f"| {max(r['peak_mib'] for r in runs):.0f} |")


if __name__ == "__main__":
    main()
