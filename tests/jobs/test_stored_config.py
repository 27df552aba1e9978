"""A node never crashes on a stored queue config, whatever another tool wrote there.

``set_queue_config`` refuses a value no node could honour, but a store is shared: another
tool, an older version or a hand-written SQL statement may leave one behind. The queue
supervisor ignores such a value with one WARNING naming the queue and the value, and keeps
the Workers of the last good config (at start: the node's own default).
"""

from __future__ import annotations

import asyncio
import logging
import math
import sqlite3
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import anyio
import attrs
import pytest

from actors.core import ActorRef, VirtualClock
from actors.jobs import App, JobContext, WorkerCrashed
from actors.jobs.lowlevel import Reconfigure, WorkerCount
from transports import (
    JobState,
    MemoryTransport,
    PostgresTransport,
    QueueConfig,
    SQLiteTransport,
    Transport,
)
from transports.lowlevel import BridgedTransport

from ._support import FaultyTransport, running, topology, wait_final, wait_until

pytestmark = pytest.mark.anyio

ASK = 10.0


async def _count(ref: ActorRef[Any]) -> int:
    count: int = await ref.ask(lambda r: WorkerCount(reply_to=r), timeout=ASK)
    return count


async def _noop(ctx: JobContext, payload: Any) -> None:
    return None


def _unchecked(**fields: Any) -> QueueConfig:
    """A QueueConfig built without its validators: what another tool might have stored."""
    with attrs.validators.disabled():
        return QueueConfig(**fields)


def _warnings(caplog: pytest.LogCaptureFixture) -> list[logging.LogRecord]:
    return [r for r in caplog.records if r.name == "actorq.queue" and r.levelno == logging.WARNING]


@pytest.mark.parametrize("bad", [-5, 10**9, "3", 2.5, math.nan, True])
async def test_a_bad_stored_concurrency_keeps_the_last_good_config(
    memory: MemoryTransport, clock: VirtualClock, caplog: pytest.LogCaptureFixture, bad: object
) -> None:
    """A stored concurrency out of range (or not an int) is ignored, with one WARNING naming
    the queue and the value however often it is read; the Workers stay as they were, jobs
    keep running, and a good value written later is followed again."""
    app = App(memory)
    app.register("x", _noop, queue="q")
    caplog.set_level(logging.WARNING, logger="actorq.queue")
    async with (
        clock.autojump(),
        running(topology(app, memory, clock, concurrency=2)) as (
            node,
            events,
        ),
    ):
        queue = await node.child("queue:q")
        await memory.set_queue_config(QueueConfig(name="q", concurrency=3))
        await queue.tell(Reconfigure())
        await wait_until(clock, lambda: _is(queue, 3), what="scaling to the good config")
        memory.store.configs["q"] = _unchecked(name="q", concurrency=bad)
        for _ in range(3):
            await queue.tell(Reconfigure())
            await clock.sleep(1.0)
        await clock.sleep(12.0)  # past two reconfigure intervals of its own
        assert await _count(queue) == 3
        ids = [(await app.enqueue("x", n)).job_id for n in range(6)]
        jobs = await wait_final(memory, clock, ids)
        await memory.set_queue_config(QueueConfig(name="q", concurrency=1))
        await queue.tell(Reconfigure())
        await wait_until(clock, lambda: _is(queue, 1), what="following a good config again")
    assert {job.state for job in jobs.values()} == {JobState.SUCCEEDED}
    assert events.of(WorkerCrashed) == []
    (warning,) = _warnings(caplog)
    assert "'q'" in warning.getMessage()
    assert repr(bad) in warning.getMessage()
    assert "keeping 3 workers" in warning.getMessage()
    assert (warning.queue, warning.concurrency) == ("q", bad)  # type: ignore[attr-defined]


