"""The in-memory Dagster instance of runs without history (voronka.instance)."""

import threading
import uuid

import dagster as dg

from orchestration.executor import CONCURRENT_TAG, execute_in_process_threaded, threaded_executor
from voronka.instance import ThreadConnectionEventLog, in_memory_instance


def partitioned_job() -> dg.JobDefinition:
    """Two daily-partitioned assets backfilled in one run each (as ad spend is), on threads."""
    days = dg.DailyPartitionsDefinition(start_date="2026-01-01", end_date="2026-03-01")

    def spend(name: str) -> dg.AssetsDefinition:
        @dg.asset(name=name, partitions_def=days, op_tags={CONCURRENT_TAG: "extract"},
                  backfill_policy=dg.BackfillPolicy.single_run())
        def _spend() -> None:
            return None

        return _spend

    defs = dg.Definitions(assets=[spend("direct"), spend("vk")], executor=threaded_executor,
                          jobs=[dg.define_asset_job("backfill", selection="*")])
    return defs.resolve_job_def("backfill")


def test_a_threaded_run_keeps_one_event_log_connection_per_thread():
    """Every event of a two-thread backfill (2 x 59 partitions) is stored and readable, through
    no more connections than threads that stored events; dispose closes them."""
    instance = in_memory_instance()
    storage = instance.event_log_storage
    assert isinstance(storage, ThreadConnectionEventLog) and instance.is_ephemeral
    run_id = str(uuid.uuid4())
    threads: set[str] = set()
    instance.add_event_listener(run_id, lambda _: threads.add(threading.current_thread().name))
    result = execute_in_process_threaded(
        partitioned_job(), instance=instance, run_id=run_id,
        tags={"dagster/asset_partition_range_start": "2026-01-01",
              "dagster/asset_partition_range_end": "2026-02-28"})
    assert result.success
    stored = instance.all_logs(run_id)
    materialized = [e for e in stored if e.dagster_event is not None
                    and e.dagster_event.event_type_value == "ASSET_MATERIALIZATION"]
    assert len(materialized) == 2 * 59
    partitions = instance.get_materialized_partitions(dg.AssetKey("direct"))
    assert len(partitions) == 59 and "2026-02-28" in partitions
    assert 1 <= len(storage._opened) <= len(threads) + 1  # + the test's own reads
    assert len(stored) > 10 * len(storage._opened)
    instance.dispose()
    assert storage._opened == []
