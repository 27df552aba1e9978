"""Leases while a handler runs: heartbeats, lost leases, cancels, and the JobContext."""

from __future__ import annotations

import logging
import re
from random import Random
from typing import Any

import anyio
import pytest

from actors.core import Actor, VirtualClock, open_actor_system
from actors.jobs import (
    App,
    FinalizeRefused,
    JobCancelled,
    JobClaimed,
    JobContext,
    JobDead,
    JobLeaseLost,
    JobSucceeded,
    LeaseLost,
    Topology,
    WorkerConfig,
)
from actors.jobs.lowlevel import Beat, Hold, LeaseKeeper, LeaseLink, LeasesLost, RenewNow
from transports import CancelResult, EnqueueRequest, JobState, MemoryStore, MemoryTransport
from transports.lowlevel import FinalizeRequest, FinalizeResult, Lease, Release, RenewResult

from ._support import FaultyTransport, running, topology, wait_state, wait_until

pytestmark = pytest.mark.anyio

TTL = 6.0
SHORT = WorkerConfig(lease_ttl=TTL, poll_interval=1.0, drain_timeout=5.0)


async def test_heartbeats_keep_a_long_handler_leased(
    memory: MemoryTransport, clock: VirtualClock
) -> None:
    """A handler running for many TTLs keeps its lease: it is renewed, never reaped."""
    app = App(memory)
    expiries: list[float] = []

    @app.task("long")
    async def long(ctx: JobContext, payload: Any) -> None:
        for _ in range(20):
            await ctx.clock.sleep(TTL / 2)
            job = await memory.get(ctx.job_id)
            assert job.lease_expires_at is not None
            expiries.append(job.lease_expires_at - ctx.clock.now())

    job_id = (await app.enqueue(long, None)).job_id
    async with clock.autojump(), running(topology(app, memory, clock, worker=SHORT)) as (_, ev):
        job = await wait_state(memory, clock, job_id, JobState.SUCCEEDED, timeout=600.0)
    assert job.attempt == 1
    assert all(0 < left <= TTL for left in expiries)
    assert ev.of(JobLeaseLost) == []


class _Ahead:
    """The store's clock, ``offset`` seconds ahead of the node's."""

    def __init__(self, clock: VirtualClock, offset: float) -> None:
        self._clock = clock
        self._offset = offset

    def now(self) -> float:
        return self._clock.now() + self._offset


@pytest.mark.parametrize("offset", [25.0, -25.0])
async def test_heartbeats_follow_the_nodes_clock_not_the_stores(
    clock: VirtualClock, offset: float
) -> None:
    """A store keeping time by another clock (PostgreSQL's, skewed from the node's) does not
    make the LeaseKeeper renew too late: it schedules renewals on the node's own clock."""
    async with MemoryTransport(clock=_Ahead(clock, offset)) as skewed:
        app = App(skewed)

        @app.task("long")
        async def long(ctx: JobContext, payload: Any) -> None:
            await ctx.clock.sleep(100.0)

        job_id = (await app.enqueue(long, None)).job_id
        worker = WorkerConfig(lease_ttl=30.0)
        async with (
            clock.autojump(),
            running(topology(app, skewed, clock, worker=worker)) as (
                _,
                ev,
            ),
        ):
            job = await wait_state(skewed, clock, job_id, JobState.SUCCEEDED, timeout=300.0)
    assert job.attempt == 1
    assert ev.of(JobLeaseLost) == []


@pytest.mark.parametrize(("task_ttl", "sleep"), [(1.5, 20.0), (6.0, 40.0), (300.0, 200.0)])
async def test_a_tasks_own_lease_ttl_is_used_for_its_jobs(
    memory: MemoryTransport, clock: VirtualClock, task_ttl: float, sleep: float
) -> None:
    """A task's ``lease_ttl`` overrides the Worker's: its leases are renewed with that TTL."""
    app = App(memory)
    left: list[float] = []

    @app.task("own.ttl", lease_ttl=task_ttl)
    async def own_ttl(ctx: JobContext, payload: Any) -> None:
        await ctx.clock.sleep(sleep)
        job = await memory.get(ctx.job_id)
        assert job.lease_expires_at is not None
        left.append(job.lease_expires_at - ctx.clock.now())

    job_id = (await app.enqueue(own_ttl, None)).job_id
    worker = WorkerConfig(lease_ttl=30.0)
    async with clock.autojump(), running(topology(app, memory, clock, worker=worker)) as (_, ev):
        job = await wait_state(memory, clock, job_id, JobState.SUCCEEDED, timeout=600.0)
    assert job.attempt == 1
    assert ev.of(JobLeaseLost) == []
    (remaining,) = left
    assert 0 < remaining <= task_ttl
    assert remaining > task_ttl / 2  # renewed with the task's TTL, not the worker's 30 s


