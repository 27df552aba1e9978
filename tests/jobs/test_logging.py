"""What an operator sees at the default log level: failed attempts at WARNING with their
traceback, dead jobs at ERROR with their reason, crashes at ERROR; never a payload.

Each record names the job (id, kind, queue, attempt) in its message and carries the same as
``extra=`` fields for structured logging.
"""

from __future__ import annotations

import logging
from typing import Any

import attrs
import pytest

from actors.core import VirtualClock
from actors.jobs import App, Constant, JobContext, WorkerCrashed
from transports import JobState, MemoryTransport

from ._support import FaultyTransport, running, topology, wait_final, wait_until

pytestmark = pytest.mark.anyio

SECRET = "hunter2-payload-secret"


class Boom(Exception):
    """The handler's own failure."""


def _app(transport: Any) -> App:
    app = App(transport)

    @app.task("flaky", queue="mail", max_attempts=2, backoff=Constant(seconds=1.0))
    async def flaky(ctx: JobContext, payload: Any) -> None:
        raise Boom("smtp said no")

    return app


def _records(caplog: pytest.LogCaptureFixture, level: int) -> list[logging.LogRecord]:
    return [r for r in caplog.records if r.name.startswith("actorq") and r.levelno == level]


async def test_a_failed_attempt_warns_with_its_traceback_and_a_dead_job_errs(
    memory: MemoryTransport, clock: VirtualClock, caplog: pytest.LogCaptureFixture
) -> None:
    """Each failed attempt is one WARNING with the exception and traceback; the job's death
    is one ERROR with its reason; both name the job and carry its fields; the payload shows
    in neither."""
    caplog.set_level(logging.WARNING)
    app = _app(memory)
    job_id = (await app.enqueue("flaky", {"password": SECRET})).job_id
    async with clock.autojump(), running(topology(app, memory, clock)):
        (job,) = (await wait_final(memory, clock, [job_id])).values()
    assert job.state is JobState.DEAD
    first, second = _records(caplog, logging.WARNING)
    for record, attempt, then in ((first, 1, "will retry"), (second, 2, "no attempts left")):
        message = record.getMessage()
        assert f"job {job_id} (flaky) on queue 'mail' failed, attempt {attempt}/2" in message
        assert message.endswith(f"{then}: {Boom.__module__}.Boom: smtp said no")
        assert record.exc_info is not None
        assert record.exc_info[0] is Boom
        assert record.exc_text is None or "Traceback" in record.exc_text
        fields = (record.job_id, record.job_kind, record.queue, record.attempt)  # type: ignore[attr-defined]
        assert fields == (job_id, "flaky", "mail", attempt)
        assert record.max_attempts == 2  # type: ignore[attr-defined]
        assert record.worker.startswith("n1/mail")  # type: ignore[attr-defined]
        assert not hasattr(record, "trace_id")  # enqueued under no trace
    (dead,) = _records(caplog, logging.ERROR)
    assert dead.getMessage() == (
        f"job {job_id} (flaky) on queue 'mail' is dead after attempt 2/2: "
        f"attempts exhausted (2/2): {Boom.__module__}.Boom: smtp said no"
    )
    assert (dead.job_id, dead.attempt, dead.queue) == (job_id, 2, "mail")  # type: ignore[attr-defined]
    assert dead.worker == second.worker  # type: ignore[attr-defined]
    assert SECRET not in caplog.text
    assert "Traceback" in caplog.text  # the handler's traceback is printed, by default


async def test_the_records_of_a_job_enqueued_under_a_trace_carry_its_trace_id(
    memory: MemoryTransport, clock: VirtualClock, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING)
    app = _app(memory)
    trace = "0af7651916cd43dd8448eb211c80319c"
    headers = {"traceparent": f"00-{trace}-b7ad6b7169203331-01"}
    (enqueued,) = await memory.enqueue_many(
        [attrs.evolve(app.request("flaky", None), headers=headers)]
    )
    async with clock.autojump(), running(topology(app, memory, clock)):
        await wait_final(memory, clock, [enqueued.job_id])
    records = [*_records(caplog, logging.WARNING), *_records(caplog, logging.ERROR)]
    assert [r.trace_id for r in records] == [trace] * 3  # type: ignore[attr-defined]


