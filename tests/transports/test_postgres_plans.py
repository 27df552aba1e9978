"""The operators' listings and actions stay off a full scan of the jobs table on PostgreSQL.

What is indexed (migration 0002, schema.sql): final jobs by ``(state, id)``, one
index entry per finalize and none per claim or renewal; waiting jobs through the claim index
``jobs_due_idx`` and running ones through ``jobs_lease_idx``; a listing without a state walks the
primary key newest first. A queue, kind, time or error-text filter has no index of its own (no
trigram extension is assumed, and an index over a column of every row would cost each claim,
renewal and finalize one more write): it is checked on the rows one of those indexes yields, so a
search of a big table should name a state too.

The test seeds a table big enough for the planner to care, and reads the plans.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import asyncpg
import pytest

from transports import JobFilter, JobState, PostgresTransport
from transports._postgres import _ACTIVE, _DELETABLE, _RETRYABLE, _WAITING, _filter_args

pytestmark = [pytest.mark.anyio, pytest.mark.parametrize("anyio_backend", ["asyncio"])]

ROWS = 200_000

# ~90% succeeded, then dead, cancelled, available, scheduled and running; 8 queues, 40 kinds.
SEED = """
INSERT INTO {schema}.jobs (
    kind, queue, payload, state, priority, run_at, attempt, max_attempts, last_error,
    created_at, updated_at, finished_at, lease_expires_at
)
SELECT 'kind' || (n % 40), 'q' || (n % 8), '{{}}'::jsonb, s.state, 0, n, 1, 3,
       CASE WHEN s.state = 'dead' THEN 'Boom ' || n END, n, n,
       CASE WHEN s.state IN ('succeeded', 'dead', 'cancelled') THEN n END,
       CASE WHEN s.state = 'running' THEN 1e12 END
FROM generate_series(1, {rows}) AS n,
LATERAL (SELECT CASE
    WHEN n % 100 < 90 THEN 'succeeded'
    WHEN n % 100 < 95 THEN 'dead'
    WHEN n % 100 < 97 THEN 'cancelled'
    WHEN n % 100 < 99 THEN 'available'
    ELSE 'running'
END AS state) AS s;
ANALYZE {schema}.jobs;
"""


@pytest.fixture
async def seeded(postgres_dsn: str, postgres_schema: str) -> AsyncIterator[PostgresTransport]:
    async with PostgresTransport(postgres_dsn, schema=postgres_schema, pool_size=2) as transport:
        conn = await asyncpg.connect(postgres_dsn)
        try:
            await conn.execute(SEED.format(schema=f'"{postgres_schema}"', rows=ROWS))
        finally:
            await conn.close()
        yield transport


async def _plan(transport: PostgresTransport, query: str, *args: Any) -> str:
    conn = await asyncpg.connect(transport.dsn)
    try:
        rows = await conn.fetch("EXPLAIN " + transport._sql[query], *args)
    finally:
        await conn.close()
    return "\n".join(row[0] for row in rows)


LISTINGS = {
    "dead of one queue": JobFilter(queue="q3", states=[JobState.DEAD]),
    "dead anywhere": JobFilter(states=[JobState.DEAD]),
    "succeeded or cancelled": JobFilter(states=[JobState.SUCCEEDED, JobState.CANCELLED]),
    "dead of one kind": JobFilter(kind="kind7", states=[JobState.DEAD]),
    "one kind": JobFilter(kind="kind7"),
    "one queue": JobFilter(queue="q2"),
    "everything": JobFilter(),
    "available of one queue": JobFilter(queue="q1", states=[JobState.AVAILABLE]),
    "running": JobFilter(states=[JobState.RUNNING]),
    "dead with an error text": JobFilter(states=[JobState.DEAD], error="boom 12"),
    "finished in a window": JobFilter(
        states=[JobState.SUCCEEDED], finished_after=1000.0, finished_before=2000.0
    ),
}


async def test_listings_use_an_index(seeded: PostgresTransport) -> None:
    """No common listing, newest or oldest first, reads the whole jobs table."""
    scanned = {}
    for name, where in LISTINGS.items():
        for query in ["list_jobs_newest", "list_jobs"]:
            plan = await _plan(seeded, query, *_filter_args(where, None, 150_000, None), 50)
            assert "jobs" in plan
            if "Seq Scan on jobs" in plan:
                scanned[f"{name} ({query})"] = plan
    assert not scanned, "\n\n".join(f"{name}:\n{plan}" for name, plan in scanned.items())


ACTIONS = {
    "retry dead of a kind": (
        "retry_jobs",
        JobFilter(kind="kind3", states=[JobState.DEAD]),
        [_RETRYABLE],
    ),
    "discard waiting of a queue": ("discard_jobs", JobFilter(queue="q1"), [_WAITING, "reason"]),
    "cancel one kind": (
        "cancel_jobs",
        JobFilter(kind="kind5", states=[JobState.AVAILABLE]),
        [_ACTIVE],
    ),
    "delete a queue's dead jobs": (
        "delete_jobs",
        JobFilter(queue="q4", states=[JobState.DEAD]),
        [_DELETABLE],
    ),
    "delete old succeeded": (
        "delete_jobs",
        JobFilter(states=[JobState.SUCCEEDED], finished_before=5000.0),
        [_DELETABLE],
    ),
}


async def test_bulk_actions_use_an_index(seeded: PostgresTransport) -> None:
    """Choosing an action's batch reads an index, not the whole table."""
    scanned = {}
    for name, (query, where, extra) in ACTIONS.items():
        args = _filter_args(where, None, None, None)
        plan = await _plan(seeded, query, *args, 1000, *extra)
        if "Seq Scan on jobs" in plan:
            scanned[name] = plan
    assert not scanned, "\n\n".join(f"{name}:\n{plan}" for name, plan in scanned.items())


