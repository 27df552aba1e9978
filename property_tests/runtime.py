"""The runtime under faults: Claimers, Workers, LeaseKeepers and Reapers on several nodes.

Each node is a real :class:`~actors.jobs.Topology` (its LeaseKeeper, a queue supervisor with
its Claimer and Workers, a Reaper) on one shared memory store and one :class:`~actors.core.VirtualClock`
running on autojump. A node reaches the store through a :class:`NodeLink`, which injects the
faults hypothesis chose and writes every answer of the store into a :class:`Journal`:

* a *pause* holds every call of the node until it ends (a stop-the-world pause, a partition):
  heartbeats cannot renew, so leases lapse while handlers go on and finish late;
* a *crash* makes every later call fail: the node never renews nor finalizes again.

:func:`check` then holds the run to the runtime's promises: no job is lost; a job runs on two
workers at once only when the first lease truly expired before the second claim; a late
finalize is refused; no handler starts on a lease that expired before it started (a node
paused between its claim and the hand-off gives the job back instead); a claimed job starts at
once, and a reaped job runs again within the poll interval of its reap while a node with a free
slot stays unfaulted (unless that node's claims found older jobs for every slot); and every
event of the stream is backed by what the store said.
"""

from __future__ import annotations

import contextlib
import logging
from collections import defaultdict
from collections.abc import Awaitable, Callable, Iterator, Sequence
from typing import Any, TypeVar

import anyio
import anyio.lowlevel
import attrs
from hypothesis import strategies as st

from actors.core import VirtualClock
from actors.jobs import (
    App,
    FinalizeRefused,
    JobClaimed,
    JobContext,
    JobDead,
    JobLeaseLost,
    JobReclaimed,
    JobSucceeded,
    RuntimeEvent,
    Topology,
    WorkerConfig,
)
from actors.jobs.lowlevel import EventBus
from transports import (
    ConnectionLost,
    EnqueueRequest,
    EnqueueResult,
    Job,
    JobState,
    MemoryTransport,
    Transport,
)
from transports.lowlevel import (
    Complete,
    FinalizeRequest,
    FinalizeResult,
    ForwardingTransport,
    Lease,
    Reclaimed,
    RenewRequest,
    RenewResult,
)

from .model import (
    EXPIRED_RECLAIMABLE,
    JOBS_CONSERVED,
    ONE_CLAIMANT,
    REAP_ONLY_EXPIRED,
    STALE_TOKEN_INERT,
    Violation,
)
from .strategies import RUNTIME_RNG, START

#: The promise a resumed node breaks if it runs what it claimed before its pause.
NO_STALE_START = "no handler starts on a lease that has already expired"
#: The promise a Claimer that hoards, or one that sleeps past its poll with a slot free, breaks.
RUNNING_AGAIN = (
    "a claimed job starts at once, and a reaped job runs again within the poll interval while "
    "a node has a slot free for it"
)

__all__ = [
    "TTL",
    "Fault",
    "JobPlan",
    "Journal",
    "NodeLink",
    "Scenario",
    "check",
    "run",
    "scenarios",
]

TTL = 6.0
"""Lease TTL of every Worker: renewed every 2 s, so a pause of more than 4 s can lose a lease."""

WORKER = WorkerConfig(
    lease_ttl=TTL, batch_size=2, poll_interval=1.0, drain_timeout=2.0, finalize_delay=0.0
)
MAX_ATTEMPTS = 6
HORIZON = 900.0
"""Virtual seconds a run may take before the jobs that are still unfinished count as lost."""


# --- the scenario ------------------------------------------------------------------------


@attrs.frozen
class JobPlan:
    """How one job's handler behaves, attempt after attempt (the last entry repeats)."""

    durations: tuple[float, ...]  # seconds each run takes
    fails: tuple[bool, ...]  # whether each run raises at its end


@attrs.frozen
class Fault:
    """Something that happens to one node."""

    node: int
    kind: str  # "pause", "freeze" (a pause that begins as its next claim is answered) or "crash"
    at: float  # seconds after the start
    length: float  # how long a pause lasts


@attrs.frozen
class Scenario:
    nodes: int
    concurrency: int
    jobs: tuple[JobPlan, ...]
    faults: tuple[Fault, ...]


job_plans = st.builds(
    JobPlan,
    durations=st.lists(
        st.sampled_from([0.0, 0.5, 1.0, 3.0, 5.0, 7.0, 13.0, 20.0]), min_size=1, max_size=3
    ).map(tuple),
    fails=st.lists(st.booleans(), min_size=1, max_size=3).map(tuple),
)