# --- no handler starts on a lease the node's clock says is gone -------------------------------


class _FrozenAfterClaim(FaultyTransport):
    """A node that freezes (or whose clock jumps) right after the store answered its claim:
    it sees its fresh claim only ``gap`` seconds later."""

    def __init__(self, inner: MemoryTransport, clock: VirtualClock, *, gap: float, jump: bool):
        super().__init__(inner)
        self.node_clock = clock
        self.gap = gap
        self.jump = jump
        self.frozen = 0  # claims answered late so far

    async def claim(self, queue: str, *, owner: str, limit: int, ttl: float) -> list[Any]:
        leases = await super().claim(queue, owner=owner, limit=limit, ttl=ttl)
        if leases and not self.frozen:
            self.frozen += 1
            if self.jump:
                self.node_clock.advance(self.gap)  # the clock jumps
            else:
                await self.node_clock.sleep(self.gap)  # the process is paused
        return leases


@pytest.mark.parametrize(
    ("gap", "jump"),
    [(TTL, True), (TTL, False), (TTL * 0.95, False), (TTL * 3, True)],
    ids=["jump-past-ttl", "pause-past-ttl", "pause-into-the-margin", "jump-far"],
)
async def test_a_claim_seen_after_its_lease_lapsed_is_given_back_unstarted(
    clock: VirtualClock, gap: float, jump: bool, caplog: pytest.LogCaptureFixture
) -> None:
    """When the node's clock says a claimed lease has expired or is about to (less than
    ``start_margin`` of its TTL left, from when the claim was sent) by the time its Worker would
    start it, the handler never starts on it: the job is given back (or left to the reaper),
    and it runs once, later, on a fresh claim."""
    memory = MemoryTransport(clock=clock)
    frozen = _FrozenAfterClaim(memory, clock, gap=gap, jump=jump)
    app = App(memory)
    starts: list[tuple[int, float]] = []

    @app.task("fresh")
    async def fresh(ctx: JobContext, payload: Any) -> None:
        starts.append((ctx.lease.token, ctx.clock.now()))

    async with memory:
        job_id = (await app.enqueue(fresh, None)).job_id
        async with clock.autojump(), running(topology(app, frozen, clock, worker=SHORT)) as (_, ev):
            job = await wait_state(memory, clock, job_id, JobState.SUCCEEDED, timeout=120.0)
    assert frozen.frozen == 1
    ((token, _),) = starts  # one run, on a later claim than the frozen one
    (claimed,) = ev.of(JobClaimed)
    assert claimed.token == token
    assert token != 1  # the first claim's token never ran
    # Given back, the attempt is refunded; after a jump the Reaper (its timer due at once)
    # takes the expired lease back first, and that claim's attempt stays spent.
    assert job.attempt == (2 if jump else 1)
    assert ev.of(JobLeaseLost) == []
    (warning,) = [r.getMessage() for r in caplog.records if "not starting" in r.getMessage()]
    assert re.fullmatch(
        rf"n1/default/[\d.]+: not starting job {job_id}, its lease \(claimed {gap:.3f}s ago, "
        r"ttl 6s\) is about to expire; giving it back",
        warning,
    ), warning


# --- a lease lost mid-handler ---------------------------------------------------------------


async def _two_nodes_one_store(clock: VirtualClock) -> tuple[MemoryStore, FaultyTransport]:
    store = MemoryStore()
    return store, FaultyTransport(MemoryTransport(clock=clock, store=store))


