"""What a handler's outcome does to its job: done, retry, drop, snooze, failure, timeout."""

from __future__ import annotations

import random
from typing import Any

import attrs
import pytest

from actors.core import VirtualClock
from actors.jobs import (
    App,
    ConfigInvalid,
    Constant,
    Done,
    Drop,
    Exponential,
    JobContext,
    JobDead,
    JobRetried,
    JobSnoozed,
    JobSucceeded,
    Linear,
    RetryLater,
    SnoozeUntil,
    WorkerConfig,
    WorkerCrashed,
)
from transports import EnqueueRequest, JobState, MemoryTransport

from ._support import START, FaultyTransport, running, topology, wait_final, wait_state

pytestmark = pytest.mark.anyio


class Boom(Exception):
    """A handler's own failure."""


@attrs.frozen
class Order:
    order_id: int


# --- success ----------------------------------------------------------------------------------


async def test_returning_none_or_done_succeeds(
    memory: MemoryTransport, clock: VirtualClock
) -> None:
    """A handler returning None or Done ends its job succeeded on the first attempt."""
    app = App(memory)

    @app.task("quiet")
    async def quiet(ctx: JobContext, payload: Any) -> None:
        await ctx.clock.sleep(2.0)

    @app.task("explicit")
    async def explicit(ctx: JobContext, payload: Any) -> Done:
        return Done()

    ids = [(await app.enqueue(kind)).job_id for kind in ("quiet", "explicit")]
    async with clock.autojump(), running(topology(app, memory, clock)) as (_, events):
        jobs = await wait_final(memory, clock, ids)
    for job in jobs.values():
        assert (job.state, job.attempt, job.last_error) == (JobState.SUCCEEDED, 1, None)
    succeeded = {e.job_id: e for e in events.of(JobSucceeded)}
    assert set(succeeded) == set(ids)
    assert succeeded[ids[0]].duration == pytest.approx(2.0)
    assert succeeded[ids[1]].duration == 0.0


async def test_a_result_is_stored_promptly_even_behind_a_long_job_of_its_batch(
    memory: MemoryTransport, clock: VirtualClock
) -> None:
    """Jobs claimed together run one after another; a finished job's result is finalized
    within the worker's finalize delay, not when the rest of its batch is done."""
    app = App(memory)

    @app.task("quick")
    async def quick(ctx: JobContext, payload: Any) -> None:
        return None

    @app.task("slow")
    async def slow(ctx: JobContext, payload: Any) -> None:
        await ctx.clock.sleep(600.0)

    await app.enqueue(quick, None)  # the first claim takes one job; later ones take batches
    quick_id = (await app.enqueue(quick, None)).job_id
    slow_id = (await app.enqueue(slow, None)).job_id
    async with clock.autojump(), running(topology(app, memory, clock, concurrency=1)):
        job = await wait_state(memory, clock, quick_id, JobState.SUCCEEDED, step=0.01)
        finished_at = clock.now()
        assert (await memory.get(slow_id)).state is JobState.RUNNING
    assert job.finished_at is not None
    assert finished_at - START < 1.0


@pytest.mark.parametrize("delay", [0.05, 1.0])
async def test_outcomes_handed_back_within_the_finalize_delay_are_stored_in_one_call(
    clock: VirtualClock, delay: float
) -> None:
    """While Workers are still busy (each freed one taking the next job at once), outcomes
    that come back within ``finalize_delay`` of the first go to the store together, in one
    finalize call once the delay is up."""
    inner = MemoryTransport(clock=clock)
    faulty = FaultyTransport(inner)
    app = App(inner)

    @app.task("staggered")
    async def staggered(ctx: JobContext, payload: float) -> None:
        await ctx.clock.sleep(payload)

    ids = [(await app.enqueue(staggered, t)).job_id for t in (1.0, 1.01, 1.02, 30.0)]
    for _ in range(3):
        await app.enqueue(staggered, 30.0)  # the next job of each slot that frees
    config = WorkerConfig(lease_ttl=60.0, finalize_delay=delay, poll_interval=100.0)
    async with (
        clock.autojump(),
        running(topology(app, faulty, clock, worker=config, concurrency=4)),
    ):
        await wait_final(inner, clock, ids[:3])
        assert faulty.calls["finalize"] == 1
        stored = [(await inner.get(i)).finished_at for i in ids[:3]]
    assert stored == [pytest.approx(START + 1.0 + delay, abs=0.005)] * 3


