"""The simulated cluster: nodes over one store, the faults that strike them, the drain, the end.

Every node incarnation is a real ``actors.jobs`` :class:`~actors.jobs.Topology` (LeaseKeepers,
queue Supervisors, Claimers, Workers, Reaper, Cron, Cleanup, and the user's actors) running in its
own actor system, on its own :class:`NodeClock`, through its own :class:`FaultyTransport`, all
in one event loop over one ``MemoryStore`` and one ``VirtualClock``. A crash cancels the
incarnation's actor system on the spot, without drain or release; the node comes back later
as a new incarnation with a new node id (and so new lease owner names).
"""

from __future__ import annotations

import collections
from collections.abc import Callable
from random import Random  # allowed: type of the injected, seeded RNG only

import anyio
import attrs
from anyio.abc import TaskGroup, TaskStatus

from actors.core import ActorCrashed, Clock, VirtualClock
from actors.jobs import App, CronSchedule, RuntimeEvent, Topology, WorkerConfig, WorkerCrashed
from actors.jobs.lowlevel import EventBus
from transports import (
    Job,
    JobFilter,
    JobState,
    MemoryStore,
    MemoryTransport,
    QueueStats,
    Transport,
)
from transports.lowlevel import WorkflowSummary

from ._clock import NodeClock
from ._config import FaultKind, SimConfig
from ._faults import (
    MAX_SKEW,
    PARTITION_TIMEOUT,
    Fault,
    FaultyTransport,
    NodeLink,
    Observed,
    StorageFault,
    WakeHub,
)
from ._invariants import Checker, Health, NodeSlots
from ._rng import derive_rng
from ._trace import (
    ClockStepped,
    FaultsStopped,
    NodeCrashed,
    NodeFailed,
    NodePaused,
    NodeResumed,
    NodeStarted,
    PartitionHealed,
    PartitionStarted,
    StorageCallFailed,
    StorageFaultEnded,
    StorageFaultStarted,
    Trace,
    TraceEntry,
)
from ._workload import Producer

__all__ = ["SimNodeContext", "TopologyFactory", "TransportFactory", "default_topology"]

#: Seconds between checks that no job left the store, during the faulty phase.
STORE_CHECK_INTERVAL = 60.0
#: Seconds between checks whether the quiet tail has drained.
DRAIN_CHECK_INTERVAL = 5.0
#: A node whose root supervisor gave up comes back after this many seconds (uniform), as a
#: process manager would restart it.
FAILED_RESTART = (1.0, 10.0)
#: Initial clock offsets are uniform in +-this many seconds, when skew is on.
INITIAL_SKEW = 5.0
#: States in which a job is not final.
ACTIVE_STATES = (
    JobState.PENDING,
    JobState.SCHEDULED,
    JobState.AVAILABLE,
    JobState.RUNNING,
    JobState.SUSPENDED,
)


@attrs.frozen(kw_only=True)
class SimNodeContext:
    """What a topology factory gets to build one node incarnation."""

    node_id: str  # e.g. "n2.3": slot 2, third incarnation; use it as the Topology's node_id
    index: int  # the node slot
    incarnation: int  # 1 for the first start, +1 per restart
    app: App  # the App under test (with hangs injected when that fault is on)
    transport: Transport  # this incarnation's faulty transport to the shared store
    clock: Clock  # this incarnation's (skewed, pausable) clock
    rng: Random  # this incarnation's seeded RNG
    worker: WorkerConfig  # Worker settings from the SimConfig
    schedules: tuple[CronSchedule, ...]  # the built-in workload's cron schedules (else empty)
    config: SimConfig


#: Builds the Topology of one node incarnation.
TopologyFactory = Callable[[SimNodeContext], Topology]
#: Builds a node's transport to the shared store, before faults are added (a test hook:
#: return a deliberately broken transport to see the simulator catch it).
TransportFactory = Callable[[MemoryStore, VirtualClock], Transport]


def default_topology(ctx: SimNodeContext) -> Topology:
    """Every queue of the App with ``config.workers`` Workers, a Reaper, Cron, Cleanup, the
    node's registration and its History.

    Cleanup keeps finished jobs (no default retention), so the end of the run can check that
    no job was lost.
    """
    topology = Topology(ctx.app, ctx.transport, node_id=ctx.node_id, clock=ctx.clock, rng=ctx.rng)
    for queue in ctx.app.queues or ["default"]:
        topology.queue(queue, concurrency=ctx.config.workers, worker=ctx.worker)
    topology.reaper(interval=ctx.config.reaper_interval)
    if ctx.schedules:
        topology.cron(ctx.schedules)
    topology.cleanup(default_retention=None)
    topology.registry()
    topology.history()
    return topology


