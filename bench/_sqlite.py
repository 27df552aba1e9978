"""Throughput of SQLiteTransport beside raw aiosqlite running the same SQL by hand.

Run with ``python -m bench._sqlite``. Prints jobs per second for enqueue (one at a time and in
batches of 100) and for claim + finalize (batches of 1 and 100), each next to a baseline that
sends the transport's own statements straight through aiosqlite, and the ratio between them
(the cost of records, validation and locking). Then the cross-process wake-up: another process
enqueues 200 jobs/s while this one waits as an idle worker does; enqueue-to-claim latency and
the idle waiter's CPU, beside the same waiter with the watcher turned off (polling only, as
before it existed). Prints only; asserts nothing.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import statistics
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from pathlib import Path

import aiosqlite

from transports import EnqueueRequest, SQLiteTransport
from transports._sql import load_queries
from transports._sqlite import _FINALIZE_ROW, _INSERT_ROW, _expand
from transports.lowlevel import MAX_ERROR_MESSAGE, MAX_ERRORS, Complete, FinalizeRequest

Report = Callable[[str], object]
_Q = load_queries("sqlite")
JOBS = 20_000


async def _timed(jobs: int, body: Callable[[], Awaitable[object]]) -> float:
    start = time.perf_counter()
    await body()
    return jobs / (time.perf_counter() - start)


def _row(now: float, i: int) -> tuple[object, ...]:
    return ("bench.job", "q", json.dumps({"i": i}), "available", 0, now, 20, None, now, now, "{}")


# --- the transport ---------------------------------------------------------------------------


async def _transport_enqueue(path: str, batch: int) -> float:
    async with SQLiteTransport(path) as transport:

        async def body() -> None:
            if batch == 1:
                for i in range(JOBS):
                    await transport.enqueue(
                        EnqueueRequest(kind="bench.job", queue="q", payload={"i": i})
                    )
            else:
                for start in range(0, JOBS, batch):
                    await transport.enqueue_many(
                        [
                            EnqueueRequest(kind="bench.job", queue="q", payload={"i": i})
                            for i in range(start, start + batch)
                        ]
                    )

        return await _timed(JOBS, body)


async def _transport_work(path: str, batch: int) -> float:
    async with SQLiteTransport(path) as transport:

        async def body() -> None:
            while leases := await transport.claim("q", owner="bench", limit=batch, ttl=60):
                await transport.finalize(
                    [
                        FinalizeRequest(job_id=lease.job_id, token=lease.token, outcome=Complete())
                        for lease in leases
                    ]
                )

        return await _timed(JOBS, body)


# --- raw aiosqlite -----------------------------------------------------------------------------


async def _raw_connect(path: str) -> aiosqlite.Connection:
    conn = await aiosqlite.connect(path, isolation_level=None)
    await conn.execute_fetchall(_Q["enable_wal"])
    await conn.execute_fetchall(_Q["synchronous_normal"])
    return conn


async def _raw_enqueue(path: str, batch: int) -> float:
    conn = await _raw_connect(path)
    try:

        async def body() -> None:
            for start in range(0, JOBS, batch):
                now = time.time()
                rows = [_row(now, i) for i in range(start, start + batch)]
                await conn.execute_fetchall(
                    _expand("insert_jobs", _INSERT_ROW, batch),
                    [value for row in rows for value in row],
                )

        return await _timed(JOBS, body)
    finally:
        await conn.close()


async def _raw_work(path: str, batch: int) -> float:
    conn = await _raw_connect(path)
    try:

        async def body() -> None:
            while True:
                now = time.time()
                rows = list(
                    await conn.execute_fetchall(
                        _Q["claim"],
                        {
                            "queue": "q",
                            "owner": "bench",
                            "now": now,
                            "expires_at": now + 60,
                            "limit": batch,
                        },
                    )
                )
                if not rows:
                    return
                now = time.time()
                params: list[object] = [now, MAX_ERRORS, MAX_ERROR_MESSAGE, repr(now)]
                for row in rows:
                    params.extend((row[0], row[20], "complete", None, None, None, None))
                await conn.execute_fetchall(_expand("finalize", _FINALIZE_ROW, len(rows)), params)

        return await _timed(JOBS, body)
    finally:
        await conn.close()


async def run_throughput(report: Report = print) -> None:
    """The throughput figures, each beside raw aiosqlite."""
    with tempfile.TemporaryDirectory() as folder:
        report(f"SQLite transport vs raw aiosqlite, {JOBS} jobs per figure (jobs/s)")
        for label, ours, raw, batch in [
            ("enqueue, one at a time", _transport_enqueue, _raw_enqueue, 1),
            ("enqueue, batches of 100", _transport_enqueue, _raw_enqueue, 100),
        ]:
            ours_path, raw_path = (
                str(Path(folder, f"a{batch}.db")),
                str(Path(folder, f"b{batch}.db")),
            )
            # The raw side needs the schema: let a transport create it.
            async with SQLiteTransport(raw_path):
                pass
            ours_rate = await ours(ours_path, batch)
            raw_rate = await raw(raw_path, batch)
            report(
                f"  {label:<28} transport {ours_rate:>9,.0f}   raw {raw_rate:>9,.0f}   ratio {ours_rate / raw_rate:.2f}"
            )
        for batch in (1, 100):
            ours_path = str(Path(folder, f"a{batch}.db"))
            raw_path = str(Path(folder, f"b{batch}.db"))
            ours_rate = await _transport_work(ours_path, batch)
            raw_rate = await _raw_work(raw_path, batch)
            label = f"claim+finalize, batch {batch}"
            report(
                f"  {label:<28} transport {ours_rate:>9,.0f}   raw {raw_rate:>9,.0f}   ratio {ours_rate / raw_rate:.2f}"
            )


# --- the cross-process wake-up -----------------------------------------------------------

WAKE_JOBS = 200
WAKE_EVERY = 0.005  # seconds between the other process's enqueues: 200 jobs/s offered
POLL = 1.0  # the idle worker's poll interval (WorkerConfig's default)
_ENQUEUER = """
import sys, time, anyio
from transports import EnqueueRequest, SQLiteTransport
async def main():
    async with SQLiteTransport(sys.argv[1]) as t:
        for i in range(int(sys.argv[2])):
            await t.enqueue(EnqueueRequest(kind="k", queue="q", payload={"t": time.time()}))
            await anyio.sleep(float(sys.argv[3]))
