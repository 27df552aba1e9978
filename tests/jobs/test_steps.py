"""Durable steps in handlers: ctx.step, ctx.sleep_until / sleep_for, ctx.wait_for and
app.signal, inline (the test kit) and on a running node, on both loops."""

from __future__ import annotations

from typing import Any

import pytest

from actors.core import VirtualClock
from actors.jobs import (
    App,
    Constant,
    JobContext,
    JobSnoozed,
    LeaseLost,
    WaitTimedOut,
)
from actors.testing import RunOutcome, open_tester
from transports import (
    EnqueueRequest,
    InvalidRequest,
    InvalidStepName,
    JobState,
    MemoryTransport,
    StepTooLarge,
    Transport,
)

from ._support import START, running, topology, wait_state

pytestmark = pytest.mark.anyio


class Crash(Exception):
    """The handler's process dying after a step (a retry stands in for the restart)."""


def order_app(calls: list[str]) -> App:
    """``order``: charge (a step), then crash once, then ship (a step)."""
    app = App()

    @app.task("order", backoff=Constant(seconds=1.0))
    async def order(ctx: JobContext, payload: Any) -> dict[str, Any]:
        def charge(cents: int) -> dict[str, Any]:
            calls.append("charge")
            return {"charge": "ch_1", "cents": cents, "pair": (1, 2)}

        async def ship() -> str:
            calls.append("ship")
            return "shipped"

        charged = await ctx.step("charge", charge, payload["cents"])
        if ctx.attempt == 1:
            raise Crash("the node died after the charge")
        shipped = await ctx.step("ship", ship)
        assert charged == {"charge": "ch_1", "cents": 990, "pair": [1, 2]}
        assert await ctx.steps() == {"charge": charged, "ship": shipped}
        return None  # type: ignore[return-value]

    return app


async def test_a_recorded_step_is_not_run_again() -> None:
    """The attempt after a crash gets the charge's stored result (a JSON round trip, the
    same on the first run) instead of charging again."""
    calls: list[str] = []
    app = order_app(calls)
    async with open_tester(app) as tester:
        job_id = (await app.enqueue("order", {"cents": 990})).job_id
        result = await tester.drain(with_scheduled=True)
        assert [run.outcome for run in result] == [RunOutcome.RETRIED, RunOutcome.SUCCEEDED]
        assert calls == ["charge", "ship"]
        steps = await tester.transport.list_steps(job_id)
        assert [(s.name, s.attempt) for s in steps] == [("charge", 1), ("ship", 2)]


async def test_sleep_gives_the_attempt_back_and_resumes_after_the_recorded_steps() -> None:
    """sleep_for ends the attempt unspent; the job runs again when due, the step before the
    sleep not re-run and the sleep returning at once."""
    app = App()
    calls: list[tuple[str, float]] = []

    @app.task("nap", max_attempts=1)
    async def nap(ctx: JobContext, payload: Any) -> None:
        await ctx.step("before", lambda: calls.append(("before", ctx.clock.now())))
        await ctx.sleep_for(3600.0)
        await ctx.sleep_until(START + 7200.0)
        calls.append(("after", ctx.clock.now()))

    async with open_tester(app, start=START) as tester:
        job_id = (await app.enqueue("nap", None)).job_id
        first = await tester.drain()
        assert [run.outcome for run in first] == [RunOutcome.SNOOZED]
        job = await tester.get(job_id)
        assert (job.state, job.attempt, job.run_at) == (JobState.SCHEDULED, 0, START + 3600)
        result = await tester.drain(with_scheduled=True)
        assert [run.outcome for run in result] == [RunOutcome.SNOOZED, RunOutcome.SUCCEEDED]
        assert calls == [("before", START), ("after", START + 7200.0)]
        assert (await tester.get(job_id)).attempt == 1


def waiting_app(seen: list[Any]) -> App:
    app = App()

    @app.task("approve", max_attempts=1)
    async def approve(ctx: JobContext, payload: Any) -> None:
        key = f"order:{payload}:approved"
        try:
            seen.append(await ctx.wait_for(key, timeout=600.0))
        except WaitTimedOut as exc:
            seen.append(("timed out", exc.event_key, exc.deadline))

    return app


async def test_a_signal_resumes_the_suspended_job_with_its_value() -> None:
    """wait_for suspends the job (attempt unspent); the signal makes it run again and the
    wait returns the value."""
    seen: list[Any] = []
    app = waiting_app(seen)
    async with open_tester(app) as tester:
        job_id = (await app.enqueue("approve", 7)).job_id
        first = await tester.drain(with_scheduled=False)
        assert [run.outcome for run in first] == [RunOutcome.SUSPENDED]
        job = await tester.get(job_id)
        assert (job.state, job.attempt, job.wait_key) == (JobState.SUSPENDED, 0, "order:7:approved")
        assert (await tester.drain()).runs == ()
        signalled = await app.signal("order:7:approved", {"by": "ada"})
        assert signalled.woken == (job_id,)
        result = await tester.drain()
        assert [run.outcome for run in result] == [RunOutcome.SUCCEEDED]
        assert seen == [{"by": "ada"}]
        assert (await tester.get(job_id)).attempt == 1