async def test_a_seq_scan_is_what_the_check_would_see(seeded: PostgresTransport) -> None:
    """The check can fail: a filter on a column no index covers shows the Seq Scan."""
    conn = await asyncpg.connect(seeded.dsn)
    try:
        rows = await conn.fetch(
            f'EXPLAIN SELECT id FROM "{seeded.schema}".jobs WHERE priority = 5 ORDER BY run_at'
        )
    finally:
        await conn.close()
    assert "Seq Scan on jobs" in "\n".join(row[0] for row in rows)


async def test_pruning_results_reads_only_the_results_still_stored(
    seeded: PostgresTransport,
) -> None:
    """prune_results picks its batch, oldest finish first, from the partial index of the
    results still stored (0011), not from every succeeded job."""
    conn = await asyncpg.connect(seeded.dsn)
    try:
        table = f'"{seeded.schema}".jobs'
        await conn.execute(
            f"UPDATE {table} SET result = '1'::jsonb WHERE state = 'succeeded' AND id % 50 = 0;"
            f"ANALYZE {table};"
        )
    finally:
        await conn.close()
    plan = await _plan(seeded, "prune_results", 150_000.0, 1000)
    assert "jobs_results_idx" in plan, plan
    assert "Seq Scan on jobs" not in plan, plan
    assert await seeded.prune_results(finished_before=150_000.0, limit=1000) == 1000


async def test_fair_claims_and_partition_listings_read_indexes(seeded: PostgresTransport) -> None:
    """With partitioned jobs waiting (a fair queue beside plain ones), the claims (fast,
    limited and fair) and list_partitions seek the partial indexes of the partitioned and
    unpartitioned due jobs (0012), not the table."""
    conn = await asyncpg.connect(seeded.dsn)
    try:
        table = f'"{seeded.schema}".jobs'
        await conn.execute(
            f"UPDATE {table} SET partition_key = 'tenant:' || (id / 200 % 5)"
            f" WHERE state = 'available' AND queue = 'q1' AND id / 200 % 6 <> 5; ANALYZE {table};"
        )
    finally:
        await conn.close()
    plans = {
        "fast claim, plain queue": await _plan(seeded, "claim", "q2", 50, "w", 30.0, None),
        "fast claim, fair queue": await _plan(seeded, "claim", "q1", 50, "w", 30.0, None),
        "limited or fair claim": await _plan(seeded, "claim_candidates", "q1", 50, None),
        "any limits": await _plan(seeded, "any_limits", None, "q1"),
        "list_partitions": await _plan(seeded, "list_partitions", "q1", None, 100, 10_000),
    }
    scanned = {name: plan for name, plan in plans.items() if "Seq Scan on jobs" in plan}
    assert not scanned, "\n\n".join(f"{name}:\n{plan}" for name, plan in scanned.items())
    assert "jobs_partition_idx" in plans["limited or fair claim"]
    # And the fair claim takes both kinds of job, round by round, by turn.
    leases = await seeded.claim("q1", owner="w", limit=12, ttl=30.0)
    assert len({lease.job.partition_key for lease in leases}) == 6  # 5 tenants and the rest
