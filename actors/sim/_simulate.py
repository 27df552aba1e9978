"""The library API: run one simulation, sweep many seeds, shrink a failing fault plan."""

from __future__ import annotations

import contextlib
import functools
import logging
import time
from collections.abc import Callable, Iterable, Iterator
from random import Random  # allowed: type of the injected, seeded RNG only

import anyio
import attrs

from actors.core import VirtualClock
from actors.jobs import App, CronSchedule
from transports import EnqueueRequest, JobState, MemoryStore, MemoryTransport

from ._cluster import (
    Cluster,
    TopologyFactory,
    TransportFactory,
    default_topology,
    default_transport,
)
from ._config import FaultKind, SimConfig
from ._faults import WakeHub, plan_faults
from ._invariants import Checker, Health
from ._report import Distribution, SimReport, SweepRun, SweepSummary
from ._rng import derive_rng
from ._trace import HandlerHung, Trace
from ._workload import WORKFLOW_SIZE, JobFactory, Producer, SimWorkload, with_hangs

__all__ = ["run_simulation", "shrink", "simulate", "sweep"]

#: The store's clock starts here (2023-11-14 22:13:20 UTC), so cron sees ordinary dates.
START = 1_700_000_000.0

#: Loggers silenced during a run: handlers fail and storage blinks on purpose, thousands of
#: times, and the trace already records each.
_LOGGERS = ("actorq", "actors")


def _wall() -> float:
    # The simulator's own speed is the one wall-clock reading in actors.sim; it is reported,
    # never fed into the run, so it cannot change a trace.
    return time.perf_counter()


