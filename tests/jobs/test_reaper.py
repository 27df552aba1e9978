"""The Reaper: jobs whose worker stopped renewing are taken back and run again."""

from __future__ import annotations

from random import Random
from typing import Any

import anyio
import pytest

from actors.core import VirtualClock, open_actor_system
from actors.jobs import (
    App,
    ConfigInvalid,
    JobClaimed,
    JobContext,
    JobReclaimed,
    JobSucceeded,
    Topology,
)
from actors.jobs.lowlevel import EventBus, Reaper, RunNow
from transports import (
    CancelResult,
    EnqueueRequest,
    JobState,
    MemoryStore,
    MemoryTransport,
)

from ._support import (
    START,
    FaultyTransport,
    Recorder,
    running,
    topology,
    wait_state,
    wait_until,
)

pytestmark = pytest.mark.anyio

REAPER_INTERVAL = 1.0


async def test_an_abandoned_lease_is_reclaimed_and_run_again(
    memory: MemoryTransport, clock: VirtualClock
) -> None:
    """A lease nobody renews is reclaimed after its TTL (JobReclaimed names the lost owner)
    and the job runs again within TTL + reaper interval."""
    app = App(memory)
    runs: list[int] = []

    @app.task("orphan")
    async def orphan(ctx: JobContext, payload: Any) -> None:
        runs.append(ctx.attempt)

    job_id = (await app.enqueue(orphan, None)).job_id
    (lease,) = await memory.claim("default", owner="ghost/worker", limit=1, ttl=10.0)
    node = topology(app, memory, clock, reaper_interval=REAPER_INTERVAL)
    async with clock.autojump(), running(node) as (_, events):
        job = await wait_state(memory, clock, job_id, JobState.SUCCEEDED)
        done_at = clock.now()
    assert done_at <= lease.expires_at + REAPER_INTERVAL + 0.01
    assert runs == [2]
    assert job.attempt == 2
    (reclaimed,) = events.of(JobReclaimed)
    assert (reclaimed.job_id, reclaimed.lost_by, reclaimed.attempt) == (job_id, "ghost/worker", 1)
    assert (reclaimed.kind, reclaimed.queue) == ("orphan", "default")
    assert reclaimed.state is JobState.AVAILABLE
    assert reclaimed.expired_at == lease.expires_at
    assert lease.expires_at <= reclaimed.at <= lease.expires_at + REAPER_INTERVAL


async def test_a_job_of_a_dead_node_is_finished_by_a_live_one(clock: VirtualClock) -> None:
    """A node that dies mid-job (no cleanup, no more words with the store) leaves a lease that
    a live node's Reaper takes back; the live node then runs the job."""
    store = MemoryStore()
    doomed_transport = FaultyTransport(MemoryTransport(clock=clock, store=store))
    live_transport = MemoryTransport(clock=clock, store=store)
    app = App(live_transport)
    runs: list[str] = []

    @app.task("survives", max_attempts=3)
    async def survives(ctx: JobContext, payload: Any) -> None:
        runs.append(ctx.lease.owner)
        if ctx.lease.owner.startswith("doomed/"):
            await ctx.clock.sleep(10_000.0)

    job_id = (await app.enqueue(survives, None)).job_id
    doomed = topology(app, doomed_transport, clock, node_id="doomed", concurrency=1)
    live = topology(app, live_transport, clock, node_id="live", concurrency=1)
    async with clock.autojump(), anyio.create_task_group() as tg:
        crash = anyio.CancelScope()

        async def run_doomed(*, task_status: anyio.abc.TaskStatus[None]) -> None:
            with crash:
                async with running(doomed) as (_, events):
                    await wait_until(clock, lambda: events.of(JobClaimed), what="the claim")
                    task_status.started()
                    await anyio.sleep_forever()

        await tg.start(run_doomed)
        claimed = await live_transport.get(job_id)
        assert claimed.lease_expires_at is not None
        doomed_transport.down = True  # the process is gone: nothing more reaches the store
        crash.cancel()
        async with running(live) as (_, events):
            job = await wait_state(live_transport, clock, job_id, JobState.SUCCEEDED)
            done_at = clock.now()
    assert done_at <= claimed.lease_expires_at + REAPER_INTERVAL + 0.01
    assert [owner.split("/")[0] for owner in runs] == ["doomed", "live"]
    (reclaimed,) = events.of(JobReclaimed)
    assert reclaimed.lost_by == runs[0]
    assert [e.worker.rsplit("/", 1)[0] for e in events.of(JobSucceeded)] == [runs[1]]
    assert job.attempt == 2


async def test_a_job_that_keeps_killing_its_workers_ends_dead(clock: VirtualClock) -> None:
    """Attempts count runs: a job whose handler takes its node down every time (the node stops
    renewing, its lease lapses, the Reaper takes it back) runs once per attempt and ends dead
    after ``max_attempts`` runs, never looping forever; nothing else spends its attempts."""
    store = MemoryStore()
    live = MemoryTransport(clock=clock, store=store)
    app = App(live)
    runs: list[int] = []
    doomed: list[FaultyTransport] = []

    @app.task("poison.pill", max_attempts=3)
    async def pill(ctx: JobContext, payload: Any) -> None:
        runs.append(ctx.attempt)
        doomed[-1].down = True  # this node is gone from now on
        await ctx.clock.sleep(10_000.0)

    job_id = (await app.enqueue(pill, None)).job_id
    reaper = Topology(app, live, node_id="reaper", clock=clock, rng=Random(0)).reaper(
        interval=REAPER_INTERVAL
    )
    async with clock.autojump(), running(reaper):
        for n in range(3):
            doomed.append(FaultyTransport(MemoryTransport(clock=clock, store=store)))
            with anyio.CancelScope() as crash:
                async with running(topology(app, doomed[-1], clock, node_id=f"doomed{n}")):
                    await wait_until(clock, lambda n=n: len(runs) > n, what=f"run {n + 1}")
                    crash.cancel()
        job = await wait_state(live, clock, job_id, JobState.DEAD, timeout=120.0)
        await clock.sleep(60.0)
    assert runs == [1, 2, 3]
    assert job.attempt == 3


