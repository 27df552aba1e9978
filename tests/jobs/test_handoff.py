"""The job hand-off between a Claimer and its Workers: the one-job inbox, notices about a job
still waiting in it, a Worker stopping with one there, and no garbage cycles left per job."""

from __future__ import annotations

import gc
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import asynccontextmanager, contextmanager
from random import Random
from typing import Any

import anyio
import anyio.lowlevel
import pytest

from actors.core import Actor, ActorRef, VirtualClock, open_actor_system
from actors.jobs import App, JobContext, JobSucceeded
from actors.jobs.lowlevel import (
    CancelsRequested,
    Drain,
    EventBus,
    Execution,
    Finished,
    Handoff,
    LeaseLink,
    LeasesLost,
    Ready,
    Reports,
    Run,
    Worker,
)
from transports import JobState, MemoryTransport
from transports.lowlevel import Cancel, Complete, Lease, Release

from ._support import running, topology, wait_until

pytestmark = pytest.mark.anyio


class _Claimer(Actor[Ready]):
    """Stands in for a Claimer: keeps each Worker's ``Ready`` and nothing else."""

    def __init__(self) -> None:
        self.ready: list[Ready] = []
        self.got = anyio.Event()

    async def receive(self, msg: Ready) -> None:
        self.ready.append(msg)
        self.got.set()


async def _until(predicate: Callable[[], object]) -> None:
    """A few turns of the event loop, until ``predicate`` holds (a message was handled)."""
    for _ in range(1000):
        if predicate():
            return
        await anyio.lowlevel.checkpoint()
    raise AssertionError("never happened")


@contextmanager
def _unread(inbox: Handoff[Run]) -> Iterator[None]:
    """The inbox's reader (the Worker's serving task) sleeps through the block, then wakes."""
    sleeping = inbox._arrived
    inbox._arrived = anyio.Event()
    yield
    sleeping.set()


def _app(ran: list[int]) -> App:
    app = App()

    @app.task("noop")
    async def noop(ctx: JobContext, payload: None) -> None:
        ran.append(ctx.job.id)

    return app


@asynccontextmanager
async def _worker(
    app: App, transport: MemoryTransport, clock: VirtualClock
) -> AsyncIterator[tuple[ActorRef[Any], Worker, _Claimer]]:
    claimer = _Claimer()
    async with open_actor_system(clock=clock) as system:
        claimer_ref = await system.spawn(claimer)
        worker = Worker(
            worker_id="w1",
            queue="default",
            app=app,
            transport=transport,
            events=EventBus(),
            rng=Random(0),
            claimer=claimer_ref,
            leases=LeaseLink(),
        )
        ref = await system.spawn(worker)
        await claimer.got.wait()
        yield ref, worker, claimer


async def _claimed(app: App, transport: MemoryTransport) -> Any:
    # A job on another queue first: the claim's job id and token differ (a notice naming
    # one for the other must not pass).
    await transport.enqueue(app.request("noop", queue="elsewhere"))
    await transport.enqueue(app.request("noop"))
    (lease,) = await transport.claim("default", owner="n1/default", limit=1, ttl=30.0)
    return lease


async def _handed(
    transport: MemoryTransport, clock: VirtualClock
) -> tuple[list[int], App, Lease, Run]:
    """A claimed job's Run, as a Claimer hands it over; ``ran`` lists the jobs that ran."""
    ran: list[int] = []
    app = _app(ran)
    lease = await _claimed(app, transport)
    return ran, app, lease, Run(lease=lease, sent_at=clock.now(), ttl=30.0, report_to=Reports())


def test_a_handoff_takes_one_item_and_gives_back_the_untaken_one_when_closed() -> None:
    inbox: Handoff[int] = Handoff()
    assert inbox.put(1)
    assert not inbox.put(2)  # one waits already
    assert inbox.peek() == 1
    assert inbox.close() == 1
    assert not inbox.put(3)  # closed
    assert inbox.peek() is None