async def run_simulation(
    config: SimConfig,
    *,
    app: App | None = None,
    make_job: JobFactory | None = None,
    topology_factory: TopologyFactory | None = None,
    transport_factory: TransportFactory | None = None,
) -> SimReport:
    """Run one simulation inside the current event loop; see :func:`simulate`.

    Prefer :func:`simulate`, which owns its event loop: here other tasks of the loop take part
    in the scheduling, and on trio the scheduler's order is not made deterministic.
    """
    base = VirtualClock(start=START)
    store = MemoryStore()
    trace = Trace(base, START)
    health = Health(config.nodes)
    checker = Checker(
        trace,
        seed=config.seed,
        command=config.command() if app is None else config.call(),
        lease_ttl=config.lease_ttl,
        reaper_interval=config.reaper_interval,
        health=health,
        trace_tail=config.trace_tail,
    )
    schedules: tuple[CronSchedule, ...] = ()
    workload: SimWorkload | None = None
    if app is None:
        workload = SimWorkload(
            config.seed,
            lease_ttl=config.lease_ttl,
            cron=config.cron,
            keyed=config.key_limit is not None or config.key_rate is not None,
            steps=config.steps,
            workflows=config.workflows,
            partitioned=config.partitions,
        )
        checker.fair = config.partitions and config.key_limit is None and config.key_rate is None
        if config.steps or config.workflows:
            workload.ran = checker.step_ran
        if config.workflows:
            workload.fan_in_done = checker.fan_in_done
            workload.fan_in_read = checker.fan_in_read
        if config.key_limit is not None or config.key_rate is not None:
            limits = MemoryTransport(store=store, clock=base)
            rate, per = config.key_rate or (None, None)
            for key in workload.KEYS:
                await limits.set_limit(key, concurrency=config.key_limit, rate=rate, per=per)
                if config.key_limit is not None:
                    checker.limits[key] = config.key_limit
                if config.key_rate is not None:
                    checker.rates[key] = config.key_rate
        app = workload.app
        schedules = workload.schedules
        make_job = make_job or workload.make_job
    elif make_job is None and config.jobs:
        raise ValueError("simulating your own App needs make_job(rng, n) -> EnqueueRequest")
    if FaultKind.HANG in config.faults:
        app = with_hangs(app, config.seed, config.rates.hang, trace)
    checker.state_of = functools.partial(_state_of, store)
    hub = WakeHub()
    workflows = workload is not None and config.workflows
    producer = Producer(
        seed=config.seed,
        jobs=-(-config.jobs // WORKFLOW_SIZE) if workflows else config.jobs,
        span=config.duration * 0.8,
        make_job=make_job or _no_jobs,
        client=MemoryTransport(store=store, clock=base),
        clock=base,
        checker=checker,
        hub=hub,
        trace=trace,
        operators=config.operators,
        signal_delay=workload.signal_delay if workload is not None and config.steps else None,
        event_key=workload.event_key if workload is not None else None,
        make_workflow=workload.make_workflow if workload is not None and workflows else None,
    )
    cluster = Cluster(
        config,
        app=app,
        schedules=schedules,
        topology_factory=topology_factory or default_topology,
        transport_factory=transport_factory or default_transport,
        base=base,
        store=store,
        trace=trace,
        checker=checker,
        health=health,
        hub=hub,
        producer=producer,
    )
    started = _wall()
    async with base.autojump():
        await cluster.run(plan_faults(config))
    wall = _wall() - started
    return SimReport(
        config=config,
        violation=checker.violation,
        trace=trace,
        trace_hash=trace.sha256(),
        sim_seconds=cluster.end - cluster.start,
        tail_seconds=max(0.0, cluster.end - cluster.tail_start),
        wall_seconds=wall,
        jobs=len(checker.jobs),
        final_states=cluster.final_states,
        history=cluster.history,
        claims=checker.claims,
        renewals=checker.renewals,
        finalizes_applied=checker.finalizes_applied,
        finalizes_refused=checker.finalizes_refused,
        leases_lost=checker.leases_lost,
        reclaims=checker.reclaims,
        recovery=Distribution.of(checker.recovery),
        recovery_samples=tuple(checker.recovery),
        recovery_bound=checker.recovery_bound,
        recovery_late=checker.recovery_late,
        rerun=Distribution.of(checker.rerun),
        restart=Distribution.of(checker.restart),
        recovered=Distribution.of(checker.recovered),
        recovered_samples=tuple(checker.recovered),
        restart_bound=checker.recovery_bound + config.poll_interval,
        restart_late=sum(
            1 for d in checker.restart if d > checker.recovery_bound + config.poll_interval + 1e-6
        ),
        faults=_fault_counts(cluster, trace, config),
        storage_errors=cluster.storage_errors,
        reruns_checked=checker.reruns_checked,
        restarts=cluster.restarts,
        cron_fires=checker.cron_fires,
        worker_crashes=cluster.worker_crashes,
        steps_run=0 if workload is None else workload.steps_run,
        steps_rerun=0 if workload is None else workload.steps_rerun,
        steps_recorded=checker.steps_recorded,
        steps_refused=checker.steps_refused,
        signals=producer.signals,
        waits_timed_out=0 if workload is None else len(workload.timed_out),
        workflows=cluster.workflows,
        chains=0 if workload is None else workload.chains,
        groups=0 if workload is None else workload.groups,
        dependents_started=checker.dependents_started,
        ran_after_failure=checker.ran_after_failure,
        cancelled_by_parent=cluster.cancelled_by_parent,
        fan_ins_completed=checker.fan_ins_completed,
        fan_ins_again=checker.fan_ins_again,
        partition_waits={
            name: Distribution.of(waits) for name, waits in sorted(checker.partition_waits.items())
        },
        most_bypassed=checker.most_bypassed,
    )


def _state_of(store: MemoryStore, job_id: int) -> JobState | None:
    """A job's state in the run's store, read without yielding (None once it is gone)."""
    row = store.jobs.get(job_id)
    return None if row is None else row.state


def _fault_counts(cluster: Cluster, trace: Trace, config: SimConfig) -> dict[str, int]:
    counts = dict(cluster.faults)
    if FaultKind.HANG in config.faults:
        counts["hang"] = sum(1 for e in trace.entries if type(e.event) is HandlerHung)
    return counts


def _no_jobs(rng: Random, n: int) -> EnqueueRequest:
    raise AssertionError("no jobs were asked for")


@contextlib.contextmanager
def _quiet_logs() -> Iterator[None]:
    loggers = [logging.getLogger(name) for name in _LOGGERS]
    levels = [logger.level for logger in loggers]
    for logger in loggers:
        logger.setLevel(logging.CRITICAL + 1)
    try:
        yield
    finally:
        for logger, level in zip(loggers, levels, strict=True):
            logger.setLevel(level)


@contextlib.contextmanager
def _deterministic_scheduler(config: SimConfig) -> Iterator[None]:
    """On trio, make the scheduler's order a function of the seed for the run.

    trio runs the tasks that became runnable together in a random order, from a module-level
    RNG; with its deterministic mode on (the mode trio itself uses under Hypothesis) that order
    is a shuffle, by that RNG, of the tasks sorted by creation. Seeding it from the run's seed
    makes trio runs replay exactly. asyncio runs ready callbacks in FIFO order: nothing to do.
    """
    if config.backend != "trio":
        yield
        return
    import trio._core._run as trio_run  # trio is optional: imported only when running on it

    if not hasattr(trio_run, "_ALLOW_DETERMINISTIC_SCHEDULING") or not hasattr(trio_run, "_r"):
        yield  # a trio without these hooks: runs work, but may not replay exactly
        return
    saved = trio_run._ALLOW_DETERMINISTIC_SCHEDULING, trio_run._r.getstate()
    trio_run._ALLOW_DETERMINISTIC_SCHEDULING = True  # type: ignore[misc]
    trio_run._r.setstate(derive_rng(config.seed, "trio-scheduler").getstate())
    try:
        yield
    finally:
        trio_run._ALLOW_DETERMINISTIC_SCHEDULING = saved[0]  # type: ignore[misc]
        trio_run._r.setstate(saved[1])


def simulate(
    config: SimConfig,
    *,
    app: App | None = None,
    make_job: JobFactory | None = None,
    topology_factory: TopologyFactory | None = None,
    transport_factory: TransportFactory | None = None,
    quiet: bool = True,
) -> SimReport:
    """Run one simulation to its end (or its first violation) and report.

    Runs its own event loop (``config.backend``); the same config and code give the same
    trace, byte for byte.

    Args:
        config: the cluster, workload, faults and seed.
        app: the App under test; None runs the built-in workload.
        make_job: ``make_job(rng, n)`` returns the n-th job's ``EnqueueRequest`` (required
            with your own ``app`` unless ``config.jobs`` is 0). Draw only from ``rng``.
        topology_factory: builds each node incarnation's Topology from a
            :class:`SimNodeContext` (default: :func:`default_topology`).
        transport_factory: builds each node's transport to the shared store before faults
            wrap it (a hook for testing the simulator with deliberately broken transports).
        quiet: silence the ``actorq`` and ``actors`` loggers during the run.

    Returns:
        The report; ``report.passed`` is False when an invariant broke.
    """
    run = functools.partial(
        run_simulation,
        config,
        app=app,
        make_job=make_job,
        topology_factory=topology_factory,
        transport_factory=transport_factory,
    )
    with _quiet_logs() if quiet else contextlib.nullcontext(), _deterministic_scheduler(config):
        return anyio.run(run, backend=config.backend)


def sweep(
    configs: SimConfig | Iterable[SimConfig],
    seeds: Iterable[int] | None = None,
    *,
    app: App | None = None,
    make_job: JobFactory | None = None,
    topology_factory: TopologyFactory | None = None,
    transport_factory: TransportFactory | None = None,
    stop_at_first: bool = False,
    on_report: Callable[[SimReport], object] | None = None,
) -> SweepSummary:
    """Run many simulations: one config over ``seeds``, or each of ``configs``.

    Args:
        configs: a config (with ``seeds``: run it once per seed) or several configs.
        seeds: the seeds to run ``configs`` with.
        stop_at_first: stop at the first violation.
        on_report: called with each run's report as it finishes (progress, logs).

    Other arguments are as for :func:`simulate`.
    """
    if isinstance(configs, SimConfig):
        runs_of: Iterable[SimConfig] = (
            [configs] if seeds is None else (configs.with_seed(s) for s in seeds)
        )
    else:
        runs_of = configs
    runs: list[SweepRun] = []
    recovery: list[float] = []
    for config in runs_of:
        report = simulate(
            config,
            app=app,
            make_job=make_job,
            topology_factory=topology_factory,
            transport_factory=transport_factory,
        )
        runs.append(SweepRun.of(report))
        recovery.extend(report.recovery_samples)
        if on_report is not None:
            on_report(report)
        if stop_at_first and report.violation is not None:
            break
    return SweepSummary.of(runs, recovery)


def shrink(
    config: SimConfig,
    *,
    app: App | None = None,
    make_job: JobFactory | None = None,
    topology_factory: TopologyFactory | None = None,
    transport_factory: TransportFactory | None = None,
    max_runs: int = 64,
) -> tuple[SimConfig, SimReport]:
    """Find a smaller fault plan that still breaks the same invariant.

    Drops faults from the seed's plan, halves of it first, then smaller pieces, keeping each
    drop that still fails the same way. The workload and every other choice stay as the seed
    made them, so the smaller run is a replayable neighbour of the original.

    Returns:
        The config with ``keep_faults`` set to the smallest failing plan found, and its report.

    Raises:
        ValueError: the run does not fail.
    """

    def run(config: SimConfig) -> SimReport:
        return simulate(
            config,
            app=app,
            make_job=make_job,
            topology_factory=topology_factory,
            transport_factory=transport_factory,
        )

    best = run(config)
    if best.violation is None:
        raise ValueError(f"seed {config.seed} passes: there is nothing to shrink")
    invariant = best.violation.invariant
    keep = config.keep_faults
    kept = [f.index for f in plan_faults(config) if keep is None or f.index in keep]
    runs = 1
    chunk = max(1, len(kept) // 2)
    while kept and runs < max_runs:
        i = 0
        while i < len(kept) and runs < max_runs:
            trial = kept[:i] + kept[i + chunk :]
            report = run(attrs.evolve(config, keep_faults=trial))
            runs += 1
            if report.violation is not None and report.violation.invariant == invariant:
                kept, best = trial, report
            else:
                i += chunk
        if chunk == 1:
            break
        chunk //= 2
    return attrs.evolve(config, keep_faults=kept), best
