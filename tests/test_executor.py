"""The run's executor: extraction and sync steps on threads beside each other, the rest in order."""

import threading
import time
import uuid

import dagster as dg
import pytest

from orchestration.assets.raw import PRIORITY_TAG
from orchestration.executor import (
    API_TAG,
    CONCURRENT_TAG,
    MAX_CONCURRENT_ENV,
    PER_API_CONCURRENT,
    execute_in_process_threaded,
    max_concurrent_from_env,
    threaded_executor,
)


class Overlap:
    """How many steps ran at the same time, at most, and on which threads."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.now = 0
        self.most = 0
        self.threads: dict[str, str] = {}

    def step(self, name: str, seconds: float = 0.3) -> None:
        with self.lock:
            self.now += 1
            self.most = max(self.most, self.now)
            self.threads[name] = threading.current_thread().name
        time.sleep(seconds)
        with self.lock:
            self.now -= 1


def build_job(overlap: Overlap, failing: str | None = None) -> dg.JobDefinition:
    """Three tagged "extraction" assets, one untagged asset after them all."""

    def extract(name: str) -> dg.AssetsDefinition:
        @dg.asset(name=name, op_tags={CONCURRENT_TAG: "extract"})
        def _extract() -> None:
            overlap.step(name)
            if name == failing:
                raise RuntimeError(f"{name}: the API said no")

        return _extract

    sources = [extract(n) for n in ("amocrm", "bitrix24", "direct")]

    @dg.asset(deps=["amocrm", "bitrix24", "direct"])
    def marts() -> None:
        overlap.step("marts", 0.0)

    defs = dg.Definitions(assets=[*sources, marts], executor=threaded_executor,
                          jobs=[dg.define_asset_job("refresh", selection="*")])
    return defs.resolve_job_def("refresh")


def run(job: dg.JobDefinition) -> dg.ExecuteInProcessResult:
    with dg.DagsterInstance.ephemeral() as instance:
        return execute_in_process_threaded(job, instance=instance, run_id=str(uuid.uuid4()))


def test_tagged_steps_run_beside_each_other_and_the_rest_after_them(monkeypatch):
    monkeypatch.delenv(MAX_CONCURRENT_ENV, raising=False)
    overlap = Overlap()
    result = run(build_job(overlap))
    assert result.success
    assert overlap.most == 3  # all three sources at once
    assert overlap.threads["marts"] == threading.main_thread().name
    assert {overlap.threads[n] for n in ("amocrm", "bitrix24", "direct")} != {
        threading.main_thread().name}
    materialized = {e.asset_key.path[-1] for e in result.get_asset_materialization_events()}
    assert materialized == {"amocrm", "bitrix24", "direct", "marts"}


def test_steps_of_one_api_share_it_a_few_at_a_time(monkeypatch):
    """Five entities of one CRM and one ad platform: never more than ``PER_API_CONCURRENT``
    CRM steps at once (they wait on one limiter), and the ad platform does not wait behind
    them."""
    monkeypatch.delenv(MAX_CONCURRENT_ENV, raising=False)
    overlap = Overlap()
    crm_now = {"now": 0, "most": 0}

    def entity(name: str, api: str) -> dg.AssetsDefinition:
        @dg.asset(name=name, op_tags={CONCURRENT_TAG: "extract", API_TAG: api})
        def _entity() -> None:
            if api == "crm":
                with overlap.lock:
                    crm_now["now"] += 1
                    crm_now["most"] = max(crm_now["most"], crm_now["now"])
            overlap.step(name, 0.2)
            if api == "crm":
                with overlap.lock:
                    crm_now["now"] -= 1

        return _entity

    assets = [entity(f"crm_{i}", "crm") for i in range(5)] + [entity("ads", "ads")]
    defs = dg.Definitions(assets=assets, executor=threaded_executor,
                          jobs=[dg.define_asset_job("refresh", selection="*")])
    assert run(defs.resolve_job_def("refresh")).success
    assert crm_now["most"] == PER_API_CONCURRENT
    assert overlap.most == PER_API_CONCURRENT + 1  # the ad platform ran beside them


def test_the_longest_pulls_of_an_api_start_first(monkeypatch):
    """Dagster's priority tag orders an API's ready steps: the prioritized entity (last in the
    plan's alphabetical order) is in the first wave, not left to start when the others end."""
    monkeypatch.delenv(MAX_CONCURRENT_ENV, raising=False)
    lock = threading.Lock()
    order: list[str] = []

    def entity(name: str, priority: int) -> dg.AssetsDefinition:
        @dg.asset(name=name, op_tags={CONCURRENT_TAG: "extract", API_TAG: "crm",
                                      PRIORITY_TAG: str(priority)})
        def _entity() -> None:
            with lock:
                order.append(name)
            time.sleep(0.2)

        return _entity

    names = [f"crm_{i}" for i in range(PER_API_CONCURRENT + 3)]
    assets = [entity(n, 2 if n == names[-1] else 0) for n in names]
    defs = dg.Definitions(assets=assets, executor=threaded_executor,
                          jobs=[dg.define_asset_job("refresh", selection="*")])
    assert run(defs.resolve_job_def("refresh")).success
    assert order[0] == names[-1]
    assert sorted(order) == names


def test_the_pipeline_starts_its_longest_pulls_first():
    """amoCRM's events and Bitrix24's stage history (append-only histories, the most requests
    on any account) outrank the API's other entities; the rest keep the plan's order."""
    from orchestration.assets.raw import build_raw_asset

    def priority(source: str, entity: str) -> int:
        return int(build_raw_asset(source, entity).op.tags[PRIORITY_TAG])

    assert priority("amocrm", "events") > priority("amocrm", "leads") > priority(
        "amocrm", "pipelines") == 0
    assert priority("bitrix24", "stagehistory") > priority("bitrix24", "deals") > priority(
        "bitrix24", "users") == 0


def test_one_at_a_time_when_configured(monkeypatch):
    monkeypatch.setenv(MAX_CONCURRENT_ENV, "1")
    overlap = Overlap()
    assert run(build_job(overlap)).success
    assert overlap.most == 1


def test_a_failed_source_skips_what_depends_on_it_and_not_its_siblings(monkeypatch):
    monkeypatch.delenv(MAX_CONCURRENT_ENV, raising=False)
    overlap = Overlap()
    result = run(build_job(overlap, failing="bitrix24"))
    assert not result.success
    failed = [e.step_key for e in result.all_events if e.event_type_value == "STEP_FAILURE"]
    started = {e.step_key for e in result.all_events if e.event_type_value == "STEP_START"}
    assert failed == ["bitrix24"] and started == {"amocrm", "bitrix24", "direct"}
    materialized = {e.asset_key.path[-1] for e in result.get_asset_materialization_events()}
    assert materialized == {"amocrm", "direct"}
    failure = next(e for e in result.all_events if e.event_type_value == "STEP_FAILURE")
    assert "the API said no" in str(failure.event_specific_data.error)


def test_max_concurrent_from_env_refuses_nonsense(monkeypatch):
    monkeypatch.setenv(MAX_CONCURRENT_ENV, "0")
    with pytest.raises(ValueError, match="whole number >= 1"):
        max_concurrent_from_env()
    monkeypatch.setenv(MAX_CONCURRENT_ENV, "four")
    with pytest.raises(ValueError, match="VORONKA_MAX_CONCURRENT_STEPS='four'"):
        max_concurrent_from_env()
    monkeypatch.setenv(MAX_CONCURRENT_ENV, "3")
    assert max_concurrent_from_env() == 3


def test_the_pipeline_runs_extraction_and_syncs_on_threads():
    """Raw extraction and audience assets are tagged; dbt, contact points, predictions and
    publication are not (they keep the run's thread); the job uses the threaded executor."""
    from audiences.segments import scan_segments
    from orchestration.assets.audiences import build_audience_asset
    from orchestration.assets.dbt import voronka_dbt_models
    from orchestration.assets.predictions import customer_predictions_asset
    from orchestration.assets.raw import build_contact_points_asset, build_raw_asset
    from orchestration.definitions import build_defs, published_marts

    assert build_raw_asset("amocrm", "leads").op.tags[CONCURRENT_TAG] == "extract"
    assert build_raw_asset("amocrm", "leads").op.tags[API_TAG] == "amocrm"
    assert build_raw_asset("files", "orders").op.tags[CONCURRENT_TAG] == "extract"
    segment = next(s for s in scan_segments(None).segments if s.kind == "dynamic")
    assert build_audience_asset(segment).op.tags[CONCURRENT_TAG] == "sync"
    for in_order in (voronka_dbt_models, customer_predictions_asset, published_marts,
                     build_contact_points_asset({})):
        assert CONCURRENT_TAG not in in_order.op.tags
    assert build_defs().resolve_job_def("daily_refresh").executor_def is threaded_executor