async def test_a_closed_handoff_ends_its_reader() -> None:
    inbox: Handoff[int] = Handoff()
    async with anyio.create_task_group() as tg:
        ended = anyio.Event()

        async def read() -> None:
            with pytest.raises(anyio.EndOfStream):
                await inbox.get()
            ended.set()

        tg.start_soon(read)
        await anyio.wait_all_tasks_blocked()
        inbox.close()
        await ended.wait()


async def test_reports_arriving_together_are_read_in_one_batch() -> None:
    reports = Reports()
    for _ in range(3):
        reports.put(_finished())
    await reports.wait()
    assert len(reports.take_all()) == 3
    assert reports.take_all() == []


def _finished() -> Finished:
    return Finished.__new__(Finished)  # the record's contents do not matter to Reports


@pytest.mark.parametrize("tokens", [True, False], ids=["its-token", "any-claim"])
async def test_a_lease_lost_while_its_job_waits_in_the_inbox_never_starts(
    memory: MemoryTransport, clock: VirtualClock, tokens: bool
) -> None:
    ran, app, lease, run = await _handed(memory, clock)
    reports = run.report_to
    async with _worker(app, memory, clock) as (_, worker, claimer):
        inbox = claimer.ready[0].inbox
        # The notice is handled while the job waits, before the serving task takes it.
        assert inbox.put(run)
        worker._on_lost((lease.job_id,), (lease.token,) if tokens else ())
        await reports.wait()
        (report,) = reports.take_all()
    assert report.outcome is None  # nothing may be stored: the job is someone else's
    assert ran == []


async def _next_run(app: App, memory: MemoryTransport, clock: VirtualClock) -> Run:
    await memory.enqueue(app.request("noop"))
    (lease,) = await memory.claim("default", owner="n1/default", limit=1, ttl=30.0)
    return Run(lease=lease, sent_at=clock.now(), ttl=30.0, report_to=Reports())


@pytest.mark.parametrize("notice", ["lost", "cancel"])
async def test_a_notice_about_a_waiting_job_holds_for_that_job_alone(
    memory: MemoryTransport, clock: VirtualClock, notice: str
) -> None:
    """A lost-lease or cancel notice taken in while a job waits in the inbox ends that job
    unstarted; the next job handed over runs as usual."""
    ran, app, lease, run = await _handed(memory, clock)
    async with _worker(app, memory, clock) as (ref, worker, claimer):
        inbox = claimer.ready[0].inbox
        with _unread(inbox):
            assert inbox.put(run)
            if notice == "lost":
                await ref.tell(LeasesLost(job_ids=(lease.job_id,), tokens=(lease.token,)))
                await _until(lambda: worker._lost_early)
            else:
                await ref.tell(CancelsRequested(job_ids=(lease.job_id,)))
                await _until(lambda: worker._cancel_early)
        await run.report_to.wait()
        (first,) = run.report_to.take_all()
        second = await _next_run(app, memory, clock)
        assert inbox.put(second)
        await second.report_to.wait()
        (then,) = second.report_to.take_all()
    assert first.outcome is None if notice == "lost" else isinstance(first.outcome, Cancel)
    assert then.outcome == Complete()
    assert ran == [second.lease.job_id]


async def test_a_run_handed_over_after_a_drain_began_is_given_back_unstarted(
    memory: MemoryTransport, clock: VirtualClock
) -> None:
    ran, app, _lease, run = await _handed(memory, clock)
    async with _worker(app, memory, clock) as (ref, _, claimer):
        await ref.ask(lambda reply: Drain(reply_to=reply), timeout=5.0)
        assert claimer.ready[0].inbox.put(run)
        await run.report_to.wait()
        (report,) = run.report_to.take_all()
    assert isinstance(report.outcome, Release)
    assert not report.again
    assert ran == []


