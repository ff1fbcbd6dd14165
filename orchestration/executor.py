"""One process, extraction concurrent: the executor of ``daily_refresh``.

Extraction waits on the APIs' rate limits, not on our CPU, so running sources one after another
(Dagster's in-process executor) made a run as long as the sum of every source's waits. Here the
steps tagged ``voronka/concurrent`` (raw extraction, audience syncs) run on worker threads beside
each other; every other step (dbt, checks, publication, predictions) runs on the run's own thread,
as before. Nothing else changes:

- one process, so one rate limiter per API account (``extractors.http.limiter_for`` /
  ``bucket_for``) is shared by every thread that calls that API;
- landing is serialised by the warehouse writer lock (a thread RLock plus the file lock), and
  Great Expectations validates under its own lock;
- Dagster's bookkeeping (``ActiveExecution``) is touched by the run's thread only: workers hand
  their events over a queue.

A multiprocess executor would also run steps side by side, but each step would pay a process
start and the Dagster import (seconds each, 30+ steps on two cores) and every process would
have its own limiter, so concurrent steps of one API would together exceed its limit.
"""

import os
import queue
from collections import Counter
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import ExitStack
from dataclasses import dataclass, field
from typing import Any

import dagster as dg
from dagster._core.events import DagsterEvent, EngineEventData
from dagster._core.execution.api import ExecuteRunWithPlanIterable
from dagster._core.execution.compute_logs import create_compute_log_file_key
from dagster._core.execution.context.system import (
    PlanExecutionContext,
    PlanOrchestrationContext,
    StepExecutionContext,
)
from dagster._core.execution.context_creation_job import PlanExecutionContextManager
from dagster._core.execution.plan.active import ActiveExecution
from dagster._core.execution.plan.execute_plan import (
    _trigger_hook,
    dagster_event_sequence_for_step,
)
from dagster._core.execution.plan.instance_concurrency_context import InstanceConcurrencyContext
from dagster._core.execution.plan.plan import ExecutionPlan
from dagster._core.execution.plan.step import ExecutionStep
from dagster._core.execution.retries import RetryMode, get_retries_config
from dagster._core.executor.base import Executor

from extractors.http import cancel_requests, resume_requests

CONCURRENT_TAG = "voronka/concurrent"
"""Op tag of the steps that may run beside others (their value: the kind, for the docs)."""

API_TAG = "voronka/api"
"""Op tag naming the API account a tagged step calls: at most ``PER_API_CONCURRENT`` of its
steps run at once, so one source's many entities (all waiting on the same limiter) cannot
take every thread while other sources wait."""

# Three, not two: while one of an API's steps lands and validates its rows (seconds, no
# request), the other two keep its limiter busy; with two, amoCRM sent 3 requests in 5 s
# while both its steps were landing.
PER_API_CONCURRENT = 3
# Every audience segment of the demo (eleven) at once: each waits on its platforms' limits; with
# eight threads the largest (win-back, last in the plan's order) queued 3.5 s for a thread and
# ended the run alone. Extraction stays below it (at most PER_API_CONCURRENT steps per API).
DEFAULT_MAX_CONCURRENT = 12
MAX_CONCURRENT_ENV = "VORONKA_MAX_CONCURRENT_STEPS"


def max_concurrent_from_env() -> int:
    """How many tagged steps may run at once (``VORONKA_MAX_CONCURRENT_STEPS``; 1 = serial)."""
    raw = os.environ.get(MAX_CONCURRENT_ENV, "").strip()
    if not raw:
        return DEFAULT_MAX_CONCURRENT
    try:
        value = int(raw)
    except ValueError:
        raise ValueError(f"{MAX_CONCURRENT_ENV}={raw!r}: expected a whole number >= 1") from None
    if value < 1:
        raise ValueError(f"{MAX_CONCURRENT_ENV}={raw!r}: expected a whole number >= 1")
    return value


def runs_beside_others(step: ExecutionStep) -> bool:
    return bool(step.tags.get(CONCURRENT_TAG))


def api_of(step: ExecutionStep) -> str:
    """The step's API account (``API_TAG``); untagged steps count as their own."""
    return step.tags.get(API_TAG) or step.key


_DONE = object()


@dataclass
class _WorkerCrashed:
    """A Dagster framework error on a worker (step errors arrive as failure events)."""

    error: BaseException


@dataclass
class _Running:
    """A step on a worker thread: its context (for hooks) and the events it has produced."""

    context: StepExecutionContext
    api: str
    events: list[DagsterEvent] = field(default_factory=list)


