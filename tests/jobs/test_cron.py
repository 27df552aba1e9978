"""Cron: schedules fired by the leader only, at most once per tick, with overlap, catch-up
and jitter policies."""

from __future__ import annotations

import logging
import math
import time
from collections import Counter
from random import Random
from typing import Any

import anyio
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from actors.core import VirtualClock, open_actor_system
from actors.jobs import (
    App,
    CatchUp,
    ConfigInvalid,
    CronFired,
    CronSchedule,
    InvalidCronExpression,
    JobContext,
    Overlap,
    Topology,
    UnknownJobKind,
)
from actors.jobs.lowlevel import Cron, EventBus
from transports import InvalidQueueName, JobFilter, MemoryStore, MemoryTransport, Transport

from ._support import START, WORKER, FaultyTransport, Recorder, running, start_node, wait_until

pytestmark = pytest.mark.anyio

EVERY_5S = "* * * * * */5"  # six fields: the last one is seconds
LEADER_TTL = 3.0


def _cron_node(
    app: App,
    transport: Transport,
    clock: VirtualClock,
    schedules: list[CronSchedule],
    *,
    node_id: str,
    concurrency: int = 2,
    seed: int = 0,
    leader_ttl: float = LEADER_TTL,
) -> Topology:
    return (
        Topology(app, transport, node_id=node_id, clock=clock, rng=Random(seed))
        .queue("default", concurrency=concurrency, worker=WORKER)
        .reaper()
        .cron(schedules, leader_ttl=leader_ttl)
    )


def _app(runs: list[float] | None = None, *, seconds: float = 0.0) -> App:
    app = App()

    @app.task("cron.job")
    async def cron_job(ctx: JobContext, payload: Any) -> None:
        if runs is not None:
            runs.append(ctx.clock.now())
        await ctx.clock.sleep(seconds)

    return app


def _ticks(events: Recorder) -> list[float]:
    return [e.tick - START for e in events.of(CronFired)]


# --- schedules and their validation ---------------------------------------------------------


def test_an_invalid_expression_is_refused_at_construction() -> None:
    """A cron expression that does not parse raises InvalidCronExpression at once."""
    for expression in ["not cron", "* * *", "61 * * * *", "* * * * * * * *", ""]:
        with pytest.raises(InvalidCronExpression, match="invalid cron expression"):
            CronSchedule(name="bad", expression=expression, kind="cron.job")
    app = _app()
    with pytest.raises(InvalidCronExpression):
        app.schedule("bad", "every minute", "cron.job")
    assert app.schedules == []


def test_a_schedule_naming_an_unknown_kind_is_refused() -> None:
    """A schedule whose kind has no handler raises UnknownJobKind, from the App and from Cron."""
    app = _app()
    with pytest.raises(UnknownJobKind):
        app.schedule("nightly", "0 3 * * *", "no.such.kind")
    orphan = CronSchedule(name="nightly", expression="0 3 * * *", kind="no.such.kind")
    with pytest.raises(UnknownJobKind, match=r"no\.such\.kind"):
        Cron(
            app=app,
            transport=MemoryTransport(),
            events=EventBus(),
            node_id="n",
            rng=Random(0),
            schedules=[orphan],
        )


def test_six_field_expressions_tick_on_seconds() -> None:
    """``* * * * * */5`` ticks every five seconds; the latest tick at or before t is found
    without walking the ticks in between."""
    schedule = CronSchedule(name="fast", expression=EVERY_5S, kind="cron.job")
    assert schedule.next_after(START) == START + 5
    assert schedule.next_after(START + 4.9) == START + 5
    assert schedule.ticks_between(START, START + 20) == [START + d for d in (5, 10, 15, 20)]
    assert schedule.latest_until(START + 20) == START + 20
    assert schedule.latest_until(START + 24.5) == START + 20
    every_second = CronSchedule(name="busy", expression="* * * * * *", kind="cron.job")
    assert every_second.latest_until(START + 10 * 24 * 3600 + 0.5) == START + 10 * 24 * 3600