async def test_a_lost_lease_cancels_the_handler_and_the_new_holder_wins(
    clock: VirtualClock,
) -> None:
    """When its renewals fail past the TTL, another node reclaims the job; once the first
    node's heartbeat learns the lease is lost, its handler is cancelled (JobLeaseLost) and the
    new holder's result stands."""
    store = MemoryStore()
    sick = FaultyTransport(MemoryTransport(clock=clock, store=store))
    healthy = MemoryTransport(clock=clock, store=store)
    app = App(healthy)
    runs: list[tuple[str, int]] = []
    cancelled: list[str] = []

    @app.task("stuck.once", max_attempts=5)
    async def stuck_once(ctx: JobContext, payload: Any) -> None:
        runs.append((ctx.lease.owner, ctx.attempt))
        if ctx.attempt == 1:
            try:
                await ctx.clock.sleep(10_000.0)
            except BaseException:
                cancelled.append(ctx.lease.owner)
                raise

    job_id = (await app.enqueue(stuck_once, None)).job_id
    first = topology(app, sick, clock, node_id="sick", worker=SHORT, concurrency=1)
    second = topology(app, healthy, clock, node_id="healthy", worker=SHORT, concurrency=1)
    async with clock.autojump(), running(first) as (_, sick_events):
        await wait_until(clock, lambda: runs, what="the first run")
        sick.failing.add("renew")  # the store cannot hear the first node's heartbeat any more
        claimed_at = clock.now()
        async with running(second) as (_, healthy_events):
            job = await wait_state(healthy, clock, job_id, JobState.SUCCEEDED)
            assert clock.now() <= claimed_at + TTL + 2.0  # reclaimed within TTL + reaper
            assert cancelled == []  # the first handler does not know yet
            sick.failing.clear()  # its next renewal hears the lease is gone
            await wait_until(clock, lambda: cancelled, what="the stale handler's cancel")
    assert [attempt for _, attempt in runs] == [1, 2]
    assert runs[0][0].startswith("sick/")
    assert runs[1][0].startswith("healthy/")
    assert job.lease_owner == runs[1][0]
    (lost,) = sick_events.of(JobLeaseLost)
    assert lost.job_id == job_id
    assert lost.worker.startswith(f"{runs[0][0]}/")  # a Worker of the queue that claimed it
    assert sick_events.of(FinalizeRefused) == []  # it never got as far as finalizing
    assert sick_events.of(JobSucceeded) == []
    assert [e.worker.rsplit("/", 1)[0] for e in healthy_events.of(JobSucceeded)] == [runs[1][0]]
    assert (await healthy.get(job_id)).state is JobState.SUCCEEDED


async def test_a_stale_holders_finalize_is_refused(clock: VirtualClock) -> None:
    """A holder that finishes after its lease was reclaimed cannot overwrite the new holder's
    result: its finalize is refused (FinalizeRefused) and the job keeps the new outcome."""
    store = MemoryStore()
    sick = FaultyTransport(MemoryTransport(clock=clock, store=store))
    healthy = MemoryTransport(clock=clock, store=store)
    app = App(healthy)

    @app.task("slow.first", max_attempts=5)
    async def slow_first(ctx: JobContext, payload: Any) -> Any:
        if ctx.attempt == 1:
            await ctx.clock.sleep(5 * TTL)  # long past its lease, never told it is lost
            return None
        return None

    job_id = (await app.enqueue(slow_first, None)).job_id
    first = topology(app, sick, clock, node_id="sick", worker=SHORT, concurrency=1)
    second = topology(app, healthy, clock, node_id="healthy", worker=SHORT, concurrency=1)
    async with clock.autojump(), running(first) as (_, sick_events):
        await wait_until(clock, lambda: sick_events.of(JobClaimed), what="the first claim")
        sick.failing.add("renew")
        async with running(second) as (_, healthy_events):
            await wait_state(healthy, clock, job_id, JobState.SUCCEEDED)
            finished_at = (await healthy.get(job_id)).finished_at
            await wait_until(
                clock, lambda: sick_events.of(FinalizeRefused), what="the stale finalize"
            )
    (refused,) = sick_events.of(FinalizeRefused)
    (claim,) = sick_events.of(JobClaimed)
    assert (refused.job_id, refused.token) == (job_id, claim.token)
    assert sick_events.of(JobSucceeded) == []
    job = await healthy.get(job_id)
    assert (job.state, job.attempt, job.finished_at) == (JobState.SUCCEEDED, 2, finished_at)
    assert len(healthy_events.of(JobSucceeded)) == 1


# --- cancel ------------------------------------------------------------------------------------


async def test_cancel_of_a_running_job_cancels_its_handler(
    memory: MemoryTransport, clock: VirtualClock
) -> None:
    """A cancel request reaches the worker with the next heartbeat: the handler is cancelled
    and the job ends cancelled."""
    app = App(memory)
    started = anyio.Event()
    saw_request: list[bool] = []

    @app.task("forever", max_attempts=5)
    async def forever(ctx: JobContext, payload: Any) -> None:
        started.set()
        try:
            await ctx.wait_cancel_requested()
        finally:
            saw_request.append(ctx.cancel_requested)

    job_id = (await app.enqueue(forever, None)).job_id
    async with clock.autojump(), running(topology(app, memory, clock, worker=SHORT)) as (_, ev):
        await started.wait()
        asked_at = clock.now()
        assert await memory.cancel(job_id) is CancelResult.REQUESTED
        job = await wait_state(memory, clock, job_id, JobState.CANCELLED)
    assert saw_request == [True]
    assert job.finished_at is not None
    assert job.finished_at <= asked_at + TTL / 3 + 0.5  # the next heartbeat saw the request
    assert job.attempt == 1
    assert [e.job_id for e in ev.of(JobCancelled)] == [job_id]
    assert ev.of(JobSucceeded) == []


