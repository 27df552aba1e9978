"""actorq's side of ``bench.peers``: the same workloads through the real runtime.

``python bench/_peers_actorq.py MODE --dsn DSN [--jobs N] [--concurrency C]`` works in a
schema of its own (dropped afterwards) and prints one JSON object on its last line:

* ``drain``: N no-op jobs enqueued beforehand, one node with C Workers (the default
  ``WorkerConfig``, as ``actorq worker --concurrency C`` runs them); jobs/s from the first
  claim's handler start to the last ``JobSucceeded`` (the finalize applied);
* ``enqueue``: jobs/s for N ``App.enqueue`` calls one at a time, then 10 x N jobs through
  ``App.enqueue_many`` in batches of 1,000;
* ``latency``: with the node idle, N jobs enqueued 5 ms apart; seconds from just before each
  ``App.enqueue`` call to its handler's start;
* ``memory`` / ``sqlite``: the drain on the in-process backends (``--dsn`` unused).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

import anyio
import asyncpg

import transports
from actors.core import RealClock
from actors.jobs import App, JobContext, Topology, WorkerConfig
from transports import JobState

BATCH = 1_000


def _app(
    latencies: list[float] | None = None,
    first: list[float] | None = None,
    ran: anyio.Event | None = None,
    expected: int = 0,
) -> App:
    app = App()
    count = 0

    @app.task("noop")
    async def noop(ctx: JobContext, payload: Any) -> None:
        nonlocal count
        count += 1
        if first is not None and not first:
            first.append(time.perf_counter())
        if latencies is not None:
            assert isinstance(payload, dict)
            latencies.append(time.time() - payload["t"])
        if ran is not None and count == expected:
            ran.set()

    return app


async def _drain(url: str, jobs: int, concurrency: int, worker: WorkerConfig) -> float:
    """Jobs/s from the first handler start until every job is ``succeeded`` in the store.

    Nothing subscribes to the node's events (a subscriber makes the Workers build an event
    per job, which no production worker pays for): the handlers count themselves, then the
    store is polled every millisecond until the last results are in.
    """
    first: list[float] = []
    ran = anyio.Event()
    app = _app(first=first, ran=ran, expected=jobs)
    clock = RealClock()
    async with transports.connect(url, clock=clock) as transport:
        for start in range(0, jobs, BATCH):
            await app.enqueue_many(
                [app.request("noop") for _ in range(min(BATCH, jobs - start))],
                transport=transport,
            )
        topology = Topology(app, transport, clock=clock).queue(
            "default", concurrency=concurrency, worker=worker
        )
        async with topology.run():
            with anyio.fail_after(600):
                await ran.wait()
                while True:
                    (counts,) = await transport.counts("default")
                    if counts[JobState.SUCCEEDED] == jobs:
                        last = time.perf_counter()
                        break
                    if counts[JobState.DEAD]:
                        raise RuntimeError("a job ended dead")
                    await anyio.sleep(0.001)
    return jobs / (last - first[0])


async def drain(dsn: str, schema: str, jobs: int, concurrency: int, batch: int) -> dict[str, float]:
    url = f"{dsn}?schema={schema}"
    return {"jobs_per_s": await _drain(url, jobs, concurrency, WorkerConfig(batch_size=batch))}


async def memory(
    dsn: str, schema: str, jobs: int, concurrency: int, batch: int
) -> dict[str, float]:
    config = WorkerConfig(batch_size=batch)
    return {"jobs_per_s": await _drain("memory://", jobs, concurrency, config)}


async def sqlite(
    dsn: str, schema: str, jobs: int, concurrency: int, batch: int
) -> dict[str, float]:
    with tempfile.TemporaryDirectory() as folder:
        url = f"sqlite:///{Path(folder) / 'bench.db'}"
        config = WorkerConfig(batch_size=batch)
        return {"jobs_per_s": await _drain(url, jobs, concurrency, config)}


async def enqueue(
    dsn: str, schema: str, jobs: int, concurrency: int, batch: int
) -> dict[str, float]:
    app = _app()
    async with transports.connect(f"{dsn}?schema={schema}") as transport:
        start = time.perf_counter()
        for _ in range(jobs):
            await app.enqueue("noop", transport=transport)
        single = jobs / (time.perf_counter() - start)
        many = jobs * 10
        start = time.perf_counter()
        for _ in range(0, many, BATCH):
            await app.enqueue_many([app.request("noop") for _ in range(BATCH)], transport=transport)
        batched = many / (time.perf_counter() - start)
    return {"single_per_s": single, "batch_per_s": batched}


async def _offered(
    dsn: str, schema: str, jobs: int, concurrency: int, *, per: int, every: float
) -> dict[str, list[float]]:
    """Enqueue-to-start latency of ``jobs`` no-op jobs offered ``per`` in one enqueue every
    ``every`` s by another client (its own transport: pool and NOTIFY listener), to one
    process with ``concurrency`` slots and the default settings."""
    latencies: list[float] = []
    all_seen = anyio.Event()
    app = _app(latencies=latencies, ran=all_seen, expected=jobs)
    clock = RealClock()
    url = f"{dsn}?schema={schema}"
    async with transports.connect(url, clock=clock) as worker_side:
        topology = Topology(app, worker_side, clock=clock).queue(
            "default", concurrency=concurrency, worker=WorkerConfig()
        )
        async with transports.connect(url, clock=clock) as producer, topology.run():
            await anyio.sleep(1.0)  # the Workers are up and idle
            begin = time.perf_counter()
            for i in range(0, jobs, per):
                await anyio.sleep(max(0.0, begin + i // per * every - time.perf_counter()))
                await app.enqueue_many(
                    [app.request("noop", {"t": time.time()}) for _ in range(min(per, jobs - i))],
                    transport=producer,
                )
            with anyio.fail_after(60):
                await all_seen.wait()
    return {"latencies": latencies}


async def latency(
    dsn: str, schema: str, jobs: int, concurrency: int, batch: int
) -> dict[str, list[float]]:
    """Idle workers: one job every 5 ms."""
    return await _offered(dsn, schema, jobs, concurrency, per=1, every=0.005)


async def steady(
    dsn: str, schema: str, jobs: int, concurrency: int, batch: int
) -> dict[str, list[float]]:
    """A steady load of 600 jobs/s: 6 in one enqueue every 10 ms."""
    return await _offered(dsn, schema, jobs, concurrency, per=6, every=0.010)


async def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument(
        "mode", choices=["drain", "enqueue", "latency", "steady", "memory", "sqlite"]
    )
    parser.add_argument("--dsn", required=True)
    parser.add_argument("--jobs", type=int, default=10_000)
    parser.add_argument("--concurrency", type=int, default=10)
    parser.add_argument("--batch", type=int, default=WorkerConfig().batch_size)
    args = parser.parse_args()
    schema = f"peers_aq_{uuid.uuid4().hex[:8]}"
    try:
        result = await globals()[args.mode](
            args.dsn, schema, args.jobs, args.concurrency, args.batch
        )
    finally:
        if args.mode not in ("memory", "sqlite"):
            admin = await asyncpg.connect(args.dsn)
            await admin.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')
            await admin.close()
    print(json.dumps(result))


if __name__ == "__main__":
    asyncio.run(main())
