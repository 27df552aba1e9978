"""procrastinate's side of ``bench.peers`` (runs in the peers virtual environment).

``python bench/_peers_procrastinate.py MODE --dsn DSN [--jobs N] [--concurrency C]`` works in
a schema of its own (its connections' ``search_path``; dropped afterwards) and prints one JSON
object on its last line:

* ``drain``: N no-op jobs deferred beforehand, one worker (``concurrency=C``, ``wait=False``:
  it returns once caught up); jobs/s from the first task start to the worker's return;
* ``enqueue``: jobs/s deferring N one call at a time, then 10 x N with ``batch_defer_async``
  in batches of 1,000;
* ``latency``: with the worker idle, N jobs deferred 5 ms apart; seconds from just before
  each defer call to its task's start.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import time
import uuid

import asyncpg
import procrastinate

SCHEMA = f"peers_pro_{uuid.uuid4().hex[:8]}"
BATCH = 1_000

state: dict[str, object] = {"first": None, "done": 0, "latencies": [], "target": 0}
finished = asyncio.Event()


def _app(dsn: str, concurrency: int) -> procrastinate.App:
    connector = procrastinate.PsycopgConnector(
        conninfo=dsn,
        kwargs={"options": f"-c search_path={SCHEMA}"},
        min_size=1,
        max_size=max(4, concurrency + 2),
    )
    app = procrastinate.App(connector=connector)

    @app.task(name="noop", queue="default")
    async def noop(t: float | None = None) -> None:
        if state["first"] is None:
            state["first"] = time.perf_counter()
        if t is not None:
            latencies = state["latencies"]
            assert isinstance(latencies, list)
            latencies.append(time.time() - t)
        done = int(state["done"]) + 1  # type: ignore[call-overload]
        state["done"] = done
        if done == state["target"]:
            finished.set()

    return app


async def _defer_all(app: procrastinate.App, jobs: int) -> None:
    task = app.tasks["noop"]
    for start in range(0, jobs, BATCH):
        await task.batch_defer_async(*({} for _ in range(min(BATCH, jobs - start))))


async def drain(app: procrastinate.App, jobs: int, concurrency: int) -> dict[str, float]:
    await _defer_all(app, jobs)
    state["target"] = jobs
    await app.run_worker_async(queues=["default"], concurrency=concurrency, wait=False)
    end = time.perf_counter()
    first = state["first"]
    assert isinstance(first, float)
    assert state["done"] == jobs, state["done"]
    return {"jobs_per_s": jobs / (end - first)}


async def enqueue(app: procrastinate.App, jobs: int, concurrency: int) -> dict[str, float]:
    task = app.tasks["noop"]
    start = time.perf_counter()
    for _ in range(jobs):
        await task.defer_async()
    single = jobs / (time.perf_counter() - start)
    many = jobs * 10
    start = time.perf_counter()
    await _defer_all(app, many)
    return {"single_per_s": single, "batch_per_s": many / (time.perf_counter() - start)}


async def latency(app: procrastinate.App, jobs: int, concurrency: int) -> dict[str, object]:
    task = app.tasks["noop"]
    state["target"] = jobs
    worker = asyncio.create_task(
        app.run_worker_async(queues=["default"], concurrency=concurrency, wait=True)
    )
    await asyncio.sleep(1.0)  # the worker is up and idle
    begin = time.perf_counter()
    for i in range(jobs):
        await asyncio.sleep(max(0.0, begin + i * 0.005 - time.perf_counter()))
        await task.defer_async(t=time.time())
    await asyncio.wait_for(finished.wait(), 120)
    worker.cancel()
    try:
        await worker
    except asyncio.CancelledError:
        pass
    return {"latencies": state["latencies"]}


async def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("mode", choices=["drain", "enqueue", "latency"])
    parser.add_argument("--dsn", required=True)
    parser.add_argument("--jobs", type=int, default=10_000)
    parser.add_argument("--concurrency", type=int, default=10)
    args = parser.parse_args()
    logging.getLogger("procrastinate").setLevel(logging.WARNING)
    admin = await asyncpg.connect(args.dsn)
    await admin.execute(f'CREATE SCHEMA "{SCHEMA}"')
    try:
        app = _app(args.dsn, args.concurrency)
        async with app.open_async():
            await app.schema_manager.apply_schema_async()
            result = await globals()[args.mode](app, args.jobs, args.concurrency)
    finally:
        await admin.execute(f'DROP SCHEMA IF EXISTS "{SCHEMA}" CASCADE')
        await admin.close()
    print(json.dumps(result))


if __name__ == "__main__":
    asyncio.run(main())