@pytest.mark.parametrize("by", ["call", "message"])
async def test_a_notice_about_an_older_claim_spares_the_waiting_job(
    memory: MemoryTransport, clock: VirtualClock, by: str
) -> None:
    ran, app, lease, run = await _handed(memory, clock)
    reports = run.report_to
    async with _worker(app, memory, clock) as (ref, worker, claimer):
        inbox = claimer.ready[0].inbox
        with _unread(inbox):
            assert inbox.put(run)
            if by == "call":
                worker._on_lost((lease.job_id,), (lease.token - 1,))
            else:
                await ref.tell(LeasesLost(job_ids=(lease.job_id,), tokens=(lease.token - 1,)))
                for _ in range(20):  # the notice is handled
                    await anyio.lowlevel.checkpoint()
        await reports.wait()
        (report,) = reports.take_all()
    assert report.outcome is not None
    assert ran == [lease.job_id]


async def test_a_cancel_asked_for_while_its_job_waits_ends_it_cancelled_unstarted(
    memory: MemoryTransport, clock: VirtualClock
) -> None:
    ran, app, lease, run = await _handed(memory, clock)
    reports = run.report_to
    async with _worker(app, memory, clock) as (ref, worker, claimer):
        inbox = claimer.ready[0].inbox
        with _unread(inbox):
            assert inbox.put(run)
            await ref.tell(CancelsRequested(job_ids=(lease.job_id,)))
            await _until(lambda: worker._cancel_early)
        await reports.wait()
        (report,) = reports.take_all()
    assert isinstance(report.outcome, Cancel)
    assert ran == []


async def test_a_worker_that_stops_gives_its_waiting_job_back_at_once(
    memory: MemoryTransport, clock: VirtualClock
) -> None:
    ran, app, _lease, run = await _handed(memory, clock)
    reports = run.report_to
    async with _worker(app, memory, clock) as (_, _, claimer):
        inbox = claimer.ready[0].inbox
        inbox._arrived = anyio.Event()  # the serving task sleeps until the Worker stops
        assert inbox.put(run)
    (report,) = reports.take_all()
    assert isinstance(report.outcome, Release)  # given back: the attempt is refunded
    assert not report.again
    assert ran == []


async def test_a_lost_notice_then_a_stop_stores_nothing_for_the_waiting_job(
    memory: MemoryTransport, clock: VirtualClock
) -> None:
    _ran, app, lease, run = await _handed(memory, clock)
    reports = run.report_to
    async with _worker(app, memory, clock) as (ref, worker, claimer):
        inbox = claimer.ready[0].inbox
        inbox._arrived = anyio.Event()  # the serving task sleeps until the Worker stops
        assert inbox.put(run)
        await ref.tell(LeasesLost(job_ids=(lease.job_id,), tokens=(lease.token,)))
        await _until(lambda: worker._lost_early)
    (report,) = reports.take_all()
    assert report.outcome is None


async def test_jobs_leave_no_garbage_cycles_behind(
    memory: MemoryTransport, clock: VirtualClock
) -> None:
    """Each job's objects go by reference counting: a cycle per job (the job's context and
    its callbacks referring back to the run) made the cyclic collector run every few jobs
    over the whole heap."""
    app = App()

    @app.task("noop")
    async def noop(ctx: JobContext, payload: None) -> None:
        return None

    await memory.enqueue_many([app.request("noop") for _ in range(100)])
    gc.collect()
    gc.disable()
    try:
        async with (
            clock.autojump(),
            running(topology(app, memory, clock, concurrency=4)) as (
                _,
                events,
            ),
        ):
            await wait_until(
                clock, lambda: len(events.of(JobSucceeded)) == 100, what="every job done"
            )
            gc.set_debug(gc.DEBUG_SAVEALL)
            gc.collect()
            left = [o for o in gc.garbage if isinstance(o, Execution | JobContext)]
            gc.set_debug(0)
            gc.garbage.clear()
    finally:
        gc.enable()
    assert left == []
    (counts,) = await memory.counts("default")
    assert counts[JobState.SUCCEEDED] == 100