async def test_a_cancel_arriving_after_success_leaves_the_job_succeeded(
    clock: VirtualClock,
) -> None:
    """A cancel requested after the handler returned (its finalize still on the way) does not
    undo the success."""
    inner = MemoryTransport(clock=clock)
    faulty = FaultyTransport(inner)
    app = App(inner)
    finalize_gate = anyio.Event()
    faulty.gates["finalize"] = finalize_gate
    returned = anyio.Event()

    @app.task("quick")
    async def quick(ctx: JobContext, payload: Any) -> None:
        returned.set()

    job_id = (await app.enqueue(quick, None)).job_id
    async with clock.autojump(), running(topology(app, faulty, clock, worker=SHORT)) as (_, ev):
        await returned.wait()
        assert await inner.cancel(job_id) is CancelResult.REQUESTED
        await clock.sleep(TTL)  # heartbeats come and see the request
        assert faulty.calls["renew"] >= 1
        finalize_gate.set()
        job = await wait_state(inner, clock, job_id, JobState.SUCCEEDED)
    assert job.cancel_requested
    assert [e.job_id for e in ev.of(JobSucceeded)] == [job_id]
    assert ev.of(JobCancelled) == []


async def test_jobs_behind_a_busy_worker_wait_in_the_store_not_under_a_lease(
    memory: MemoryTransport, clock: VirtualClock
) -> None:
    """A node claims only for its free slots: while its one Worker is busy, the next jobs stay
    available (no lease, no attempt spent), so a cancel ends one at once without it ever
    running, and the others run in turn."""
    app = App(memory)
    ran: list[int] = []
    blocker = anyio.Event()

    @app.task("in.line")
    async def in_line(ctx: JobContext, payload: int) -> None:
        ran.append(payload)
        if payload == 0:
            await blocker.wait()

    ids = [(await app.enqueue(in_line, n)).job_id for n in range(4)]
    async with (
        clock.autojump(),
        running(topology(app, memory, clock, worker=SHORT, concurrency=1)) as (_, ev),
    ):
        await wait_until(clock, lambda: 0 in ran, what="the blocking job")
        await clock.sleep(TTL)  # renewals and polls go by: still nothing else is claimed
        for job_id in ids[1:]:
            waiting = await memory.get(job_id)
            assert (waiting.state, waiting.attempt) == (JobState.AVAILABLE, 0)
        assert await memory.cancel(ids[2]) is CancelResult.CANCELLED
        blocker.set()
        await wait_state(memory, clock, ids[3], JobState.SUCCEEDED)
    assert ran == [0, 1, 3]
    assert (await memory.get(ids[2])).state is JobState.CANCELLED
    assert ev.of(JobCancelled) == []  # cancelled by the store: no Worker was involved


# --- the JobContext ----------------------------------------------------------------------------


async def test_extend_lease_renews_the_lease_now(
    memory: MemoryTransport, clock: VirtualClock
) -> None:
    """``extend_lease()`` moves the lease's expiry to now + TTL at once."""
    app = App(memory)
    seen: list[tuple[float, float]] = []

    @app.task("extends")
    async def extends(ctx: JobContext, payload: Any) -> None:
        assert (ctx.job_id, ctx.attempt, ctx.job.kind) == (ctx.job.id, 1, "extends")
        await ctx.clock.sleep(1.0)
        before = (await memory.get(ctx.job_id)).lease_expires_at
        await ctx.extend_lease()
        after = (await memory.get(ctx.job_id)).lease_expires_at
        assert before is not None
        assert after is not None
        seen.append((after - before, after - ctx.clock.now()))

    job_id = (await app.enqueue(extends, None)).job_id
    async with clock.autojump(), running(topology(app, memory, clock, worker=SHORT)):
        await wait_state(memory, clock, job_id, JobState.SUCCEEDED)
    assert seen == [(pytest.approx(1.0), pytest.approx(TTL))]


