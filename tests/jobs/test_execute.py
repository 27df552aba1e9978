"""``execute`` on its own: what one claimed job's run decides, without a Worker or a node."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from random import Random
from typing import Any

import anyio
import pytest

from actors.core import VirtualClock
from actors.jobs import App, Exponential, JobClaimed, JobContext, LeaseLost, RetryLater
from actors.jobs.lowlevel import EventBus, Execution, execute, lose, request_cancel
from transports import EnqueueRequest, Job, MemoryTransport
from transports.lowlevel import (
    Cancel,
    Complete,
    Discard,
    Lease,
    Outcome,
    Release,
    RenewResult,
    Retry,
)

from ._support import Recorder

pytestmark = pytest.mark.anyio


async def _renew() -> RenewResult:
    return RenewResult.RENEWED


async def _lease(memory: MemoryTransport, kind: str, payload: Any = None) -> Lease:
    await memory.enqueue(EnqueueRequest(kind=kind, queue="q", payload=payload))
    (lease,) = await memory.claim("q", owner="n/q", limit=1, ttl=30.0)
    return lease


async def _run(
    run: Execution,
    app: App,
    clock: VirtualClock,
    memory: MemoryTransport,
    events: EventBus | None = None,
) -> tuple[Outcome | None, float]:
    return await execute(
        run,
        app=app,
        clock=clock,
        rng=Random(0),
        worker="w",
        events=events or EventBus(),
        renew=_renew,
        max_result_bytes=memory.max_result_bytes,
        transport=memory,
    )


def _app() -> App:
    app = App()

    @app.task("slow")
    async def slow(ctx: JobContext, payload: Any) -> None:
        await ctx.clock.sleep(2.0)

    @app.task("typed")
    async def typed(ctx: JobContext, payload: int) -> None:
        return None

    return app


async def test_a_run_publishes_its_claim_with_the_recovery_it_ends(
    memory: MemoryTransport, clock: VirtualClock
) -> None:
    """``JobClaimed`` names the job, its attempt, the claim's token and, for a job taken back
    from a lost lease, when that lease expired."""
    await memory.enqueue(EnqueueRequest(kind="slow", queue="q"))
    (first,) = await memory.claim("q", owner="n/q", limit=1, ttl=1.0)
    clock.advance(2.0)
    await memory.reap()
    (lease,) = await memory.claim("q", owner="n/q", limit=1, ttl=30.0)
    assert lease.lost_at is not None
    events = EventBus()
    recorder = Recorder()
    events.subscribe(recorder)
    async with clock.autojump():
        outcome, duration = await _run(Execution(lease), _app(), clock, memory, events)
    assert (outcome, duration) == (Complete(), pytest.approx(2.0))
    (claimed,) = recorder.of(JobClaimed)
    assert (claimed.job_id, claimed.kind, claimed.queue, claimed.attempt) == (
        first.job_id,
        "slow",
        "q",
        2,
    )
    assert (claimed.worker, claimed.token, claimed.lost_at) == ("w", lease.token, lease.lost_at)


async def test_nobody_listening_the_running_time_is_not_measured(
    memory: MemoryTransport, clock: VirtualClock
) -> None:
    """The handler's running time is only for events: with no subscriber it is 0."""
    lease = await _lease(memory, "slow")
    async with clock.autojump():
        assert await _run(Execution(lease), _app(), clock, memory) == (Complete(), 0.0)


async def test_a_run_that_cannot_start_ends_at_once_and_ran_for_no_time(
    memory: MemoryTransport, clock: VirtualClock
) -> None:
    """A lost lease stores nothing; a cancel asked for before the start cancels; a kind
    without a handler or a payload its handler cannot take ends dead: none runs the handler."""
    events = EventBus()
    events.subscribe(Recorder())
    app = _app()
    lost = Execution(await _lease(memory, "slow"))
    lost.lost = True
    assert await _run(lost, app, clock, memory, events) == (None, 0.0)
    cancelled = Execution(await _lease(memory, "slow"))
    request_cancel(cancelled)
    assert await _run(cancelled, app, clock, memory, events) == (
        Cancel(reason="cancel requested before start"),
        0.0,
    )
    unknown = Execution(await _lease(memory, "retired"))
    assert await _run(unknown, app, clock, memory, events) == (
        Discard(error="no handler is registered for job kind 'retired'", error_type="UnknownKind"),
        0.0,
    )
    poison = Execution(await _lease(memory, "typed", "not a number"))
    outcome, duration = await _run(poison, app, clock, memory, events)
    assert isinstance(outcome, Discard)
    assert outcome.error.startswith("poison payload: ")
    assert (outcome.error_type, duration) == ("PayloadInvalid", 0.0)