async def test_a_result_over_the_stores_own_limit_ends_the_job_dead(clock: VirtualClock) -> None:
    """The limit a node holds a handler's result to is its store's, not the default."""
    async with MemoryTransport(clock=clock, max_result_bytes=100) as small:
        app = App(small)

        @app.task("wordy")
        async def wordy(ctx: JobContext, payload: Any) -> str:
            return "x" * 200

        job_id = (await app.enqueue(wordy, None)).job_id
        async with clock.autojump(), running(topology(app, small, clock)):
            job = await wait_state(small, clock, job_id, JobState.DEAD)
    assert job.last_error is not None
    assert "over the limit of 100" in job.last_error


# --- retries ----------------------------------------------------------------------------------


async def test_retry_later_with_a_delay_runs_again_then_and_spends_an_attempt(
    memory: MemoryTransport, clock: VirtualClock
) -> None:
    """RetryLater(delay) schedules the job at now + delay, records the reason, spends an attempt."""
    app = App(memory)
    runs: list[tuple[float, int]] = []

    @app.task("flaky", max_attempts=5)
    async def flaky(ctx: JobContext, payload: Any) -> RetryLater | None:
        runs.append((ctx.clock.now(), ctx.attempt))
        return RetryLater(delay=30.0, reason="upstream busy") if ctx.attempt == 1 else None

    job_id = (await app.enqueue(flaky, None)).job_id
    async with clock.autojump(), running(topology(app, memory, clock)) as (_, events):
        waiting = await wait_state(memory, clock, job_id, JobState.SCHEDULED)
        assert waiting.attempt == 1
        assert waiting.last_error == "upstream busy"
        assert waiting.run_at == pytest.approx(runs[0][0] + 30.0)
        done = await wait_state(memory, clock, job_id, JobState.SUCCEEDED)
    assert done.attempt == 2
    assert [attempt for _, attempt in runs] == [1, 2]
    assert runs[1][0] == pytest.approx(runs[0][0] + 30.0, abs=1.0)
    (retried,) = events.of(JobRetried)
    assert (retried.attempt, retried.error) == (1, "upstream busy")
    assert retried.run_at == pytest.approx(runs[0][0] + 30.0)


async def test_retry_later_without_a_delay_uses_the_backoff(
    memory: MemoryTransport, clock: VirtualClock
) -> None:
    """RetryLater() waits as long as the task's backoff says."""
    app = App(memory)
    runs: list[float] = []

    @app.task("backs.off", backoff=Constant(seconds=7.0))
    async def backs_off(ctx: JobContext, payload: Any) -> RetryLater | None:
        runs.append(ctx.clock.now())
        return RetryLater() if len(runs) < 3 else None

    job_id = (await app.enqueue(backs_off, None)).job_id
    async with clock.autojump(), running(topology(app, memory, clock)) as (_, events):
        job = await wait_state(memory, clock, job_id, JobState.SUCCEEDED)
    assert job.attempt == 3
    assert [e.run_at - e.at for e in events.of(JobRetried)] == pytest.approx([7.0, 7.0])
    assert runs[1] - runs[0] == pytest.approx(7.0, abs=1.0)
    assert runs[2] - runs[1] == pytest.approx(7.0, abs=1.0)


async def test_retry_later_on_the_last_attempt_ends_dead(
    memory: MemoryTransport, clock: VirtualClock
) -> None:
    """A retry with no attempts left ends the job dead with the retry's reason."""
    app = App(memory)

    @app.task("never.ready", max_attempts=2)
    async def never_ready(ctx: JobContext, payload: Any) -> RetryLater:
        return RetryLater(delay=1.0, reason="still not ready")

    job_id = (await app.enqueue(never_ready, None)).job_id
    async with clock.autojump(), running(topology(app, memory, clock)) as (_, events):
        job = await wait_state(memory, clock, job_id, JobState.DEAD)
    assert job.attempt == 2
    assert job.last_error is not None
    assert "still not ready" in job.last_error
    assert len(events.of(JobRetried)) == 1
    assert len(events.of(JobDead)) == 1


async def test_drop_ends_dead_at_once_with_its_reason(
    memory: MemoryTransport, clock: VirtualClock
) -> None:
    """Drop(reason) ends the job dead without retrying, whatever attempts remain."""
    app = App(memory)
    calls: list[int] = []

    @app.task("bad.input", max_attempts=10)
    async def bad_input(ctx: JobContext, payload: Any) -> Drop:
        calls.append(ctx.attempt)
        return Drop(reason="address does not exist")

    job_id = (await app.enqueue(bad_input, None)).job_id
    async with clock.autojump(), running(topology(app, memory, clock)) as (_, events):
        job = await wait_state(memory, clock, job_id, JobState.DEAD)
        await clock.sleep(60.0)  # would be long enough for any retry
    assert calls == [1]
    assert (job.attempt, job.last_error) == (1, "address does not exist")
    (dead,) = events.of(JobDead)
    assert (dead.job_id, dead.reason) == (job_id, "address does not exist")