async def test_a_lease_lost_on_the_last_attempt_ends_dead(
    memory: MemoryTransport, clock: VirtualClock
) -> None:
    """A job whose last attempt's lease lapses is reclaimed as dead and never runs again."""
    app = App(memory)
    runs: list[int] = []

    @app.task("fragile", max_attempts=1)
    async def fragile(ctx: JobContext, payload: Any) -> None:
        runs.append(ctx.attempt)

    job_id = (await app.enqueue(fragile, None)).job_id
    await memory.claim("default", owner="ghost", limit=1, ttl=5.0)
    async with clock.autojump(), running(topology(app, memory, clock)) as (_, events):
        job = await wait_state(memory, clock, job_id, JobState.DEAD)
        await clock.sleep(30.0)
    assert runs == []
    assert job.last_error is not None
    assert "ghost" in job.last_error
    (reclaimed,) = events.of(JobReclaimed)
    assert reclaimed.state is JobState.DEAD


async def test_a_reclaimed_job_with_a_cancel_request_ends_cancelled(
    memory: MemoryTransport, clock: VirtualClock
) -> None:
    """A job whose holder died after a cancel was requested ends cancelled when reclaimed."""
    app = App(memory)
    runs: list[int] = []

    @app.task("unwanted")
    async def unwanted(ctx: JobContext, payload: Any) -> None:
        runs.append(ctx.attempt)

    job_id = (await app.enqueue(unwanted, None)).job_id
    await memory.claim("default", owner="ghost", limit=1, ttl=5.0)
    assert await memory.cancel(job_id) is CancelResult.REQUESTED
    async with clock.autojump(), running(topology(app, memory, clock)) as (_, events):
        await wait_state(memory, clock, job_id, JobState.CANCELLED)
    assert runs == []
    assert [e.state for e in events.of(JobReclaimed)] == [JobState.CANCELLED]


async def test_a_node_of_reaper_alone_reclaims_for_the_others(clock: VirtualClock) -> None:
    """A node running only a Reaper (no queues) reclaims expired leases of every queue."""
    transport = MemoryTransport(clock=clock)
    app = App(transport)
    (a, b) = await transport.enqueue_many(
        [EnqueueRequest(kind="k", queue="one"), EnqueueRequest(kind="k", queue="two")]
    )
    await transport.claim("one", owner="gone-1", limit=1, ttl=3.0)
    await transport.claim("two", owner="gone-2", limit=1, ttl=4.0)
    reaper_only = Topology(app, transport, node_id="reaper", clock=clock, rng=Random(0)).reaper(
        interval=0.5
    )
    async with clock.autojump(), running(reaper_only) as (node, events):
        await wait_until(clock, lambda: len(events.of(JobReclaimed)) == 2, what="both reclaims")
        assert [info.id for info in await node.root.which_children()] == ["reaper"]
    assert {(e.job_id, e.lost_by) for e in events.of(JobReclaimed)} == {
        (a.job_id, "gone-1"),
        (b.job_id, "gone-2"),
    }
    assert {(await transport.get(i)).state for i in (a.job_id, b.job_id)} == {JobState.AVAILABLE}
    assert clock.now() <= START + 4.0 + 0.5 + 0.01


async def test_one_tick_reclaims_every_expired_lease_batch_after_batch(
    memory: MemoryTransport, clock: VirtualClock
) -> None:
    """A tick keeps reaping while a batch comes back full: with ``batch=1``, one tick takes
    back all three expired leases, publishing one JobReclaimed each."""
    await memory.enqueue_many([EnqueueRequest(kind="k") for _ in range(3)])
    await memory.claim("default", owner="ghost/worker", limit=3, ttl=10.0)
    events = EventBus()
    recorder = Recorder()
    events.subscribe(recorder)
    reaper = Reaper(transport=memory, events=events, interval=1_000.0, batch=1)
    async with clock.autojump(), open_actor_system(clock=clock) as system:
        ref = await system.spawn(reaper)
        await clock.sleep(11.0)
        await ref.ask(lambda r: RunNow(reply_to=r), timeout=10.0)
        assert len(recorder.of(JobReclaimed)) == 3
    assert {job.state for job in await memory.list_jobs()} == {JobState.AVAILABLE}


def test_reaper_settings_are_refused_by_name() -> None:
    """The interval must be > 0 and the batch an integer from 1 to 1 000 000."""
    with pytest.raises(ConfigInvalid, match=r"^Reaper interval must be > 0, got 0"):
        Reaper(transport=MemoryTransport(), events=EventBus(), interval=0)
    for batch in (0, 1_000_001):
        with pytest.raises(
            ConfigInvalid, match=r"^Reaper batch must be between 1 and 1000000, got"
        ):
            Reaper(transport=MemoryTransport(), events=EventBus(), batch=batch)
    Reaper(transport=MemoryTransport(), events=EventBus(), batch=1_000_000)
