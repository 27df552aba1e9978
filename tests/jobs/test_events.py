"""The typed event stream: user actors subscribe; floods drop events instead of blocking."""

from __future__ import annotations

from typing import Any

import anyio
import pytest

from actors.core import Actor, ExitReason, VirtualClock
from actors.jobs import (
    App,
    CronFired,
    CronSchedule,
    Drop,
    JobClaimed,
    JobContext,
    JobDead,
    JobRetried,
    JobSnoozed,
    JobSucceeded,
    LeaseLost,
    NodeContext,
    RetryLater,
    RuntimeEvent,
    ShutdownPhase,
    SnoozeUntil,
    WorkerConfig,
    WorkerCrashed,
)
from actors.jobs.lowlevel import EventBus, LeasesRenewed
from transports import CancelResult, JobState, MemoryTransport
from transports.lowlevel import Complete, FinalizeRequest, FinalizeResult

from ._support import START, Recorder, running, topology, wait_final, wait_until

pytestmark = pytest.mark.anyio


class Watcher(Actor[RuntimeEvent]):
    """A user actor following the node's events, as a dashboard or metrics exporter would."""

    def __init__(self, node: NodeContext, seen: list[RuntimeEvent]) -> None:
        self._node = node
        self._seen = seen
        self._unsubscribe: Any = None

    async def on_start(self) -> None:
        self._unsubscribe = self._node.events.subscribe(self.context.self_ref.tell_nowait)

    async def receive(self, msg: RuntimeEvent) -> None:
        self._seen.append(msg)

    async def on_stop(self, reason: ExitReason) -> None:
        self._unsubscribe()


async def test_a_user_actor_receives_the_typed_events(
    memory: MemoryTransport, clock: VirtualClock
) -> None:
    """An actor added with ``Topology.actor`` that subscribes in ``on_start`` gets every
    runtime event, typed, in the order they happened."""
    app = App(memory)

    @app.task("mixed", max_attempts=2)
    async def mixed(ctx: JobContext, payload: str) -> Any:
        if payload == "retry" and ctx.attempt == 1:
            return RetryLater(delay=2.0)
        if payload == "drop":
            return Drop(reason="no")
        if payload == "snooze" and ctx.attempt == 1 and ctx.clock.now() < START + 5:
            return SnoozeUntil(at=START + 5)
        return None

    schedule = CronSchedule(name="beat", expression="* * * * * */5", kind="mixed", payload="cron")
    seen: list[RuntimeEvent] = []
    node = topology(app, memory, clock, schedules=[schedule]).actor(
        "watcher", lambda ctx: Watcher(ctx, seen)
    )
    ids = [(await app.enqueue(mixed, p)).job_id for p in ("ok", "retry", "drop", "snooze")]
    async with clock.autojump(), running(node) as (running_node, _):
        await wait_final(memory, clock, ids)
        await wait_until(clock, lambda: any(isinstance(e, CronFired) for e in seen), what="cron")
        watcher = await running_node.child("watcher")
        assert watcher.is_alive
    kinds = {type(e) for e in seen}
    assert {JobClaimed, JobSucceeded, JobRetried, JobDead, JobSnoozed, CronFired} <= kinds
    assert [e.at for e in seen] == sorted(e.at for e in seen)
    claimed = {e.job_id for e in seen if isinstance(e, JobClaimed)}
    assert set(ids) <= claimed  # it started before the workers, so it saw the first claims
    dead = [e for e in seen if isinstance(e, JobDead)]
    assert [(e.job_id, e.reason) for e in dead] == [(ids[2], "no")]
    assert {(await memory.get(i)).state for i in ids} == {JobState.SUCCEEDED, JobState.DEAD}


class Sluggish(Actor[RuntimeEvent]):
    """A subscriber that takes one event and then does not read its mailbox for a while."""

    def __init__(self, release: anyio.Event) -> None:
        self.release = release
        self.received = 0

    async def receive(self, msg: RuntimeEvent) -> None:
        self.received += 1
        await self.release.wait()