async def test_snooze_runs_again_at_its_time_without_spending_an_attempt(
    memory: MemoryTransport, clock: VirtualClock
) -> None:
    """SnoozeUntil(t) reschedules the job at t and gives its attempt back."""
    app = App(memory)
    runs: list[tuple[float, int]] = []
    wake_at = START + 500.0

    @app.task("waits", max_attempts=1)
    async def waits(ctx: JobContext, payload: Any) -> SnoozeUntil | None:
        runs.append((ctx.clock.now(), ctx.attempt))
        return SnoozeUntil(at=wake_at) if len(runs) < 3 else None

    job_id = (await app.enqueue(waits, None)).job_id
    async with clock.autojump(), running(topology(app, memory, clock)) as (_, events):
        snoozed = await wait_state(memory, clock, job_id, JobState.SCHEDULED)
        assert (snoozed.attempt, snoozed.run_at) == (0, wake_at)
        job = await wait_state(memory, clock, job_id, JobState.SUCCEEDED, timeout=2000.0, step=5.0)
    # max_attempts=1 and three runs: snoozes never counted.
    assert job.attempt == 1
    assert [attempt for _, attempt in runs] == [1, 1, 1]
    assert runs[1][0] == pytest.approx(wake_at, abs=1.0)
    assert [e.run_at for e in events.of(JobSnoozed)] == [wake_at, wake_at]


async def test_an_exception_retries_with_backoff_until_max_attempts_then_dead(
    memory: MemoryTransport, clock: VirtualClock
) -> None:
    """A raising handler is retried after the backoff until max_attempts, then dead with the
    error recorded."""
    app = App(memory)
    runs: list[float] = []

    @app.task("explodes", max_attempts=3, backoff=Linear(base=5.0, step=10.0))
    async def explodes(ctx: JobContext, payload: Any) -> None:
        runs.append(ctx.clock.now())
        raise Boom(f"kaput on attempt {ctx.attempt}")

    job_id = (await app.enqueue(explodes, None)).job_id
    async with clock.autojump(), running(topology(app, memory, clock)) as (_, events):
        job = await wait_state(memory, clock, job_id, JobState.DEAD)
    assert len(runs) == 3
    assert runs[1] - runs[0] == pytest.approx(5.0, abs=1.0)
    assert runs[2] - runs[1] == pytest.approx(15.0, abs=1.0)
    assert job.attempt == 3
    assert job.last_error is not None
    assert "Boom: kaput on attempt 3" in job.last_error
    retried = events.of(JobRetried)
    assert [e.attempt for e in retried] == [1, 2]
    assert "Boom: kaput on attempt 1" in retried[0].error
    (dead,) = events.of(JobDead)
    assert "attempts exhausted (3/3)" in dead.reason
    # Each failed attempt is in the job's history: its class, the traceback's innermost frame
    # (the handler), the worker that ran it and when.
    assert [(e.attempt, e.type) for e in job.errors] == [
        (n, "tests.jobs.test_outcomes.Boom") for n in (1, 2, 3)
    ]
    assert [e.at for e in job.errors] == pytest.approx(runs, abs=1.0)
    for error in job.errors:
        assert error.traceback is not None
        assert error.traceback.startswith("Traceback (most recent call last):\n  File ")
        assert "in explodes" in error.traceback
        assert error.traceback.rstrip().endswith(f"Boom: kaput on attempt {error.attempt}")
        assert error.owner is not None
    assert job.errors[-1].message == job.last_error


async def test_a_failures_message_is_its_exception_with_its_notes_cut_to_2000_characters(
    memory: MemoryTransport, clock: VirtualClock
) -> None:
    """The error recorded for a raised exception is its class and message as Python prints
    them, notes included, at most 2000 characters."""
    app = App(memory)

    @app.task("noted", max_attempts=2, backoff=Constant(seconds=1.0))
    async def noted(ctx: JobContext, payload: Any) -> None:
        if ctx.attempt == 1:
            error = Boom("kaput")
            error.add_note("see the runbook")
            raise error
        raise Boom("x" * 3000)

    job_id = (await app.enqueue(noted, None)).job_id
    async with clock.autojump(), running(topology(app, memory, clock)):
        job = await wait_state(memory, clock, job_id, JobState.DEAD)
    first, second = job.errors
    assert first.message == f"{Boom.__module__}.Boom: kaput\nsee the runbook"
    prefix = f"{Boom.__module__}.Boom: "
    assert second.message.endswith(prefix + "x" * (2000 - len(prefix)))


