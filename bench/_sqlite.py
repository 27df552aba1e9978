"""Throughput of SQLiteTransport beside raw aiosqlite running the same SQL by hand.

Run with ``python -m bench._sqlite``. Prints jobs per second for enqueue (one at a time and in
batches of 100) and for claim + finalize (batches of 1 and 100), each next to a baseline that
sends the transport's own statements straight through aiosqlite, and the ratio between them
(the cost of records, validation and locking). Prints only; asserts nothing.
"""

from __future__ import annotations

import asyncio
import json
import tempfile
import time
from collections.abc import Awaitable, Callable
from pathlib import Path

import aiosqlite

from transports import EnqueueRequest, SQLiteTransport
from transports._sql import load_queries
from transports._sqlite import _FINALIZE_ROW, _INSERT_ROW, _expand
from transports.lowlevel import Complete, FinalizeRequest

Report = Callable[[str], object]
_Q = load_queries("sqlite")
JOBS = 20_000


async def _timed(jobs: int, body: Callable[[], Awaitable[object]]) -> float:
    start = time.perf_counter()
    await body()
    return jobs / (time.perf_counter() - start)


def _row(now: float, i: int) -> tuple[object, ...]:
    return ("bench.job", "q", json.dumps({"i": i}), "available", 0, now, 20, None, now, now)


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
                params: list[object] = [time.time()]
                for row in rows:
                    params.extend((row[0], row[17], "complete", None, None))
                await conn.execute_fetchall(_expand("finalize", _FINALIZE_ROW, len(rows)), params)

        return await _timed(JOBS, body)
    finally:
        await conn.close()


async def run(report: Report = print) -> None:
    """Measure and print every figure."""
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


if __name__ == "__main__":
    asyncio.run(run())
