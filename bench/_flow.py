"""The cost of flow control: claim throughput with limits against the same claims without.

Run with ``python -m bench._flow`` (or ``make bench``). For SQLite (a temporary file) and
PostgreSQL (``ACTORQ_TEST_POSTGRES_DSN``, its own ``bench_flow_...`` schema, dropped after;
skipped when no server answers), it enqueues the same backlog three ways and drains it with
one claimer taking 50 at a time and completing each batch at once:

* **no limits**: plain jobs, the baseline;
* **1,000 keys**: each job one of 1,000 concurrency keys, each limited to 5;
* **one hot key**: every job of one key limited to 50 (each claim fills the key exactly);
* **a rate**: every job of one key with a rate (10**6 a minute: never binding, so what is
  measured is the sliding-window log the claim counts and appends to, 4,000 starts deep by
  the end);
* **1,000 tenants**: each job in one of 1,000 fair-share partitions (every claim walks the
  partitions with waiting jobs and takes one job from each of the 50 served least recently);
* **a big tenant**: nine jobs in ten in one partition, the rest in ten small ones.

It prints jobs per second and the ratio of each to the baseline (the issue's bar: >= 0.5).
Then the cost of one limited claim (of 50, one hot key, completed at once) and of one fair
claim (a big tenant and ten small ones) over a backlog of 10,000 and of 100,000 waiting rows
(and 1,000,000 with ``ACTORQ_BENCH_MILLION=1``: it takes minutes to enqueue): flat means the
claim reads an index, not the backlog. Figures, not assertions.
"""

from __future__ import annotations

import itertools
import os
import tempfile
import time
import uuid
from collections.abc import Callable

import anyio

from transports import EnqueueRequest, Transport
from transports.lowlevel import Complete, FinalizeRequest

Report = Callable[[str], object]

JOBS = 4000
BATCH = 50
DSN = os.environ.get("ACTORQ_TEST_POSTGRES_DSN", "postgresql://root@127.0.0.1:5432/test")


def _partition(mode: str, n: int) -> str | None:
    if mode == "1,000 tenants":
        return f"tenant:{n % 1000}"
    if mode == "a big tenant":
        return "big" if n % 10 else f"small:{n // 10 % 10}"
    return None


def _key(mode: str, n: int) -> str | None:
    if mode == "1,000 keys":
        return f"tenant:{n % 1000}"
    if mode == "one hot key":
        return "hot"
    if mode == "a rate":
        return "api"
    return None


async def _drain(transport: Transport, mode: str) -> float:
    """Enqueue the backlog for ``mode``, then claim and complete it all; jobs per second."""
    if mode == "1,000 keys":
        for n in range(1000):
            await transport.set_limit(f"tenant:{n}", concurrency=5)
    elif mode == "one hot key":
        await transport.set_limit("hot", concurrency=BATCH)
    elif mode == "a rate":
        await transport.set_limit("api", rate=10**6, per=60.0)
    queue = mode.replace(" ", "-").replace(",", "")
    requests = [
        EnqueueRequest(
            kind="b",
            queue=queue,
            concurrency_key=_key(mode, n),
            partition_key=_partition(mode, n),
        )
        for n in range(JOBS)
    ]
    for start in range(0, JOBS, 500):
        await transport.enqueue_many(requests[start : start + 500])
    done = 0
    started = time.perf_counter()
    while done < JOBS:
        leases = await transport.claim(queue, owner="bench", limit=BATCH, ttl=60.0)
        if not leases:
            raise RuntimeError(f"{mode}: a claim found nothing with {JOBS - done} jobs left")
        await transport.finalize(
            [FinalizeRequest(job_id=x.job_id, token=x.token, outcome=Complete()) for x in leases]
        )
        done += len(leases)
    return JOBS / (time.perf_counter() - started)


async def _section(report: Report, name: str, make: Callable[[], Transport]) -> None:
    report(
        f"\n== flow control: claim + complete throughput on {name} ({JOBS} jobs, batch {BATCH}) =="
    )
    rates: dict[str, float] = {}
    for mode in MODES:
        async with make() as transport:
            rates[mode] = await _drain(transport, mode)
        # A fresh store per mode: the limits of one must not slow the next.
    base = rates["no limits"]
    for mode, rate in rates.items():
        report(f"   {mode:13} {rate:9.0f} jobs/s   {rate / base:5.2f} x no limits")
    depths = (*DEPTHS, 1_000_000) if os.environ.get("ACTORQ_BENCH_MILLION") else DEPTHS
    for what in ("limited", "fair"):
        costs = {}
        for rows in depths:
            async with make() as transport:
                costs[rows] = await _claim_cost(transport, rows, what)
        report(
            f"   {what} claim over a deep backlog: "
            + ", ".join(f"{rows:,} rows {ms:.2f} ms" for rows, ms in costs.items())
            + f" ({costs[depths[-1]] / costs[depths[0]]:.2f} x)"
        )


MODES = ("no limits", "1,000 keys", "one hot key", "a rate", "1,000 tenants", "a big tenant")
DEPTHS = (10_000, 100_000)
CLAIMS = 20


async def _claim_cost(transport: Transport, rows: int, what: str) -> float:
    """Milliseconds per claim of 50 (and its finalize) over ``rows`` waiting: of one hot key
    (``limited``), or of a big tenant's backlog beside ten small tenants' (``fair``)."""
    await transport.set_limit("hot", concurrency=BATCH)
    for start in range(0, rows, 5000):
        await transport.enqueue_many(
            [
                EnqueueRequest(
                    kind="b",
                    queue="deep",
                    concurrency_key="hot" if what == "limited" else None,
                    partition_key=None if what == "limited" else _partition("a big tenant", n),
                )
                for n in range(start, min(start + 5000, rows))
            ]
        )
    started = time.perf_counter()
    for _ in range(CLAIMS):
        leases = await transport.claim("deep", owner="bench", limit=BATCH, ttl=60.0)
        await transport.finalize(
            [FinalizeRequest(job_id=x.job_id, token=x.token, outcome=Complete()) for x in leases]
        )
    return (time.perf_counter() - started) / CLAIMS * 1000


async def run(report: Report = print) -> None:
    """Measure and print every figure."""
    from transports import PostgresTransport, SQLiteTransport

    with tempfile.TemporaryDirectory() as folder:
        paths = itertools.count()
        await _section(
            report,
            "SQLite",
            lambda: SQLiteTransport(os.path.join(folder, f"flow-{next(paths)}.db")),
        )
    schemas: list[str] = []

    def postgres() -> Transport:
        schemas.append(f"bench_flow_{uuid.uuid4().hex[:8]}")
        return PostgresTransport(DSN, schema=schemas[-1])

    try:
        await _section(report, "PostgreSQL", postgres)
    except OSError as exc:
        report(f"   skipped: {exc}")
    finally:
        if schemas:
            import asyncpg

            try:
                conn = await asyncpg.connect(DSN)
            except OSError:
                return
            try:
                for schema in schemas:
                    await conn.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')
            finally:
                await conn.close()


if __name__ == "__main__":
    anyio.run(run)