async def test_a_bad_stored_concurrency_at_start_uses_the_node_default(
    memory: MemoryTransport, clock: VirtualClock, caplog: pytest.LogCaptureFixture
) -> None:
    """A node starting over a bad stored value runs its own default number of Workers (it
    used to exit every Worker with IndexError, and again on every restart)."""
    app = App(memory)
    app.register("x", _noop, queue="q")
    memory.store.configs["q"] = _unchecked(name="q", concurrency=-5)
    caplog.set_level(logging.WARNING, logger="actorq.queue")
    async with (
        clock.autojump(),
        running(topology(app, memory, clock, concurrency=2)) as (
            node,
            events,
        ),
    ):
        queue = await node.child("queue:q")
        assert await _count(queue) == 2
        ids = [(await app.enqueue("x", n)).job_id for n in range(4)]
        jobs = await wait_final(memory, clock, ids)
    assert {job.state for job in jobs.values()} == {JobState.SUCCEEDED}
    assert events.of(WorkerCrashed) == []
    (warning,) = _warnings(caplog)
    assert "-5" in warning.getMessage()
    assert "keeping 2 workers" in warning.getMessage()


def _store_by_sqlite(path: Path, concurrency: int) -> None:
    """Write a queue config straight into the SQLite file, as another tool would."""
    conn = sqlite3.connect(path)
    try:
        with conn:
            conn.execute(
                "INSERT INTO queue_configs (name, paused, concurrency) VALUES ('q', 0, ?)",
                (concurrency,),
            )
    finally:
        conn.close()


def _store_by_postgres(dsn: str, schema: str, concurrency: int) -> None:
    """Write a queue config straight into the PostgreSQL schema, as another tool would (on a
    private asyncio loop, so the test runs the same under trio)."""
    import asyncpg

    async def write() -> None:
        conn = await asyncpg.connect(dsn)
        try:
            await conn.execute(
                f'INSERT INTO "{schema}".queues (name, paused, concurrency) '
                "VALUES ('q', false, $1)",
                concurrency,
            )
        finally:
            await conn.close()

    asyncio.run(write())


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
async def sql_store(
    request: pytest.FixtureRequest, tmp_path: Path, clock: VirtualClock, anyio_backend: str
) -> AsyncIterator[tuple[Transport, Callable[[int], None]]]:
    """An SQL transport on a fresh file or schema (bridged under trio), its schema created,
    and a function writing a queue config around it by SQL."""
    build: Callable[[], Transport]
    write: Callable[[int], None]
    if request.param == "sqlite":
        path = tmp_path / "jobs.db"

        def build() -> Transport:
            return SQLiteTransport(str(path), clock=clock)

        def write(concurrency: int) -> None:
            _store_by_sqlite(path, concurrency)
    else:
        dsn = request.getfixturevalue("postgres_dsn")
        schema = request.getfixturevalue("postgres_schema")

        def build() -> Transport:
            return PostgresTransport(dsn, schema=schema, clock=clock, pool_size=2)

        def write(concurrency: int) -> None:
            _store_by_postgres(dsn, schema, concurrency)

    made = BridgedTransport(build) if anyio_backend == "trio" else build()
    async with FaultyTransport(made, hold_time=clock) as transport:
        yield transport, write


async def test_a_bad_concurrency_written_by_sql_does_not_crash_the_node(
    sql_store: tuple[Transport, Callable[[int], None]], clock: VirtualClock
) -> None:
    """On SQLite and PostgreSQL, a concurrency of -5 written by SQL leaves the node running
    its default Workers, and jobs get done."""
    store, write = sql_store
    await anyio.to_thread.run_sync(write, -5)
    app = App(store)
    app.register("x", _noop, queue="q")
    async with (
        clock.autojump(),
        running(topology(app, store, clock, concurrency=2)) as (
            node,
            events,
        ),
    ):
        queue = await node.child("queue:q")
        await queue.tell(Reconfigure())
        assert await _count(queue) == 2
        ids = [(await app.enqueue("x", n)).job_id for n in range(4)]
        jobs = await wait_final(store, clock, ids)
        assert await _count(queue) == 2
    assert {job.state for job in jobs.values()} == {JobState.SUCCEEDED}
    assert events.of(WorkerCrashed) == []


async def _is(queue: ActorRef[Any], n: int) -> bool:
    return await _count(queue) == n
