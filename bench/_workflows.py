"""The cost of dependencies: a 10,000-job fan-out/fan-in and a chain of 1,000, beside plain jobs.

Run with ``python -m bench._workflows`` (or ``make bench``). For SQLite (a temporary file) and
PostgreSQL (``ACTORQ_TEST_POSTGRES_DSN``, its own ``bench_wf_...`` schema, dropped after;
skipped when no server answers), one claimer taking 100 at a time completes each batch at
once, and each shape is timed twice, enqueue and drain:

* **plain**: 10,000 independent jobs, the baseline;
* **fan-out/fan-in**: one root, 10,000 members after it, one callback after all of them;
* **chain**: 1,000 jobs, each after the one before (so 1,000 claims of one job each).

Enqueue goes in batches of 500 (members name the root by id; a chain's links name the one
before by index). Figures, not assertions; the machine may be loaded.
"""

from __future__ import annotations

import os
import tempfile
import time
import uuid
from collections.abc import Callable

from transports import After, EnqueueRequest, Transport
from transports.lowlevel import Complete, FinalizeRequest

Report = Callable[[str], object]

FAN = 10_000
CHAIN = 1_000
BATCH = 100
DSN = os.environ.get("ACTORQ_TEST_POSTGRES_DSN", "postgresql://root@127.0.0.1:5432/test")


async def _drain(transport: Transport, queue: str, total: int) -> float:
    """Claim and complete every job of ``queue``; seconds taken."""
    done = 0
    started = time.perf_counter()
    while done < total:
        leases = await transport.claim(queue, owner="bench", limit=BATCH, ttl=60.0)
        if not leases:
            raise RuntimeError(f"{queue}: a claim found nothing with {total - done} jobs left")
        await transport.finalize(
            [FinalizeRequest(job_id=x.job_id, token=x.token, outcome=Complete()) for x in leases]
        )
        done += len(leases)
    return time.perf_counter() - started


async def _plain(transport: Transport) -> tuple[float, float]:
    started = time.perf_counter()
    for _ in range(0, FAN, 500):
        await transport.enqueue_many([EnqueueRequest(kind="b", queue="plain")] * 500)
    return time.perf_counter() - started, await _drain(transport, "plain", FAN)


async def _fan(transport: Transport) -> tuple[float, float]:
    started = time.perf_counter()
    (root,) = await transport.enqueue_many([EnqueueRequest(kind="b", queue="fan")])
    members: list[int] = []
    for _ in range(0, FAN, 500):
        member = EnqueueRequest(kind="b", queue="fan", after=[root.job_id], workflow="fan")
        members += [r.job_id for r in await transport.enqueue_many([member] * 500)]
    await transport.enqueue_many(
        [EnqueueRequest(kind="b", queue="fan", after=members, workflow="fan")]
    )
    return time.perf_counter() - started, await _drain(transport, "fan", FAN + 2)


async def _chain(transport: Transport) -> tuple[float, float]:
    started = time.perf_counter()
    previous: int | None = None
    for _ in range(0, CHAIN, 500):
        links = []
        for i in range(500):
            if i:
                after = [After(index=i - 1)]
            else:
                after = [] if previous is None else [After(job_id=previous)]
            links.append(EnqueueRequest(kind="b", queue="chain", after=after, workflow="chain"))
        previous = (await transport.enqueue_many(links))[-1].job_id
    return time.perf_counter() - started, await _drain(transport, "chain", CHAIN)


async def _section(report: Report, name: str, make: Callable[[], Transport]) -> None:
    report(f"\n== dependencies on {name} (claim batch {BATCH}) ==")
    figures = {}
    for shape, measure, jobs in (
        ("plain", _plain, FAN),
        ("fan-out/fan-in", _fan, FAN + 2),
        ("chain", _chain, CHAIN),
    ):
        async with make() as transport:
            figures[shape] = (*await measure(transport), jobs)
    plain_enqueue, plain_drain, _ = figures["plain"]
    for shape, (enqueue, drain, jobs) in figures.items():
        report(
            f"   {shape:15} {jobs:6} jobs  enqueue {jobs / enqueue:8.0f} jobs/s"
            f" ({(jobs / enqueue) / (FAN / plain_enqueue):4.2f} x plain)"
            f"  drain {jobs / drain:8.0f} jobs/s ({(jobs / drain) / (FAN / plain_drain):4.2f} x plain)"
        )


async def run(report: Report = print) -> None:
    """Measure and print every figure."""
    from transports import PostgresTransport, SQLiteTransport

    with tempfile.TemporaryDirectory() as folder:
        paths = iter(range(10))
        await _section(
            report, "SQLite", lambda: SQLiteTransport(os.path.join(folder, f"wf-{next(paths)}.db"))
        )
    schemas: list[str] = []

    def postgres() -> Transport:
        schemas.append(f"bench_wf_{uuid.uuid4().hex[:8]}")
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
    import anyio

    anyio.run(run)
