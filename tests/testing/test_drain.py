"""JobTester.drain runs due jobs through the runtime's Worker code, on both loops."""

from __future__ import annotations

from typing import Any

import attrs
import pytest

from actors.jobs import (
    App,
    Constant,
    Drop,
    JobContext,
    JobSucceeded,
    RetryLater,
    RuntimeEvent,
    SnoozeUntil,
)
from actors.testing import DEFAULT_START, DrainDidNotSettle, JobTester, RunOutcome, open_tester
from transports import JobState, MemoryTransport, QueueConfig

pytestmark = pytest.mark.anyio


@attrs.frozen(kw_only=True)
class Step:
    n: int


def chain_app() -> App:
    """``chain`` enqueues the next link until n reaches 0; ``flaky`` fails twice."""
    app = App()
    calls: list[int] = []

    @app.task("chain")
    async def chain(ctx: JobContext, payload: Step) -> None:
        calls.append(payload.n)
        if payload.n > 0:
            await app.enqueue(chain, Step(n=payload.n - 1))

    @app.task("flaky", max_attempts=3, backoff=Constant(seconds=10.0))
    async def flaky(ctx: JobContext, payload: Any) -> None:
        if ctx.attempt < 3:
            raise RuntimeError(f"failure {ctx.attempt}")

    return app


async def test_a_drain_runs_jobs_enqueued_by_jobs() -> None:
    """Jobs a handler enqueues are due at once and run in the same drain."""
    app = chain_app()
    async with open_tester(app) as tester:
        await app.enqueue("chain", Step(n=3))
        result = await tester.drain()
        assert [(run.kind, run.payload) for run in result] == [
            ("chain", {"n": 3}),
            ("chain", {"n": 2}),
            ("chain", {"n": 1}),
            ("chain", {"n": 0}),
        ]
        assert result.succeeded == 4
        assert [job.state for job in await tester.jobs()] == [JobState.SUCCEEDED] * 4
        assert len(await tester.drain()) == 0


async def test_a_run_carries_the_result_its_handler_returned() -> None:
    """A drained run reports the stored result, and ``App.result`` reads it after the drain."""
    app = App()

    @app.task("total")
    async def total(ctx: JobContext, payload: list[int]) -> dict[str, int]:
        return {"total": sum(payload)}

    async with open_tester(app) as tester:
        job = await app.enqueue(total, [2, 3])
        (run,) = await tester.drain()
        assert run.result == {"total": 5}
        assert await app.result(job, transport=tester.transport, timeout=0) == {"total": 5}


async def test_a_failure_is_retried_with_the_tasks_backoff() -> None:
    """A raising handler is retried after its backoff; a drain does not wait for it."""
    app = chain_app()
    async with open_tester(app) as tester:
        await tester.enqueue("flaky")
        first = await tester.drain()
        (run,) = first.runs
        assert (run.outcome, run.state, run.attempt) == (RunOutcome.RETRIED, JobState.SCHEDULED, 1)
        assert run.error == "RuntimeError: failure 1"
        assert run.run_at == DEFAULT_START + 10.0
        assert (first.failed, first.retried, first.dead) == (1, 1, 0)
        await tester.advance(9.5)
        assert len(await tester.drain()) == 0
        await tester.advance(0.5)
        second = await tester.drain()
        assert [r.attempt for r in second] == [2]


async def test_with_scheduled_runs_every_retry_to_the_end() -> None:
    """``with_scheduled`` moves time to each waiting job until none waits."""
    app = App()

    @app.task("doomed", max_attempts=3, backoff=Constant(seconds=60.0))
    async def doomed(ctx: JobContext, payload: Any) -> None:
        raise ValueError("never works")

    async with open_tester(app) as tester:
        await tester.enqueue("doomed")
        result = await tester.drain(with_scheduled=True)
        assert [(r.attempt, r.outcome) for r in result] == [
            (1, RunOutcome.RETRIED),
            (2, RunOutcome.RETRIED),
            (3, RunOutcome.DEAD),
        ]
        assert result.runs[-1].error == "attempts exhausted (3/3): ValueError: never works"
        assert tester.now() == DEFAULT_START + 120.0
        assert result.failed == 3
        (job,) = await tester.jobs()
        assert job.state is JobState.DEAD


async def test_every_handler_outcome_ends_as_in_production() -> None:
    """RetryLater, Drop, SnoozeUntil, a bad return value and a poison payload are decided by
    the Worker's own rules."""
    app = App()

    @app.task("later", max_attempts=2)
    async def later(ctx: JobContext, payload: Any) -> RetryLater:
        return RetryLater(delay=5.0, reason="not yet")

    @app.task("drop")
    async def drop(ctx: JobContext, payload: Any) -> Drop:
        return Drop(reason="bad input")

    @app.task("snooze")
    async def snooze(ctx: JobContext, payload: Any) -> SnoozeUntil:
        return SnoozeUntil(at=ctx.clock.now() + 30.0)

    @app.task("odd")
    async def odd(ctx: JobContext, payload: Any) -> Any:
        return object()  # not JSON: it cannot be stored as the job's result

    @app.task("typed")
    async def typed(ctx: JobContext, payload: Step) -> None:
        raise AssertionError("never called with a poison payload")

    async with open_tester(app) as tester:
        for kind in ("later", "drop", "snooze", "odd"):
            await tester.enqueue(kind)
        await tester.transport.enqueue(attrs.evolve(app.request("typed", Step(n=1)), payload=[]))
        result = await tester.drain()
        by_kind = {run.kind: run for run in result}
        assert by_kind["later"].outcome is RunOutcome.RETRIED
        assert by_kind["later"].run_at == tester.now() + 5.0
        assert by_kind["later"].error == "not yet"
        assert (by_kind["drop"].outcome, by_kind["drop"].error) == (RunOutcome.DEAD, "bad input")
        assert by_kind["snooze"].outcome is RunOutcome.SNOOZED
        assert by_kind["odd"].outcome is RunOutcome.DEAD
        assert "result cannot be stored" in (by_kind["odd"].error or "")
        assert by_kind["typed"].outcome is RunOutcome.DEAD
        assert (by_kind["typed"].error or "").startswith("poison payload")
        assert result.counts() == {"retried": 1, "dead": 3, "snoozed": 1}
        await tester.advance(30.0)
        again = await tester.drain()
        # The snooze gave its attempt back; the RetryLater spent its last one.
        assert {(r.kind, r.attempt, r.outcome) for r in again} == {
            ("snooze", 1, RunOutcome.SNOOZED),
            ("later", 2, RunOutcome.DEAD),
        }


