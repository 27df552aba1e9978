"""Graceful shutdown: stop claiming, let running jobs finish, then cancel and give them back."""

from __future__ import annotations

import logging
from typing import Any

import anyio
import pytest

from actors.core import VirtualClock
from actors.jobs import (
    App,
    JobClaimed,
    JobContext,
    JobReclaimed,
    JobSucceeded,
    ShutdownPhase,
    WorkerConfig,
)
from transports import JobFilter, JobState, MemoryTransport, Transport

from ._support import FaultyTransport, running, start_node, topology, wait_state, wait_until

pytestmark = pytest.mark.anyio

DRAIN = 5.0
CONFIG = WorkerConfig(lease_ttl=30.0, poll_interval=1.0, drain_timeout=DRAIN)


async def test_a_running_job_finishes_within_the_drain_timeout(
    memory: MemoryTransport, clock: VirtualClock, caplog: pytest.LogCaptureFixture
) -> None:
    """``node.shutdown()`` waits for a running job shorter than the drain timeout: it
    succeeds on its first attempt and nothing new is claimed meanwhile. The Worker says it
    drains, in an event and an INFO record naming its job."""
    caplog.set_level(logging.INFO, logger="actorq.worker")
    app = App(memory)
    started = anyio.Event()

    @app.task("short")
    async def short(ctx: JobContext, payload: Any) -> None:
        started.set()
        await ctx.clock.sleep(3.0)

    first = (await app.enqueue(short, 1)).job_id
    async with (
        clock.autojump(),
        running(topology(app, memory, clock, worker=CONFIG, concurrency=1)) as (node, events),
    ):
        await started.wait()
        later = (await app.enqueue(short, 2)).job_id
        began = clock.now()
        await node.shutdown()
        took = clock.now() - began
        await node.shutdown()  # a second call does nothing
    assert took == pytest.approx(3.0)
    job = await memory.get(first)
    assert (job.state, job.attempt) == (JobState.SUCCEEDED, 1)
    waiting = await memory.get(later)
    assert (waiting.state, waiting.attempt) == (JobState.AVAILABLE, 0)
    assert [e.job_id for e in events.of(JobClaimed)] == [first]
    phases = [e.phase for e in events.of(ShutdownPhase)]
    assert phases == ["draining", "draining", "stopping", "stopped"]
    assert all(began <= e.at <= began + took for e in events.of(ShutdownPhase))
    worker = events.of(JobClaimed)[0].worker
    draining = [r.getMessage() for r in caplog.records if r.name == "actorq.worker"]
    assert f"{worker}: draining (job {first} running)" in draining


async def test_a_job_outliving_the_drain_timeout_is_released_for_another_node(
    transport: Transport, backend: str, clock: VirtualClock
) -> None:
    """A job still running at the drain deadline is cancelled and its lease given back: it is
    available at once with its attempt returned, and another node takes it immediately.

    On the SQL backends virtual time runs ahead while a query is in flight (autojump counts a
    task waiting for I/O as blocked), so timings are checked on memory; everywhere, the
    returned attempt and the absence of a reclaim prove the lease was given back.
    """
    app = App(transport)
    cancelled: list[float] = []
    finished: list[str] = []

    @app.task("endless", max_attempts=2)
    async def endless(ctx: JobContext, payload: Any) -> None:
        if ctx.lease.owner.startswith("leaving/"):
            try:
                await ctx.clock.sleep(1000.0)
            except BaseException:
                cancelled.append(ctx.clock.now())
                raise
        finished.append(ctx.lease.owner)

    job_id = (await app.enqueue(endless, None)).job_id
    leaving = topology(app, transport, clock, node_id="leaving", worker=CONFIG, concurrency=1)
    staying = topology(app, transport, clock, node_id="staying", worker=CONFIG, concurrency=1)
    async with clock.autojump(), anyio.create_task_group() as tg:
        first = await start_node(tg, leaving)
        await wait_until(clock, lambda: first.events.of(JobClaimed), what="the claim")
        second = await start_node(tg, staying)
        began = clock.now()
        await first.stop()
        stopped = clock.now()
        job = await wait_state(transport, clock, job_id, JobState.SUCCEEDED)
        succeeded = clock.now()
        await second.stop()
    assert len(cancelled) == 1
    if backend == "memory":
        assert cancelled == [pytest.approx(began + DRAIN, abs=0.5)]
        assert stopped - began == pytest.approx(DRAIN, abs=0.5)
        # Taken at once by the other node, long before the 30 s lease would have expired.
        assert succeeded - stopped < 2.0
    assert [f"{owner}/" for owner in finished] == [
        second.events.of(JobSucceeded)[0].worker.rsplit("/", 1)[0] + "/"
    ]
    assert job.attempt == 1  # the released attempt was given back
    assert second.events.of(JobReclaimed) == []  # given back, not reaped after expiry
    phases = [(e.phase, e.detail) for e in first.events.of(ShutdownPhase)]
    worker = first.events.of(JobClaimed)[0].worker
    assert [p for p, _ in phases] == [
        "draining",
        "draining",
        "cancelling",
        "released",
        "stopping",
        "stopped",
    ]
    assert phases[2] == ("cancelling", worker)
    assert phases[3] == ("released", worker)


