"""The queue supervisor: as many Workers as the queue's config says, restarted when they crash."""

from __future__ import annotations

from typing import Any

import anyio
import pytest

from actors.core import ActorRef, VirtualClock, WhichChildren
from actors.jobs import App, JobContext, JobSucceeded, WorkerConfig, WorkerCrashed
from actors.jobs.lowlevel import Reconfigure, WorkerCount
from transports import JobState, MemoryTransport, QueueConfig

from ._support import FaultyTransport, running, topology, wait_final, wait_until

pytestmark = pytest.mark.anyio

ASK = 10.0


async def _count(ref: ActorRef[Any]) -> int:
    count: int = await ref.ask(lambda r: WorkerCount(reply_to=r), timeout=ASK)
    return count


async def _running_workers(ref: ActorRef[Any]) -> int:
    children = await ref.ask(lambda r: WhichChildren(reply_to=r), timeout=ASK)
    return sum(
        1
        for child in children
        if child.id not in {"claimer", "leases"} and child.ref is not None and child.ref.is_alive
    )


class Gate:
    """Handlers that block until released, counting how many run at once."""

    def __init__(self) -> None:
        self.open = anyio.Event()
        self.running = 0
        self.peak = 0

    async def __call__(self, ctx: JobContext, payload: Any) -> None:
        self.running += 1
        self.peak = max(self.peak, self.running)
        try:
            await self.open.wait()
        finally:
            self.running -= 1


async def test_scales_up_and_down_when_the_stored_concurrency_changes(
    memory: MemoryTransport, clock: VirtualClock
) -> None:
    """Changing ``QueueConfig.concurrency`` at run time scales the Workers, on Reconfigure or
    by itself within the reconfigure interval."""
    app = App(memory)
    gate = Gate()
    app.register("blocks", gate, queue="q")
    ids = [(await app.enqueue("blocks", n)).job_id for n in range(12)]
    async with (
        clock.autojump(),
        running(topology(app, memory, clock, concurrency=2)) as (
            node,
            _,
        ),
    ):
        queue = await node.child("queue:q")
        assert await _count(queue) == 2
        await wait_until(clock, lambda: gate.running == 2, what="two handlers")

        await memory.set_queue_config(QueueConfig(name="q", concurrency=5))
        await queue.tell(Reconfigure())
        assert await _count(queue) == 5
        await wait_until(clock, lambda: gate.running == 5, what="five handlers")
        assert await _running_workers(queue) == 5

        # Without a Reconfigure message: the supervisor rereads its config on an interval.
        await memory.set_queue_config(QueueConfig(name="q", concurrency=3))
        await clock.sleep(6.0)
        assert await _count(queue) == 3
        # Workers leaving drain first: their running jobs are not cancelled.
        assert gate.running == 5
        gate.open.set()
        await wait_until(clock, lambda: _running_workers(queue), what="workers")
        jobs = await wait_final(memory, clock, ids)
        await wait_until(clock, lambda: _is(queue, 3), what="retired workers stopping")
        assert gate.peak == 5
    assert {job.state for job in jobs.values()} == {JobState.SUCCEEDED}
    assert {job.attempt for job in jobs.values()} == {1}  # nothing was cancelled and rerun


async def _is(queue: ActorRef[Any], n: int) -> bool:
    return await _running_workers(queue) == n


async def test_the_concurrency_limits_how_many_handlers_run_at_once(
    memory: MemoryTransport, clock: VirtualClock
) -> None:
    """With concurrency N, never more than N handlers of the queue run at the same time."""
    app = App(memory)
    running_now = 0
    peak = 0

    @app.task("work", queue="q")
    async def work(ctx: JobContext, payload: int) -> None:
        nonlocal running_now, peak
        running_now += 1
        peak = max(peak, running_now)
        await ctx.clock.sleep(1.0 + payload % 3)
        running_now -= 1

    ids = [(await app.enqueue(work, n)).job_id for n in range(40)]
    async with clock.autojump(), running(topology(app, memory, clock, concurrency=4)):
        await wait_final(memory, clock, ids)
    assert peak == 4