@st.composite
def scenarios(draw: st.DrawFn) -> Scenario:
    """Two or three nodes, a few jobs, and pauses (some longer than the lease) and crashes.

    Node 0 never crashes, so every job can always finish somewhere.
    """
    nodes = draw(st.integers(min_value=2, max_value=3))
    faults = draw(
        st.lists(
            st.builds(
                Fault,
                node=st.integers(min_value=0, max_value=nodes - 1),
                kind=st.sampled_from(["pause", "pause", "freeze", "crash"]),
                at=st.sampled_from([0.0, 0.5, 1.0, 2.0, 3.0, 5.0, 8.0, 13.0]),
                length=st.sampled_from([1.0, 3.0, 4.5, 7.0, 12.0, 30.0]),
            ),
            max_size=4,
        )
    )
    faults = [f for f in faults if not (f.kind == "crash" and f.node == 0)]
    return Scenario(
        nodes=nodes,
        concurrency=draw(st.integers(min_value=1, max_value=2)),
        jobs=tuple(draw(st.lists(job_plans, min_size=1, max_size=6))),
        faults=tuple(faults),
    )


# --- the journal of what the store said ----------------------------------------------------


@attrs.frozen
class Entry:
    at: float
    node: int
    call: str
    args: Any
    result: Any


T = TypeVar("T")


class Journal:
    """Every answer the store gave any node, in the order the store gave them."""

    def __init__(self) -> None:
        self.entries: list[Entry] = []

    def add(self, clock: VirtualClock, node: int, call: str, args: Any, result: Any) -> None:
        self.entries.append(Entry(clock.now(), node, call, args, result))


class NodeLink(ForwardingTransport):
    """One node's way to the shared store: records every answer and injects the node's faults.

    Args:
        inner: the node's memory transport (over the shared store).
        node: the node's number.
        clock: the virtual clock.
        journal: where answers are written.
    """

    def __init__(
        self, inner: MemoryTransport, node: int, clock: VirtualClock, journal: Journal
    ) -> None:
        super().__init__(inner)
        self.node = node
        self.clock = clock
        self._virtual = clock  # the same clock, typed for sleeping
        self.journal = journal
        self.paused_until = 0.0
        self.freeze = 0.0  # seconds the next claim's answer is held (then cleared)
        self.crashed = False

    async def _forward(self, name: str, call: Callable[[Transport], Awaitable[T]]) -> T:
        if self._virtual.now() < self.paused_until:
            await self._virtual.sleep_until(self.paused_until)
        if self.crashed:
            await anyio.lowlevel.checkpoint()
            raise ConnectionLost(f"node {self.node} crashed")
        return await call(self.inner)

    def _log(self, call: str, args: Any, result: T) -> T:
        self.journal.add(self._virtual, self.node, call, args, result)
        return result

    # The calls whose answers the checks read are journaled, in the order the store gave them.

    async def enqueue_many(self, requests: Sequence[EnqueueRequest]) -> list[EnqueueResult]:
        return self._log("enqueue", requests, await super().enqueue_many(requests))

    async def claim(self, queue: str, *, owner: str, limit: int, ttl: float) -> list[Lease]:
        leases = self._log(
            "claim",
            (owner, ttl, limit),
            await super().claim(queue, owner=owner, limit=limit, ttl=ttl),
        )
        if leases and self.freeze:
            # The process froze with the reply unread: the node sees its claims only after the
            # pause, perhaps after their leases expired.
            self.paused_until = max(self.paused_until, self._virtual.now() + self.freeze)
            self._log("freeze", self.freeze, None)
            self.freeze = 0.0
        if self._virtual.now() < self.paused_until:
            await self._virtual.sleep_until(self.paused_until)
        return leases

    async def renew(self, requests: Sequence[RenewRequest], *, ttl: float) -> list[RenewResult]:
        return self._log("renew", (tuple(requests), ttl), await super().renew(requests, ttl=ttl))

    async def finalize(self, requests: Sequence[FinalizeRequest]) -> list[FinalizeResult]:
        return self._log("finalize", tuple(requests), await super().finalize(requests))

    async def reap(self, *, limit: int = 1000) -> list[Reclaimed]:
        return self._log("reap", limit, await super().reap(limit=limit))


# --- running a scenario --------------------------------------------------------------------


@attrs.frozen
class Run:
    """What one scenario left behind."""

    job_ids: tuple[int, ...]
    jobs: dict[int, Job]  # as stored at the end
    events: list[RuntimeEvent]
    runs: list[
        tuple[int, int, str, float, float]
    ]  # (job, token, worker, start, end) per handler run
    journal: Journal
    trace: list[str]
    scenario: Scenario


