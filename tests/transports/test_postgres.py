"""The PostgreSQL transport: the conformance suite, plus what only PostgreSQL promises."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from typing import Any

import anyio
import anyio.lowlevel
import anyio.to_thread
import asyncpg
import pytest

from transports import (
    After,
    EnqueueRequest,
    InvalidRequest,
    JobState,
    PostgresTransport,
    QueueConfig,
    StoreReadOnly,
    Transport,
    connect,
)
from transports._postgres import _channel
from transports._sql import load_migrations
from transports.lowlevel import BridgedTransport, Complete, FinalizeRequest, Lease
from transports.testing import ManualClock, TransportConformance, TransportFactory

pytestmark = pytest.mark.anyio

WAKE_TIMEOUT = 5.0  # real seconds; a safety net, never a wait


def _factory(
    anyio_backend: str, dsn: str, schema: str, **options: Any
) -> Callable[[ManualClock | None], Transport]:
    """Build unopened transports on one schema; under trio, bridged onto a private loop."""

    def make(clock: ManualClock | None) -> Transport:
        def build() -> PostgresTransport:
            return PostgresTransport(dsn, schema=schema, clock=clock, pool_size=3, **options)

        if anyio_backend == "trio":
            return BridgedTransport(build)
        return build()

    return make


class TestPostgresConformance(TransportConformance):
    supports_second_instance = True  # two pools on one schema: two nodes

    @pytest.fixture
    def transport_factory(
        self, anyio_backend: str, postgres_dsn: str, postgres_schema: str
    ) -> TransportFactory:
        return _factory(anyio_backend, postgres_dsn, postgres_schema)


asyncio_only = pytest.mark.parametrize("anyio_backend", ["asyncio"])
"""For tests that use asyncpg directly (or the caller's connection), which needs asyncio."""


@pytest.fixture
async def admin(postgres_dsn: str) -> AsyncIterator[asyncpg.Connection]:
    """A plain asyncpg connection for checks from outside the transport."""
    conn = await asyncpg.connect(postgres_dsn)
    try:
        yield conn
    finally:
        await conn.close()


async def test_wake_up_crosses_instances(
    anyio_backend: str, postgres_dsn: str, postgres_schema: str
) -> None:
    """An enqueue on one node wakes a waiter on another node through LISTEN/NOTIFY."""
    make = _factory(anyio_backend, postgres_dsn, postgres_schema)
    async with make(None) as waiting, make(None) as producing:
        returned = anyio.Event()

        async def waiter() -> None:
            await waiting.wait_for_work(["mail"])
            returned.set()

        with anyio.fail_after(WAKE_TIMEOUT):
            async with anyio.create_task_group() as tg:
                tg.start_soon(waiter)
                for _ in range(20):
                    await anyio.lowlevel.checkpoint()
                assert not returned.is_set()
                await producing.enqueue(EnqueueRequest(kind="k", queue="mail"))
                await returned.wait()


async def test_schema_option_isolates(
    anyio_backend: str, postgres_dsn: str, postgres_schema: str
) -> None:
    """Two schemas in one database are two independent stores."""
    other = postgres_schema + "_b"
    try:
        async with (
            _factory(anyio_backend, postgres_dsn, postgres_schema)(None) as a,
            _factory(anyio_backend, postgres_dsn, other)(None) as b,
        ):
            await a.enqueue(EnqueueRequest(kind="k"))
            assert [c.total for c in await a.counts()] == [1]
            assert await b.counts() == []
            assert await b.claim("default", owner="w", limit=10, ttl=30) == []
    finally:
        await anyio.to_thread.run_sync(_drop_schema_sync, postgres_dsn, other)


def _drop_schema_sync(dsn: str, schema: str) -> None:
    import asyncio

    async def drop() -> None:
        conn = await asyncpg.connect(dsn)
        try:
            await conn.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')
        finally:
            await conn.close()

    asyncio.run(drop())


@pytest.mark.parametrize("schema", ["has space", 'quo"te', "1digit", "x" * 59, "semi;colon", ""])
def test_bad_schema_names_are_rejected(schema: str) -> None:
    """A schema name must be a plain identifier short enough for its NOTIFY channel."""
    with pytest.raises(InvalidRequest):
        PostgresTransport("postgresql://nowhere/db", schema=schema)


async def test_connect_url_options(
    anyio_backend: str, postgres_dsn: str, postgres_schema: str
) -> None:
    """``connect("postgresql://...?schema=x&pool_size=3")`` builds the configured transport."""
    transport = connect(f"{postgres_dsn}?schema={postgres_schema}&pool_size=3")
    async with transport:
        inner = transport.inner if isinstance(transport, BridgedTransport) else transport
        assert isinstance(inner, PostgresTransport)
        assert (inner.schema, inner.pool_size) == (postgres_schema, 3)
        result = await transport.enqueue(EnqueueRequest(kind="k"))
        assert (await transport.get(result.job_id)).state is JobState.AVAILABLE
    assert (anyio_backend == "trio") == isinstance(transport, BridgedTransport)


@asyncio_only
async def test_database_clock_is_used_without_a_clock(
    admin: asyncpg.Connection, postgres_dsn: str, postgres_schema: str
) -> None:
    """Without an injected clock, times come from the database server."""
    async with PostgresTransport(postgres_dsn, schema=postgres_schema) as transport:
        before = await admin.fetchval("SELECT extract(epoch FROM clock_timestamp())::float8")
        job = await transport.get((await transport.enqueue(EnqueueRequest(kind="k"))).job_id)
        after = await admin.fetchval("SELECT extract(epoch FROM clock_timestamp())::float8")
        assert before <= job.created_at <= after
        (lease,) = await transport.claim("default", owner="w", limit=1, ttl=60)
        assert before + 60 <= lease.expires_at <= after + 61


@asyncio_only
async def test_enqueue_in_callers_transaction_commits_with_it(
    admin: asyncpg.Connection, postgres_dsn: str, postgres_schema: str
) -> None:
    """Jobs enqueued on the caller's connection appear only when the caller commits."""
    async with PostgresTransport(postgres_dsn, schema=postgres_schema) as transport:
        async with admin.transaction():
            result = await transport.enqueue(EnqueueRequest(kind="k"), connection=admin)
            # Not visible to the transport's own connections before the commit.
            assert await transport.counts() == []
        assert (await transport.get(result.job_id)).kind == "k"


@asyncio_only
async def test_enqueue_in_callers_transaction_rolls_back_with_it(
    admin: asyncpg.Connection, postgres_dsn: str, postgres_schema: str
) -> None:
    """A rolled-back caller transaction takes its enqueued jobs (dedupe included) with it."""

    class Boom(Exception):
        pass

    async with PostgresTransport(postgres_dsn, schema=postgres_schema) as transport:
        results = []

        async def enqueue_then_fail() -> None:
            async with admin.transaction():
                results.extend(
                    await transport.enqueue_many(
                        [EnqueueRequest(kind="k"), EnqueueRequest(kind="k", dedupe_key="d")],
                        connection=admin,
                    )
                )
                raise Boom

        with pytest.raises(Boom):
            await enqueue_then_fail()
        assert len(results) == 2
        assert await transport.counts() == []
        again = await transport.enqueue(EnqueueRequest(kind="k", dedupe_key="d"))
        assert not again.deduplicated


@asyncio_only
async def test_enqueue_in_callers_transaction_folds_duplicates(
    admin: asyncpg.Connection, postgres_dsn: str, postgres_schema: str
) -> None:
    """On the caller's connection a dedupe key folds as on the transport's own: a second
    request with a live job's key, in the batch or later, returns that job."""
    async with PostgresTransport(postgres_dsn, schema=postgres_schema) as transport:
        async with admin.transaction():
            first, twin = await transport.enqueue_many(
                [
                    EnqueueRequest(kind="k", dedupe_key="d"),
                    EnqueueRequest(kind="k", dedupe_key="d"),
                ],
                connection=admin,
            )
            later = await transport.enqueue(
                EnqueueRequest(kind="k", dedupe_key="d"), connection=admin
            )
        assert not first.deduplicated
        assert twin.deduplicated
        assert twin.job_id == first.job_id
        assert later.deduplicated
        assert later.job_id == first.job_id
        assert sum(c.total for c in await transport.counts()) == 1


@asyncio_only
async def test_enqueue_in_callers_transaction_keeps_a_batchs_edges(
    admin: asyncpg.Connection, postgres_dsn: str, postgres_schema: str
) -> None:
    """A batch whose jobs wait for each other (``after``), enqueued on the caller's
    connection, keeps its edges: the child waits pending until its parent succeeds."""
    async with PostgresTransport(postgres_dsn, schema=postgres_schema) as transport:
        async with admin.transaction():
            parent, child = await transport.enqueue_many(
                [EnqueueRequest(kind="k"), EnqueueRequest(kind="k", after=[After(index=0)])],
                connection=admin,
            )
        assert (await transport.get(child.job_id)).state is JobState.PENDING
        (lease,) = await transport.claim("default", owner="w", limit=5, ttl=60)
        assert lease.job_id == parent.job_id
        await transport.finalize(
            [FinalizeRequest(job_id=lease.job_id, token=lease.token, outcome=Complete())]
        )
        assert (await transport.get(child.job_id)).state is JobState.AVAILABLE


@asyncio_only
async def test_claim_uses_the_due_index_on_a_large_table(
    admin: asyncpg.Connection, postgres_dsn: str, postgres_schema: str
) -> None:
    """With 50,000 rows (mostly finished), the claim plan reads the partial due index."""
    async with PostgresTransport(postgres_dsn, schema=postgres_schema) as transport:
        table = f'"{postgres_schema}".jobs'
        await admin.execute(
            f"""
            INSERT INTO {table} (kind, queue, payload, state, run_at, max_attempts,
                                 created_at, updated_at, finished_at)
            SELECT 'k', 'q' || (i % 7), 'null', CASE WHEN i % 50 = 0 THEN 'available'
                   ELSE 'succeeded' END, i, 20, i, i, i
            FROM generate_series(1, 50000) AS i
            """
        )
        await admin.execute(f"ANALYZE {table}")
        sql = transport._sql["claim"]
        plan = "\n".join(
            row[0] for row in await admin.fetch("EXPLAIN " + sql, "q3", 10, "w", 30.0, None)
        )
        assert "jobs_due_idx" in plan, plan
        assert "Seq Scan on jobs" not in plan, plan
        leases = await transport.claim("q3", owner="w", limit=10, ttl=30)
        assert len(leases) == 10


@asyncio_only
async def test_schema_newer_than_the_code_is_refused(
    admin: asyncpg.Connection, postgres_dsn: str, postgres_schema: str
) -> None:
    """A schema migrated by newer code is refused, with or without auto-migration."""
    from transports import SchemaVersionMismatch

    async with PostgresTransport(postgres_dsn, schema=postgres_schema):
        pass
    await admin.execute(f'INSERT INTO "{postgres_schema}".schema_version VALUES (999, 0)')
    for auto_migrate in (True, False):
        with pytest.raises(SchemaVersionMismatch):
            async with PostgresTransport(
                postgres_dsn, schema=postgres_schema, auto_migrate=auto_migrate
            ):
                pass


async def test_unmigrated_schema_without_auto_migrate_is_refused(
    anyio_backend: str, postgres_dsn: str, postgres_schema: str
) -> None:
    """``auto_migrate=False`` never creates tables: it asks for ``actorq migrate``."""
    from transports import SchemaVersionMismatch

    make = _factory(anyio_backend, postgres_dsn, postgres_schema, auto_migrate=False)
    with pytest.raises(SchemaVersionMismatch):
        async with make(None):
            pass


@asyncio_only
async def test_concurrent_migrations_apply_once(
    admin: asyncpg.Connection, postgres_dsn: str, postgres_schema: str
) -> None:
    """Several processes starting at once migrate a fresh schema exactly once."""
    transports = [
        PostgresTransport(postgres_dsn, schema=postgres_schema, auto_migrate=False)
        for _ in range(4)
    ]
    versions: list[int] = []

    async def run(t: PostgresTransport) -> None:
        versions.append(await t.migrate())

    async with anyio.create_task_group() as tg:
        for t in transports:
            tg.start_soon(run, t)
    latest = len(load_migrations("postgres"))
    assert versions == [latest] * 4
    rows = await admin.fetch(f'SELECT version FROM "{postgres_schema}".schema_version')
    assert sorted(row[0] for row in rows) == list(range(1, latest + 1))  # each applied once


async def test_unreachable_server_raises_connection_lost(anyio_backend: str) -> None:
    """Opening against a closed port raises ConnectionLost, not a driver error."""
    from transports import ConnectionLost

    make = _factory(anyio_backend, "postgresql://root@127.0.0.1:1/test", "actorq")
    with pytest.raises(ConnectionLost):
        async with make(None):
            pass


async def test_an_empty_claim_leaves_no_wake_up_behind(
    anyio_backend: str, postgres_dsn: str, postgres_schema: str
) -> None:
    """A claim that found nothing passes no wake-up on (only a full claim does, since more is
    likely waiting): else an idle Claimer would wake itself and claim again, for ever."""
    make = _factory(anyio_backend, postgres_dsn, postgres_schema)
    async with make(None) as transport:  # a fresh store: no wake-up is kept yet
        for limit in (1, 5):
            assert await transport.claim("q", owner="w", limit=limit, ttl=30.0) == []
            with anyio.move_on_after(0.3) as idle:  # real seconds: no wake-up is due
                await transport.wait_for_work(["q"])
            assert idle.cancelled_caught, f"an empty claim of {limit} left a wake-up behind"


async def test_a_full_claim_passes_the_wake_up_on(
    anyio_backend: str, postgres_dsn: str, postgres_schema: str
) -> None:
    """An enqueue wakes one waiter per queue; a claim that comes back full (more is likely
    waiting) wakes the next, so a batch reaches every waiter, one claim after another."""
    make = _factory(anyio_backend, postgres_dsn, postgres_schema, notify=False)
    async with make(None) as transport:
        claimed: list[int] = []
        waiting = 0

        async def claimer(owner: str) -> None:
            nonlocal waiting
            waiting += 1
            await transport.wait_for_work(["q"])
            claimed.append(len(await transport.claim("q", owner=owner, limit=2, ttl=30.0)))

        with anyio.fail_after(WAKE_TIMEOUT):
            async with anyio.create_task_group() as tg:
                tg.start_soon(claimer, "a")
                tg.start_soon(claimer, "b")
                while waiting < 2:
                    await anyio.lowlevel.checkpoint()
                for _ in range(20):  # let both get well into their waits
                    await anyio.lowlevel.checkpoint()
                await transport.enqueue_many([EnqueueRequest(kind="k", queue="q")] * 4)
        assert claimed == [2, 2]


async def test_notify_false_still_wakes_local_waiters(
    anyio_backend: str, postgres_dsn: str, postgres_schema: str
) -> None:
    """Without NOTIFY, this process's own enqueues still wake its waiters."""
    make = _factory(anyio_backend, postgres_dsn, postgres_schema, notify=False)
    async with make(None) as transport:
        returned = anyio.Event()

        async def waiter() -> None:
            await transport.wait_for_work(["q"])
            returned.set()

        with anyio.fail_after(WAKE_TIMEOUT):
            async with anyio.create_task_group() as tg:
                tg.start_soon(waiter)
                for _ in range(20):
                    await anyio.lowlevel.checkpoint()
                await transport.enqueue(EnqueueRequest(kind="k", queue="q"))
                await returned.wait()


@asyncio_only
async def test_listener_loss_wakes_waiters_and_reconnects(
    admin: asyncpg.Connection, postgres_dsn: str, postgres_schema: str
) -> None:
    """Killing the LISTEN connection wakes every waiter; wake-ups work again afterwards."""
    async with (
        PostgresTransport(postgres_dsn, schema=postgres_schema) as waiting,
        PostgresTransport(postgres_dsn, schema=postgres_schema) as producing,
    ):
        listener = waiting._listener
        assert listener is not None
        with anyio.fail_after(WAKE_TIMEOUT):
            async with anyio.create_task_group() as tg:
                tg.start_soon(waiting.wait_for_work, ["q"])
                for _ in range(20):
                    await anyio.lowlevel.checkpoint()
                await admin.execute("SELECT pg_terminate_backend($1)", listener.get_server_pid())
            # The waiter returned without any enqueue. Now the listener comes back.
            while waiting._listener is None or waiting._listener is listener:
                await waiting.wait_for_work(["q"])  # returns when the reconnect completes
            async with anyio.create_task_group() as tg:
                tg.start_soon(waiting.wait_for_work, ["q"])
                for _ in range(20):
                    await anyio.lowlevel.checkpoint()
                await producing.enqueue(EnqueueRequest(kind="k", queue="q"))


async def test_finalize_batch_is_one_fenced_statement(
    anyio_backend: str, postgres_dsn: str, postgres_schema: str
) -> None:
    """A batch mixing live and stale tokens applies exactly the live ones."""
    async with _factory(anyio_backend, postgres_dsn, postgres_schema)(None) as transport:
        await transport.enqueue_many([EnqueueRequest(kind="k") for _ in range(4)])
        leases = await transport.claim("default", owner="w", limit=4, ttl=30)
        requests = [
            FinalizeRequest(
                job_id=lease.job_id, token=lease.token + (i % 2) * 1000, outcome=Complete()
            )
            for i, lease in enumerate(leases)
        ]
        results = await transport.finalize(requests)
        assert [r.value for r in results] == ["applied", "stale", "applied", "stale"]


def test_channel_name_follows_schema() -> None:
    assert _channel("abc") == "abc_jobs"


@asyncio_only
async def test_read_only_server_raises_store_read_only(
    postgres_dsn: str, postgres_schema: str
) -> None:
    """A server that refuses writes (a standby, default_transaction_read_only) gives
    StoreReadOnly, which retrying does not fix; reads still work."""
    async with PostgresTransport(postgres_dsn, schema=postgres_schema) as transport:
        await transport.enqueue(EnqueueRequest(kind="k"))
    read_only = f"{postgres_dsn}?options=-c%20default_transaction_read_only%3Don"
    async with PostgresTransport(read_only, schema=postgres_schema, create=False) as transport:
        with pytest.raises(StoreReadOnly, match="refuses writes"):
            await transport.enqueue(EnqueueRequest(kind="k"))
        assert [c.total for c in await transport.counts()] == [1]


@asyncio_only
async def test_stored_config_out_of_range_reads_as_the_default(
    postgres_dsn: str, postgres_schema: str, admin: asyncpg.Connection
) -> None:
    """A queue config another tool stored out of range reads back as unset (the node default),
    and a row with an invalid name is skipped."""
    async with PostgresTransport(postgres_dsn, schema=postgres_schema) as transport:
        await admin.execute(
            f'INSERT INTO "{postgres_schema}".queues (name, paused, concurrency, retention) '
            "VALUES ('bad', false, -5, 'NaN'), ('a b', false, 2, 1.0)"
        )
        assert await transport.get_queue_config("bad") == QueueConfig(name="bad")
        assert await transport.list_queue_configs() == [QueueConfig(name="bad")]


async def _race_a_limited_key(
    make: Callable[[ManualClock | None], Transport], *, rounds: int, limit: int
) -> list[int]:
    """Claim a limited key from 24 claimers on 4 nodes at once, ``rounds`` times; the most
    jobs of the key that held a lease together in each round."""
    async with (
        make(None) as a,
        make(None) as b,
        make(None) as c,
        make(None) as d,
    ):
        nodes = [a, b, c, d]
        await a.set_limit("hot", concurrency=limit)
        await a.enqueue_many(
            [EnqueueRequest(kind="k", queue="q", concurrency_key="hot") for _ in range(200)]
        )
        await a.enqueue_many([EnqueueRequest(kind="k", queue="q") for _ in range(200)])
        held: list[int] = []

        async def claimer(node: Transport, n: int, got: list[Lease]) -> None:
            got.extend(await node.claim("q", owner=f"w{n}", limit=2, ttl=60.0))

        for _ in range(rounds):
            got: list[Lease] = []
            async with anyio.create_task_group() as tg:
                for n in range(24):
                    tg.start_soon(claimer, nodes[n % 4], n, got)
            held.append(sum(1 for lease in got if lease.job.concurrency_key == "hot"))
            await a.finalize(
                [
                    FinalizeRequest(job_id=lease.job_id, token=lease.token, outcome=Complete())
                    for lease in got
                ]
            )
        return held


async def test_racing_nodes_never_exceed_a_key_limit(
    anyio_backend: str, postgres_dsn: str, postgres_schema: str
) -> None:
    """24 claimers on 4 nodes (separate pools) racing for one key never hold more of its jobs
    than its limit, round after round, and each round fills the limit."""
    make = _factory(anyio_backend, postgres_dsn, postgres_schema)
    held = await _race_a_limited_key(make, rounds=8, limit=2)
    assert held == [2] * 8


async def test_racing_nodes_never_exceed_a_queue_cap(
    anyio_backend: str, postgres_dsn: str, postgres_schema: str
) -> None:
    """24 claimers on 4 nodes racing for a queue with a cluster-wide cap of 3 never hold more
    of its jobs than that, round after round, and each round fills the cap."""
    make = _factory(anyio_backend, postgres_dsn, postgres_schema)
    async with make(None) as a, make(None) as b, make(None) as c, make(None) as d:
        nodes = [a, b, c, d]
        await a.set_queue_config(QueueConfig(name="q", global_concurrency=3))
        await a.enqueue_many([EnqueueRequest(kind="k", queue="q") for _ in range(200)])
        held: list[int] = []

        async def claimer(node: Transport, n: int, got: list[Lease]) -> None:
            got.extend(await node.claim("q", owner=f"w{n}", limit=2, ttl=60.0))

        for _ in range(8):
            got: list[Lease] = []
            async with anyio.create_task_group() as tg:
                for n in range(24):
                    tg.start_soon(claimer, nodes[n % 4], n, got)
            held.append(len(got))
            await a.finalize(
                [
                    FinalizeRequest(job_id=lease.job_id, token=lease.token, outcome=Complete())
                    for lease in got
                ]
            )
    assert held == [3] * 8