async def test_extend_lease_raises_lease_lost_once_the_job_is_someone_elses(
    clock: VirtualClock,
) -> None:
    """``extend_lease()`` raises LeaseLost when the lease expired and was reclaimed; the job
    runs again for its new holder."""
    inner = MemoryTransport(clock=clock)
    faulty = FaultyTransport(inner)
    app = App(inner)
    outcomes: list[str] = []

    @app.task("loses.lease", max_attempts=3)
    async def loses_lease(ctx: JobContext, payload: Any) -> None:
        if ctx.attempt > 1:
            outcomes.append("second run")
            return
        faulty.failing.add("renew")
        await ctx.clock.sleep(TTL + 1.0)
        await inner.reap()  # someone else's reaper takes the job back
        faulty.failing.clear()
        try:
            await ctx.extend_lease()
        except LeaseLost:
            outcomes.append("lease lost")
            raise
        outcomes.append("kept the lease")

    await inner.enqueue(EnqueueRequest(kind="k", queue="elsewhere"))  # job ids apart from tokens
    job_id = (await app.enqueue(loses_lease, None)).job_id
    async with (
        clock.autojump(),
        running(topology(app, faulty, clock, worker=SHORT, concurrency=1)) as (_, ev),
    ):
        job = await wait_state(inner, clock, job_id, JobState.SUCCEEDED)
    assert outcomes == ["lease lost", "second run"]
    assert job.attempt == 2
    assert [e.job_id for e in ev.of(JobLeaseLost)] == [job_id]
    assert ev.of(JobDead) == []


async def test_extend_lease_reports_a_cancel_request(
    memory: MemoryTransport, clock: VirtualClock
) -> None:
    """When a cancel was requested, ``extend_lease()`` sets ``cancel_requested`` and the
    handler is cancelled at once, without waiting for the next heartbeat."""
    app = App(memory)
    seen: list[bool] = []
    reached_end: list[bool] = []

    @app.task("asks")
    async def asks(ctx: JobContext, payload: Any) -> None:
        assert not ctx.cancel_requested
        await memory.cancel(ctx.job_id)
        await ctx.extend_lease()
        seen.append(ctx.cancel_requested)
        await ctx.wait_cancel_requested()  # already set: returns (or is cancelled) at once
        await ctx.clock.sleep(0.001)
        reached_end.append(True)

    job_id = (await app.enqueue(asks, None)).job_id
    async with clock.autojump(), running(topology(app, memory, clock, worker=SHORT)):
        job = await wait_state(memory, clock, job_id, JobState.CANCELLED)
    assert seen == [True]
    assert reached_end == []
    assert job.finished_at == pytest.approx(job.created_at, abs=0.01)


async def test_the_job_logger_is_bound_to_the_job(
    memory: MemoryTransport, clock: VirtualClock, caplog: pytest.LogCaptureFixture
) -> None:
    """``ctx.log`` prefixes messages with the job and adds its fields to the record."""
    app = App(memory)

    @app.task("logs")
    async def logs(ctx: JobContext, payload: Any) -> None:
        ctx.log.info("working on %s", "it", extra={"step": 1})

    job_id = (await app.enqueue(logs, None)).job_id
    with caplog.at_level(logging.INFO, logger="actorq.job"):
        async with clock.autojump(), running(topology(app, memory, clock)):
            await wait_state(memory, clock, job_id, JobState.SUCCEEDED)
    (record,) = [r for r in caplog.records if r.name == "actorq.job"]
    assert record.getMessage() == f"[logs #{job_id} try 1] working on it"
    assert (record.job_id, record.job_kind, record.attempt, record.step) == (job_id, "logs", 1, 1)  # type: ignore[attr-defined]


async def test_one_node_renews_the_same_job_id_in_two_stores(clock: VirtualClock) -> None:
    """The node's LeaseKeeper holds leases by store and job id: two queues on two stores, each
    running its job 1 for many TTLs, both keep their leases."""
    first = MemoryTransport(clock=clock)
    second = MemoryTransport(clock=clock)
    app = App(first)

    @app.task("long.a", queue="a")
    async def long_a(ctx: JobContext, payload: Any) -> None:
        await ctx.clock.sleep(TTL * 5)

    @app.task("long.b", queue="b")
    async def long_b(ctx: JobContext, payload: Any) -> None:
        await ctx.clock.sleep(TTL * 5)

    async with first, second:
        a = (await first.enqueue_many([app.request("long.a")]))[0].job_id
        b = (await second.enqueue_many([app.request("long.b")]))[0].job_id
        assert a == b  # the same id in both stores
        # ... under different tokens: a claim given back spends the second store's first.
        (given,) = await second.claim("b", owner="x", limit=1, ttl=30.0)
        release = FinalizeRequest(job_id=b, token=given.token, outcome=Release())
        assert await second.finalize([release]) == [FinalizeResult.APPLIED]
        node = (
            Topology(app, first, node_id="n1", clock=clock, rng=Random(0), config=SHORT)
            .queue("a")
            .queue("b", transport=second)
        )
        async with clock.autojump(), running(node) as (_, ev):
            done_a = await wait_state(first, clock, a, JobState.SUCCEEDED, timeout=300.0)
            done_b = await wait_state(second, clock, b, JobState.SUCCEEDED, timeout=300.0)
    assert (done_a.attempt, done_b.attempt) == (1, 1)
    assert ev.of(JobLeaseLost) == []