async def run(scenario: Scenario, transport_cls: type[MemoryTransport] = MemoryTransport) -> Run:
    """Play the scenario on a fresh store and clock; return what happened.

    Args:
        scenario: the jobs, nodes and faults.
        transport_cls: the nodes' transport class (a mutant in the mutant tests).
    """
    clock = VirtualClock(START)
    journal = Journal()
    store_view = MemoryTransport(clock=clock)
    events: list[RuntimeEvent] = []
    bus = EventBus()
    bus.subscribe(events.append)
    runs: list[tuple[int, int, str, float, float]] = []
    trace: list[str] = []
    app = App()
    plans: dict[int, JobPlan] = {}

    @app.task("work", max_attempts=MAX_ATTEMPTS, lease_ttl=TTL)
    async def work(ctx: JobContext, payload: Any) -> None:
        plan = plans[ctx.job_id]
        index = min(ctx.attempt - 1, len(plan.durations) - 1)
        started = ctx.clock.now()
        try:
            await ctx.clock.sleep(plan.durations[index])
        finally:
            runs.append((ctx.job_id, ctx.lease.token, ctx.lease.owner, started, ctx.clock.now()))
        if plan.fails[min(ctx.attempt - 1, len(plan.fails) - 1)]:
            raise RuntimeError("the handler failed")

    results = await store_view.enqueue_many(
        [app.request("work", {"n": i}) for i in range(len(scenario.jobs))]
    )
    job_ids = tuple(r.job_id for r in results)
    plans.update(zip(job_ids, scenario.jobs, strict=True))
    links = [
        NodeLink(transport_cls(clock=clock, store=store_view.store), n, clock, journal)
        for n in range(scenario.nodes)
    ]

    async def inject(fault: Fault) -> None:
        await clock.sleep_until(START + fault.at)
        link = links[fault.node]
        if fault.kind == "crash":
            link.crashed = True
        elif fault.kind == "freeze":
            link.freeze = fault.length
        else:
            link.paused_until = max(link.paused_until, clock.now() + fault.length)
        trace.append(f"{clock.now() - START:8.2f} node {fault.node} {fault.kind} {fault.length}")

    async with clock.autojump(), contextlib.AsyncExitStack() as stack:
        # Storage errors are the point of the scenario: thousands of warnings would bury a
        # failure's report, and the journal already holds every call.
        stack.enter_context(_quiet("actorq", "actors"))
        for n, link in enumerate(links):
            topology = (
                Topology(app, link, node_id=f"n{n}", clock=clock, rng=RUNTIME_RNG)
                .queue("default", concurrency=scenario.concurrency, worker=WORKER)
                .reaper(interval=1.0)
            )
            await stack.enter_async_context(topology.run(events=bus, shutdown_timeout=30.0))
        async with anyio.create_task_group() as tg:
            for fault in scenario.faults:
                tg.start_soon(inject, fault)
            while clock.now() < START + HORIZON:
                jobs = {job_id: await store_view.get(job_id) for job_id in job_ids}
                if all(job.state.is_final for job in jobs.values()):
                    break
                await clock.sleep(1.0)
            tg.cancel_scope.cancel()
    jobs = {job_id: await store_view.get(job_id) for job_id in job_ids}
    return Run(job_ids, jobs, events, runs, journal, trace, scenario)


@contextlib.contextmanager
def _quiet(*names: str) -> Iterator[None]:
    loggers = [logging.getLogger(name) for name in names]
    levels = [logger.level for logger in loggers]
    for logger in loggers:
        logger.setLevel(logging.ERROR)
    try:
        yield
    finally:
        for logger, level in zip(loggers, levels, strict=True):
            logger.setLevel(level)


# --- the promises ----------------------------------------------------------------------------


@attrs.define
class _Lease:
    job_id: int
    token: int
    owner: str
    claimed_at: float
    expires_at: float
    claim_expires_at: float  # the expiry the claim granted (before any renewal)
    ended_at: float | None = None  # finalized (applied) or reclaimed
    reclaimed: bool = False


