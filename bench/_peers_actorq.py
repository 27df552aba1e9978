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
from actors.jobs import (
    App,
    EventBus,
    JobContext,
    JobDead,
    JobSucceeded,
    RuntimeEvent,
    Topology,
    WorkerConfig,
)

BATCH = 1_000


def _app(
    latencies: list[float] | None = None,
    first: list[float] | None = None,
    all_seen: anyio.Event | None = None,
    expected: int = 0,
) -> App:
    app = App()

    @app.task("noop")
    async def noop(ctx: JobContext, payload: Any) -> None:
        if first is not None and not first:
            first.append(time.perf_counter())
        if latencies is not None:
            assert isinstance(payload, dict)
            latencies.append(time.time() - payload["t"])
            if all_seen is not None and len(latencies) == expected:
                all_seen.set()

    return app


async def _drain(url: str, jobs: int, concurrency: int, worker: WorkerConfig) -> float:
    first: list[float] = []
    app = _app(first=first)
    clock = RealClock()
    async with transports.connect(url, clock=clock) as transport:
        for start in range(0, jobs, BATCH):
            await app.enqueue_many(
                [app.request("noop") for _ in range(min(BATCH, jobs - start))],
                transport=transport,
            )
        done = anyio.Event()
        count = 0
        last = 0.0

        dead: list[JobDead] = []

        def on_event(event: RuntimeEvent) -> None:
            nonlocal count, last
            if type(event) is JobSucceeded:
                count += 1
                if count == jobs:
                    last = time.perf_counter()
                    done.set()
            elif type(event) is JobDead:
                dead.append(event)
                done.set()

        events = EventBus()
        events.subscribe(on_event)
        topology = Topology(app, transport, clock=clock).queue(
            "default", concurrency=concurrency, worker=worker
        )
        async with topology.run(events=events):
            with anyio.fail_after(600):
                await done.wait()
    if dead:
        raise RuntimeError(f"a job ended dead: {dead[0]}")
    return jobs / (last - first[0])


async def drain(dsn: str, schema: str, jobs: int, concurrency: int) -> dict[str, float]:
    url = f"{dsn}?schema={schema}"
    return {"jobs_per_s": await _drain(url, jobs, concurrency, WorkerConfig())}


async def memory(dsn: str, schema: str, jobs: int, concurrency: int) -> dict[str, float]:
    return {"jobs_per_s": await _drain("memory://", jobs, concurrency, WorkerConfig())}


async def sqlite(dsn: str, schema: str, jobs: int, concurrency: int) -> dict[str, float]:
    with tempfile.TemporaryDirectory() as folder:
        url = f"sqlite:///{Path(folder) / 'bench.db'}"
        return {"jobs_per_s": await _drain(url, jobs, concurrency, WorkerConfig())}


async def enqueue(dsn: str, schema: str, jobs: int, concurrency: int) -> dict[str, float]:
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


async def latency(dsn: str, schema: str, jobs: int, concurrency: int) -> dict[str, list[float]]:
    latencies: list[float] = []
    all_seen = anyio.Event()
    app = _app(latencies=latencies, all_seen=all_seen, expected=jobs)
    clock = RealClock()
    url = f"{dsn}?schema={schema}"
    async with transports.connect(url, clock=clock) as worker_side:
        topology = Topology(app, worker_side, clock=clock).queue(
            "default", concurrency=concurrency, worker=WorkerConfig()
        )
        # The producer is another client: its own transport (pool and NOTIFY listener).
        async with transports.connect(url, clock=clock) as producer, topology.run():
            await anyio.sleep(1.0)  # the Workers are up and idle
            begin = time.perf_counter()
            for i in range(jobs):
                await anyio.sleep(max(0.0, begin + i * 0.005 - time.perf_counter()))
                await app.enqueue("noop", {"t": time.time()}, transport=producer)
            with anyio.fail_after(60):
                await all_seen.wait()
    return {"latencies": latencies}


async def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("mode", choices=["drain", "enqueue", "latency", "memory", "sqlite"])
    parser.add_argument("--dsn", required=True)
    parser.add_argument("--jobs", type=int, default=10_000)
    parser.add_argument("--concurrency", type=int, default=10)
    args = parser.parse_args()
    schema = f"peers_aq_{uuid.uuid4().hex[:8]}"
    try:
        result = await globals()[args.mode](args.dsn, schema, args.jobs, args.concurrency)
    finally:
        if args.mode not in ("memory", "sqlite"):
            admin = await asyncpg.connect(args.dsn)
            await admin.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')
            await admin.close()
    print(json.dumps(result))


if __name__ == "__main__":
    asyncio.run(main())
