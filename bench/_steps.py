"""The cost of durable steps: a 10-step job against 10 plain jobs, on SQLite and PostgreSQL.

Run with ``python -m bench._steps`` (or ``make bench``). For SQLite (a temporary file) and
PostgreSQL (``ACTORQ_TEST_POSTGRES_DSN``, its own ``bench_steps_...`` schema, dropped after;
skipped when no server answers), one worker runs, one job at a time, the storage calls the
runtime makes:

* **10 plain jobs**: each a claim and a finalize (Complete), the baseline;
* **one 10-step job**: a claim, its steps loaded once (``list_steps``, the lazy load of the
  first ``ctx.step``), ten fenced ``record_step`` calls (through the runtime's own
  ``StepLog``), a finalize.

It prints the median time per unit of work over a few rounds and the ratio, and what loading
steps costs: the ``list_steps`` of a job without steps, which a claim loading steps with every
job would add to every claim (the lazy load adds it only to attempts that call a step).
Figures, not assertions.
"""

from __future__ import annotations

import os
import statistics
import tempfile
import time
import uuid
from collections.abc import Callable
from typing import cast

import anyio

from actors.core import Clock
from actors.jobs.lowlevel import StepLog
from transports import EnqueueRequest, Transport
from transports.lowlevel import Complete, FinalizeRequest, WallClock

Report = Callable[[str], object]

UNITS = 40  # 10-step jobs per round (and 10 x as many plain jobs)
STEPS = 10
ROUNDS = 3
DSN = os.environ.get("ACTORQ_TEST_POSTGRES_DSN", "postgresql://root@127.0.0.1:5432/test")


async def _plain(transport: Transport, queue: str) -> float:
    await transport.enqueue_many([EnqueueRequest(kind="b", queue=queue)] * (UNITS * STEPS))
    started = time.perf_counter()
    for _ in range(UNITS * STEPS):
        (lease,) = await transport.claim(queue, owner="bench", limit=1, ttl=60.0)
        await transport.finalize(
            [FinalizeRequest(job_id=lease.job_id, token=lease.token, outcome=Complete())]
        )
    return (time.perf_counter() - started) / UNITS


async def _stepped(transport: Transport, queue: str) -> float:
    await transport.enqueue_many([EnqueueRequest(kind="b", queue=queue)] * UNITS)
    clock = cast(Clock, WallClock())
    started = time.perf_counter()
    for _ in range(UNITS):
        (lease,) = await transport.claim(queue, owner="bench", limit=1, ttl=60.0)
        log = StepLog(lease, transport, clock, lambda: None)
        for n in range(STEPS):
            await log.step(f"step-{n}", lambda n=n: {"n": n, "charge": f"ch_{n}"})
        await transport.finalize(
            [FinalizeRequest(job_id=lease.job_id, token=lease.token, outcome=Complete())]
        )
    return (time.perf_counter() - started) / UNITS


async def _load(transport: Transport) -> float:
    """Seconds per ``list_steps`` of a job that has none."""
    (result,) = await transport.enqueue_many([EnqueueRequest(kind="b", queue="load")])
    started = time.perf_counter()
    for _ in range(200):
        await transport.list_steps(result.job_id)
    return (time.perf_counter() - started) / 200


async def _section(report: Report, name: str, make: Callable[[], Transport]) -> None:
    report(
        f"\n== durable steps on {name}: one {STEPS}-step job vs {STEPS} plain jobs "
        f"({UNITS} of each per round, median of {ROUNDS}) =="
    )
    plain: list[float] = []
    stepped: list[float] = []
    async with make() as transport:
        for round_ in range(ROUNDS):
            plain.append(await _plain(transport, f"plain{round_}"))
            stepped.append(await _stepped(transport, f"steps{round_}"))
        load = await _load(transport)
    p, s = statistics.median(plain), statistics.median(stepped)
    report(f"   {STEPS} plain jobs      {p * 1000:8.2f} ms")
    report(f"   one {STEPS}-step job    {s * 1000:8.2f} ms   {s / p:5.2f} x {STEPS} plain jobs")
    report(
        f"   loading steps: {load * 1000:.3f} ms per list_steps = {load / (p / STEPS):.2f} x a "
        "plain job's claim + finalize (a claim loading steps would add it to every job; the "
        "lazy load adds it once per attempt that calls a step)"
    )


async def run(report: Report = print) -> None:
    """Measure and print every figure (the machine may be loaded: compare ratios)."""
    from transports import PostgresTransport, SQLiteTransport

    with tempfile.TemporaryDirectory() as folder:
        await _section(report, "SQLite", lambda: SQLiteTransport(os.path.join(folder, "steps.db")))
    schema = f"bench_steps_{uuid.uuid4().hex[:8]}"
    try:
        await _section(report, "PostgreSQL", lambda: PostgresTransport(DSN, schema=schema))
    except OSError as exc:
        report(f"   skipped: {exc}")
    finally:
        import asyncpg

        try:
            conn = await asyncpg.connect(DSN)
        except OSError:
            return
        try:
            await conn.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')
        finally:
            await conn.close()


if __name__ == "__main__":
    anyio.run(run)
