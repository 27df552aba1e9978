"""End to end on every backend and both event loops: a mixed workload through one node."""

from __future__ import annotations

from typing import Any

import anyio
import attrs
import pytest

from actors.core import VirtualClock
from actors.jobs import (
    App,
    Constant,
    CronFired,
    CronSchedule,
    Drop,
    JobContext,
    RetryLater,
    SnoozeUntil,
    WorkerCrashed,
)
from transports import CancelResult, EnqueueRequest, JobState, Transport

from ._support import START, WORKER, running, topology, wait_final, wait_until

# Under trio the SQL backends run behind the asyncio bridge thread; with coverage tracing both
# threads this test takes a minute or two on two cores, far longer than without.
pytestmark = [pytest.mark.anyio, pytest.mark.timeout(600)]


@attrs.frozen
class Resize:
    image_id: int
    width: int = 128


class Flaky(Exception):
    """A transient failure."""


def _build_app(transport: Transport, started: anyio.Event) -> App:
    app = App(transport)

    @app.task("image.resize", queue="media", priority=1)
    async def resize(ctx: JobContext, payload: Resize) -> None:
        assert isinstance(payload, Resize)

    @app.task("report.build", queue="reports", lease_ttl=3.0)
    async def report(ctx: JobContext, payload: Any) -> None:
        await ctx.clock.sleep(10.0)  # longer than its lease: heartbeats keep it

    @app.task("webhook.send", max_attempts=5, backoff=Constant(seconds=1.0))
    async def webhook(ctx: JobContext, payload: dict[str, int]) -> None:
        if ctx.attempt <= payload["fail"]:
            raise Flaky(f"503 on attempt {ctx.attempt}")

    @app.task("outcome.drop")
    async def drop(ctx: JobContext, payload: Any) -> Drop:
        return Drop(reason="invalid address")

    @app.task("outcome.retry", max_attempts=2)
    async def retry(ctx: JobContext, payload: Any) -> RetryLater:
        return RetryLater(delay=1.0)

    @app.task("outcome.snooze")
    async def snooze(ctx: JobContext, payload: Any) -> SnoozeUntil | None:
        if ctx.clock.now() < START + 20:
            return SnoozeUntil(at=START + 20)
        return None

    @app.task("long.cancelled", max_attempts=3)
    async def long(ctx: JobContext, payload: Any) -> None:
        started.set()
        await ctx.clock.sleep(10_000.0)

    @app.task("cron.tick")
    async def tick(ctx: JobContext, payload: Any) -> None:
        return None

    return app


async def test_a_mixed_workload_reaches_the_expected_states(
    transport: Transport, clock: VirtualClock
) -> None:
    """Every kind of job ends as it should on this backend and loop: successes, retries,
    heartbeated long jobs, drops, exhausted retries, snoozes, poison, unknown kinds, dedupes,
    cancels of waiting and running jobs, and cron ticks."""
    started = anyio.Event()
    app = _build_app(transport, started)
    expect: dict[int, tuple[JobState, int | None]] = {}  # id -> (state, attempt or None)

    async def add(
        state: JobState, attempt: int | None, kind: str, payload: Any = None, **options: Any
    ) -> int:
        job_id = (await app.enqueue(kind, payload, **options)).job_id
        expect[job_id] = (state, attempt)
        return job_id

    for n in range(6):
        await add(JobState.SUCCEEDED, 1, "image.resize", Resize(image_id=n))
    await add(JobState.SUCCEEDED, 1, "report.build")
    await add(JobState.SUCCEEDED, 3, "webhook.send", {"fail": 2})
    await add(JobState.DEAD, 5, "webhook.send", {"fail": 99})
    await add(JobState.DEAD, 1, "outcome.drop")
    await add(JobState.DEAD, 2, "outcome.retry")
    await add(JobState.SUCCEEDED, 1, "outcome.snooze")
    first = await add(JobState.SUCCEEDED, 1, "image.resize", Resize(image_id=99), dedupe_key="once")
    again = await app.enqueue("image.resize", Resize(image_id=100), dedupe_key="once")
    assert (again.job_id, again.deduplicated) == (first, True)
    later = await add(JobState.CANCELLED, 0, "image.resize", Resize(image_id=7), delay=1000.0)
    running_job = await add(JobState.CANCELLED, 1, "long.cancelled")
    poison, unknown = await transport.enqueue_many(
        [
            EnqueueRequest(kind="image.resize", queue="media", payload={"image_id": "x"}),
            EnqueueRequest(kind="no.such.kind", queue="media", payload=None),
        ]
    )
    expect[poison.job_id] = (JobState.DEAD, 1)
    expect[unknown.job_id] = (JobState.DEAD, 1)
    assert await transport.cancel(later) is CancelResult.CANCELLED

    schedule = CronSchedule(name="tick", expression="* * * * * */5", kind="cron.tick")
    node = topology(
        app,
        transport,
        clock,
        concurrency=3,
        worker=WORKER,
        schedules=[schedule],
        queues=["default", "media", "reports"],
    )
    async with clock.autojump(), running(node) as (_, events):
        await started.wait()
        assert await transport.cancel(running_job) is CancelResult.REQUESTED
        jobs = await wait_final(transport, clock, list(expect), timeout=300.0)
        await wait_until(clock, lambda: len(events.of(CronFired)) >= 2, what="cron ticks")
        fired = [e.job_id for e in events.of(CronFired)]
        cron_jobs = await wait_final(transport, clock, fired)
    for job_id, (state, attempt) in expect.items():
        job = jobs[job_id]
        assert job.state is state, (job, state)
        if attempt is not None:
            assert job.attempt == attempt, (job, attempt)
    assert "poison payload" in (jobs[poison.job_id].last_error or "")
    assert "no handler" in (jobs[unknown.job_id].last_error or "")
    assert {job.state for job in cron_jobs.values()} == {JobState.SUCCEEDED}
    assert events.of(WorkerCrashed) == []
