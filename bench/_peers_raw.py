"""The raw asyncpg ceiling for ``bench.peers``: what hand-written SQL does on actorq's table.

``python bench/_peers_raw.py MODE --dsn DSN [--jobs N] [--concurrency C]`` creates actorq's
schema (by its migrations) in a schema of its own, dropped afterwards, and prints one JSON
object on its last line:

* ``drain``: N jobs already there; C connections each loop ``UPDATE ... WHERE id IN (SELECT
  ... FOR UPDATE SKIP LOCKED LIMIT 100) RETURNING`` then a completing ``UPDATE``; jobs/s.
  ``--batch 1`` claims one job per statement instead;
* ``latency``: a consumer on ``LISTEN`` claims (batch 10) and completes whatever a producer
  inserts 5 ms apart (the insert sends ``NOTIFY`` in the same statement); seconds from just
  before each insert to the claim returning it.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import time
import uuid

import asyncpg

from transports import PostgresTransport

SCHEMA = f"peers_raw_{uuid.uuid4().hex[:8]}"
Q = f'"{SCHEMA}"'

INSERT = f"""
    INSERT INTO {Q}.jobs (kind, queue, payload, state, run_at, max_attempts, created_at,
                          updated_at)
    SELECT 'noop', 'default', p::jsonb, 'available', $2::float8, 20, $2::float8, $2::float8
    FROM unnest($1::text[]) AS r(p)
"""
INSERT_NOTIFY = f"""
    WITH ins AS ({INSERT} RETURNING 1)
    SELECT pg_notify('{SCHEMA}', 'default') FROM ins
"""
CLAIM = f"""
    UPDATE {Q}.jobs
    SET state = 'running', attempt = attempt + 1, lease_owner = 'raw',
        lease_token = nextval('{Q}.lease_tokens'),
        lease_expires_at = $2::float8 + 30, updated_at = $2::float8
    WHERE id IN (
        SELECT id FROM {Q}.jobs
        WHERE queue = 'default' AND state = 'available'
        ORDER BY priority, run_at, id
        LIMIT $1::integer
        FOR UPDATE SKIP LOCKED
    )
    RETURNING id, payload
"""
COMPLETE = f"""
    UPDATE {Q}.jobs SET state = 'succeeded', finished_at = $2::float8, lease_token = NULL,
        lease_expires_at = NULL, updated_at = $2::float8
    WHERE id = ANY($1::bigint[])
"""


async def _fill(conn: asyncpg.Connection, jobs: int) -> None:
    for start in range(0, jobs, 1_000):
        n = min(1_000, jobs - start)
        await conn.execute(INSERT, ["null"] * n, time.time())
    await conn.execute(f"VACUUM ANALYZE {Q}.jobs")


async def drain(dsn: str, jobs: int, concurrency: int, batch: int) -> dict[str, float]:
    admin = await asyncpg.connect(dsn)
    await _fill(admin, jobs)
    conns = [await asyncpg.connect(dsn) for _ in range(concurrency)]

    async def loop(conn: asyncpg.Connection) -> None:
        while rows := await conn.fetch(CLAIM, batch, time.time()):
            _ = [json.loads(row[1]) for row in rows]  # decode, as any consumer would
            await conn.execute(COMPLETE, [row[0] for row in rows], time.time())

    start = time.perf_counter()
    await asyncio.gather(*(loop(c) for c in conns))
    elapsed = time.perf_counter() - start
    done = await admin.fetchval(f"SELECT count(*) FROM {Q}.jobs WHERE state = 'succeeded'")
    for conn in [*conns, admin]:
        await conn.close()
    assert done == jobs, done
    return {"jobs_per_s": jobs / elapsed}


async def _offered(
    jobs: int, dsn: str, *, per: int, every: float, claim: int
) -> dict[str, list[float]]:
    """Enqueue-to-start latency of ``jobs`` offered ``per`` in one insert every ``every`` s,
    taken by one LISTEN-woken consumer claiming up to ``claim`` at a time."""
    producer = await asyncpg.connect(dsn)
    consumer = await asyncpg.connect(dsn)
    listener = await asyncpg.connect(dsn)
    wake = asyncio.Event()
    latencies: list[float] = []
    await listener.add_listener(SCHEMA, lambda *_: wake.set())

    async def consume() -> None:
        while len(latencies) < jobs:
            wake.clear()  # before the claim: a NOTIFY during it is not lost
            rows = await consumer.fetch(CLAIM, claim, time.time())
            if not rows:
                await wake.wait()
                continue
            now = time.time()
            latencies.extend(now - json.loads(row[1]) for row in rows)
            await consumer.execute(COMPLETE, [row[0] for row in rows], time.time())

    task = asyncio.create_task(consume())
    await asyncio.sleep(1.0)
    begin = time.perf_counter()
    for i in range(0, jobs, per):
        await asyncio.sleep(max(0.0, begin + i // per * every - time.perf_counter()))
        t = time.time()
        await producer.execute(INSERT_NOTIFY, [json.dumps(t)] * min(per, jobs - i), t)
    await asyncio.wait_for(task, 60)
    for conn in (producer, consumer, listener):
        await conn.close()
    return {"latencies": latencies}


async def latency(dsn: str, jobs: int, concurrency: int, batch: int) -> dict[str, list[float]]:
    """One job every 5 ms, claims of up to 10."""
    return await _offered(jobs, dsn, per=1, every=0.005, claim=10)


async def steady(dsn: str, jobs: int, concurrency: int, batch: int) -> dict[str, list[float]]:
    """The same steady load as actorq's (6 jobs in one insert every 10 ms), claims of 32."""
    return await _offered(jobs, dsn, per=6, every=0.010, claim=32)


async def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("mode", choices=["drain", "latency", "steady"])
    parser.add_argument("--dsn", required=True)
    parser.add_argument("--jobs", type=int, default=10_000)
    parser.add_argument("--concurrency", type=int, default=1)
    parser.add_argument("--batch", type=int, default=100)
    args = parser.parse_args()
    async with PostgresTransport(args.dsn, schema=SCHEMA, pool_size=1, notify=False):
        pass  # actorq's own migrations build the table and its indexes
    try:
        result = await globals()[args.mode](args.dsn, args.jobs, args.concurrency, args.batch)
    finally:
        admin = await asyncpg.connect(args.dsn)
        await admin.execute(f"DROP SCHEMA IF EXISTS {Q} CASCADE")
        await admin.close()
    print(json.dumps(result))


if __name__ == "__main__":
    asyncio.run(main())