def _run_on_worker(step_context: StepExecutionContext, outbox: "queue.Queue[Any]") -> None:
    """Produce the step's events into ``outbox``, then ``_DONE`` (or the framework error)."""
    key = step_context.step.key
    try:
        for event in dagster_event_sequence_for_step(step_context):
            outbox.put((key, event))
    except BaseException as exc:  # a Dagster framework error: the run's thread re-raises it
        outbox.put((key, _WorkerCrashed(exc)))
        return
    outbox.put((key, _DONE))


class _ThreadedPlan:
    """The loop of Dagster's in-process plan iterator, with tagged steps on worker threads."""

    def __init__(self, job_context: PlanExecutionContext, active: ActiveExecution,
                 max_concurrent: int) -> None:
        self.job_context = job_context
        self.active = active
        self.max_concurrent = max_concurrent
        self.pool = ThreadPoolExecutor(max_concurrent, thread_name_prefix="voronka-step")
        self.outbox: queue.Queue[Any] = queue.Queue()
        self.running: dict[str, _Running] = {}
        self.waiting: list[ExecutionStep] = []  # tagged, ready, no thread free for them yet
        self.per_api: Counter[str] = Counter()

    def events(self) -> Iterator[DagsterEvent]:
        try:
            while not self.active.is_complete:
                yield from self.active.concurrency_event_iterator(self.job_context)
                steps = self.active.get_steps_to_execute()
                # workers first: they wait on APIs while the rest runs here
                self.waiting += [step for step in steps if runs_beside_others(step)]
                self._start_waiting()
                for step in steps:
                    if not runs_beside_others(step):
                        yield from self._run_here(step)
                yield from self._drain(block=not steps)
        except BaseException:
            cancel_requests()  # workers stop at their next API call instead of running on
            self.pool.shutdown(wait=True, cancel_futures=True)
            raise
        finally:
            resume_requests()
        self.pool.shutdown(wait=True)

    def _start_waiting(self) -> None:
        """Start waiting steps while threads are free, the least served API first and never
        more than ``PER_API_CONCURRENT`` steps of one API; within an API in the order Dagster
        hands them over (its ``dagster/priority`` tag first: the longest pulls)."""
        while self.waiting and len(self.running) < self.max_concurrent:
            startable = [s for s in self.waiting if self.per_api[api_of(s)] < PER_API_CONCURRENT]
            if not startable:
                return
            step = min(startable, key=lambda s: self.per_api[api_of(s)])
            self.waiting.remove(step)
            self._start_on_worker(step)

    def _step_context(self, step: ExecutionStep) -> StepExecutionContext:
        context = self.job_context.for_step(step, self.active.get_known_state())
        missing = [k for k in context.required_resource_keys if not hasattr(context.resources, k)]
        if missing:
            raise dg.DagsterInvariantViolationError(
                f"step {step.key} is missing the resources {missing}")
        return context

    def _start_on_worker(self, step: ExecutionStep) -> None:
        context = self._step_context(step)
        self.running[step.key] = _Running(context, api_of(step))
        self.per_api[api_of(step)] += 1
        self.pool.submit(_run_on_worker, context, self.outbox)

    def _release(self, key: str) -> _Running:
        """A worker's step ended: free its thread and its API's slot for a waiting step."""
        running = self.running.pop(key)
        self.per_api[running.api] -= 1
        self._start_waiting()
        return running

    def _run_here(self, step: ExecutionStep) -> Iterator[DagsterEvent]:
        context = self._step_context(step)
        events: list[DagsterEvent] = []
        for event in dagster_event_sequence_for_step(context):
            events.append(event)
            yield event
            self.active.handle_event(event)
        yield from self._finish(step.key, context, events)
        yield from self._drain(block=False)  # what the workers did meanwhile

    def _drain(self, block: bool) -> Iterator[DagsterEvent]:
        """Hand the workers' events to Dagster; with ``block``, wait for at least one (nothing
        else can start until a running step finishes)."""
        if block and not self.running:
            self.active.sleep_til_ready()
            return
        while True:
            try:
                key, item = self.outbox.get(timeout=0.5) if block else self.outbox.get_nowait()
            except queue.Empty:
                if block and self.running:
                    continue
                return
            block = False
            running = self.running[key]
            if item is _DONE:
                self._release(key)
                yield from self._finish(key, running.context, running.events)
            elif isinstance(item, _WorkerCrashed):
                self._release(key)
                raise item.error
            else:
                running.events.append(item)
                yield item
                self.active.handle_event(item)

    def _finish(self, key: str, context: StepExecutionContext,
                events: list[DagsterEvent]) -> Iterator[DagsterEvent]:
        self.active.verify_complete(self.job_context, key)
        for event in self.active.plan_events_iterator(self.job_context):  # skips downstream
            events.append(event)
            yield event
        yield from _trigger_hook(context, events)


