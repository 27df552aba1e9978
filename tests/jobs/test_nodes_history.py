"""Nodes register and heartbeat; each node's history adds up per queue and minute."""

from __future__ import annotations

import itertools
from random import Random
from typing import Any

import anyio
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from actors import __version__
from actors.core import VirtualClock, open_actor_system
from actors.jobs import (
    App,
    FinalizeRefused,
    JobCancelled,
    JobClaimed,
    JobContext,
    JobDead,
    JobLeaseLost,
    JobReclaimed,
    JobRetried,
    JobSnoozed,
    JobSucceeded,
    RetryLater,
    Topology,
    WorkerConfig,
    _history,
)
from actors.jobs.lowlevel import EventBus, History, RunNow, StatsRecorder
from transports import (
    MINUTE,
    EnqueueRequest,
    Histogram,
    InvalidRequest,
    JobState,
    MemoryStore,
    MemoryTransport,
    NodeInfo,
    QueueStats,
    Transport,
    minute_of,
)

from ._support import START, FaultyTransport, start_node, topology, wait_final, wait_until

pytestmark = pytest.mark.anyio


async def _ids(transport: Transport) -> list[str]:
    return [node.id for node in await transport.list_nodes()]


async def test_a_node_registers_heartbeats_and_leaves(
    transport: Transport, clock: VirtualClock
) -> None:
    """A running node is registered with its queues and slots, heartbeats at its interval,
    holds the maintenance lease, and is forgotten when it stops cleanly."""
    app = App(transport)
    worker = WorkerConfig(node_heartbeat=5.0)
    node = topology(app, transport, clock, queues=["a", "b"], concurrency=3, worker=worker)
    async with clock.autojump(), anyio.create_task_group() as tg:
        running = await start_node(tg, node)
        await wait_until(clock, lambda: _ids(transport), what="registration")
        (info,) = await transport.list_nodes()
        assert (info.id, info.queues, info.slots) == ("n1", ("a", "b"), 6)
        assert (info.version, info.heartbeat) == (__version__, 5.0)
        assert info.started_at == pytest.approx(START, abs=1.0)
        first_seen = info.last_seen
        await clock.sleep(12.0)
        (info,) = await transport.list_nodes()
        assert info.last_seen >= first_seen + 10.0
        assert info.is_alive(clock.now())
        await wait_until(clock, transport.list_leaders, what="the maintenance lease")
        leaders = await transport.list_leaders()
        assert [(lead.name, lead.holder) for lead in leaders] == [("maintenance", "n1")]
        await running.stop()
    assert await transport.list_nodes() == []


async def test_a_forgotten_node_registers_again(clock: VirtualClock) -> None:
    """A heartbeat that finds the node pruned (it was cut off a long while) registers it
    again, with its first start time."""
    memory = MemoryTransport(clock=clock)
    node = Topology(App(), memory, node_id="n1", clock=clock, rng=Random(0)).registry(heartbeat=2.0)
    async with clock.autojump(), anyio.create_task_group() as tg:
        running = await start_node(tg, node)
        await wait_until(clock, lambda: _ids(memory), what="registration")
        (first,) = await memory.list_nodes()
        assert await memory.forget_node("n1")
        await clock.sleep(3.0)
        (again,) = await memory.list_nodes()
        assert again.started_at == first.started_at
        assert again.last_seen > first.last_seen
        await running.stop()


async def test_a_node_whose_store_is_down_retries_at_its_heartbeat(clock: VirtualClock) -> None:
    """Registration that meets a storage error is tried again a heartbeat later (never in a
    loop that stops time), and succeeds once the store is back."""
    faulty = FaultyTransport(MemoryTransport(clock=clock))
    faulty.down = True
    node = Topology(App(), faulty, node_id="n1", clock=clock, rng=Random(0)).registry(heartbeat=2.0)
    async with clock.autojump(), anyio.create_task_group() as tg:
        running = await start_node(tg, node)
        await clock.sleep(5.0)
        assert 2 <= faulty.calls["register_node"] <= 4
        faulty.down = False
        await clock.sleep(2.0)
        assert await _ids(faulty) == ["n1"]
        await running.stop()