def check(result: Run) -> None:
    """Hold one run to the runtime's promises.

    Raises:
        Violation: a promise was broken.
    """
    leases: dict[int, _Lease] = {}  # by token
    latest: dict[int, _Lease] = {}  # by job id
    applied: dict[int, list[tuple[float, FinalizeRequest]]] = defaultdict(list)
    refused: set[int] = set()
    lost_renewals: set[int] = set()
    for entry in result.journal.entries:
        now = entry.at
        if entry.call == "claim":
            owner, ttl, _ = entry.args
            for lease in entry.result:
                previous = latest.get(lease.job_id)
                if previous is not None and previous.ended_at is None:
                    raise Violation(
                        ONE_CLAIMANT,
                        f"job {lease.job_id} claimed by {owner} at {now} while {previous.owner} held it",
                    )
                record = _Lease(
                    lease.job_id, lease.token, owner, now, lease.expires_at, lease.expires_at
                )
                leases[lease.token] = latest[lease.job_id] = record
        elif entry.call == "renew":
            requests, ttl = entry.args
            for request, answer in zip(requests, entry.result, strict=True):
                record = leases[request.token]
                live = record.ended_at is None and record.expires_at > now
                if answer is RenewResult.LOST:
                    lost_renewals.add(request.token)
                    if live:
                        raise Violation(
                            EXPIRED_RECLAIMABLE,
                            f"renew of a live lease {record} said lost at {now}",
                        )
                else:
                    if record.ended_at is not None or latest[record.job_id] is not record:
                        raise Violation(
                            STALE_TOKEN_INERT, f"renew of the stale {record} at {now} said {answer}"
                        )
                    if not live:
                        raise Violation(EXPIRED_RECLAIMABLE, f"renew revived {record} at {now}")
                    record.expires_at = now + ttl
        elif entry.call == "finalize":
            for request, answer in zip(entry.args, entry.result, strict=True):
                record = leases[request.token]
                owns = record.ended_at is None and latest[request.job_id] is record
                if (answer is FinalizeResult.APPLIED) != owns:
                    raise Violation(
                        STALE_TOKEN_INERT, f"finalize of {record} at {now} was {answer}"
                    )
                if owns:
                    record.ended_at = now
                    applied[request.job_id].append((now, request))
                else:
                    refused.add(request.token)
        elif entry.call == "reap":
            for item in entry.result:
                record = latest[item.job_id]
                if record.ended_at is not None or record.expires_at > now:
                    raise Violation(REAP_ONLY_EXPIRED, f"reap took {record} at {now}")
                record.ended_at = now
                record.reclaimed = True

    # No job is lost: each ends, and a success is finalized exactly once.
    for job_id in result.job_ids:
        job = result.jobs[job_id]
        if not job.state.is_final:
            raise Violation(
                JOBS_CONSERVED, f"job {job_id} is still {job.state} after {HORIZON}s: {job}"
            )
        completes = [r for _, r in applied[job_id] if isinstance(r.outcome, Complete)]
        if (job.state is JobState.SUCCEEDED) != (len(completes) == 1) or len(completes) > 1:
            raise Violation(
                JOBS_CONSERVED,
                f"job {job_id} ended {job.state} after {len(completes)} applied completions",
            )

    # A handler starts only while its claim's lease is live (a Worker starts what it is handed
    # at once, well within the first renewal period, or gives it back).
    for job_id, token, worker, started, _ in result.runs:
        lease = leases[token]
        if started >= lease.claim_expires_at:
            raise Violation(
                NO_STALE_START,
                f"job {job_id} started on {worker} at {started} on a lease that expired at "
                f"{lease.claim_expires_at}",
            )

    _check_running_again(result)

    # Two runs of one job overlap only when the first lease truly expired before the second claim.
    by_job: dict[int, list[tuple[int, int, str, float, float]]] = defaultdict(list)
    for handler_run in result.runs:
        by_job[handler_run[0]].append(handler_run)
    for job_id, job_runs in by_job.items():
        ordered = sorted(job_runs, key=lambda r: leases[r[1]].claimed_at)
        for i, first in enumerate(ordered):
            for second in ordered[i + 1 :]:
                if second[3] < first[4]:  # the second started before the first ended
                    lease = leases[first[1]]
                    claimed = leases[second[1]].claimed_at
                    if lease.expires_at > claimed or not lease.reclaimed:
                        raise Violation(
                            ONE_CLAIMANT,
                            f"job {job_id} ran on {second[2]} from {second[3]} while {first[2]} "
                            f"ran it until {first[4]} on a lease valid until {lease.expires_at}",
                        )

    # Every event is backed by the store's answers.
    for event in result.events:
        if isinstance(event, JobClaimed):
            lease = leases[event.token]
            # A claim is its queue's on the node: the Worker it was handed to is named under it.
            if lease.job_id != event.job_id or not event.worker.startswith(f"{lease.owner}/"):
                raise Violation(ONE_CLAIMANT, f"{event} does not match the claim {lease}")
        elif isinstance(event, JobSucceeded):
            if not any(isinstance(r.outcome, Complete) for _, r in applied[event.job_id]):
                raise Violation(STALE_TOKEN_INERT, f"{event} without an applied completion")
        elif isinstance(event, FinalizeRefused):
            if event.token not in refused:
                raise Violation(
                    STALE_TOKEN_INERT, f"{event} but the store never refused that token"
                )
            lease = leases[event.token]
            if not (lease.reclaimed or latest[lease.job_id] is not lease):
                raise Violation(STALE_TOKEN_INERT, f"{event} but {lease} was never taken back")
        elif isinstance(event, JobLeaseLost):
            if event.token not in lost_renewals:
                raise Violation(
                    EXPIRED_RECLAIMABLE, f"{event} but no renewal of that token was lost"
                )
        elif isinstance(event, JobReclaimed):
            if event.expired_at > event.at:
                raise Violation(REAP_ONLY_EXPIRED, f"{event} before its lease expired")
        elif isinstance(event, JobDead) and result.jobs[event.job_id].state is not JobState.DEAD:
            raise Violation(
                JOBS_CONSERVED, f"{event} but the job ended {result.jobs[event.job_id].state}"
            )