async def test_a_flood_drops_events_for_a_full_subscriber_instead_of_blocking(
    memory: MemoryTransport, clock: VirtualClock
) -> None:
    """A subscriber whose tiny mailbox is full misses events (counted in ``dropped``); the
    workers publishing them never wait, and other subscribers get everything."""
    app = App(memory)

    @app.task("noop")
    async def noop(ctx: JobContext, payload: Any) -> None:
        return None

    bus = EventBus()
    everything = Recorder()
    bus.subscribe(everything)
    release = anyio.Event()
    sluggish = Sluggish(release)
    async with (
        clock.autojump(),
        topology(app, memory, clock, concurrency=4).run(events=bus) as node,
    ):
        ref = await node.system.spawn(sluggish, mailbox_size=2)
        bus.subscribe(ref.tell_nowait)
        requests = [app.request(noop, n) for n in range(200)]
        ids = [result.job_id for result in await app.enqueue_many(requests)]
        jobs = await wait_final(memory, clock, ids)
        # 400 events (claimed, succeeded) at least; the mailbox took 2 and the actor 1.
        assert bus.dropped >= 400 - 3
        release.set()
    assert {job.state for job in jobs.values()} == {JobState.SUCCEEDED}
    assert len(everything.of(JobSucceeded)) == 200
    assert sluggish.received <= 3 + len(everything.events) - bus.dropped


async def test_a_failing_subscriber_neither_stops_the_others_nor_the_workers(
    memory: MemoryTransport, clock: VirtualClock
) -> None:
    """A subscriber that raises is counted in ``errors``; publishing goes on to the others and
    no worker crashes."""
    app = App(memory)

    @app.task("noop")
    async def noop(ctx: JobContext, payload: Any) -> None:
        return None

    def broken(event: RuntimeEvent) -> None:
        raise ValueError("a bug in a metrics exporter")

    bus = EventBus()
    bus.subscribe(broken)
    after = Recorder()
    bus.subscribe(after)
    ids = [(await app.enqueue(noop, n)).job_id for n in range(10)]
    async with clock.autojump(), topology(app, memory, clock).run(events=bus):
        await wait_final(memory, clock, ids)
    assert len(after.of(JobSucceeded)) == 10
    assert after.of(WorkerCrashed) == []
    assert bus.errors == len(after.events)


def test_unsubscribing_stops_delivery_even_from_inside_a_delivery() -> None:
    """``subscribe`` returns a function that stops delivery; calling it while an event is
    being delivered is safe."""
    bus = EventBus()
    got: list[str] = []

    def once(event: RuntimeEvent) -> None:
        got.append("once")
        stop_once()

    stop_once = bus.subscribe(once)
    stop_always = bus.subscribe(lambda e: got.append("always"))
    event = ShutdownPhase(at=0.0, phase="stopped")
    bus.publish(event)
    bus.publish(event)
    stop_always()
    stop_always()  # twice is harmless
    bus.publish(event)
    assert got == ["once", "always", "always"]
    assert not bus.has_subscribers


def test_the_positional_constructors_build_the_same_frozen_events() -> None:
    """The per-job events built positionally (the runtime's hot path) are the events the
    classes build from keywords: equal, hashing alike, frozen."""
    import attrs

    from actors.jobs._events import new_job_claimed, new_job_succeeded

    claimed = new_job_claimed(1.5, 7, "mail", "default", 2, "w1", 3, 0.5, 1.0, 0.25)
    assert claimed == JobClaimed(
        at=1.5,
        job_id=7,
        kind="mail",
        queue="default",
        attempt=2,
        worker="w1",
        token=3,
        enqueued_at=0.5,
        run_at=1.0,
        lost_at=0.25,
    )
    succeeded = new_job_succeeded(2.0, 7, "mail", "default", 2, "w1", 0.5)
    same = JobSucceeded(
        at=2.0, job_id=7, kind="mail", queue="default", attempt=2, worker="w1", duration=0.5
    )
    assert succeeded == same
    assert hash(succeeded) == hash(same)
    assert repr(succeeded) == repr(same)
    with pytest.raises(attrs.exceptions.FrozenInstanceError):
        succeeded.duration = 1.0  # type: ignore[misc]