async def test_a_timeout_cancels_the_handler_and_counts_as_a_failure(
    memory: MemoryTransport, clock: VirtualClock
) -> None:
    """Past its timeout a handler is cancelled; the run fails and is retried, then dead."""
    app = App(memory)
    started: list[float] = []
    finished: list[float] = []
    cancelled: list[float] = []

    @app.task("slow", timeout=2.0, max_attempts=2, backoff=Constant(seconds=1.0))
    async def slow(ctx: JobContext, payload: Any) -> None:
        started.append(ctx.clock.now())
        try:
            await ctx.clock.sleep(100.0)
        except BaseException:
            cancelled.append(ctx.clock.now())
            raise
        finished.append(ctx.clock.now())

    job_id = (await app.enqueue(slow, None)).job_id
    async with clock.autojump(), running(topology(app, memory, clock)) as (_, events):
        job = await wait_state(memory, clock, job_id, JobState.DEAD)
    assert finished == []
    assert [c - s for s, c in zip(started, cancelled, strict=True)] == pytest.approx([2.0, 2.0])
    assert job.attempt == 2
    assert job.last_error is not None
    assert "timed out after 2s" in job.last_error
    assert [e.error for e in events.of(JobRetried)] == ["timed out after 2s"]
    assert [(e.attempt, e.type, e.traceback) for e in job.errors] == [
        (1, "Timeout", None),
        (2, "Timeout", None),
    ]


async def test_a_value_that_is_not_an_outcome_is_the_result(
    memory: MemoryTransport, clock: VirtualClock
) -> None:
    """Returning a JSON value succeeds with it as the result; returning one that cannot be
    stored (not JSON) ends the job dead, naming why, without a retry."""
    app = App(memory)

    @app.task("answer")
    async def answer(ctx: JobContext, payload: Any) -> Any:
        return 42

    @app.task("confused")
    async def confused(ctx: JobContext, payload: Any) -> Any:
        return {1, 2}

    answered = (await app.enqueue(answer, None)).job_id
    job_id = (await app.enqueue(confused, None)).job_id
    async with clock.autojump(), running(topology(app, memory, clock)):
        job = await wait_state(memory, clock, job_id, JobState.DEAD)
        done = await wait_state(memory, clock, answered, JobState.SUCCEEDED)
    assert done.result == 42
    assert job.attempt == 1
    assert job.last_error is not None
    assert "not JSON" in job.last_error
    assert job.errors[-1].type == "ResultInvalid"


# --- jobs the worker cannot run -------------------------------------------------------------


async def test_a_job_without_a_handler_ends_dead_without_retries(
    memory: MemoryTransport, clock: VirtualClock
) -> None:
    """A kind this node has no handler for ends dead at once, saying so."""
    app = App(memory)

    @app.task("known")
    async def known(ctx: JobContext, payload: Any) -> None:
        return None

    (ghost,) = await memory.enqueue_many(
        [EnqueueRequest(kind="retired.kind", payload={}, max_attempts=5)]
    )
    async with clock.autojump(), running(topology(app, memory, clock)) as (_, events):
        job = await wait_state(memory, clock, ghost.job_id, JobState.DEAD)
    assert job.attempt == 1
    assert job.last_error == "no handler is registered for job kind 'retired.kind'"
    assert events.of(JobRetried) == []
    assert [e.reason for e in events.of(JobDead)] == [job.last_error]