async def test_a_busy_node_holds_no_job_it_has_not_started(
    memory: MemoryTransport, clock: VirtualClock
) -> None:
    """A node claims only what its free slots start at once: while its one Worker runs a job,
    the rest stay available in the store (never held unstarted), and after the drain they are
    still there with no attempt spent."""
    app = App(memory)
    ran: list[int] = []

    @app.task("batched")
    async def batched(ctx: JobContext, payload: int) -> None:
        ran.append(payload)
        await ctx.clock.sleep(2.0)

    await app.enqueue(batched, 0)
    ids = [(await app.enqueue(batched, n)).job_id for n in range(1, 6)]
    async with (
        clock.autojump(),
        running(topology(app, memory, clock, worker=CONFIG, concurrency=1)) as (node, _),
    ):
        await wait_until(clock, lambda: 1 in ran, what="the second job")
        held = [job.id for job in await memory.list_jobs(JobFilter(states=(JobState.RUNNING,)))]
        assert held == [ids[0]]  # only the running job is leased
        await node.shutdown()
    assert ran == [0, 1]
    states = {i: (await memory.get(i)) for i in ids}
    assert states[ids[0]].state is JobState.SUCCEEDED
    for i in ids[1:]:
        assert (states[i].state, states[i].attempt) == (JobState.AVAILABLE, 0)


async def test_nothing_outlives_the_node(memory: MemoryTransport, clock: VirtualClock) -> None:
    """After leaving ``topology.run()``, no actor, timer or store waiter of the node remains."""
    app = App(memory)

    @app.task("sleepy")
    async def sleepy(ctx: JobContext, payload: Any) -> None:
        await ctx.clock.sleep(100.0)

    for n in range(5):
        await app.enqueue(sleepy, n)
    async with clock.autojump():
        async with running(topology(app, memory, clock, worker=CONFIG, concurrency=3)) as (
            node,
            _,
        ):
            await clock.sleep(3.0)
            assert node.system.statistics().actors > 5
        assert node.system.statistics().actors == 0
        assert clock.statistics().sleeping == 0
        assert memory.store.waiters.queues() == []
        assert memory.store.running == {}  # every lease was given back
    counts = {c.queue: dict(c.by_state) for c in await memory.counts()}
    assert counts == {"default": {JobState.AVAILABLE: 5}}


async def test_a_claim_answered_after_the_shutdown_began_gives_its_jobs_back_unstarted(
    clock: VirtualClock,
) -> None:
    """Jobs that a claim in flight brings back once the node has begun to shut down are not
    started, though their Workers are still free: they are given back at once, attempts
    refunded."""
    inner = MemoryTransport(clock=clock)
    faulty = FaultyTransport(inner)
    app = App(inner)
    ran: list[int] = []

    @app.task("late")
    async def late(ctx: JobContext, payload: int) -> None:
        ran.append(payload)

    gate = anyio.Event()
    faulty.gates["claim"] = gate
    ids = [(await app.enqueue(late, n)).job_id for n in range(2)]
    async with (
        clock.autojump(),
        running(topology(app, faulty, clock, worker=CONFIG, concurrency=2)) as (node, _),
    ):
        await wait_until(clock, lambda: faulty.calls["claim"] >= 1, what="a claim in flight")
        async with anyio.create_task_group() as tg:
            tg.start_soon(node.shutdown)
            await clock.sleep(0.1)  # the Claimer is told to stop; its claim is still out
            gate.set()
    assert ran == []
    for job_id in ids:
        job = await inner.get(job_id)
        assert (job.state, job.attempt) == (JobState.AVAILABLE, 0)