def test_a_batch_subscriber_gets_every_event_in_order_one_call_per_batch() -> None:
    """A subscriber of batches gets each ``publish`` as a batch of one and each
    ``publish_many`` as one call, in order; an event subscriber gets the same events one at a
    time; a batch it cannot take is dropped whole (counted), one that raises is counted."""
    bus = EventBus()
    batches: list[list[RuntimeEvent]] = []
    single: list[RuntimeEvent] = []
    stop_batches = bus.subscribe_batches(lambda events: batches.append(list(events)))
    assert bus.has_subscribers
    bus.subscribe(single.append)
    first, second, third = (ShutdownPhase(at=float(i), phase="stopped") for i in range(3))
    bus.publish(first)
    bus.publish_many([second, third])
    bus.publish_many([])
    assert batches == [[first], [second, third]]
    assert single == [first, second, third]

    def full(events: object) -> None:
        raise anyio.WouldBlock

    def broken(events: object) -> None:
        raise RuntimeError("a bug in the subscriber")

    stop_batches()
    bus.subscribe_batches(full)
    bus.subscribe_batches(broken)
    bus.publish_many([first, second])
    assert (bus.dropped, bus.errors) == (2, 1)
    bus.publish(third)
    assert (bus.dropped, bus.errors) == (3, 2)
    assert batches == [[first], [second, third]]
    assert single == [first, second, third, first, second, third]


async def test_each_renewal_call_reports_its_renewed_lost_and_cancelled_leases(
    memory: MemoryTransport, clock: VirtualClock
) -> None:
    """``LeasesRenewed`` counts one renewal call's answers: the leases extended (a cancelled
    job's among them), the cancels asked for, and the leases the store no longer held, which
    are renewed no more (though their handler is slow to stop)."""
    app = App(memory)
    config = WorkerConfig(lease_ttl=6.0, poll_interval=1.0, drain_timeout=1.0)

    @app.task("held")
    async def held(ctx: JobContext, payload: int) -> None:
        try:
            await ctx.clock.sleep(100.0)
        except anyio.get_cancelled_exc_class():
            if payload == 0:  # the lost lease's handler takes a few beats to stop
                with anyio.CancelScope(shield=True):
                    await ctx.clock.sleep(5.0)
            raise

    # The lost lease first in the keeper's table: the leases after it are renewed as usual.
    lost, cancelled, kept = [(await app.enqueue(held, n)).job_id for n in range(3)]
    async with (
        clock.autojump(),
        running(topology(app, memory, clock, concurrency=3, worker=config)) as (_, ev),
    ):
        await wait_until(clock, lambda: len(ev.of(JobClaimed)) == 3, what="three claims")
        await wait_until(clock, lambda: ev.of(LeasesRenewed), what="a first renewal")
        first = ev.of(LeasesRenewed)[0]
        tokens = {e.job_id: e.token for e in ev.of(JobClaimed)}
        assert await memory.cancel(cancelled) is CancelResult.REQUESTED
        done = FinalizeRequest(job_id=lost, token=tokens[lost], outcome=Complete())
        assert await memory.finalize([done]) == [FinalizeResult.APPLIED]  # now not ours
        before = len(ev.of(LeasesRenewed))
        changed_at = clock.now()
        await wait_until(clock, lambda: len(ev.of(LeasesRenewed)) > before, what="a renewal")
        renewal = ev.of(LeasesRenewed)[before]
        await wait_until(clock, lambda: len(ev.of(LeasesRenewed)) > before + 1, what="another")
        after = ev.of(LeasesRenewed)[before + 1]
        assert (await memory.get(kept)).state is JobState.RUNNING
    assert (first.renewed, first.lost, first.cancels) == (3, 0, 0)
    assert START <= first.at <= changed_at
    assert (renewal.renewed, renewal.lost, renewal.cancels) == (2, 1, 1)
    assert changed_at <= renewal.at <= changed_at + 2.0
    assert (after.renewed, after.lost, after.cancels) == (1, 0, 0)  # the kept job alone
    assert renewal.at < after.at