async def test_a_dead_node_shows_gone_then_is_pruned_by_the_leader(clock: VirtualClock) -> None:
    """A node that stops heartbeating (its store cut off) reads as gone after three missed
    heartbeats; the maintenance leader forgets it after the node retention."""
    store = MemoryStore()
    cut = FaultyTransport(MemoryTransport(clock=clock, store=store))
    check = MemoryTransport(clock=clock, store=store)
    doomed = Topology(App(), cut, node_id="doomed", clock=clock, rng=Random(0)).registry(
        heartbeat=1.0
    )
    keeper = Topology(App(), check, node_id="keeper", clock=clock, rng=Random(1))
    keeper.registry(heartbeat=1.0).cleanup(interval=5.0, node_retention=60.0)
    async with clock.autojump(), anyio.create_task_group() as tg:
        lost = await start_node(tg, doomed)
        kept = await start_node(tg, keeper)
        await wait_until(clock, lambda: len(check.store.nodes) == 2, what="registrations")
        cut.down = True
        await clock.sleep(2.0)
        alive = {n.id: n.is_alive(clock.now()) for n in await check.list_nodes()}
        assert alive == {"doomed": True, "keeper": True}
        await clock.sleep(2.0)
        alive = {n.id: n.is_alive(clock.now()) for n in await check.list_nodes()}
        assert alive == {"doomed": False, "keeper": True}
        await clock.sleep(65.0)
        assert await _ids(check) == ["keeper"]
        await lost.stop()
        await kept.stop()


async def test_the_leader_prunes_signalled_events_past_their_retention(
    clock: VirtualClock,
) -> None:
    """Cleanup deletes events signalled longer ago than ``signal_retention``, and keeps the
    newer ones."""
    async with MemoryTransport(clock=clock) as transport:
        node = Topology(App(), transport, node_id="n", clock=clock, rng=Random(0))
        node.cleanup(interval=5.0, signal_retention=60.0)
        async with clock.autojump(), anyio.create_task_group() as tg:
            await transport.signal("old", 1)
            await clock.sleep(100.0)
            await transport.signal("new", 2)
            running = await start_node(tg, node)
            await wait_until(
                clock, lambda: "old" not in transport.store.signals, what="the old event pruned"
            )
            assert await transport.get_signal("new") is not None
            await clock.sleep(70.0)
            assert await transport.get_signal("new") is None
            await running.stop()


async def test_the_leader_clears_results_past_their_retention(clock: VirtualClock) -> None:
    """Cleanup clears the results of jobs that succeeded longer ago than ``result_retention``
    (the jobs stay) and keeps the newer ones."""
    async with MemoryTransport(clock=clock) as transport:
        app = App(transport)

        @app.task("answer", queue="q")
        async def answer(ctx: JobContext, payload: int) -> int:
            return payload * 2

        node = Topology(app, transport, node_id="n", clock=clock, rng=Random(0))
        node.queue("q").cleanup(interval=5.0, result_retention=60.0)
        async with clock.autojump(), anyio.create_task_group() as tg:
            running = await start_node(tg, node)
            old = await app.enqueue(answer, 1)
            assert await app.result(old, timeout=30) == 2
            await clock.sleep(100.0)
            new = await app.enqueue(answer, 2)
            assert await app.result(new, timeout=30) == 4
            await wait_until(
                clock,
                lambda: transport.store.jobs[old.job_id].result_text is None,
                what="the old result cleared",
            )
            assert (await transport.get(old.job_id)).state is JobState.SUCCEEDED
            assert (await transport.get(new.job_id)).result == 4
            await clock.sleep(70.0)
            assert (await transport.get(new.job_id)).result is None
            await running.stop()