@pytest.mark.parametrize("before", [2e-7, 4e-7, 1e-6, 3e-6])
def test_a_time_a_hair_before_a_tick_is_before_it(before: float) -> None:
    """A time less than a microsecond before a tick (which a datetime rounds up to the tick
    itself) still has that tick next, and the one before it as its latest."""
    tick = START + 5
    for fresh in (True, False):
        schedule = CronSchedule(name="fast", expression=EVERY_5S, kind="cron.job")
        if not fresh:
            schedule.next_after(START + 1)  # remembered: START + 5 follows START + 1
            schedule.latest_until(START + 1)
        assert schedule.next_after(tick - before) == tick
        assert schedule.latest_until(tick - before) == START
        assert schedule.ticks_between(tick - before, tick) == [tick]
        assert schedule.latest_until(tick) == tick
        assert schedule.next_after(tick) == tick + 5


@settings(max_examples=200, deadline=None)
@given(
    expression=st.sampled_from([EVERY_5S, "* * * * *", "*/7 3-5 * * *", "0 0 29 2 *", "@hourly"]),
    moves=st.lists(
        st.one_of(
            # onto the next or the latest tick, or just before or after it
            st.tuples(
                st.sampled_from(["next", "latest"]),
                st.sampled_from([0.0, -0.5, 0.5, -1e-3, 1e-3, -0.999, 0.999]),
            ),
            st.tuples(st.just("by"), st.floats(-3.0, 3.0)),
            st.tuples(st.just("by"), st.floats(-86_400 * 400, 86_400 * 400)),  # a clock jump
        ),
        min_size=1,
        max_size=40,
    ),
)
def test_remembered_ticks_are_the_ticks_croniter_gives(
    expression: str, moves: list[tuple[str, float]]
) -> None:
    """A schedule reuses its last answers while a time stays between the same two ticks: asked
    in any order (the clock moving on, stepping back, jumping), it answers as a new one would."""
    kept = CronSchedule(name="kept", expression=expression, kind="cron.job")
    t = START + 0.25
    for move, by in moves:
        fresh = CronSchedule(name="fresh", expression=expression, kind="cron.job")
        if move == "next":
            t = fresh.next_after(t) + by
        elif move == "latest":
            t = fresh.latest_until(t) + by
        else:
            t += by
        fresh = CronSchedule(name="fresh", expression=expression, kind="cron.job")
        assert kept.next_after(t) == fresh.next_after(t)
        fresh = CronSchedule(name="fresh", expression=expression, kind="cron.job")
        assert kept.latest_until(t) == fresh.latest_until(t)


def test_a_schedules_names_and_policies_are_refused_by_name() -> None:
    """A bad kind, queue, jitter or policy is refused at construction with an error that says
    which field is wrong and, for a policy, what it may be."""
    with pytest.raises(InvalidQueueName, match=r"^invalid kind name 'no kind'"):
        CronSchedule(name="s", expression=EVERY_5S, kind="no kind")
    with pytest.raises(InvalidQueueName, match=r"^invalid queue name 'no queue'"):
        CronSchedule(name="s", expression=EVERY_5S, kind="cron.job", queue="no queue")
    assert CronSchedule(name="s", expression=EVERY_5S, kind="k", queue="reports").queue == "reports"
    with pytest.raises(ConfigInvalid, match=r"^schedule jitter must be >= 0, got -1\.0$"):
        CronSchedule(name="s", expression=EVERY_5S, kind="cron.job", jitter=-1.0)
    assert CronSchedule(name="s", expression=EVERY_5S, kind="cron.job", jitter=0).jitter == 0
    with pytest.raises(ConfigInvalid) as refused:
        CronSchedule(name="s", expression=EVERY_5S, kind="cron.job", overlap="sometimes")
    assert str(refused.value) == "Overlap must be one of 'skip', 'allow', got 'sometimes'"