async def test_a_paused_queue_has_no_workers_and_claims_nothing(
    memory: MemoryTransport, clock: VirtualClock
) -> None:
    """A paused queue runs no Workers and no job of it is claimed; resuming it brings them."""
    app = App(memory)

    @app.task("later", queue="q")
    async def later(ctx: JobContext, payload: Any) -> None:
        return None

    await memory.set_queue_config(QueueConfig(name="q", paused=True))
    ids = [(await app.enqueue(later, n)).job_id for n in range(3)]
    async with (
        clock.autojump(),
        running(topology(app, memory, clock, concurrency=3)) as (
            node,
            events,
        ),
    ):
        queue = await node.child("queue:q")
        assert await _count(queue) == 0
        await clock.sleep(30.0)
        assert await _running_workers(queue) == 0
        assert {(await memory.get(i)).state for i in ids} == {JobState.AVAILABLE}

        await memory.set_queue_config(QueueConfig(name="q", paused=False))
        await queue.tell(Reconfigure())
        assert await _count(queue) == 3
        jobs = await wait_final(memory, clock, ids)

        await memory.set_queue_config(QueueConfig(name="q", paused=True))
        await queue.tell(Reconfigure())
        assert await _count(queue) == 0
        await wait_until(clock, lambda: _is(queue, 0), what="workers stopping")
        paused_job = (await app.enqueue(later, 99)).job_id
        await clock.sleep(30.0)
        assert (await memory.get(paused_job)).state is JobState.AVAILABLE
    assert {job.state for job in jobs.values()} == {JobState.SUCCEEDED}
    assert len(events.of(JobSucceeded)) == 3


async def test_a_crashed_claimer_is_restarted_with_its_workers_and_reported(
    clock: VirtualClock,
) -> None:
    """A queue's Claimer that crashes (a bug, not a storage error) is replaced, with the
    Workers that report to it; a WorkerCrashed event names it, and the queue keeps being
    worked."""
    inner = MemoryTransport(clock=clock)
    faulty = FaultyTransport(inner)
    app = App(inner)

    @app.task("fine", queue="q")
    async def fine(ctx: JobContext, payload: Any) -> None:
        return None

    faulty.crash_once.add("claim")
    async with (
        clock.autojump(),
        running(topology(app, faulty, clock, concurrency=2)) as (
            node,
            events,
        ),
    ):
        queue = await node.child("queue:q")
        await wait_until(clock, lambda: events.of(WorkerCrashed), what="the crash")
        assert await _count(queue) == 2
        await wait_until(clock, lambda: _is(queue, 2), what="the restart")
        ids = [(await app.enqueue(fine, n)).job_id for n in range(10)]
        jobs = await wait_final(inner, clock, ids)
    (crash,) = events.of(WorkerCrashed)
    assert crash.worker == "n1/root/queue:q/claimer"
    assert "injected bug in claim" in crash.error
    assert {job.state for job in jobs.values()} == {JobState.SUCCEEDED}
    workers = {e.worker for e in events.of(JobSucceeded)}
    assert workers <= {"n1/q/1.3", "n1/q/2.4"}  # the Workers started after the crash


async def test_a_storage_error_reading_the_config_keeps_the_workers(
    clock: VirtualClock,
) -> None:
    """When the queue config cannot be read, the supervisor keeps its Workers as they are."""
    inner = MemoryTransport(clock=clock)
    faulty = FaultyTransport(inner)
    app = App(inner)
    app.register("x", _noop, queue="q")
    async with (
        clock.autojump(),
        running(topology(app, faulty, clock, concurrency=2)) as (
            node,
            events,
        ),
    ):
        queue = await node.child("queue:q")
        faulty.failing.add("get_queue_config")
        await inner.set_queue_config(QueueConfig(name="q", concurrency=4))
        await queue.tell(Reconfigure())
        await clock.sleep(12.0)
        assert await _count(queue) == 2
        faulty.failing.clear()
        await clock.sleep(6.0)
        assert await _count(queue) == 4
    assert events.of(WorkerCrashed) == []


async def _noop(ctx: JobContext, payload: Any) -> None:
    return None


async def test_full_batches_are_claimed_side_by_side_and_the_claimer_then_waits_for_work(
    clock: VirtualClock,
) -> None:
    """With more free slots than a batch, a second claim goes out while the first is; when
    both come back short the Claimer waits for work, and a job enqueued then runs."""
    inner = MemoryTransport(clock=clock)
    faulty = FaultyTransport(inner)
    app = App(inner)
    ran: list[int] = []

    @app.task("job")
    async def job(ctx: JobContext, payload: int) -> None:
        ran.append(payload)

    gate = anyio.Event()
    faulty.gates["claim"] = gate
    config = WorkerConfig(lease_ttl=30.0, batch_size=2, poll_interval=1000.0)
    node = topology(app, faulty, clock, worker=config, concurrency=4)
    async with clock.autojump(), running(node):
        await wait_until(clock, lambda: faulty.calls["claim"] >= 2, what="two claims out")
        await clock.sleep(1.0)
        assert faulty.calls["claim"] == 2  # never more than one claim per batch of slots
        gate.set()
        await clock.sleep(1.0)
        job_id = (await app.enqueue(job, 7)).job_id
        await wait_final(inner, clock, [job_id], timeout=30.0)
    assert ran == [7]