async def test_the_history_of_a_minute_adds_up(transport: Transport, clock: VirtualClock) -> None:
    """Jobs that succeed, fail and die, a reclaimed lease and a dedupe fold show in the
    queue's history, with a wait and a run time for every attempt."""
    app = App(transport)

    @app.task("work", queue="q", max_attempts=2)
    async def work(ctx: JobContext, payload: str) -> Any:
        await ctx.clock.sleep(0.5)
        if payload == "fail":
            return RetryLater(delay=1.0)
        return None

    # A lease held by a worker that vanished: the node's Reaper takes it back, then it runs.
    orphan = await transport.enqueue(EnqueueRequest(kind="work", queue="q", payload="orphan"))
    (lease,) = await transport.claim("q", owner="gone", limit=1, ttl=2.0)
    assert lease.job_id == orphan.job_id
    ok = await app.enqueue(work, "ok")
    failing = await app.enqueue(work, "fail")
    folded = await transport.enqueue_many(
        [EnqueueRequest(kind="work", queue="q", payload="once", dedupe_key="k")] * 2
    )
    node = topology(app, transport, clock, queues=["q"])
    async with clock.autojump(), anyio.create_task_group() as tg:
        running = await start_node(tg, node)
        ids = [ok.job_id, failing.job_id, folded[0].job_id, orphan.job_id]
        jobs = await wait_final(transport, clock, ids)
        await running.stop()  # flushes what is left
    assert jobs[ok.job_id].state is JobState.SUCCEEDED
    assert jobs[failing.job_id].state is JobState.DEAD
    rows = await transport.list_stats(queue="q")
    assert {row.minute for row in rows} <= {minute_of(START) + MINUTE * n for n in range(3)}
    total = rows[0]
    for row in rows[1:]:
        total = total + QueueStats(queue="q", minute=total.minute, **_figures(row))
    assert total.deduplicated == 1
    assert total.failed == 1  # the first attempt of "fail"; its second ends dead
    assert total.dead == 1
    assert total.reclaimed == 1
    assert total.succeeded == 3  # ok, once, and the orphan run again
    assert total.wait.count == total.run.count == 5
    assert total.run.quantile(0.5) == pytest.approx(0.5, rel=0.19)
    # The orphan's start recovered it: once, from its lease's expiry (a reaper tick later).
    assert total.recovery.count == 1
    assert 0 < (total.recovery.quantile(1.0) or 0) <= 2 * WorkerConfig().reaper_interval


def _figures(row: QueueStats) -> dict[str, Any]:
    fields = {name: getattr(row, name) for name in row.cells() if ":" not in name}
    return {**fields, "wait": row.wait, "run": row.run, "recovery": row.recovery}


async def test_history_survives_a_store_outage(clock: VirtualClock) -> None:
    """A flush that fails keeps its increments; the next one adds them."""
    memory = MemoryTransport(clock=clock)
    faulty = FaultyTransport(memory)
    app = App(faulty)

    @app.task("work", queue="q")
    async def work(ctx: JobContext, payload: int) -> None:
        return None

    node = Topology(app, faulty, node_id="n1", clock=clock, rng=Random(0))
    node.history(interval=1.0).queue("q", concurrency=1)
    ids = [(await app.enqueue(work, n)).job_id for n in range(3)]
    async with clock.autojump(), anyio.create_task_group() as tg:
        faulty.failing.add("add_stats")
        running = await start_node(tg, node)
        await wait_final(memory, clock, ids)
        await clock.sleep(3.0)
        assert await memory.list_stats() == []
        assert faulty.calls["add_stats"] >= 1
        faulty.failing.clear()
        history = await running.node.child("history")
        await history.ask(lambda r: RunNow(reply_to=r), timeout=10.0)
        (row,) = await memory.list_stats()
        assert row.succeeded == 3
        await running.stop()


# --- the recorder, without actors ---------------------------------------------------------


def _claimed(
    job_id: int, at: float, queue: str = "q", due: float = 0.0, lost_at: float | None = None
) -> JobClaimed:
    return JobClaimed(
        lost_at=lost_at,
        at=at,
        job_id=job_id,
        kind="k",
        queue=queue,
        attempt=1,
        worker="w",
        token=1,
        enqueued_at=due,
        run_at=due,
    )