async def test_a_finished_jobs_lease_is_forgotten_not_renewed(
    memory: MemoryTransport, clock: VirtualClock
) -> None:
    """Once a job's outcome is stored its lease leaves the LeaseKeeper: the renewals that
    go on for a job still running never ask for the finished one (none comes back lost)."""
    app = App(memory)
    config = WorkerConfig(lease_ttl=6.0, poll_interval=1.0, drain_timeout=1.0)

    @app.task("timed")
    async def timed(ctx: JobContext, payload: float) -> None:
        await ctx.clock.sleep(payload)

    @app.task("failing", max_attempts=1)
    async def failing(ctx: JobContext, payload: Any) -> None:
        await ctx.clock.sleep(2.0)
        raise ValueError("no")

    short = (await app.enqueue(timed, 3.0)).job_id
    dead = (await app.enqueue(failing, None)).job_id
    await app.enqueue(timed, 30.0)
    node = topology(app, memory, clock, concurrency=3, worker=config)
    async with clock.autojump(), running(node) as (_, ev):
        await wait_final(memory, clock, [short, dead])
        await clock.sleep(10.0)
    # The finished jobs' events, every field as the node saw it.
    (succeeded,) = ev.of(JobSucceeded)
    claims = {e.job_id: e for e in ev.of(JobClaimed)}
    assert succeeded == JobSucceeded(
        at=succeeded.at,
        job_id=short,
        kind="timed",
        queue="default",
        attempt=1,
        worker=claims[short].worker,
        duration=3.0,
    )
    (died,) = ev.of(JobDead)
    assert (died.job_id, died.kind, died.attempt, died.worker, died.duration) == (
        dead,
        "failing",
        1,
        claims[dead].worker,
        2.0,
    )
    renewals = ev.of(LeasesRenewed)
    assert len(renewals) >= 5
    assert [r.lost for r in renewals] == [0] * len(renewals)
    assert [r.renewed for r in renewals][-3:] == [1, 1, 1]


async def test_a_run_lost_to_a_refused_step_leaves_the_lease_keeper(
    memory: MemoryTransport, clock: VirtualClock
) -> None:
    """A run that learns from a refused step record that its job is someone else's ends
    lost, and its lease leaves the LeaseKeeper at once: no later renewal asks for it."""
    app = App(memory)
    config = WorkerConfig(lease_ttl=6.0, poll_interval=1.0, drain_timeout=1.0)
    lost: list[int] = []

    @app.task("stepping")
    async def stepping(ctx: JobContext, payload: Any) -> None:
        done = FinalizeRequest(job_id=ctx.job_id, token=ctx.lease.token, outcome=Complete())
        await memory.finalize([done])  # ended elsewhere meanwhile
        try:
            await ctx.step("charge", lambda: 1)
        except LeaseLost:
            lost.append(ctx.job_id)
            raise

    @app.task("long")
    async def long(ctx: JobContext, payload: Any) -> None:
        await ctx.clock.sleep(20.0)

    stepped = (await app.enqueue(stepping, None)).job_id
    await app.enqueue(long, None)
    node = topology(app, memory, clock, concurrency=2, worker=config)
    async with clock.autojump(), running(node) as (_, ev):
        await wait_until(clock, lambda: lost, what="the refused step")
        await clock.sleep(10.0)
    assert lost == [stepped]
    renewals = ev.of(LeasesRenewed)
    assert len(renewals) >= 4
    assert [r.lost for r in renewals] == [0] * len(renewals)