#: Virtual seconds a claimed job may take to start, and a reaped one beyond its node's claim
#: gap: a claim, its hand-out and a handler's first line take no virtual time.
START_SLACK = 0.25
#: The longest a Claimer with a free slot goes without claiming while its store answers.
CLAIM_GAP = max(WORKER.poll_interval, WORKER.error_backoff)


def _faulted(result: Run, nodes: int) -> list[list[tuple[float, float]]]:
    """When each node was paused, frozen or crashed: (start, end) windows."""
    windows: list[list[tuple[float, float]]] = [[] for _ in range(nodes)]
    for fault in result.scenario.faults:
        at = START + fault.at
        if fault.kind == "pause":
            windows[fault.node].append((at, at + fault.length))
        elif fault.kind == "crash":
            windows[fault.node].append((at, float("inf")))
    for entry in result.journal.entries:
        if entry.call == "freeze":
            windows[entry.node].append((entry.at, entry.at + entry.args))
    return windows


def _check_running_again(result: Run) -> None:
    """A claimed job's handler starts at once on a node that stays up; a job reaped back to
    available is claimed within the claim gap while some node had a free slot at the reap and
    stayed unfaulted, unless a claim of that node meanwhile filled both its request and the
    node's free slots (older jobs took them)."""
    nodes = result.scenario.nodes
    faulted = _faulted(result, nodes)

    def steady(node: int, start: float, end: float) -> bool:
        return not any(s <= end and e >= start for s, e in faulted[node])

    def free(node: int, at: float) -> int:
        """The node's slots not running a handler at ``at``."""
        prefix = f"n{node}/"
        busy = sum(
            1
            for _, _, worker, started, ended in result.runs
            if worker.startswith(prefix) and started <= at < ended
        )
        return max(0, result.scenario.concurrency - busy)

    starts: dict[int, float] = {token: started for _, token, _, started, _ in result.runs}
    claims: list[tuple[float, int, int, list[Lease]]] = []  # (at, node, limit, leases)
    for entry in result.journal.entries:
        if entry.call == "claim":
            claims.append((entry.at, entry.node, entry.args[2], entry.result))
    for at, node, _, leases in claims:
        for lease in leases:
            started = starts.get(lease.token)
            if (started is None or started > at + START_SLACK) and steady(
                node, at, at + START_SLACK
            ):
                raise Violation(
                    RUNNING_AGAIN,
                    f"job {lease.job_id} claimed by node {node} at {at} (token {lease.token}) "
                    f"started {'never' if started is None else f'at {started}'}",
                )
    for entry in result.journal.entries:
        if entry.call != "reap":
            continue
        reaped_at = entry.at
        deadline = reaped_at + CLAIM_GAP + START_SLACK
        for item in entry.result:
            if item.state is not JobState.AVAILABLE:
                continue
            again = next(
                (
                    at
                    for at, _, _, leases in claims
                    if at >= reaped_at and any(lease.job_id == item.job_id for lease in leases)
                ),
                None,
            )
            if again is not None and again <= deadline:
                continue
            for node in range(nodes):
                if not free(node, reaped_at):
                    continue  # no slot free: the job waits its turn
                if not steady(node, reaped_at - CLAIM_GAP, deadline):
                    continue
                if any(
                    n == node
                    and reaped_at <= at <= deadline
                    and len(leases) >= max(limit, free(node, at))
                    for at, n, limit, leases in claims
                ):
                    continue  # its slots found older jobs
                raise Violation(
                    RUNNING_AGAIN,
                    f"job {item.job_id} reaped at {reaped_at} was claimed again "
                    f"{'never' if again is None else f'at {again}'} while node {node} had a "
                    f"slot free",
                )