# --- extend_lease and the LeaseKeeper's table ---------------------------------------------------


async def test_an_extended_lease_is_next_renewed_a_period_after_the_extension(
    memory: MemoryTransport, clock: VirtualClock
) -> None:
    """``extend_lease()`` restarts its lease's renewal period in the LeaseKeeper: while a
    shorter-lived lease makes the keeper beat every second, the extended lease is renewed
    ``ttl * renew_fraction`` after the extension (not when it was due from its last renewal,
    nor at once), and from then on goes on being renewed; a lease claimed meanwhile is first
    renewed a period after its claim."""
    app = App(memory)
    config = WorkerConfig(lease_ttl=30.0, poll_interval=1.0, drain_timeout=5.0)
    seen: dict[str, float] = {}

    @app.task("brief", lease_ttl=3.0)
    async def brief(ctx: JobContext, payload: Any) -> None:
        await ctx.clock.sleep(40.0)  # its 1 s renewal period sets the keeper's beat

    @app.task("extends.late")
    async def extends_late(ctx: JobContext, payload: Any) -> None:
        # Off the keeper's beats (every whole second from 10 s on): renewed once, at 10 s,
        # and due again at 20 s.
        await ctx.clock.sleep(12.5)
        await ctx.extend_lease()  # now due at 22.5 s
        extended = (await memory.get(ctx.job_id)).lease_expires_at
        assert extended is not None
        seen["extended"] = extended - ctx.clock.now()
        await ctx.clock.sleep(8.0)  # the beat at 19 s leaves it alone
        seen["unchanged"] = (await memory.get(ctx.job_id)).lease_expires_at - extended  # type: ignore[operator]
        await ctx.clock.sleep(3.2)  # renewed by the beat at 22 s, once
        seen["renewed"] = (await memory.get(ctx.job_id)).lease_expires_at - extended  # type: ignore[operator]
        await ctx.clock.sleep(60.0)

    @app.task("joins.late")
    async def joins_late(ctx: JobContext, payload: Any) -> None:
        claimed = (await memory.get(ctx.job_id)).lease_expires_at
        await ctx.clock.sleep(7.0)  # its first renewal is due 10 s after its claim
        seen["joined"] = (await memory.get(ctx.job_id)).lease_expires_at - claimed  # type: ignore[operator]

    brief_id = (await app.enqueue(brief, None)).job_id
    late_id = (await app.enqueue(extends_late, None)).job_id
    node = topology(app, memory, clock, worker=config, concurrency=3)
    async with clock.autojump(), running(node) as (_, ev):
        await clock.sleep(12.3)  # the keeper beats every second by now
        joined_id = (await app.enqueue(joins_late, None)).job_id
        await wait_state(memory, clock, brief_id, JobState.SUCCEEDED, timeout=120.0)
        job = await wait_state(memory, clock, late_id, JobState.SUCCEEDED, timeout=120.0)
        await wait_state(memory, clock, joined_id, JobState.SUCCEEDED, timeout=120.0)
    # A lease held from a claim is first renewed a period after the claim, whatever the beat.
    assert seen["joined"] == 0.0
    assert seen["extended"] == pytest.approx(30.0)
    assert seen["unchanged"] == 0.0
    assert seen["renewed"] == pytest.approx(9.5)
    assert job.attempt == 1
    assert ev.of(JobLeaseLost) == []


async def test_extend_lease_renews_with_the_tasks_own_lease_ttl(
    memory: MemoryTransport, clock: VirtualClock
) -> None:
    """A task's ``lease_ttl`` is the TTL of its ``extend_lease()`` too, not the Worker's."""
    app = App(memory)
    left: list[float] = []

    @app.task("extends.own", lease_ttl=300.0)
    async def extends_own(ctx: JobContext, payload: Any) -> None:
        await ctx.clock.sleep(1.0)
        await ctx.extend_lease()
        expires = (await memory.get(ctx.job_id)).lease_expires_at
        assert expires is not None
        left.append(expires - ctx.clock.now())

    job_id = (await app.enqueue(extends_own, None)).job_id
    async with clock.autojump(), running(topology(app, memory, clock, worker=SHORT)):
        await wait_state(memory, clock, job_id, JobState.SUCCEEDED)
    assert left == [pytest.approx(300.0)]