async def test_a_timeout_fires_on_virtual_time() -> None:
    """A handler past its timeout is cancelled and retried; its sleeps take no real time."""
    app = App()

    @app.task("slow", timeout=60.0, backoff=Constant(seconds=600.0))
    async def slow(ctx: JobContext, payload: Any) -> None:
        await ctx.clock.sleep(3600.0)

    @app.task("steady")
    async def steady(ctx: JobContext, payload: Any) -> None:
        await ctx.clock.sleep(45.0)

    async with open_tester(app) as tester:
        await tester.enqueue("slow")
        await tester.enqueue("steady")
        result = await tester.drain()
        slow_run, steady_run = result.runs
        assert slow_run.outcome is RunOutcome.RETRIED
        assert slow_run.error == "timed out after 60s"
        assert slow_run.finished_at - slow_run.started_at == 60.0
        assert steady_run.outcome is RunOutcome.SUCCEEDED
        assert steady_run.finished_at - steady_run.started_at == 45.0


async def test_a_cancel_requested_while_running_cancels_the_job() -> None:
    """``ctx.extend_lease()`` sees an operator's cancel and the job ends cancelled."""
    app = App()
    tester = JobTester(app)

    @app.task("long")
    async def long(ctx: JobContext, payload: Any) -> None:
        await tester.cancel(ctx.job_id)
        await ctx.extend_lease()
        await ctx.clock.sleep(10.0)
        raise AssertionError("the handler was not cancelled")

    async with tester:
        await tester.enqueue("long")
        (run,) = (await tester.drain()).runs
        assert (run.outcome, run.state) == (RunOutcome.CANCELLED, JobState.CANCELLED)


async def test_queue_and_limit_choose_what_runs() -> None:
    """``queue=`` runs one queue only, ``limit=`` stops after that many runs, and a paused
    queue runs nothing."""
    app = App()

    @app.task("a", queue="qa")
    async def a(ctx: JobContext, payload: Any) -> None:
        pass

    @app.task("b", queue="qb")
    async def b(ctx: JobContext, payload: Any) -> None:
        pass

    async with open_tester(app) as tester:
        for _ in range(3):
            await tester.enqueue("a")
            await tester.enqueue("b")
        only_b = await tester.drain(queue="qb")
        assert [run.kind for run in only_b] == ["b", "b", "b"]
        assert len(await tester.drain(limit=2)) == 2
        await tester.transport.set_queue_config(QueueConfig(name="qa", paused=True))
        assert len(await tester.drain(with_scheduled=True)) == 0
        await tester.transport.set_queue_config(QueueConfig(name="qa", paused=False))
        assert [run.kind for run in await tester.drain()] == ["a"]


async def test_queues_take_turns() -> None:
    """With several queues due, each runs one job in turn (sorted by name)."""
    app = App()
    for queue in ("q1", "q2"):
        app.register(f"k{queue}", _noop, queue=queue)
    async with open_tester(app) as tester:
        for _ in range(2):
            await tester.enqueue("kq2")
            await tester.enqueue("kq1")
        assert [run.queue for run in await tester.drain()] == ["q1", "q2", "q1", "q2"]


async def _noop(ctx: JobContext, payload: Any) -> None:
    pass


async def test_a_drain_that_never_settles_fails() -> None:
    """A job that always snoozes into the present exhausts ``max_runs``."""
    app = App()

    @app.task("spin")
    async def spin(ctx: JobContext, payload: Any) -> SnoozeUntil:
        return SnoozeUntil(at=ctx.clock.now())

    async with open_tester(app, max_runs=50) as tester:
        await tester.enqueue("spin")
        with pytest.raises(DrainDidNotSettle, match="after 50 runs"):
            await tester.drain()
        assert len(await tester.drain(limit=5)) == 5


async def test_runs_publish_the_runtime_events() -> None:
    """Runs publish the same events a Worker does, so event consumers can be tested."""
    app = chain_app()
    seen: list[RuntimeEvent] = []
    async with open_tester(app) as tester:
        tester.events.subscribe(seen.append)
        await tester.enqueue("chain", Step(n=1))
        await tester.drain()
    succeeded = [e for e in seen if isinstance(e, JobSucceeded)]
    assert [(e.job_id, e.kind, e.attempt) for e in succeeded] == [(1, "chain", 1), (2, "chain", 1)]


async def test_the_apps_own_transport_is_put_back() -> None:
    """While open, ``app.transport`` is the tester's store; afterwards the App's own again."""
    own = MemoryTransport()
    app = chain_app()
    app.transport = own
    async with open_tester(app) as tester:
        assert app.transport is tester.transport
        await app.enqueue("chain", Step(n=0))
    assert app.transport is own
    assert await own.list_jobs() == []