def test_the_recorder_attributes_every_ending_to_its_claims_queue() -> None:
    """Each ending counts on the queue and in the minute of its event, with its run time;
    the wait is from when the job was due to its start."""
    recorder = StatsRecorder()
    for job_id in range(1, 7):
        recorder.record(_claimed(job_id, 100.0, queue="a" if job_id < 6 else "b", due=99.0))
    recorder.record(
        JobSucceeded(at=101.0, job_id=1, kind="k", queue="a", attempt=1, worker="w", duration=1.0)
    )
    recorder.record(
        JobRetried(
            at=102.0,
            job_id=2,
            kind="k",
            queue="a",
            attempt=1,
            worker="w",
            run_at=0.0,
            error="x",
            duration=2.0,
        )
    )
    recorder.record(
        JobDead(
            at=103.0, job_id=3, kind="k", queue="a", attempt=1, worker="w", reason="x", duration=3.0
        )
    )
    recorder.record(JobCancelled(at=104.0, job_id=4, kind="k", queue="a", worker="w"))
    recorder.record(JobLeaseLost(at=105.0, job_id=5, kind="k", queue="a", worker="w", token=1))
    recorder.record(FinalizeRefused(at=130.0, job_id=6, kind="k", queue="b", worker="w", token=1))
    recorder.record(
        JobReclaimed(
            at=106.0,
            job_id=9,
            kind="k",
            queue="c",
            attempt=1,
            lost_by="x",
            expired_at=100.0,
            state=JobState.AVAILABLE,
        )
    )
    never_claimed_here = FinalizeRefused(
        at=107.0, job_id=99, kind="k", queue="b", worker="w", token=1
    )
    recorder.record(never_claimed_here)
    rows = {(row.queue, row.minute): row for row in recorder.take()}
    assert recorder.take() == []
    assert recorder.unattributed == 0
    a = rows[("a", 60.0)]
    assert (a.succeeded, a.failed, a.dead, a.cancelled, a.leases_lost) == (1, 1, 1, 1, 1)
    assert a.wait == Histogram.of([1.0] * 5)
    assert a.run == Histogram.of([1.0, 2.0, 3.0, 4.0])
    assert rows[("b", 120.0)].finalize_refused == 1
    assert rows[("b", 60.0)].finalize_refused == 1
    assert rows[("b", 60.0)].wait.count == 1
    assert rows[("c", 60.0)].reclaimed == 1


def test_the_recorder_forgets_the_oldest_claims_beyond_its_bound() -> None:
    """A bounded number of claims is tracked: a cancel whose claim was forgotten (or ended
    by a snooze) still counts, without a running time."""
    recorder = StatsRecorder(max_tracked=2)
    for job_id in (1, 2, 3):
        recorder.record(_claimed(job_id, 10.0))
    recorder.record(JobSnoozed(at=11.0, job_id=3, kind="k", queue="q", worker="w", run_at=20.0))
    for job_id in (1, 2, 3):
        recorder.record(JobCancelled(at=12.0, job_id=job_id, kind="k", queue="q", worker="w"))
    (row,) = recorder.take()
    assert row.cancelled == 3
    assert row.run == Histogram.of([2.0])
    assert recorder.unattributed == 0


def test_given_back_rows_are_flushed_with_the_next() -> None:
    """Rows a failed flush gives back add to what is recorded after."""
    recorder = StatsRecorder()
    recorder.record(_claimed(1, 10.0, lost_at=4.0))
    taken = recorder.take()
    recorder.record(_claimed(2, 20.0))
    recorder.give_back(taken)
    (row,) = recorder.take()
    assert row.wait.count == 2
    assert row.recovery == Histogram.of([6.0])


def test_a_start_that_recovers_a_lost_job_counts_its_recovery_time() -> None:
    """Only starts with a lost time count, from it; a store clock ahead counts as 0."""
    recorder = StatsRecorder()
    recorder.record(_claimed(1, 70.0, lost_at=40.0))
    recorder.record(_claimed(2, 80.0, lost_at=80.5))
    recorder.record(_claimed(3, 90.0))
    (row,) = recorder.take()
    assert row.recovery == Histogram.of([30.0, 0.0])
    assert row.wait.count == 3


_at = st.floats(min_value=-70.0, max_value=250.0, allow_nan=False)
# What every job event carries, drawn alike.
_job = {
    "at": _at,
    "job_id": st.integers(1, 5),
    "kind": st.just("k"),
    "queue": st.sampled_from("ab"),
    "worker": st.just("w"),
}
_event = st.one_of(
    st.builds(
        _claimed,
        st.integers(1, 5),
        _at,
        queue=st.sampled_from("ab"),
        due=_at,
        lost_at=st.none() | _at,
    ),
    st.builds(
        JobSucceeded,
        **_job,
        attempt=st.just(1),
        duration=st.floats(min_value=-1.0, max_value=400.0) | st.just(0.0),
    ),
    st.builds(
        JobRetried,
        **_job,
        attempt=st.just(1),
        run_at=_at,
        error=st.just("e"),
        duration=st.floats(min_value=0.0, max_value=400.0),
    ),
    st.builds(JobSnoozed, **_job, run_at=_at),
)


