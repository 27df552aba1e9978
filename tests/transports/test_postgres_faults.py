"""PostgreSQL faults: backends killed mid-call give typed errors, and nothing is half-written.

An admin connection kills the transport's server processes with ``pg_terminate_backend``
(the transport names its connections ``actorq <schema>``), which is what a crashed server
process, a failover or a network cut look like from the client.
"""

from __future__ import annotations

import random
from collections.abc import AsyncIterator

import anyio
import anyio.lowlevel
import asyncpg
import pytest

from transports import ConnectionLost, EnqueueRequest, JobState, PostgresTransport, TransportError
from transports.lowlevel import Complete, FinalizeRequest, FinalizeResult, Lease, Retry
from transports.testing import ManualClock

pytestmark = [pytest.mark.anyio, pytest.mark.parametrize("anyio_backend", ["asyncio"])]

TTL = 30.0
KILL = """
    SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity
    WHERE application_name = $1 AND pid <> pg_backend_pid()
"""


@pytest.fixture
async def admin(postgres_dsn: str) -> AsyncIterator[asyncpg.Connection]:
    conn = await asyncpg.connect(postgres_dsn)
    try:
        yield conn
    finally:
        await conn.close()


async def _kill(admin: asyncpg.Connection, schema: str) -> int:
    killed: int = await admin.fetchval(KILL, f"actorq {schema}")
    return killed


async def _check_invariants(admin: asyncpg.Connection, schema: str) -> None:
    """Every job is whole: a running job holds a full lease, a waiting one holds none."""
    broken = await admin.fetch(
        f"""
        SELECT id, state, lease_token, lease_owner, lease_expires_at FROM "{schema}".jobs
        WHERE (state = 'running' AND (lease_token IS NULL OR lease_owner IS NULL
                                      OR lease_expires_at IS NULL OR attempt < 1))
           OR (state <> 'running' AND lease_expires_at IS NOT NULL)
        """
    )
    assert broken == []


async def _kill_a_finalize_in_flight(
    admin: asyncpg.Connection, transport: PostgresTransport, schema: str
) -> None:
    """A finalize blocked on a row lock, killed: ConnectionLost, nothing changed, and the
    very next calls (an idempotent read, then the finalize again) simply work."""
    await transport.enqueue(EnqueueRequest(kind="k"))
    (lease,) = await transport.claim("default", owner="w", limit=1, ttl=TTL)
    request = FinalizeRequest(job_id=lease.job_id, token=lease.token, outcome=Complete())
    failure: list[BaseException] = []

    async def finalize() -> None:
        try:
            await transport.finalize([request])
        except TransportError as exc:
            failure.append(exc)

    with anyio.fail_after(10):
        async with admin.transaction():
            await admin.execute(
                f'SELECT 1 FROM "{schema}".jobs WHERE id = $1 FOR UPDATE', lease.job_id
            )
            async with anyio.create_task_group() as tg:
                tg.start_soon(finalize)
                while not await admin.fetchval(
                    "SELECT count(*) FROM pg_stat_activity"
                    " WHERE application_name = $1 AND wait_event_type = 'Lock'",
                    f"actorq {schema}",
                ):
                    await anyio.lowlevel.checkpoint()
                assert await _kill(admin, schema) >= 1
    assert len(failure) == 1
    assert isinstance(failure[0], ConnectionLost)
    assert failure[0].__cause__ is not None
    job = await transport.get(lease.job_id)  # the pool recovered
    assert job.state is JobState.RUNNING
    assert await transport.finalize([request]) == [FinalizeResult.APPLIED]
    assert (await transport.get(lease.job_id)).state is JobState.SUCCEEDED


async def test_killed_in_flight_call_raises_connection_lost_and_the_next_works(
    admin: asyncpg.Connection, postgres_dsn: str, postgres_schema: str
) -> None:
    """A finalize blocked on a row lock, killed, raises ConnectionLost and changed nothing;
    the next calls work."""
    async with PostgresTransport(postgres_dsn, schema=postgres_schema, pool_size=2) as transport:
        await _kill_a_finalize_in_flight(admin, transport, postgres_schema)


@pytest.mark.timeout(300)
async def test_the_next_call_after_a_kill_works_fifty_times_in_a_row(
    admin: asyncpg.Connection, postgres_dsn: str, postgres_schema: str
) -> None:
    """The kill above, 50 times on one transport: the call after it never meets a connection
    the server already closed (the pool is renewed on the first lost connection)."""
    async with PostgresTransport(postgres_dsn, schema=postgres_schema, pool_size=2) as transport:
        for _ in range(50):
            await _kill_a_finalize_in_flight(admin, transport, postgres_schema)


async def test_an_idempotent_read_retries_once_on_a_closed_connection(
    admin: asyncpg.Connection, postgres_dsn: str, postgres_schema: str
) -> None:
    """Every pooled connection killed while idle: a read is made again on a fresh connection
    and answers; a claim (not idempotent) after a second kill reports ConnectionLost and
    claims nothing, and the one after it works."""
    async with PostgresTransport(postgres_dsn, schema=postgres_schema, pool_size=3) as transport:
        await transport.enqueue(EnqueueRequest(kind="k"))
        # Fill the pool: three calls at once hold three connections.
        async with anyio.create_task_group() as tg:
            for _ in range(3):
                tg.start_soon(transport.counts)
        assert await _kill(admin, postgres_schema) >= 1
        assert sum(c.total for c in await transport.counts()) == 1
        async with anyio.create_task_group() as tg:
            for _ in range(3):
                tg.start_soon(transport.counts)
        assert await _kill(admin, postgres_schema) >= 1
        try:
            leases = await transport.claim("default", owner="w", limit=1, ttl=TTL)
        except ConnectionLost:
            leases = []
        (job,) = await transport.list_jobs()
        if leases:  # the dead connection was already known to be closed: a fresh one served
            assert job.state is JobState.RUNNING
        else:
            assert job.state is JobState.AVAILABLE
            (lease,) = await transport.claim("default", owner="w", limit=1, ttl=TTL)
            assert lease.job_id == job.id