def threaded_plan_iterator(
    job_context: PlanExecutionContext, execution_plan: ExecutionPlan, max_concurrent: int,
) -> Iterator[DagsterEvent]:
    """Dagster's in-process plan iteration (log capture, concurrency, hooks) with the tagged
    steps on ``max_concurrent`` worker threads."""
    compute_log_manager = job_context.instance.compute_log_manager
    step_keys = [step.key for step in execution_plan.get_steps_to_execute_in_topo_order()]
    with InstanceConcurrencyContext(job_context.instance, job_context.dagster_run) as limits, \
            execution_plan.start(retry_mode=job_context.retry_mode,
                                 instance_concurrency_context=limits,
                                 step_dependency_config=job_context.step_dependency_config,
                                 ) as active, ExitStack() as capture:
        log_key = compute_log_manager.build_log_key_for_run(
            job_context.run_id, create_compute_log_file_key())
        log_context = capture.enter_context(compute_log_manager.capture_logs(log_key))
        yield DagsterEvent.capture_logs(job_context, step_keys, log_key, log_context)
        yield from _ThreadedPlan(job_context, active, max_concurrent).events()


class ThreadedExecutor(Executor):
    """Dagster's in-process executor, except that tagged steps run on worker threads."""

    def __init__(self, retries: RetryMode, max_concurrent: int) -> None:
        self._retries = retries
        self.max_concurrent = max_concurrent

    @property
    def retries(self) -> RetryMode:
        return self._retries

    def execute(self, plan_context: PlanOrchestrationContext,
                execution_plan: ExecutionPlan) -> Iterator[DagsterEvent]:
        pid = os.getpid()
        keys = execution_plan.step_keys_to_execute
        yield DagsterEvent.engine_event(
            plan_context,
            f"Executing steps in process (pid: {pid}), up to {self.max_concurrent} "
            f"extraction and sync steps at once on threads",
            event_specific_data=EngineEventData.in_process(pid, keys),
        )
        max_concurrent = self.max_concurrent
        yield from iter(ExecuteRunWithPlanIterable(
            execution_plan=plan_context.execution_plan,
            iterator=lambda job_context, execution_plan: threaded_plan_iterator(
                job_context, execution_plan, max_concurrent),
            execution_context_manager=PlanExecutionContextManager(
                job=plan_context.job,
                retry_mode=plan_context.retry_mode,
                execution_plan=plan_context.execution_plan,
                run_config=plan_context.run_config,
                dagster_run=plan_context.dagster_run,
                instance=plan_context.instance,
                raise_on_error=plan_context.raise_on_error,
                output_capture=plan_context.output_capture,
            ),
        ))
        yield DagsterEvent.engine_event(
            plan_context, f"Finished steps in process (pid: {pid})",
            event_specific_data=EngineEventData.in_process(pid, keys))


@dg.executor(
    name="voronka_threads",
    config_schema={
        "retries": get_retries_config(),
        "max_concurrent": dg.Field(
            int, is_required=False,
            description="Tagged steps (extraction, audience syncs) running at once; default "
                        f"{MAX_CONCURRENT_ENV} or {DEFAULT_MAX_CONCURRENT}. 1 runs serially."),
    },
)
def threaded_executor(init_context: dg.InitExecutorContext) -> ThreadedExecutor:
    """One process; extraction and audience-sync steps on threads, the rest in order."""
    config = init_context.executor_config
    return ThreadedExecutor(
        retries=RetryMode.from_config(config["retries"]),  # type: ignore[arg-type]
        max_concurrent=int(config.get("max_concurrent") or max_concurrent_from_env()),
    )


def execute_in_process_threaded(
    job: dg.JobDefinition,
    *,
    instance: dg.DagsterInstance,
    run_id: str,
    tags: dict[str, str] | None = None,
    asset_selection: list[dg.AssetKey] | None = None,
) -> dg.ExecuteInProcessResult:
    """``job.execute_in_process`` on the threaded executor.

    Dagster's ``execute_in_process`` always swaps the job's executor for its serial in-process
    one; this is the same call (an ephemeral job, the in-memory I/O manager, the same run tags)
    with ``threaded_executor`` kept."""
    from dagster._core.definitions.job_base import InMemoryJob
    from dagster._core.execution.execute_in_process import core_execute_in_process, merge_run_tags

    ephemeral = job.as_ephemeral_job(resource_defs={}, input_values={},
                                     asset_selection=asset_selection or None)
    threaded = ephemeral.with_executor_def(threaded_executor)
    return core_execute_in_process(
        job=InMemoryJob(job_def=threaded),
        run_config={},
        instance=instance,
        output_capturing_enabled=True,
        raise_on_error=False,
        run_tags=merge_run_tags(job_def=job, partition_key=None, tags=tags,
                                asset_selection=asset_selection, instance=instance,
                                run_config={}),
        run_id=run_id,
        asset_selection=frozenset(asset_selection or ()),
    )