def default_transport(store: MemoryStore, clock: VirtualClock) -> Transport:
    """A memory transport over the shared store (which shows the fair-share check what each
    fair claim found)."""
    return Observed(store=store, clock=clock)


class _Node:
    """One node slot and its current incarnation."""

    def __init__(self, index: int, offset: float) -> None:
        self.index = index
        self.name = f"n{index}"
        self.link = NodeLink()
        self.offset = offset  # the slot's clock offset; new incarnations start with it
        self.incarnation = 0
        self.clock: NodeClock | None = None
        self.scope: anyio.CancelScope | None = None
        self.transport: FaultyTransport | None = None
        self.topology: Topology | None = None  # the current incarnation's
        self.up = False
        self.pauses = 0  # active pauses of the current incarnation

    @property
    def node_id(self) -> str:
        return f"{self.name}.{self.incarnation}"


class Cluster:
    """Runs one simulation: start the nodes, load them, break them, heal them, check.

    The run's outcome is in the attributes after :meth:`run` returns (the checker holds the
    violation, if any).
    """

    def __init__(
        self,
        config: SimConfig,
        *,
        app: App,
        schedules: tuple[CronSchedule, ...],
        topology_factory: TopologyFactory,
        transport_factory: TransportFactory,
        base: VirtualClock,
        store: MemoryStore,
        trace: Trace,
        checker: Checker,
        health: Health,
        hub: WakeHub,
        producer: Producer,
    ) -> None:
        self.config = config
        self._app = app
        self._schedules = schedules
        self._topology_factory = topology_factory
        self._transport_factory = transport_factory
        self._base = base
        self._oracle = MemoryTransport(store=store, clock=base)  # unfaulted, for the checks
        self._store = store
        self.trace = trace
        self.checker = checker
        self._health = health
        checker.slots = self._slots
        self._hub = hub
        self._producer = producer
        self._worker = WorkerConfig(lease_ttl=config.lease_ttl, poll_interval=config.poll_interval)
        skew = FaultKind.SKEW in config.faults
        self.nodes = [
            _Node(
                i,
                derive_rng(config.seed, "skew", i).uniform(-INITIAL_SKEW, INITIAL_SKEW)
                if skew
                else 0.0,
            )
            for i in range(config.nodes)
        ]
        self._tg: TaskGroup | None = None
        self._faults_tg: TaskGroup | None = None
        self._finished = False
        self.start = base.now()
        self.tail_start = self.start
        self.end = self.start
        self.restarts = 0
        self.faults: collections.Counter[str] = collections.Counter()
        self.worker_crashes = 0
        self.storage_errors = 0
        self.final_states: dict[str, int] = {}
        self.history: QueueStats | None = None  # the store's history, every queue and minute
        self.workflows: dict[str, int] = {}  # workflows by "final" / "not final", at the end
        self.cancelled_by_parent = 0  # jobs a parent that ended dead or cancelled cancelled
        trace.listeners.append(self._follow)

    # --- the run --------------------------------------------------------------------------

    async def run(self, plan: list[Fault]) -> None:
        """Run the faulty phase, heal, drain, check; returns early at a violation."""
        base = self._base
        config = self.config
        try:
            async with anyio.create_task_group() as tg:
                self._tg = tg
                self.checker.on_violation = tg.cancel_scope.cancel
                for node in self.nodes:
                    await self._start(node)
                tg.start_soon(self._producer.run, self.start)
                tg.start_soon(self._watch_store)
                async with anyio.create_task_group() as faults:
                    self._faults_tg = faults
                    faults.start_soon(self._inject, plan)
                    await base.sleep_until(self.start + config.duration)
                    faults.cancel_scope.cancel()
                self.tail_start = base.now()
                await self._heal()
                await self._drain()
                await self._final_checks()
                self._stop_all()
                tg.cancel_scope.cancel()
        finally:
            self._stop_all()
            self.end = base.now()
        # Where every job stands at the end (or at the violation that ended the run).
        states: collections.Counter[str] = collections.Counter()
        for counts in await self._oracle.counts():
            for state, number in counts.by_state.items():
                states[state.value] += number
        self.final_states = dict(sorted(states.items()))
        self.history = _total(await self._oracle.list_stats())
        if self.config.workflows:
            summaries = await self._workflows()
            final = sum(1 for s in summaries if s.is_final)
            self.workflows = {"final": final, "not final": len(summaries) - final}
            self.cancelled_by_parent = sum(
                1
                for job in await self._all_jobs(JobFilter(states=(JobState.CANCELLED,)))
                if (job.last_error or "").startswith("parent ")
            )

    def _stop_all(self) -> None:
        """The end: every node dies at once, and nothing it says any more is recorded."""
        self._finished = True
        self.trace.close()
        for node in self.nodes:
            if node.clock is not None:
                node.clock.kill()

    # --- nodes ----------------------------------------------------------------------------

    async def _start(self, node: _Node) -> None:
        """Start the next incarnation of ``node``; returns once its actors run."""
        assert self._tg is not None
        node.incarnation += 1
        if node.incarnation > 1:
            self.restarts += 1
        config = self.config
        base = self._base
        node_id = node.node_id
        clock = NodeClock(base, node.offset)
        transport = FaultyTransport(
            self._transport_factory(self._store, base),
            node=node_id,
            link=node.link,
            clock=clock,
            base=base,
            rng=derive_rng(config.seed, "storage", node.index, node.incarnation),
            hub=self._hub,
            checker=self.checker,
            trace=self.trace,
        )
        ctx = SimNodeContext(
            node_id=node_id,
            index=node.index,
            incarnation=node.incarnation,
            app=self._app,
            transport=transport,
            clock=clock,
            rng=derive_rng(config.seed, "node", node.index, node.incarnation),
            worker=self._worker,
            schedules=self._schedules,
            config=config,
        )
        topology = self._topology_factory(ctx)
        bus = EventBus()
        incarnation = node.incarnation
        bus.subscribe(lambda event: self._runtime_event(node, incarnation, event))
        node.clock = clock
        node.transport = transport
        node.topology = topology
        node.up = True
        node.pauses = 0
        self.trace.add(node_id, NodeStarted(node=node_id, skew=node.offset))
        await self._tg.start(self._run_node, node, incarnation, topology, bus)

    def _slots(self) -> list[NodeSlots]:
        """Every live node's slots, per queue whose Claimer runs (for ``running_again``)."""
        return [
            (node.index, node.node_id, stats)
            for node in self.nodes
            if node.up and node.topology is not None
            for stats in node.topology.slots()
        ]

    def _runtime_event(self, node: _Node, incarnation: int, event: RuntimeEvent) -> None:
        # A dead incarnation's last twitches are not part of the story.
        if node.up and node.incarnation == incarnation and not self._finished:
            self.trace.add(node.node_id, event)

    async def _run_node(
        self,
        node: _Node,
        incarnation: int,
        topology: Topology,
        bus: EventBus,
        *,
        task_status: TaskStatus[None] = anyio.TASK_STATUS_IGNORED,
    ) -> None:
        node_id = node.node_id
        started = False
        error: str | None = None
        with anyio.CancelScope() as scope:
            node.scope = scope
            try:
                async with topology.run(events=bus) as running:
                    children = await running.root.which_children()
                    self._health.set_reaper(node.index, any(c.id == "reaper" for c in children))
                    started = True
                    task_status.started()
                    await anyio.Event().wait()  # until the simulator kills it
            except ActorCrashed as exc:
                error = f"{exc}"
            except Exception as exc:
                error = f"{type(exc).__name__}: {exc}"
                self.checker.violate("node_error", f"{node_id} failed: {error}")
        if not started:
            task_status.started()
        if error is not None and node.up and node.incarnation == incarnation:
            # The root supervisor gave up: the process exits, and its manager restarts it.
            self.trace.add(node_id, NodeFailed(node=node_id, error=error))
            self._down(node)
            delay = derive_rng(self.config.seed, "failed", node.index, incarnation).uniform(
                *FAILED_RESTART
            )
            assert self._tg is not None
            self._tg.start_soon(self._restart_later, node, incarnation, delay)

    def _down(self, node: _Node) -> None:
        node.up = False
        node.pauses = 0
        self._health.set_reaper(node.index, False)
        self._health.down(node.index, self._base.now())
        if node.clock is not None:
            node.clock.kill()

    async def _restart_later(self, node: _Node, incarnation: int, delay: float) -> None:
        await self._base.sleep(delay)
        if node.incarnation == incarnation and not node.up:
            self._health.up(node.index, self._base.now())
            await self._start(node)

    # --- faults ---------------------------------------------------------------------------

    async def _inject(self, plan: list[Fault]) -> None:
        keep = self.config.keep_faults
        keep_set = None if keep is None else frozenset(keep)
        assert self._faults_tg is not None
        for fault in plan:
            if keep_set is not None and fault.index not in keep_set:
                continue
            await self._base.sleep_until(self.start + fault.at)
            self._faults_tg.start_soon(self._apply, fault)

    async def _apply(self, fault: Fault) -> None:
        node = self.nodes[fault.node]
        base = self._base
        health = self._health
        now = base.now()
        kind = fault.kind
        if kind is FaultKind.CRASH:
            if not node.up:
                return
            self.faults[kind.value] += 1
            incarnation = node.incarnation
            self.trace.add(
                node.node_id, NodeCrashed(node=node.node_id, restart_at=now + fault.duration)
            )
            self._down(node)
            assert node.scope is not None
            node.scope.cancel()
            await self._restart_later(node, incarnation, fault.duration)
        elif kind is FaultKind.PAUSE:
            if not node.up:
                return
            self.faults[kind.value] += 1
            assert node.clock is not None
            incarnation = node.incarnation
            node.pauses += 1
            if node.pauses == 1:
                node.clock.pause()
                self.trace.add(
                    node.node_id, NodePaused(node=node.node_id, until=now + fault.duration)
                )
            health.down(node.index, now)
            await base.sleep(fault.duration)
            health.up(node.index, base.now())
            if node.up and node.incarnation == incarnation:
                node.pauses -= 1
                if node.pauses == 0:
                    node.clock.resume()
                    self.trace.add(node.node_id, NodeResumed(node=node.node_id))
        elif kind is FaultKind.PARTITION:
            self.faults[kind.value] += 1
            node.link.partitioned += 1
            self.trace.add(node.name, PartitionStarted(node=node.name, until=now + fault.duration))
            health.down(node.index, now)
            await base.sleep(fault.duration)
            health.up(node.index, base.now(), grace=PARTITION_TIMEOUT)
            node.link.partitioned -= 1
            if not node.link.partitioned:
                self.trace.add(node.name, PartitionHealed(node=node.name))
        elif kind is FaultKind.STORAGE:
            self.faults[kind.value] += 1
            storage = StorageFault(mode=fault.mode, level=fault.level)
            node.link.storage.append(storage)
            self.trace.add(
                node.name,
                StorageFaultStarted(
                    node=node.name, mode=fault.mode, level=fault.level, until=now + fault.duration
                ),
            )
            health.down(node.index, now)
            await base.sleep(fault.duration)
            slow = fault.level if fault.mode == "slow" else 0.0
            health.up(node.index, base.now(), grace=slow)
            node.link.storage.remove(storage)
            if not node.link.storage:
                self.trace.add(node.name, StorageFaultEnded(node=node.name))
        else:  # SKEW: a step of the node's clock
            self.faults[kind.value] += 1
            node.offset = max(-MAX_SKEW, min(MAX_SKEW, node.offset + fault.level))
            health.stepped(node.index, now)
            if node.clock is not None:
                node.clock.offset = node.offset
            self.trace.add(node.name, ClockStepped(node=node.name, offset=node.offset))

    async def _heal(self) -> None:
        """Faults stop: links heal, paused nodes resume, crashed ones restart now."""
        now = self._base.now()
        # Calls that started under a fault may still be waiting out a timeout or a latency.
        self._health.heal_all(now, grace=max(PARTITION_TIMEOUT, self.config.lease_ttl / 2))
        for node in self.nodes:
            if node.link.partitioned:
                self.trace.add(node.name, PartitionHealed(node=node.name))
            if node.link.storage:
                self.trace.add(node.name, StorageFaultEnded(node=node.name))
            node.link.heal()
            if node.up and node.clock is not None and node.clock.paused:
                node.clock.resume()
                self.trace.add(node.node_id, NodeResumed(node=node.node_id))
            node.pauses = 0
        for node in self.nodes:
            if not node.up:
                await self._start(node)
        pending = await self._pending(self._base.now())
        self.trace.add("sim", FaultsStopped(pending=len(pending)))

    # --- checks ---------------------------------------------------------------------------

    def _follow(self, entry: TraceEntry) -> None:
        kind = type(entry.event)
        if kind is WorkerCrashed:
            self.worker_crashes += 1
        elif kind is StorageCallFailed:
            self.storage_errors += 1

    async def _watch_store(self) -> None:
        """No job ever leaves the store (unless cleanup deleted finished ones)."""
        base = self._base
        while True:
            await base.sleep(STORE_CHECK_INTERVAL)
            counts = await self._oracle.counts()
            total = sum(c.total for c in counts)
            known = len(self.checker.jobs)
            if total + self.checker.cleaned < known:
                self.checker.violate(
                    "no_job_lost", f"the store holds {total} jobs, but {known} were enqueued"
                )

    async def _pending(self, before: float) -> list[tuple[int, str, int, str | None]]:
        """Jobs created before ``before`` that are not final: (id, state, attempt, owner)."""
        counts = await self._oracle.counts()
        if not any(c[state] for c in counts for state in ACTIVE_STATES):
            return []
        found: list[tuple[int, str, int, str | None]] = []
        for state in ACTIVE_STATES:
            after = 0
            while True:
                page = await self._oracle.list_jobs(
                    JobFilter(states=(state,)), after_id=after, limit=1000
                )
                found.extend(
                    (j.id, j.state.value, j.attempt, j.lease_owner)
                    for j in page
                    if j.created_at < before
                )
                if len(page) < 1000:
                    break
                after = page[-1].id
        found.sort()
        return found

    async def _all_jobs(self, where: JobFilter | None = None) -> list[Job]:
        """Every job of the store (that ``where`` matches), by id."""
        jobs: list[Job] = []
        after = 0
        while True:
            page = await self._oracle.list_jobs(where, after_id=after, limit=1000)
            jobs.extend(page)
            if len(page) < 1000:
                return jobs
            after = page[-1].id

    async def _workflows(self) -> list[WorkflowSummary]:
        """Every workflow of the store, by name."""
        found: list[WorkflowSummary] = []
        after: str | None = None
        while True:
            page = await self._oracle.list_workflows(after=after, limit=100)
            found.extend(page)
            if len(page) < 100:
                return found
            after = page[-1].workflow

    async def _open_workflows(self, before: float) -> list[WorkflowSummary]:
        """Workflows begun before ``before`` with a job not final (``workflows`` runs)."""
        if not self.config.workflows:
            return []
        return [s for s in await self._workflows() if not s.is_final and s.created_at < before]

    async def _drain(self) -> None:
        """The quiet tail: wait until every job (and workflow) begun before it is final."""
        base = self._base
        deadline = self.tail_start + self.config.tail
        while True:
            pending = await self._pending(self.tail_start)
            open_workflows = await self._open_workflows(self.tail_start)
            if not pending and not open_workflows:
                return
            now = base.now()
            if now >= deadline and open_workflows:
                shown = "; ".join(
                    f"{s.workflow} "
                    + ", ".join(
                        f"{n} {state.value}" for state, n in sorted(s.by_state.items()) if n
                    )
                    for s in open_workflows[:5]
                )
                self.checker.violate(
                    "workflows_final",
                    f"{len(open_workflows)} workflow(s) still not final {self.config.tail:g}s "
                    f"after faults stopped: {shown}",
                )
                return
            if now >= deadline:
                shown = "; ".join(
                    f"job {i} {state} attempt {attempt} owner {owner}"
                    for i, state, attempt, owner in pending[:5]
                )
                self.checker.violate(
                    "all_final_after_drain",
                    f"{len(pending)} job(s) still not final {self.config.tail:g}s after faults "
                    f"stopped: {shown}",
                )
                return
            await base.sleep(min(DRAIN_CHECK_INTERVAL, deadline - now))

    async def _final_checks(self) -> None:
        """Against the store itself: nothing lost, attempts in bounds; count final states."""
        jobs = await self._all_jobs()
        present = {j.id for j in jobs}
        if not self.checker.cleaned:
            missing = [job_id for job_id in self.checker.jobs if job_id not in present]
            if missing:
                self.checker.violate(
                    "no_job_lost", f"{len(missing)} job(s) are gone from the store: {missing[:10]}"
                )
                return
        waited_on = {j.wait_key for j in jobs if j.wait_key is not None}
        for key in sorted(waited_on):
            if await self._oracle.get_signal(key) is not None:
                self.checker.violate(
                    "none_left_suspended", f"a job is still suspended on {key!r}, signalled"
                )
                return
        for job in jobs:
            if not 0 <= job.attempt <= job.max_attempts:
                self.checker.violate(
                    "attempts_within_bounds",
                    f"job {job.id} ended at attempt {job.attempt} of {job.max_attempts}",
                )
                return


def _total(rows: list[QueueStats]) -> QueueStats | None:
    """Every history row added up into one (of the first row's queue and minute)."""
    if not rows:
        return None
    first = rows[0]
    total = first
    for row in rows[1:]:
        total = total + attrs.evolve(row, queue=first.queue, minute=first.minute)
    return total