async def test_a_step_refused_as_stale_loses_the_run(
    memory: MemoryTransport, clock: VirtualClock
) -> None:
    """A step whose record the store refuses (the job was claimed again since) raises
    ``LeaseLost`` in the handler and ends the run as lost: nothing is stored."""
    app = App()
    raised: list[str] = []

    @app.task("stepping")
    async def stepping(ctx: JobContext, payload: Any) -> None:
        clock.advance(60.0)  # the lease lapses; someone else's reaper and claim take the job
        await memory.reap()
        await memory.claim("q", owner="other/q", limit=1, ttl=30.0)
        try:
            await ctx.step("charge", lambda: 1)
        except LeaseLost:
            raised.append("lost")
            raise

    run = Execution(await _lease(memory, "stepping"))
    assert await _run(run, app, clock, memory) == (None, 0.0)
    assert raised == ["lost"]
    assert run.is_lost()


class _Trace:
    def __init__(self, runs: list[tuple[int, str, object]], job: Job, worker: str) -> None:
        self._runs = runs
        self._job = job
        self._worker = worker

    def done(self, outcome: Outcome | None) -> None:
        self._runs.append((self._job.id, self._worker, outcome))


class _Tracer:
    """Notes each run it traces, with its outcome."""

    def __init__(self) -> None:
        self.runs: list[tuple[int, str, object]] = []

    @contextmanager
    def enqueue(self, requests: list[EnqueueRequest]) -> Iterator[Any]:
        raise NotImplementedError

    @contextmanager
    def run(self, job: Job, *, worker: str) -> Iterator[_Trace]:
        yield _Trace(self.runs, job, worker)


async def test_an_apps_tracer_traces_each_run_with_its_outcome(clock: VirtualClock) -> None:
    """A traced run is the same run: its claim's event, its context (extend_lease, steps),
    its backoff's jitter and the store's result limit, and the tracer sees its outcome."""
    app = _app()
    tracer = _Tracer()
    app.tracer = tracer

    @app.task("busy", backoff=Exponential(base=10.0))
    async def busy(ctx: JobContext, payload: Any) -> RetryLater:
        await ctx.extend_lease()
        await ctx.step("charge", lambda: 1)
        return RetryLater()

    @app.task("wordy")
    async def wordy(ctx: JobContext, payload: Any) -> str:
        return "x" * 100

    events = EventBus()
    recorder = Recorder()
    events.subscribe(recorder)
    async with MemoryTransport(clock=clock, max_result_bytes=50) as memory:
        lease = await _lease(memory, "busy")
        async with clock.autojump():
            outcome, _ = await _run(Execution(lease), app, clock, memory, events)
        assert isinstance(outcome, Retry)
        assert outcome.run_at == clock.now() + Exponential(base=10.0).delay(1, Random(0))
        assert [s.name for s in await memory.list_steps(lease.job_id)] == ["charge"]
        wordy_lease = await _lease(memory, "wordy")
        too_big, _ = await _run(Execution(wordy_lease), app, clock, memory)
    assert [e.worker for e in recorder.of(JobClaimed)] == ["w"]
    assert isinstance(too_big, Discard)
    assert tracer.runs == [(lease.job_id, "w", outcome), (wordy_lease.job_id, "w", too_big)]


async def test_a_run_stopped_midway_ends_by_what_stopped_it_after_no_running_time(
    memory: MemoryTransport, clock: VirtualClock
) -> None:
    """A handler stopped while it runs: lost lease, nothing stored; an operator's cancel,
    cancelled; a shutdown (its scope cancelled), given back. None reports a running time."""
    app = App()

    @app.task("waits")
    async def waits(ctx: JobContext, payload: Any) -> None:
        await ctx.clock.sleep(100.0)

    async def stopped(stop: Any) -> tuple[Outcome | None, float]:
        run = Execution(await _lease(memory, "waits"))
        events = EventBus()
        events.subscribe(Recorder())
        async with clock.autojump(), anyio.create_task_group() as tg:
            result: list[tuple[Outcome | None, float]] = []

            async def go() -> None:
                result.append(await _run(run, app, clock, memory, events))

            tg.start_soon(go)
            await clock.sleep(1.0)
            stop(run)
        return result[0]

    def shut_down(run: Execution) -> None:
        assert run.scope is not None
        run.scope.cancel()

    assert await stopped(lose) == (None, 0.0)
    assert await stopped(request_cancel) == (Cancel(reason="cancel requested"), 0.0)
    assert await stopped(shut_down) == (Release(), 0.0)


async def test_a_handler_under_a_timeout_gets_its_payload_and_retry_later_its_backoff(
    memory: MemoryTransport, clock: VirtualClock
) -> None:
    app = App()

    @app.task("echo", timeout=5.0)
    async def echo(ctx: JobContext, payload: Any) -> Any:
        return payload

    @app.task("later", backoff=Exponential(base=10.0))
    async def later(ctx: JobContext, payload: Any) -> RetryLater:
        return RetryLater()

    echoed = Execution(await _lease(memory, "echo", {"n": 1}))
    assert await _run(echoed, app, clock, memory) == (Complete(result={"n": 1}), 0.0)
    retried = Execution(await _lease(memory, "later"))
    outcome, _ = await _run(retried, app, clock, memory)
    assert isinstance(outcome, Retry)
    assert outcome.run_at == clock.now() + Exponential(base=10.0).delay(1, Random(0))