class _Holder(Actor[Any]):
    """Stands in for the Worker holding a lease: keeps the notices it is sent."""

    def __init__(self) -> None:
        self.notices: list[Any] = []
        self.told = anyio.Event()

    async def receive(self, msg: Any) -> None:
        self.notices.append(msg)
        self.told.set()


async def test_a_renewal_of_an_older_claim_leaves_the_newer_one_held(
    memory: MemoryTransport, clock: VirtualClock
) -> None:
    """A ``RenewNow`` about a claim the store has since given to a newer one (of the same
    job, held by the same keeper) is answered LOST, and the keeper goes on holding the newer
    claim; one about the claim it holds keeps it held too (a keeper with no event bus
    publishes nothing)."""
    await memory.enqueue(EnqueueRequest(kind="k", queue="q"))
    (old,) = await memory.claim("q", owner="n/q", limit=1, ttl=1.0)
    clock.advance(2.0)
    assert len(await memory.reap()) == 1
    (new,) = await memory.claim("q", owner="n/q", limit=1, ttl=30.0)
    assert new.job_id == old.job_id
    assert new.token != old.token
    link = LeaseLink()
    async with open_actor_system(clock=clock) as system:
        holder = await system.spawn(_Holder())
        await system.spawn(LeaseKeeper(link=link))
        keeper = link.get()
        await keeper.tell(
            Hold(
                transport=memory,
                leases=(new,),
                holders=(holder,),
                ttls=(30.0,),
                sent_at=clock.now(),
                claimed_ttl=30.0,
            )
        )

        def renew_now(lease: Lease) -> Any:
            return lambda reply: RenewNow(
                transport=memory, job_id=lease.job_id, token=lease.token, ttl=30.0, reply_to=reply
            )

        assert await keeper.ask(renew_now(old), timeout=5.0) is RenewResult.LOST
        assert await keeper.ask(renew_now(new), timeout=5.0) is RenewResult.RENEWED
        assert [h.token for h in link.held.values()] == [new.token]


async def test_a_lost_notice_names_the_lost_claims_token(
    memory: MemoryTransport, clock: VirtualClock
) -> None:
    """When a renewal finds a lease lost, its holder is told with the claim's token (so a
    newer claim of the same job that it may run by then is spared), and the keeper stops
    renewing it."""
    await memory.enqueue(EnqueueRequest(kind="k", queue="q"))
    (old,) = await memory.claim("q", owner="n/q", limit=1, ttl=1.0)
    clock.advance(2.0)
    assert len(await memory.reap()) == 1
    link = LeaseLink()
    holder = _Holder()
    async with open_actor_system(clock=clock) as system:
        holder_ref = await system.spawn(holder)
        keeper = LeaseKeeper(link=link)
        await system.spawn(keeper)
        hold = Hold(
            transport=memory,
            leases=(old,),
            holders=(holder_ref,),
            ttls=(30.0,),
            sent_at=clock.now() - 30.0,  # due now
            claimed_ttl=30.0,
        )
        await link.get().tell(hold)
        await link.get().tell(Beat())
        with anyio.fail_after(5):
            await holder.told.wait()
    assert holder.notices == [LeasesLost(job_ids=(old.job_id,), tokens=(old.token,))]
    assert keeper.statistics() == 0


@pytest.mark.parametrize("down", ["a", "b"])
async def test_a_store_that_cannot_renew_spares_another_stores_leases(
    clock: VirtualClock, down: str
) -> None:
    """While one store refuses every renewal, the node's leases in the other store go on
    being renewed: each handler there sees its lease alive to the end."""
    stores = {"a": FaultyTransport(MemoryTransport(clock=clock)), "b": MemoryTransport(clock=clock)}
    if down == "b":
        stores = {"a": stores["b"], "b": stores["a"]}
    faulty = stores[down]
    assert isinstance(faulty, FaultyTransport)
    faulty.failing.add("renew")
    healthy = "b" if down == "a" else "a"
    app = App(stores["a"])
    left: list[float] = []

    @app.task("long.a", queue="a")
    async def long_a(ctx: JobContext, payload: Any) -> None:
        await watch(ctx, "a")

    @app.task("long.b", queue="b")
    async def long_b(ctx: JobContext, payload: Any) -> None:
        await watch(ctx, "b")

    async def watch(ctx: JobContext, queue: str) -> None:
        for _ in range(10):
            await ctx.clock.sleep(TTL / 2)
            if queue == healthy:
                job = await stores[queue].get(ctx.job_id)
                assert job.lease_expires_at is not None
                left.append(job.lease_expires_at - ctx.clock.now())

    async with stores["a"], stores["b"]:
        await stores["a"].enqueue_many([app.request("long.a")])
        await stores["b"].enqueue_many([app.request("long.b")])
        node = (
            Topology(app, stores["a"], node_id="n1", clock=clock, rng=Random(0), config=SHORT)
            .queue("a")
            .queue("b", transport=stores["b"])
        )
        async with clock.autojump(), running(node):
            await wait_until(clock, lambda: len(left) == 10, timeout=300.0, what="ten looks")
    assert all(x > 0 for x in left), left


