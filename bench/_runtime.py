"""End-to-end throughput through the real actors (LeaseKeeper, queue Supervisor, Claimer, Workers).

No-op handlers, jobs already enqueued, one node on the real clock: jobs/s from the first claim
to the last success, on the memory transport (the actors' own cost) and on SQLite.
"""

from __future__ import annotations

import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import anyio

import transports
from actors.core import RealClock
from actors.jobs import App, JobContext, JobSucceeded, RuntimeEvent, Topology, WorkerConfig
from actors.jobs.lowlevel import EventBus

JOBS = 20_000


def _app() -> App:
    app = App()

    @app.task("noop")
    async def noop(ctx: JobContext, payload: None) -> None:
        return None

    return app


async def drain(
    url: str,
    *,
    jobs: int = JOBS,
    concurrency: int = 10,
    batch: int = 50,
    config: WorkerConfig | None = None,
) -> float:
    """Jobs/s for one node draining ``jobs`` pre-enqueued no-op jobs (with ``config``, or a
    claim batch of ``batch`` and a 50 ms poll)."""
    app = _app()
    clock = RealClock()
    async with transports.connect(url, clock=clock) as transport:
        requests = [app.request("noop") for _ in range(jobs)]
        for i in range(0, jobs, 1000):
            await transport.enqueue_many(requests[i : i + 1000])
        done = anyio.Event()
        count = 0
        first = last = 0.0

        def on_event(event: RuntimeEvent) -> None:
            nonlocal count, first, last
            if type(event) is JobSucceeded:
                count += 1
                if count == 1:
                    first = time.perf_counter()
                if count == jobs:
                    last = time.perf_counter()
                    done.set()

        events = EventBus()
        events.subscribe(on_event)
        topology = Topology(app, transport, clock=clock).queue(
            "default",
            concurrency=concurrency,
            worker=config or WorkerConfig(batch_size=batch, poll_interval=0.05),
        )
        started = time.perf_counter()
        async with topology.run(events=events):
            await done.wait()
        return jobs / (last - started if last > started else last - first)


async def _drain_once(url: str, jobs: int, concurrency: int) -> float:
    return await drain(url, jobs=jobs, concurrency=concurrency, config=WorkerConfig())


def run(print_fn: Callable[[str], object] = print) -> None:
    """Print end-to-end drain throughput on memory and SQLite (median of 3), defaults."""
    print_fn("\n== runtime: end-to-end drain through the real actors (no-op jobs, defaults) ==")
    with tempfile.TemporaryDirectory() as folder:
        for label, make_url, jobs in (
            ("memory", lambda i: "memory://", JOBS),
            ("sqlite", lambda i: f"sqlite:///{Path(folder) / f'bench{i}.db'}", JOBS // 2),
        ):
            for concurrency in (10, 50):
                rates = [anyio.run(_drain_once, make_url(i), jobs, concurrency) for i in range(3)]
                print_fn(
                    f"{label:8} concurrency {concurrency:3}: {statistics.median(rates):>10,.0f} jobs/s"
                    f"  (runs: {', '.join(f'{r:,.0f}' for r in rates)})"
                )


if __name__ == "__main__":
    run()
