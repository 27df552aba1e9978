"""pgqueuer's side of ``bench.peers`` (runs in the peers virtual environment).

``python bench/_peers_pgqueuer.py MODE --dsn DSN [--jobs N] [--concurrency C]`` works in a
schema of its own (dropped afterwards) and prints one JSON object on its last line:

* ``drain``: N no-op jobs enqueued beforehand, one QueueManager (dequeue batch = C) in drain
  mode; jobs/s from the first handler start to the return of ``run``;
* ``enqueue``: jobs/s enqueueing N one call at a time, then N in batches of 1,000;
* ``latency``: with the worker idle, N jobs enqueued 5 ms apart; seconds from just before
  each enqueue call to its handler's start.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import time
import uuid
from datetime import timedelta

import asyncpg

SCHEMA = f"peers_pgq_{uuid.uuid4().hex[:8]}"
os.environ["PGQUEUER_SCHEMA"] = SCHEMA  # read when pgqueuer builds its settings

from pgqueuer import Queries, QueueManager  # noqa: E402
from pgqueuer.db import AsyncpgDriver  # noqa: E402
from pgqueuer.models import Job  # noqa: E402
from pgqueuer.types import QueueExecutionMode  # noqa: E402

BATCH = 1_000


async def _connect(dsn: str) -> asyncpg.Connection:
    return await asyncpg.connect(dsn)


async def _enqueue_all(queries: Queries, jobs: int, payload: bytes | None = None) -> None:
    for start in range(0, jobs, BATCH):
        n = min(BATCH, jobs - start)
        await queries.enqueue(["noop"] * n, [payload] * n, [0] * n)


async def drain(dsn: str, jobs: int, concurrency: int) -> dict[str, float]:
    conn = await _connect(dsn)
    queries = Queries(AsyncpgDriver(conn))
    await _enqueue_all(queries, jobs)
    worker_conn = await _connect(dsn)
    qm = QueueManager(Queries(AsyncpgDriver(worker_conn)))
    first: list[float] = []
    done = 0

    @qm.entrypoint("noop")
    async def noop(job: Job) -> None:
        nonlocal done
        if not first:
            first.append(time.perf_counter())
        done += 1

    await qm.run(batch_size=concurrency, mode=QueueExecutionMode.drain)
    end = time.perf_counter()
    left = await conn.fetchval(f'SELECT count(*) FROM "{SCHEMA}".pgqueuer')
    await worker_conn.close()
    await conn.close()
    assert done == jobs, done
    assert left == 0, left
    return {"jobs_per_s": jobs / (end - first[0])}


async def enqueue(dsn: str, jobs: int, concurrency: int) -> dict[str, float]:
    conn = await _connect(dsn)
    queries = Queries(AsyncpgDriver(conn))
    start = time.perf_counter()
    for _ in range(jobs):
        await queries.enqueue("noop", None)
    single = jobs / (time.perf_counter() - start)
    many = jobs * 10
    start = time.perf_counter()
    await _enqueue_all(queries, many)
    batched = many / (time.perf_counter() - start)
    await conn.close()
    return {"single_per_s": single, "batch_per_s": batched}


async def latency(dsn: str, jobs: int, concurrency: int) -> dict[str, list[float]]:
    producer = await _connect(dsn)
    queries = Queries(AsyncpgDriver(producer))
    worker_conn = await _connect(dsn)
    qm = QueueManager(Queries(AsyncpgDriver(worker_conn)))
    latencies: list[float] = []
    all_done = asyncio.Event()

    @qm.entrypoint("noop")
    async def noop(job: Job) -> None:
        assert job.payload is not None
        latencies.append(time.time() - float(job.payload.decode()))
        if len(latencies) == jobs:
            all_done.set()

    runner = asyncio.create_task(
        qm.run(batch_size=concurrency, dequeue_timeout=timedelta(seconds=30))
    )
    await asyncio.sleep(1.0)  # the worker is up and idle
    begin = time.perf_counter()
    for i in range(jobs):
        await asyncio.sleep(max(0.0, begin + i * 0.005 - time.perf_counter()))
        await queries.enqueue("noop", str(time.time()).encode())
    await asyncio.wait_for(all_done.wait(), 60)
    qm.shutdown.set()
    await runner
    await worker_conn.close()
    await producer.close()
    return {"latencies": latencies}


async def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("mode", choices=["drain", "enqueue", "latency"])
    parser.add_argument("--dsn", required=True)
    parser.add_argument("--jobs", type=int, default=10_000)
    parser.add_argument("--concurrency", type=int, default=10)
    args = parser.parse_args()
    admin = await _connect(args.dsn)
    try:
        await Queries(AsyncpgDriver(admin)).install()
        result = await globals()[args.mode](args.dsn, args.jobs, args.concurrency)
    finally:
        await admin.execute(f'DROP SCHEMA IF EXISTS "{SCHEMA}" CASCADE')
        await admin.close()
    print(json.dumps(result))


if __name__ == "__main__":
    asyncio.run(main())