@settings(max_examples=300, deadline=None)
@given(
    events=st.lists(_event, max_size=40),
    cuts=st.lists(st.integers(0, 40), max_size=4),
    max_tracked=st.integers(1, 4),
)
def test_a_batch_is_recorded_as_its_events_one_by_one(
    events: list[Any], cuts: list[int], max_tracked: int
) -> None:
    """``record_all`` over any split of the events into batches counts what ``record`` of
    each in turn counts, the claims it remembers for later cancels included."""
    one_by_one = StatsRecorder(max_tracked=max_tracked)
    for event in events:
        one_by_one.record(event)
    batched = StatsRecorder(max_tracked=max_tracked)
    bounds = sorted({0, len(events), *(min(cut, len(events)) for cut in cuts)})
    for start, end in itertools.pairwise(bounds):
        batched.record_all(events[start:end])
    assert batched.take() == one_by_one.take()
    assert batched.unattributed == one_by_one.unattributed
    for recorder in (one_by_one, batched):  # a cancel's running time is from its claim
        for job_id in range(1, 6):
            recorder.record(JobCancelled(at=300.0, job_id=job_id, kind="k", queue="a", worker="w"))
    assert batched.take() == one_by_one.take()


def _claims(count: int, at: float) -> list[JobClaimed]:
    return [_claimed(job_id, at, due=at - 1.0) for job_id in range(count)]


async def test_history_counts_a_burst_before_its_next_flush(
    memory: MemoryTransport, clock: VirtualClock
) -> None:
    """Events are counted as they pile up, not only at the flush: a burst of ``FOLD_AT``
    leaves nothing buffered, however far the next flush is."""
    events = EventBus()
    history = History(transport=memory, events=events, interval=1000.0)
    async with clock.autojump(), open_actor_system(clock=clock) as system:
        await system.spawn(history)
        events.publish_many(_claims(_history.FOLD_AT - 1, START))
        await clock.sleep(1.0)
        assert history.recorder.pending == 0  # below the bound: buffered until a message
        events.publish(_claimed(_history.FOLD_AT, START, due=START - 1.0))
        await clock.sleep(1.0)
        assert history.recorder.pending == 1
        assert await memory.list_stats() == []  # counted, not yet flushed
    (row,) = await memory.list_stats()
    assert row.wait.count == _history.FOLD_AT  # every claim, once
    assert events.dropped == 0


async def test_history_drops_what_it_cannot_buffer_during_a_stuck_flush(
    memory: MemoryTransport, clock: VirtualClock, monkeypatch: pytest.MonkeyPatch
) -> None:
    """While a flush waits on the store, events buffer up to ``MAX_BUFFERED``; the newer
    ones are dropped and counted in ``EventBus.dropped``, the rest reach the store."""
    monkeypatch.setattr(_history, "FOLD_AT", 4)
    monkeypatch.setattr(_history, "MAX_BUFFERED", 10)
    faulty = FaultyTransport(memory)
    stuck = faulty.gates["add_stats"] = anyio.Event()
    events = EventBus()
    history = History(transport=faulty, events=events, interval=1.0)
    async with clock.autojump(), open_actor_system(clock=clock) as system:
        await system.spawn(history)
        events.publish(_claimed(100, START, due=START - 1.0))
        await clock.sleep(1.5)
        assert faulty.calls["add_stats"] == 1  # the flush of that claim waits on the store
        events.publish_many(_claims(13, START))
        assert events.dropped == 3
        stuck.set()
        await clock.sleep(1.5)
    rows = await memory.list_stats()
    assert sum(row.wait.count for row in rows) == 1 + 10


def test_a_negative_clock_time_is_not_counted() -> None:
    """An event dated before the epoch (a skewed clock) is unattributed, not a crash."""
    recorder = StatsRecorder()
    recorder.record(_claimed(1, -5.0))
    assert recorder.take() == []
    assert recorder.unattributed == 1


def test_node_info_refuses_bad_values() -> None:
    """A registration is checked when built."""
    with pytest.raises(InvalidRequest):
        NodeInfo(id="n", host="h", pid=1, version="v", started_at=0.0, heartbeat=0.0)
    with pytest.raises(InvalidRequest):
        NodeInfo(id="", host="h", pid=1, version="v", started_at=0.0, heartbeat=1.0)