async def test_a_signal_before_the_wait_is_not_lost() -> None:
    """A job reaching wait_for after its signal gets the value without suspending."""
    seen: list[Any] = []
    app = waiting_app(seen)
    async with open_tester(app) as tester:
        assert (await tester.signal("order:8:approved", "yes")).stored
        await app.enqueue("approve", 8)
        result = await tester.drain()
        assert [run.outcome for run in result] == [RunOutcome.SUCCEEDED]
        assert seen == ["yes"]


async def test_a_wait_times_out_with_a_typed_error() -> None:
    """Past its timeout the job runs again and wait_for raises WaitTimedOut (its deadline
    the one the first attempt recorded); a late signal changes nothing."""
    seen: list[Any] = []
    app = waiting_app(seen)
    async with open_tester(app, start=START) as tester:
        job_id = (await app.enqueue("approve", 9)).job_id
        result = await tester.drain(with_scheduled=True)
        assert [run.outcome for run in result] == [RunOutcome.SUSPENDED, RunOutcome.SUCCEEDED]
        assert seen == [("timed out", "order:9:approved", START + 600.0)]
        assert (await tester.signal("order:9:approved", 1)).woken == ()
        assert (await tester.get(job_id)).state is JobState.SUCCEEDED


async def test_cancel_ends_a_suspended_job() -> None:
    """A suspended job cancelled by an operator ends cancelled; its signal wakes nothing."""
    app = waiting_app([])
    async with open_tester(app) as tester:
        job_id = (await app.enqueue("approve", 1)).job_id
        await tester.drain()
        await tester.cancel(job_id)
        assert (await tester.get(job_id)).state is JobState.CANCELLED
        assert (await tester.signal("order:1:approved")).woken == ()


async def test_bad_steps_are_typed_errors() -> None:
    """A reserved or malformed step name, an unrecordable result, a bad event key or
    timeout each fail the attempt with their typed error; nothing is recorded."""
    app = App()
    errors: list[type[BaseException]] = []

    @app.task("bad", max_attempts=1)
    async def bad(ctx: JobContext, payload: Any) -> None:
        attempts: list[Any] = [
            lambda: ctx.step("~mine", lambda: 1),
            lambda: ctx.step("", lambda: 1),
            lambda: ctx.step("big", lambda: "x" * 70_000),
            lambda: ctx.wait_for("has space", timeout=1.0),
            lambda: ctx.wait_for("ok", timeout=0.0),
            lambda: ctx.sleep_for(-1.0),
        ]
        for attempt in attempts:
            try:
                await attempt()
            except (InvalidStepName, StepTooLarge, InvalidRequest) as exc:
                errors.append(type(exc))

    async with open_tester(app) as tester:
        job_id = (await app.enqueue("bad", None)).job_id
        await tester.drain()
        assert errors == [
            InvalidStepName,
            InvalidStepName,
            StepTooLarge,
            InvalidStepName,
            InvalidRequest,
            InvalidRequest,
        ]
        assert await tester.transport.list_steps(job_id) == []


async def test_a_stale_lease_cannot_record_a_step(
    memory: MemoryTransport, clock: VirtualClock
) -> None:
    """A step whose work outlasted the lease is refused: LeaseLost, the attempt lost, and
    the next owner runs the step again."""
    app = App(memory)
    calls: list[int] = []

    @app.task("slow")
    async def slow(ctx: JobContext, payload: Any) -> None:
        async def work() -> int:
            calls.append(ctx.attempt)
            if ctx.attempt == 1:
                clock.advance(31.0)  # a stall past the 30 s lease, no renewal in between
            return ctx.attempt

        try:
            await ctx.step("work", work)
        except LeaseLost:
            calls.append(-1)
            raise

    job_id = (await app.enqueue(slow, None)).job_id
    async with clock.autojump(), running(topology(app, memory, clock)):
        job = await wait_state(memory, clock, job_id, JobState.SUCCEEDED, timeout=300.0)
    assert calls == [1, -1, 2]
    assert job.attempt == 2
    (step,) = await memory.list_steps(job_id)
    assert (step.name, step.value, step.attempt) == ("work", 2, 2)


async def test_a_node_suspends_and_resumes_on_a_signal(
    transport: Transport, clock: VirtualClock
) -> None:
    """On a running node (every backend): the wait suspends the job and publishes
    JobSnoozed with its event key; the signal wakes it; the step before the wait ran once."""
    app = App(transport)
    calls: list[str] = []

    @app.task("flow")
    async def flow(ctx: JobContext, payload: Any) -> None:
        await ctx.step("first", lambda: calls.append("first"))
        value = await ctx.wait_for("go", timeout=3600.0)
        calls.append(f"got {value}")

    (result,) = await transport.enqueue_many([EnqueueRequest(kind="flow")])
    async with clock.autojump(), running(topology(app, transport, clock)) as (_, events):
        await wait_state(transport, clock, result.job_id, JobState.SUSPENDED)
        assert (await app.signal("go", 42)).woken == (result.job_id,)
        job = await wait_state(transport, clock, result.job_id, JobState.SUCCEEDED)
    assert calls == ["first", "got 42"]
    assert job.attempt == 1
    (suspended,) = events.of(JobSnoozed)
    assert (suspended.event_key, suspended.run_at) == ("go", pytest.approx(START + 3600.0, abs=5))