def test_cron_durations_are_refused_by_name() -> None:
    """Cron's leader TTL must be > 0; its grace and release timeout may be 0, not less."""
    app = _app()
    schedule = CronSchedule(name="beat", expression=EVERY_5S, kind="cron.job")

    def cron(**durations: float) -> Cron:
        return Cron(
            app=app,
            transport=MemoryTransport(),
            events=EventBus(),
            node_id="n",
            rng=Random(0),
            schedules=[schedule],
            **durations,
        )

    with pytest.raises(ConfigInvalid, match=r"^Cron leader_ttl must be > 0, got 0"):
        cron(leader_ttl=0)
    with pytest.raises(ConfigInvalid, match=r"^Cron release_timeout must be >= 0, got -1"):
        cron(release_timeout=-1)
    with pytest.raises(ConfigInvalid, match=r"^Cron grace must be >= 0, got -1"):
        cron(grace=-1)
    cron(release_timeout=0, grace=0)


def test_schedules_tick_in_utc_whatever_the_local_time_zone(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """``0 3 * * *`` is 03:00 UTC on a machine set to another zone (India, no DST)."""
    schedule = CronSchedule(name="nightly", expression="0 3 * * *", kind="cron.job")
    midnight = 1_700_006_400.0  # 2023-11-15 00:00 UTC
    monkeypatch.setenv("TZ", "Asia/Kolkata")
    time.tzset()
    try:
        assert schedule.next_after(midnight) == midnight + 3 * 3600
        assert schedule.latest_until(midnight + 5 * 3600) == midnight + 3 * 3600
        assert schedule.latest_until(midnight + 23 * 3600) == midnight + 3 * 3600  # 04:30 local
        assert schedule.ticks_between(midnight, midnight + 86_400) == [midnight + 3 * 3600]
    finally:
        monkeypatch.undo()
        time.tzset()


def test_ticks_between_keeps_the_latest_up_to_its_limit() -> None:
    """Over more ticks than ``limit`` (10 000 by default), the latest ``limit`` are kept."""
    schedule = CronSchedule(name="fast", expression=EVERY_5S, kind="cron.job")
    assert schedule.ticks_between(START, START + 50, limit=3) == [
        START + 40,
        START + 45,
        START + 50,
    ]
    ticks = schedule.ticks_between(START, START + 5 * 10_001)
    assert len(ticks) == 10_000
    assert ticks[0] == START + 10
    assert ticks[-1] == START + 5 * 10_001


# --- firing ----------------------------------------------------------------------------------


async def test_only_the_leader_fires_and_a_successor_takes_over_at_once(
    clock: VirtualClock,
) -> None:
    """With two nodes, every tick is fired by the cron leader alone; when it stops, the other
    node fires the very next tick (the leader lease was handed back, not left to expire)."""
    store = MemoryStore()
    runs: list[float] = []
    app = _app(runs)
    schedule = CronSchedule(name="beat", expression=EVERY_5S, kind="cron.job")
    nodes = [
        _cron_node(app, MemoryTransport(clock=clock, store=store), clock, [schedule], node_id=n)
        for n in ("a", "b")
    ]
    async with clock.autojump(), anyio.create_task_group() as tg:
        first = await start_node(tg, nodes[0])
        await clock.sleep(1.5)
        second = await start_node(tg, nodes[1])
        await clock.sleep_until(START + 31)
        await first.stop()
        stopped_at = clock.now() - START
        await clock.sleep_until(START + 46)
        await second.stop()
    assert _ticks(first.events) == [5, 10, 15, 20, 25, 30]
    assert stopped_at < 35
    assert _ticks(second.events) == [35, 40, 45]
    assert [round(t - START, 3) for t in runs] == [5, 10, 15, 20, 25, 30, 35, 40, 45]
    fired = first.events.of(CronFired) + second.events.of(CronFired)
    assert not any(e.deduplicated for e in fired)


async def test_the_leader_holds_the_cron_lease_and_hands_it_back_when_it_stops(
    clock: VirtualClock,
) -> None:
    """The leader lease is named ``cron`` and held by the node id; a stopping leader releases
    it, so the next node fires the very next tick although the lease had a minute to live."""
    store = MemoryStore()
    checker = MemoryTransport(clock=clock, store=store)
    app = _app()
    schedule = CronSchedule(name="beat", expression=EVERY_5S, kind="cron.job")
    nodes = [
        _cron_node(
            app,
            MemoryTransport(clock=clock, store=store),
            clock,
            [schedule],
            node_id=n,
            leader_ttl=60.0,
        )
        for n in ("a", "b")
    ]
    async with clock.autojump(), anyio.create_task_group() as tg:
        first = await start_node(tg, nodes[0])
        await clock.sleep(1.5)
        second = await start_node(tg, nodes[1])
        await clock.sleep_until(START + 31)
        (lease,) = await checker.list_leaders()
        assert (lease.name, lease.holder) == ("cron", "a")
        assert lease.expires_at > START + 80
        await first.stop()
        assert await checker.list_leaders() == []
        await clock.sleep_until(START + 41)
        await second.stop()
    assert _ticks(first.events) == [10, 15, 20, 25, 30]  # its first look, at 5 s, set the cursor
    assert _ticks(second.events) == [35, 40]


async def test_leadership_is_logged_when_it_changes_only(
    clock: VirtualClock, caplog: pytest.LogCaptureFixture
) -> None:
    """A node logs taking the cron lease (with its epoch) and losing it, once each; a node
    that never leads logs nothing about it."""
    store = MemoryStore()
    checker = MemoryTransport(clock=clock, store=store)
    app = _app()
    schedule = CronSchedule(name="beat", expression=EVERY_5S, kind="cron.job")
    caplog.set_level(logging.INFO, logger="actorq.cron")
    async with clock.autojump(), anyio.create_task_group() as tg:
        nodes = []
        for name in ("a", "b"):
            transport = MemoryTransport(clock=clock, store=store)
            nodes.append(
                await start_node(tg, _cron_node(app, transport, clock, [schedule], node_id=name))
            )
            await clock.sleep(1.5)
        await clock.sleep_until(START + 12)
        assert await checker.release_leader("cron", holder="a")
        assert await checker.acquire_leader("cron", holder="intruder", ttl=1000.0) is not None
        await clock.sleep_until(START + 22)
        for node in nodes:
            await node.stop()
    said = [r.getMessage() for r in caplog.records if r.name == "actorq.cron"]
    assert said == ["a: cron leader (epoch 1)", "a: no longer the cron leader"]


@pytest.mark.parametrize(("grace", "fires"), [(4.0, True), (3.5, False)])
async def test_a_late_tick_fires_within_the_grace_and_is_missed_after_it(
    memory: MemoryTransport, clock: VirtualClock, grace: float, fires: bool
) -> None:
    """Under ``CatchUp.SKIP`` a tick seen ``grace`` seconds late still fires; later, it counts
    as missed. (The node starts at 23 s: its first look, at 24 s, finds tick 20 4 s late.)"""
    app = _app()
    schedule = CronSchedule(name="beat", expression=EVERY_5S, kind="cron.job")
    memory.store.cursors[schedule.cursor] = START
    events = EventBus()
    recorder = Recorder()
    events.subscribe(recorder)
    cron = Cron(
        app=app,
        transport=memory,
        events=events,
        node_id="n",
        rng=Random(0),
        schedules=[schedule],
        leader_ttl=3.0,
        grace=grace,
    )
    async with clock.autojump():
        await clock.sleep_until(START + 23)
        async with open_actor_system(clock=clock) as system:
            await system.spawn(cron)
            await clock.sleep_until(START + 24.5)
    assert _ticks(recorder) == ([20] if fires else [])


async def test_a_tick_enqueues_the_schedules_payload_on_its_queue(
    memory: MemoryTransport, clock: VirtualClock
) -> None:
    """Each tick's job carries the schedule's payload, on the schedule's queue."""
    app = _app()
    schedule = CronSchedule(
        name="report", expression=EVERY_5S, kind="cron.job", payload={"n": 7}, queue="reports"
    )
    node = _cron_node(app, memory, clock, [schedule], node_id="n")
    async with clock.autojump(), running(node) as (_, events):
        await clock.sleep_until(START + 11)
    assert _ticks(events) == [5, 10]
    jobs = await memory.list_jobs(JobFilter(kind="cron.job"))
    assert [(job.queue, job.payload) for job in jobs] == [("reports", {"n": 7})] * 2


async def test_a_cron_without_schedules_still_keeps_its_lease(
    memory: MemoryTransport, clock: VirtualClock
) -> None:
    """With nothing to fire, Cron still wakes every ``leader_ttl / 3`` and keeps leading."""
    faulty = FaultyTransport(memory)
    cron = Cron(
        app=_app(),
        transport=faulty,
        events=EventBus(),
        node_id="n",
        rng=Random(0),
        schedules=[],
        leader_ttl=3.0,
    )
    async with clock.autojump(), open_actor_system(clock=clock) as system:
        ref = await system.spawn(cron)
        await clock.sleep(30.5)
        assert ref.is_alive
        (lease,) = await memory.list_leaders()
        assert lease.holder == "n"
        assert 29 <= faulty.calls["acquire_leader"] <= 31


async def test_each_tick_fires_at_most_once_under_a_flapping_leader(clock: VirtualClock) -> None:
    """Two nodes on one store whose cron actors keep stalling (past the leader lease TTL, at
    every step of a tick) never fire a tick twice: one CronFired and one job per tick at most."""
    store = MemoryStore()
    transports = {
        name: FaultyTransport(MemoryTransport(clock=clock, store=store)) for name in ("a", "b")
    }
    checker = MemoryTransport(clock=clock, store=store)
    app = _app()
    schedule = CronSchedule(
        name="beat", expression=EVERY_5S, kind="cron.job", overlap=Overlap.ALLOW
    )
    steps = ["acquire_leader", "get_cursor", "advance_cursor", "enqueue_many"]
    rng = Random(2024)  # the test's own choice of stalls

    async def stall(name: str, step: str, seconds: float) -> None:
        gate = anyio.Event()
        transports[name].gates[step] = gate
        await clock.sleep(seconds)
        del transports[name].gates[step]
        gate.set()

    async with clock.autojump(), anyio.create_task_group() as tg:
        nodes = {
            name: await start_node(
                tg, _cron_node(app, transport, clock, [schedule], node_id=name, seed=seed)
            )
            for seed, (name, transport) in enumerate(transports.items())
        }
        # Leadership must change hands: stall each node in turn for longer than its lease.
        await clock.sleep(12.0)
        await stall("a", "acquire_leader", 10.0)
        await stall("b", "acquire_leader", 10.0)
        for _ in range(25):
            async with anyio.create_task_group() as stalls:
                for name in rng.sample(sorted(transports), rng.randint(1, 2)):
                    seconds = rng.uniform(0.5, 3 * LEADER_TTL)
                    stalls.start_soon(stall, name, rng.choice(steps), seconds)
            await clock.sleep(rng.uniform(0.0, LEADER_TTL))
        await clock.sleep(20.0)
        end = clock.now()
        fired = nodes["a"].events.of(CronFired) + nodes["b"].events.of(CronFired)
        jobs = await checker.list_jobs(JobFilter(kind="cron.job"), limit=10_000)
        for node in nodes.values():
            await node.stop()
    per_tick = Counter(e.tick for e in fired)
    assert per_tick, "nothing fired"
    assert max(per_tick.values()) == 1, f"ticks fired twice: {per_tick.most_common(3)}"
    assert Counter(job.dedupe_key for job in jobs).most_common(1)[0][1] == 1
    assert {job.id for job in jobs} == {e.job_id for e in fired}
    # Both nodes led at some point, and most ticks still fired.
    assert nodes["a"].events.of(CronFired)
    assert nodes["b"].events.of(CronFired)
    assert len(fired) >= len(schedule.ticks_between(START + 2, end)) // 2


@pytest.mark.parametrize("overlap", [Overlap.SKIP, Overlap.ALLOW])
async def test_overlap_policy(
    memory: MemoryTransport, clock: VirtualClock, overlap: Overlap
) -> None:
    """SKIP folds a tick into the previous run while it is still active (``deduplicated``);
    ALLOW starts a new run on every tick."""
    runs: list[float] = []
    app = _app(runs, seconds=12.0)
    schedule = CronSchedule(name="long", expression=EVERY_5S, kind="cron.job", overlap=overlap)
    node = _cron_node(app, memory, clock, [schedule], node_id="n", concurrency=3)
    async with clock.autojump(), running(node) as (_, events):
        await clock.sleep_until(START + 31)
        fired = events.of(CronFired)
        assert _ticks(events) == [5, 10, 15, 20, 25, 30]
        ran = [round(t - START) for t in runs]
    if overlap is Overlap.SKIP:
        # The first run lasts from 5 to 17: ticks 10 and 15 fold into it; 20 starts anew.
        assert [e.deduplicated for e in fired] == [False, True, True, False, True, True]
        assert len({e.job_id for e in fired}) == 2
        assert fired[1].job_id == fired[2].job_id == fired[0].job_id
        assert ran == [5, 20]
    else:
        assert not any(e.deduplicated for e in fired)
        assert len({e.job_id for e in fired}) == 6
        assert ran == [5, 10, 15, 20, 25, 30]


@pytest.mark.parametrize("catch_up", [CatchUp.SKIP, CatchUp.FIRE_ONCE])
async def test_catch_up_policy_after_downtime(
    clock: VirtualClock, caplog: pytest.LogCaptureFixture, catch_up: CatchUp
) -> None:
    """Ticks missed while no node ran: SKIP forgets them all; FIRE_ONCE fires exactly one job
    for the latest of them. Either says so in one line. Then the schedule goes on as usual."""
    caplog.set_level(logging.INFO, logger="actorq.cron")
    store = MemoryStore()
    app = _app()
    schedule = CronSchedule(
        name="ten", expression="* * * * * */10", kind="cron.job", catch_up=catch_up
    )
    before = _cron_node(
        app, MemoryTransport(clock=clock, store=store), clock, [schedule], node_id="a"
    )
    after = _cron_node(
        app, MemoryTransport(clock=clock, store=store), clock, [schedule], node_id="b"
    )
    checker = MemoryTransport(clock=clock, store=store)
    async with clock.autojump():
        async with running(before) as (_, before_events):
            await clock.sleep_until(START + 25)
        await clock.sleep_until(START + 125)  # downtime: ticks 30 to 120 pass unseen
        async with running(after) as (_, after_events):
            await clock.sleep_until(START + 145)
            after_ticks = _ticks(after_events)
    assert _ticks(before_events) == [10, 20]
    if catch_up is CatchUp.SKIP:
        assert after_ticks == [130, 140]
    else:
        assert after_ticks == [120, 130, 140]
        assert after_events.of(CronFired)[0].at - START == pytest.approx(126.0, abs=1.0)
    jobs = await checker.list_jobs(JobFilter(kind="cron.job"))
    assert len(jobs) == len(before_events.of(CronFired)) + len(after_events.of(CronFired))
    missed = [r.getMessage() for r in caplog.records if "missed" in r.getMessage()]
    skipped = f"cron 'ten': missed tick(s) after {START + 20} skipped"
    if catch_up is CatchUp.SKIP:
        assert missed == [f"{skipped}, including the latest ({START + 120})"]
    else:
        assert missed == [skipped]


async def test_jitter_delays_each_run_within_its_bound(
    memory: MemoryTransport, clock: VirtualClock
) -> None:
    """With ``jitter=j`` each tick's job is due between the tick and j seconds after it."""
    runs: list[float] = []
    app = _app(runs)
    schedule = CronSchedule(name="spread", expression=EVERY_5S, kind="cron.job", jitter=4.0)
    node = _cron_node(app, memory, clock, [schedule], node_id="n", seed=1)
    async with clock.autojump(), running(node) as (_, events):
        await clock.sleep_until(START + 61)
        fired = events.of(CronFired)
    assert len(fired) == 12
    delays = []
    for event in fired:
        job = await memory.get(event.job_id)
        delays.append(job.run_at - event.tick)
    assert all(0.0 <= d <= 4.0 for d in delays)
    assert len({round(d, 6) for d in delays}) == len(delays)  # drawn, not constant
    assert min(delays) < 1.0 < 3.0 < max(delays)  # over the whole bound (seed 1's draws)
    assert len(runs) >= 11
    assert all(
        run >= tick for run, tick in zip(sorted(runs), sorted(e.tick for e in fired), strict=False)
    )


async def test_a_storage_error_skips_a_tick_without_crashing(clock: VirtualClock) -> None:
    """When the store fails during a tick, Cron logs it and fires again once it is back."""
    inner = MemoryTransport(clock=clock)
    faulty = FaultyTransport(inner)
    app = _app()
    schedule = CronSchedule(name="beat", expression=EVERY_5S, kind="cron.job")
    node = _cron_node(app, faulty, clock, [schedule], node_id="n")
    async with clock.autojump(), running(node) as (_, events):
        await clock.sleep_until(START + 11)
        faulty.failing.update({"advance_cursor", "get_cursor", "acquire_leader"})
        await clock.sleep_until(START + 21)
        faulty.failing.clear()
        await wait_until(clock, lambda: len(events.of(CronFired)) >= 4, what="firing again")
    ticks = _ticks(events)
    assert ticks[:2] == [5, 10]
    assert 15 not in ticks
    assert max(Counter(ticks).values()) == 1


@pytest.mark.parametrize("bad", [math.nan, math.inf])
async def test_a_bad_stored_cursor_stops_its_schedule_loudly_not_the_node(
    memory: MemoryTransport, clock: VirtualClock, caplog: pytest.LogCaptureFixture, bad: float
) -> None:
    """A cursor another tool stored as NaN or infinity cannot be compared with a tick: that
    schedule does not fire, with one WARNING naming it; Cron does not crash and the other
    schedules fire as usual."""
    app = _app()
    broken = CronSchedule(name="broken", expression=EVERY_5S, kind="cron.job")
    fine = CronSchedule(name="fine", expression=EVERY_5S, kind="cron.job")
    memory.store.cursors["cron:broken"] = bad
    caplog.set_level(logging.WARNING, logger="actorq.cron")
    async with (
        clock.autojump(),
        running(_cron_node(app, memory, clock, [broken, fine], node_id="n1")) as (node, events),
    ):
        cron = await node.child("cron")
        await clock.sleep(30.0)
        assert (await node.child("cron")) is cron  # never crashed
    fired = {e.schedule for e in events.of(CronFired)}
    assert fired == {"fine"}
    (warning,) = [r for r in caplog.records if "broken" in r.getMessage()]
    assert warning.getMessage() == (
        f"cron 'broken': ignoring the stored cursor {bad!r} (not a finite time); the schedule "
        "does not fire until it is reset"
    )
    assert warning.levelno == logging.WARNING
    assert warning.schedule == "broken"  # type: ignore[attr-defined]  # an extra= field