async def test_a_poison_payload_is_logged_dead_without_the_payload(
    memory: MemoryTransport, clock: VirtualClock, caplog: pytest.LogCaptureFixture
) -> None:
    """A job dead without running (its payload does not fit) logs ERROR with the reason,
    never the stored payload itself."""
    caplog.set_level(logging.WARNING)
    app = App(memory)

    @app.task("typed")
    async def typed(ctx: JobContext, payload: int) -> None:
        return None

    other = App(memory)
    other.register("typed", _noop)  # a producer without the types
    job_id = (await other.enqueue("typed", SECRET)).job_id
    async with clock.autojump(), running(topology(app, memory, clock)):
        await wait_final(memory, clock, [job_id])
    (dead,) = _records(caplog, logging.ERROR)
    assert dead.getMessage().startswith(f"job {job_id} (typed) on queue 'default' is dead")
    assert "poison payload" in dead.getMessage()
    assert SECRET not in caplog.text
    assert _records(caplog, logging.WARNING) == []  # it never ran: no failed attempt


async def test_a_timeout_warns_without_a_traceback(
    memory: MemoryTransport, clock: VirtualClock, caplog: pytest.LogCaptureFixture
) -> None:
    """A run past its timeout is a failed attempt: a WARNING naming the timeout."""
    caplog.set_level(logging.WARNING)
    app = App(memory)

    @app.task("slow", timeout=1.0, max_attempts=1)
    async def slow(ctx: JobContext, payload: Any) -> None:
        await ctx.clock.sleep(10.0)

    job_id = (await app.enqueue("slow", None)).job_id
    async with clock.autojump(), running(topology(app, memory, clock)):
        await wait_final(memory, clock, [job_id])
    (warning,) = _records(caplog, logging.WARNING)
    assert "timed out after 1s" in warning.getMessage()
    assert warning.exc_info is None
    assert warning.worker.startswith("n1/default")  # type: ignore[attr-defined]
    (dead,) = _records(caplog, logging.ERROR)
    assert "timed out after 1s" in dead.getMessage()


async def test_a_succeeded_job_logs_nothing_at_warning(
    memory: MemoryTransport, clock: VirtualClock, caplog: pytest.LogCaptureFixture
) -> None:
    """Quiet when all is well: success is not worth a WARNING."""
    caplog.set_level(logging.WARNING)
    app = App(memory)
    app.register("fine", _noop)
    job_id = (await app.enqueue("fine", None)).job_id
    async with clock.autojump(), running(topology(app, memory, clock)):
        await wait_final(memory, clock, [job_id])
    assert _records(caplog, logging.WARNING) == _records(caplog, logging.ERROR) == []


# --- errors sorted from bugs --------------------------------------------------------------