anyio.run(main)
"""


async def _wake_latencies(path: str, *, watcher: bool) -> tuple[list[float], float]:
    """Claim as an idle worker does while another process enqueues; latencies and idle CPU."""
    transport = SQLiteTransport(path)
    if not watcher:

        async def no_watcher() -> None:
            return None

        transport._start_watcher = no_watcher  # type: ignore[method-assign]
    latencies: list[float] = []
    async with transport:
        # Idle first: what waiting costs when nothing arrives (after the first half second,
        # while the watcher still looks often).
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(transport.wait_for_work(["q"]), 0.5)
        cpu, wall = time.process_time(), time.perf_counter()
        deadline = wall + 3.0
        while time.perf_counter() < deadline:
            try:
                await asyncio.wait_for(
                    transport.wait_for_work(["q"]), deadline - time.perf_counter()
                )
            except TimeoutError:
                break
        idle = (time.process_time() - cpu) / (time.perf_counter() - wall)
        child = await asyncio.create_subprocess_exec(
            sys.executable, "-c", _ENQUEUER, path, str(WAKE_JOBS), str(WAKE_EVERY)
        )
        while len(latencies) < WAKE_JOBS:
            leases = await transport.claim("q", owner="w", limit=1, ttl=30)
            if not leases:
                try:
                    await asyncio.wait_for(transport.wait_for_work(["q"]), POLL)
                except TimeoutError:
                    pass
                continue
            latencies.append(time.time() - leases[0].job.payload["t"])  # type: ignore[index, call-overload]
            await transport.finalize(
                [
                    FinalizeRequest(
                        job_id=leases[0].job_id, token=leases[0].token, outcome=Complete()
                    )
                ]
            )
        await child.wait()
    return latencies, idle


def _percentile(values: list[float], q: float) -> float:
    return statistics.quantiles(values, n=100, method="inclusive")[int(q) - 1]


async def run_wake(report: Report = print) -> None:
    """The cross-process wake-up figures (see the module docstring)."""
    report(
        f"SQLite cross-process wake-up: {WAKE_JOBS} jobs at {1 / WAKE_EVERY:.0f}/s from another"
        f" process, idle worker polling every {POLL:g} s"
    )
    with tempfile.TemporaryDirectory() as folder:
        for label, watcher in (("watcher", True), ("polling only", False)):
            path = str(Path(folder, f"wake-{watcher}.db"))
            async with SQLiteTransport(path):
                pass
            latencies, idle = await _wake_latencies(path, watcher=watcher)
            ms = [x * 1000 for x in latencies]
            report(
                f"  {label:<14} enqueue->claim p50 {_percentile(ms, 50):7.1f} ms"
                f"  p99 {_percentile(ms, 99):7.1f} ms   idle waiter CPU {idle * 100:5.2f}% of a core"
            )


async def run(report: Report = print) -> None:
    """Measure and print every figure."""
    await run_throughput(report)
    await run_wake(report)


if __name__ == "__main__":
    asyncio.run(run())