async def test_a_poison_payload_ends_dead_and_the_worker_keeps_working(
    memory: MemoryTransport, clock: VirtualClock
) -> None:
    """A payload that cannot be structured ends dead as poison; other jobs still succeed."""
    app = App(memory)
    handled: list[int] = []

    @app.task("order.ship", max_attempts=5)
    async def ship(ctx: JobContext, payload: Order) -> None:
        handled.append(payload.order_id)

    good = [(await app.enqueue(ship, Order(order_id=n))).job_id for n in (1, 2)]
    poison = await memory.enqueue_many(
        [
            EnqueueRequest(kind="order.ship", payload={"order_id": "not a number"}),
            EnqueueRequest(kind="order.ship", payload={"order_id": 3, "extra": True}),
            EnqueueRequest(kind="order.ship", payload=[1, 2, 3]),
        ]
    )
    good += [(await app.enqueue(ship, Order(order_id=n))).job_id for n in (4, 5)]
    async with (
        clock.autojump(),
        running(topology(app, memory, clock, concurrency=1)) as (
            _,
            events,
        ),
    ):
        jobs = await wait_final(memory, clock, good + [p.job_id for p in poison])
    assert sorted(handled) == [1, 2, 4, 5]
    for result in poison:
        job = jobs[result.job_id]
        assert (job.state, job.attempt) == (JobState.DEAD, 1)
        assert job.last_error is not None
        assert job.last_error.startswith("poison payload:")
    assert "order_id" in (jobs[poison[0].job_id].last_error or "")
    assert {jobs[i].state for i in good} == {JobState.SUCCEEDED}
    assert events.of(WorkerCrashed) == []


# --- backoff strategies -----------------------------------------------------------------------


def test_constant_and_linear_backoff() -> None:
    """Constant waits the same; Linear grows by ``step`` per attempt up to its cap."""
    rng = random.Random(0)
    assert [Constant(seconds=3.0).delay(n, rng) for n in (1, 2, 10)] == [3.0, 3.0, 3.0]
    linear = Linear(base=1.0, step=2.0, cap=6.0)
    assert [linear.delay(n, rng) for n in (1, 2, 3, 4, 50)] == [1.0, 3.0, 5.0, 6.0, 6.0]


def test_exponential_backoff_is_full_jitter_under_a_cap() -> None:
    """Exponential draws uniformly in [0, min(cap, base * factor**(n-1))]."""
    backoff = Exponential(base=2.0, factor=3.0, cap=100.0)
    rng = random.Random(42)
    for attempt, ceiling in [(1, 2.0), (2, 6.0), (3, 18.0), (4, 54.0), (5, 100.0), (500, 100.0)]:
        draws = [backoff.delay(attempt, rng) for _ in range(200)]
        assert all(0.0 <= d <= ceiling for d in draws)
        assert max(draws) > 0.8 * ceiling  # full jitter reaches up to the ceiling
        assert min(draws) < 0.2 * ceiling  # ... and down to zero
    plain = Exponential(base=1.0, factor=2.0, cap=30.0, jitter=False)
    assert [plain.delay(n, rng) for n in (1, 2, 3, 4, 5, 6, 10_000)] == [1, 2, 4, 8, 16, 30, 30]


def test_backoff_draws_only_from_the_given_rng() -> None:
    """Two RNGs with one seed give the same delays; the global RNG is never consulted."""
    backoff = Exponential(base=1.0, cap=600.0)
    random.seed(1)
    first = [backoff.delay(n, random.Random(7)) for n in range(1, 20)]
    random.seed(2)
    second = [backoff.delay(n, random.Random(7)) for n in range(1, 20)]
    assert first == second
    assert first != [backoff.delay(n, random.Random(8)) for n in range(1, 20)]


@pytest.mark.parametrize("bad", [{"seconds": -1.0}])
def test_negative_backoff_is_refused(bad: dict[str, float]) -> None:
    """A negative delay is refused when the strategy is built."""
    with pytest.raises(ConfigInvalid, match="must be >= 0"):
        Constant(**bad)
    with pytest.raises(ConfigInvalid, match="must be >= 0"):
        Exponential(cap=-1.0)


async def test_retry_times_replay_exactly_under_one_seed(clock: VirtualClock) -> None:
    """Two runs of one workload with one seed retry at identical times; another seed differs.

    One worker, so the order of draws from the node's RNG is the order of the jobs (several
    workers woken together may be scheduled in any order, which trio does on purpose).
    """

    async def retry_times(seed: int) -> list[float]:
        local = VirtualClock(start=START)
        async with MemoryTransport(clock=local) as store:
            app = App(store)

            @app.task("jittery", max_attempts=4, backoff=Exponential(base=10.0, cap=100.0))
            async def jittery(ctx: JobContext, payload: Any) -> None:
                raise Boom("again")

            ids = [(await app.enqueue(jittery, n)).job_id for n in range(4)]
            async with (
                local.autojump(),
                running(topology(app, store, local, seed=seed, concurrency=1)) as (
                    _,
                    events,
                ),
            ):
                await wait_final(store, local, ids, timeout=1000.0)
            return [e.run_at for e in events.of(JobRetried)]

    first = await retry_times(seed=3)
    assert len(first) == 12
    assert first == await retry_times(seed=3)
    assert first != await retry_times(seed=4)
