"""Results end to end: a handler's return value stored by the fenced finalize, ``App.result``."""

from __future__ import annotations

from typing import Any

import anyio
import pytest

from actors.core import VirtualClock
from actors.jobs import (
    App,
    ConfigInvalid,
    Done,
    Drop,
    JobContext,
    JobFailed,
    ResultTimeout,
)
from transports import EnqueueRequest, JobNotFound, JobState, MemoryTransport, Transport

from ._support import START, running, topology, wait_state

pytestmark = [pytest.mark.anyio, pytest.mark.timeout(300)]


def _app(transport: Transport, clock: VirtualClock) -> App:
    app = App(transport, clock=clock)

    @app.task("total")
    async def total(ctx: JobContext, payload: dict[str, list[int]]) -> dict[str, Any]:
        await ctx.clock.sleep(5.0)
        return {"sum": sum(payload["items"]), "at": ctx.clock.now() - START}

    @app.task("done")
    async def done(ctx: JobContext, payload: Any) -> Done:
        return Done(result="explicit")

    @app.task("nothing")
    async def nothing(ctx: JobContext, payload: Any) -> None:
        return None

    @app.task("drop")
    async def drop(ctx: JobContext, payload: Any) -> Drop:
        return Drop(reason="invalid address")

    @app.task("huge")
    async def huge(ctx: JobContext, payload: Any) -> str:
        return "x" * (transport.max_result_bytes + 1)

    @app.task("forever")
    async def forever(ctx: JobContext, payload: Any) -> None:
        await ctx.clock.sleep(10_000.0)

    return app


async def test_a_result_is_stored_and_waited_for_on_every_backend(
    transport: Transport, clock: VirtualClock
) -> None:
    """``App.result`` returns what the handler returned once the job succeeds; a dead job
    raises ``JobFailed`` with its last error, a cancelled one too (its state says so), and one
    still running past the timeout ``ResultTimeout``."""
    app = _app(transport, clock)
    summed = await app.enqueue("total", {"items": [1, 2, 3]})
    explicit = await app.enqueue("done")
    nothing = await app.enqueue("nothing")
    dropped = await app.enqueue("drop")
    huge = await app.enqueue("huge")
    long = await app.enqueue("forever")
    async with clock.autojump(), running(topology(app, transport, clock, concurrency=6)):
        assert await app.result(summed, timeout=60.0) == {"sum": 6, "at": 5.0}
        assert await app.result(explicit.job_id, timeout=60.0) == "explicit"
        assert await app.result(await transport.get(nothing.job_id), timeout=60.0) is None
        with pytest.raises(JobFailed) as dead:
            await app.result(dropped, timeout=60.0)
        assert dead.value.last_error == "invalid address"
        assert dead.value.job.state is JobState.DEAD
        with pytest.raises(JobFailed) as invalid:
            await app.result(huge, timeout=60.0)
        assert invalid.value.errors[-1].type == "ResultInvalid"
        await wait_state(transport, clock, long.job_id, JobState.RUNNING)
        with pytest.raises(ResultTimeout):
            await app.result(long, timeout=2.0)
        await transport.cancel(long.job_id)
        with pytest.raises(JobFailed) as cancelled:
            await app.result(long, timeout=60.0)
        assert cancelled.value.state is JobState.CANCELLED
    assert (await transport.get(summed.job_id)).result == {"sum": 6, "at": 5.0}


@pytest.mark.parametrize("poll_interval", [10_000.0])
async def test_result_wakes_through_the_store_not_its_poll(
    clock: VirtualClock, poll_interval: float
) -> None:
    """With a poll interval far longer than the job, the waiter still returns the instant the
    job ends: the wake-up came from the store."""
    async with MemoryTransport(clock=clock) as transport:
        app = _app(transport, clock)
        job = await app.enqueue("total", {"items": [4]})
        async with clock.autojump(), running(topology(app, transport, clock)):
            before = clock.now()
            assert await app.result(job, poll_interval=poll_interval) == {"sum": 4, "at": 5.0}
            assert clock.now() - before < 10.0


async def test_result_refuses_bad_arguments(clock: VirtualClock) -> None:
    """A bad job, timeout or poll interval is a ConfigInvalid; an unknown id JobNotFound."""
    async with MemoryTransport(clock=clock) as transport:
        app = App(transport, clock=clock)
        for bad in ["1", 1.5, True, None]:
            with pytest.raises(ConfigInvalid):
                await app.result(bad)  # type: ignore[arg-type]
        for timeout in [-1.0, float("nan"), "5"]:
            with pytest.raises(ConfigInvalid):
                await app.result(1, timeout=timeout)  # type: ignore[arg-type]
        with pytest.raises(ConfigInvalid):
            await app.result(1, poll_interval=0.0)
        with pytest.raises(JobNotFound):
            await app.result(12345)
        job = await transport.enqueue(EnqueueRequest(kind="anything.at.all"))
        with anyio.fail_after(5):  # real seconds: a safety net; a zero timeout looks once
            with pytest.raises(ResultTimeout):
                await app.result(job, timeout=0.0)