async def test_an_invalid_request_crashes_the_claimer_once_loudly(
    clock: VirtualClock, caplog: pytest.LogCaptureFixture
) -> None:
    """An InvalidRequest is a bug, not the store's weather: the queue's Claimer is not left
    retrying it (as it retries ConnectionLost) but crashes, its supervisor logs it at ERROR
    with the traceback, reports WorkerCrashed and starts a fresh Claimer (and Workers) that
    work the queue."""
    call = "claim"
    caplog.set_level(logging.WARNING)
    inner = MemoryTransport(clock=clock)
    faulty = FaultyTransport(inner)
    app = App(inner)

    @app.task("held", queue="q")
    async def held(ctx: JobContext, payload: Any) -> None:
        await ctx.clock.sleep(20.0)  # long enough for the heartbeat to renew

    first = (await app.enqueue(held, 0)).job_id
    faulty.invalid_once.add(call)
    async with (
        clock.autojump(),
        running(topology(app, faulty, clock, concurrency=1)) as (_, events),
    ):
        await wait_until(clock, lambda: events.of(WorkerCrashed), what="the crash")
        ids = [first] + [(await app.enqueue(held, n)).job_id for n in range(1, 3)]
        jobs = await wait_final(inner, clock, ids, timeout=300.0)
    assert {job.state for job in jobs.values()} == {JobState.SUCCEEDED}
    (crash,) = events.of(WorkerCrashed)
    assert f"injected invalid request in {call}" in crash.error
    (logged,) = [r for r in _records(caplog, logging.ERROR) if "crashed" in r.getMessage()]
    assert "queue 'q'" in logged.getMessage()
    assert logged.exc_info is not None  # with the traceback
    assert "InvalidRequest: injected invalid request" in logging.Formatter().format(logged)
    retried = [r for r in _records(caplog, logging.WARNING) if "could not" in r.getMessage()]
    assert retried == []


async def test_an_invalid_renewal_crashes_the_lease_keeper_which_keeps_its_leases(
    clock: VirtualClock, caplog: pytest.LogCaptureFixture
) -> None:
    """An InvalidRequest from a renewal crashes the node's LeaseKeeper loudly (ERROR with the
    traceback); the root supervisor starts a new one, which goes on renewing the same leases,
    so the running job keeps its lease and succeeds on its first attempt."""
    caplog.set_level(logging.WARNING)
    inner = MemoryTransport(clock=clock)
    faulty = FaultyTransport(inner)
    app = App(inner)

    @app.task("held", queue="q")
    async def held(ctx: JobContext, payload: Any) -> None:
        await ctx.clock.sleep(40.0)  # several renewal periods of the default TTL

    job_id = (await app.enqueue(held, 0)).job_id
    faulty.invalid_once.add("renew")
    async with clock.autojump(), running(topology(app, faulty, clock, concurrency=1)) as (node, _):
        before = await node.child("leases")
        await wait_until(clock, lambda: not before.is_alive, what="the keeper crashing")
        after = await node.child("leases")
        assert after is not before
        jobs = await wait_final(inner, clock, [job_id], timeout=300.0)
    job = jobs[job_id]
    assert (job.state, job.attempt) == (JobState.SUCCEEDED, 1)
    (logged,) = [r for r in _records(caplog, logging.ERROR) if "crashed" in r.getMessage()]
    assert logged.getMessage().startswith("lease keeper crashed (1 lease(s) held): ")
    assert "injected invalid request" in logged.getMessage()  # the exit reason
    assert "InvalidRequest: injected invalid request" in logging.Formatter().format(logged)


async def test_an_invalid_request_crashes_a_periodic_actor(
    clock: VirtualClock, caplog: pytest.LogCaptureFixture
) -> None:
    """The Reaper retries ConnectionLost at its next tick, but an InvalidRequest crashes it:
    the root supervisor starts a new one."""
    caplog.set_level(logging.WARNING)
    inner = MemoryTransport(clock=clock)
    faulty = FaultyTransport(inner)
    app = App(inner)
    app.register("fine", _noop)
    async with clock.autojump(), running(topology(app, faulty, clock)) as (node, _):
        before = await node.child("reaper")
        faulty.invalid_once.add("reap")
        await wait_until(clock, lambda: not before.is_alive, what="the reaper crashing")
        after = await node.child("reaper")
        assert after is not before
        assert after.is_alive
        faulty.failing.add("reap")
        await clock.sleep(3.0)
        assert after.is_alive  # the store's weather is only logged
        faulty.failing.clear()
    retried = [r for r in caplog.records if "storage error" in r.getMessage()]
    assert retried
    assert {r.levelno for r in retried} == {logging.WARNING}
    assert {r.getMessage() for r in retried} == {
        f"{after.name}: storage error, retrying at the next tick: injected outage in reap"
    }


async def _noop(ctx: JobContext, payload: Any) -> None:
    return None