async def test_listener_and_pool_survive_killing_every_backend(
    admin: asyncpg.Connection, postgres_dsn: str, postgres_schema: str
) -> None:
    """After every connection of the transport is killed, calls (soon) work again."""
    async with PostgresTransport(postgres_dsn, schema=postgres_schema, pool_size=3) as transport:
        await transport.enqueue(EnqueueRequest(kind="k"))
        assert await _kill(admin, postgres_schema) >= 2  # pool connections and the listener
        with anyio.fail_after(10):
            while True:
                try:
                    counts = await transport.counts()
                    break
                except ConnectionLost:
                    continue  # a connection killed while idle fails once, then is replaced
        assert counts[0].total == 1


async def test_workers_under_repeated_kills_lose_no_job(
    admin: asyncpg.Connection, postgres_dsn: str, postgres_schema: str
) -> None:
    """Workers run 400 jobs while their connections are killed again and again.

    Calls fail only with ConnectionLost; a claim whose answer was lost leaves its jobs running
    under a lease nobody holds, which the reaper takes back once it expires; in the end every
    job succeeded exactly once and no row is ever half-written.
    """
    clock = ManualClock()
    rng = random.Random(7)
    total = 400
    completed: dict[int, int] = {}
    lost_calls = 0
    async with PostgresTransport(
        postgres_dsn, schema=postgres_schema, pool_size=4, clock=clock
    ) as transport:
        await transport.enqueue_many([EnqueueRequest(kind="k", payload=i) for i in range(total)])

        async def worker(name: str) -> None:
            nonlocal lost_calls
            idle = 0
            while idle < 3:
                try:
                    leases = await transport.claim("default", owner=name, limit=8, ttl=TTL)
                    if not leases:
                        idle += 1
                        await transport.reap()
                        continue
                    idle = 0
                    await _finish(transport, leases, rng, completed)
                except ConnectionLost:
                    lost_calls += 1

        async def killer() -> None:
            for _ in range(6):
                for _ in range(rng.randrange(20, 80)):
                    await anyio.lowlevel.checkpoint()
                await _kill(admin, postgres_schema)
                await _check_invariants(admin, postgres_schema)

        with anyio.fail_after(60):
            async with anyio.create_task_group() as tg:
                tg.start_soon(killer)
                for i in range(4):
                    tg.start_soon(worker, f"w{i}")
            # Leases whose claim answer was lost expire; the reaper hands them out again.
            clock.advance(TTL + 1)
            while True:
                try:
                    await transport.reap()
                    leases = await transport.claim("default", owner="late", limit=50, ttl=TTL)
                    if not leases:
                        break
                    await _finish(transport, leases, rng, completed, retry=False)
                except ConnectionLost:
                    lost_calls += 1
        await _check_invariants(admin, postgres_schema)
        assert lost_calls > 0, "no call was hit by a kill: the test proved nothing"
        (counts,) = await transport.counts()
        assert counts.total == total
        assert counts[JobState.SUCCEEDED] == total, counts
        assert sorted(completed) == sorted(job.id for job in await transport.list_jobs(limit=total))
        assert all(n == 1 for n in completed.values())


async def _finish(
    transport: PostgresTransport,
    leases: list[Lease],
    rng: random.Random,
    completed: dict[int, int],
    *,
    retry: bool = True,
) -> None:
    requests = [
        FinalizeRequest(
            job_id=lease.job_id,
            token=lease.token,
            outcome=Retry(run_at=0.0) if retry and rng.random() < 0.2 else Complete(),
        )
        for lease in leases
    ]
    try:
        results = await transport.finalize(requests)
    except ConnectionLost:
        # The answer was lost, not necessarily the write: find out from the store.
        for request in requests:
            job = await transport.get(request.job_id)
            if isinstance(request.outcome, Complete) and job.state is JobState.SUCCEEDED:
                completed[request.job_id] = completed.get(request.job_id, 0) + 1
        raise
    for request, result in zip(requests, results, strict=True):
        if result is FinalizeResult.APPLIED and isinstance(request.outcome, Complete):
            completed[request.job_id] = completed.get(request.job_id, 0) + 1


async def test_a_call_chosen_as_a_deadlock_victim_is_made_again(
    postgres_dsn: str, postgres_schema: str
) -> None:
    """The server rolls a deadlock's victim back whole, so the transport makes the call again
    (a renewal crossing a finalize of the same rows in another order no longer crashes the
    node's lease keeper); a call that keeps losing reports a TransportError."""
    async with PostgresTransport(postgres_dsn, schema=postgres_schema, pool_size=2) as transport:
        pool = transport._db
        made: list[int] = []

        async def losing(times: int) -> int:
            made.append(1)
            if len(made) <= times:
                raise asyncpg.exceptions.DeadlockDetectedError("deadlock detected")
            return int(await pool.fetchval("SELECT 7"))

        assert await transport._run(lambda: losing(2)) == 7
        assert len(made) == 3
        made.clear()
        with pytest.raises(TransportError, match="deadlock"):
            await transport._run(lambda: losing(100))
        assert len(made) == 5