async def test_a_failed_renewal_warns_and_the_next_beat_renews(
    clock: VirtualClock, caplog: pytest.LogCaptureFixture
) -> None:
    """A renewal call the store does not answer is a WARNING naming how many leases and the
    error; the leases stay due and a later beat renews them in time."""
    caplog.set_level(logging.WARNING, logger="actorq.leases")
    inner = MemoryTransport(clock=clock)
    faulty = FaultyTransport(inner)
    app = App(inner)

    @app.task("long")
    async def long(ctx: JobContext, payload: Any) -> None:
        await ctx.clock.sleep(3 * TTL)

    job_id = (await app.enqueue(long, None)).job_id
    faulty.failing.add("renew")
    async with clock.autojump(), running(topology(app, faulty, clock, worker=SHORT)) as (_, ev):
        await wait_until(clock, lambda: faulty.calls["renew"] >= 1, what="a renewal")
        faulty.failing.clear()
        job = await wait_state(inner, clock, job_id, JobState.SUCCEEDED)
    assert job.attempt == 1
    assert ev.of(JobLeaseLost) == []
    warnings = [r.getMessage() for r in caplog.records if r.name == "actorq.leases"]
    assert warnings[0] == "could not renew 1 lease(s): injected outage in renew"


async def test_a_slow_renewal_is_not_overlapped_by_the_next_beat(clock: VirtualClock) -> None:
    """While a renewal call is still out (a slow store), the beats that come due start no
    second one: the leases are renewed by one call at a time."""
    inner = MemoryTransport(clock=clock)
    faulty = FaultyTransport(inner)
    app = App(inner)

    @app.task("long")
    async def long(ctx: JobContext, payload: Any) -> None:
        await ctx.clock.sleep(20.0)

    job_id = (await app.enqueue(long, None)).job_id
    gate = anyio.Event()
    faulty.gates["renew"] = gate
    async with clock.autojump(), running(topology(app, faulty, clock, worker=SHORT)):
        await wait_until(clock, lambda: faulty.calls["renew"] >= 1, what="a renewal")
        await clock.sleep(2.5)  # the next beat (every 2 s) comes and goes
        assert faulty.calls["renew"] == 1
        gate.set()
        job = await wait_state(inner, clock, job_id, JobState.SUCCEEDED)
    assert job.attempt == 1


async def test_leases_coming_in_all_the_time_do_not_hold_the_beat_back(
    memory: MemoryTransport, clock: VirtualClock
) -> None:
    """New leases of the same TTL arriving more often than the renewal period (a busy queue)
    do not keep putting the keeper's beat off: a long job's lease is renewed all along."""
    app = App(memory)
    left: list[float] = []

    @app.task("long")
    async def long(ctx: JobContext, payload: Any) -> None:
        for _ in range(8):
            await ctx.clock.sleep(TTL / 2)
            job = await memory.get(ctx.job_id)
            assert job.lease_expires_at is not None
            left.append(job.lease_expires_at - ctx.clock.now())

    @app.task("blip")
    async def blip(ctx: JobContext, payload: Any) -> None:
        return None

    job_id = (await app.enqueue(long, None)).job_id
    node = topology(app, memory, clock, worker=SHORT, concurrency=2)
    async with clock.autojump(), running(node) as (_, ev):
        while not left or len(left) < 8:
            await app.enqueue(blip, None)  # claimed at once: a new lease every 0.7 s
            await clock.sleep(0.7)
        job = await wait_state(memory, clock, job_id, JobState.SUCCEEDED)
    assert job.attempt == 1
    assert all(x > 0 for x in left), left
    assert ev.of(JobLeaseLost) == []
