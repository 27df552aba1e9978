"""Load and memory: a burst of enqueued jobs while workers run.

Worker processes (``actorq worker``) and one node inside the test process (whose actors the
test can inspect) drain a burst of no-op jobs enqueued in batches as fast as the test can.
Meanwhile the test samples every worker's resident memory (``VmRSS``), the fill of every
mailbox of the in-process node, and the plan of the live claim query. The long run
(``ACTORQ_CHAOS=long``) enqueues 200,000 jobs; the normal suite 20,000.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from pathlib import Path
from typing import Any

import asyncpg
import attrs
import pytest

from actors.jobs import App, JobContext, Topology, WorkerConfig
from transports import EnqueueRequest, PostgresTransport

from . import _database as db
from ._processes import Fleet
from ._report import publish, table
from .test_chaos import LONG

pytestmark = pytest.mark.postgres

BURST = 200_000 if LONG else 20_000
PROCESSES = 3 if LONG else 2
BATCH = 2_000
WARMUP = 3_000
CONCURRENCY = 10
# A worker's memory may grow this much from its warmed-up level while the backlog peaks.
RSS_GROWTH_ALLOWED = 1.25
RSS_SLACK_KIB = 8 * 1024


@attrs.define
class LoadRun:
    baseline_kib: dict[str, int] = attrs.Factory(dict)  # after the warm-up
    peak_kib: dict[str, int] = attrs.Factory(dict)  # during the burst
    final_kib: dict[str, int] = attrs.Factory(dict)  # once drained
    max_mailbox: int = 0  # most messages waiting in any mailbox of the in-process node
    mailbox_capacity: int = 0
    actors_seen: int = 0
    dead_letters: int = 0
    peak_backlog: int = 0
    enqueue_seconds: float = 0.0
    drain_seconds: float = 0.0
    plans: list[tuple[str, int, bool, str]] = attrs.Factory(list)  # (when, backlog, index, plan)


def _mailboxes(system: Any) -> tuple[int, int, int]:
    """(most messages waiting, mailbox capacity, actors) over the node's actor tree.

    Reads ``actors.core`` internals (cells, their streams): this is a measurement, not API.
    """
    stack = list(system.children)
    fill = capacity = seen = 0
    while stack:
        cell = stack.pop()
        stack.extend(cell.children)
        seen += 1
        fill = max(fill, cell.rx.statistics().current_buffer_used + len(cell._sysq))
        capacity = max(capacity, cell.mailbox_size)
    return fill, capacity, seen


async def _backlog(admin: db.Admin, schema: str) -> tuple[int, int]:
    rows = await admin.fetch(
        f"SELECT count(*) FILTER (WHERE state IN ('available', 'scheduled')), "
        f"count(*) FILTER (WHERE state = 'running') FROM {db.quoted(schema)}.jobs "
        "WHERE state IN ('available', 'scheduled', 'running')"
    )
    return rows[0][0], rows[0][1]


async def _claim_plan(conn: asyncpg.Connection, sql: str) -> tuple[bool, str]:
    rows = await conn.fetch("EXPLAIN " + sql, "default", 10, "explain", 30.0, None)
    plan = "\n".join(r[0] for r in rows)
    return "jobs_due_idx" in plan and "Seq Scan on jobs" not in plan, plan


async def _run(dsn: str, logs: Path) -> LoadRun:
    schema = f"chaos_{uuid.uuid4().hex[:10]}"
    await db.create_schema(dsn, schema, audit=False)
    admin = db.Admin(dsn)
    try:
        # The workers' own session settings, so EXPLAIN shows the plan they run.
        explain = await asyncpg.connect(
            dsn, server_settings={"plan_cache_mode": "force_generic_plan", "jit": "off"}
        )
    except BaseException:
        await db.drop_schema(dsn, schema)
        raise
    result = LoadRun()
    fleet = Fleet(
        app="tests.chaos.chaos_app:make_app",
        url=f"{dsn}?schema={schema}&pool_size=4",
        options=["--concurrency", str(CONCURRENCY)],
        logs=logs,
        env={"CHAOS_DSN": dsn, "CHAOS_SCHEMA": schema},
        prefix="load-",
    )
    app = App()

    @app.task("chaos.noop")
    async def noop(ctx: JobContext, payload: None) -> None:
        """Nothing: the runtime itself is measured."""

    try:
        with fleet:
            fleet.wait_ready([fleet.start() for _ in range(PROCESSES)])
            async with PostgresTransport(dsn, schema=schema, pool_size=4) as transport:
                topology = Topology.default(
                    app, transport, concurrency=CONCURRENCY, worker=WorkerConfig(), node_id="inproc"
                )
                async with topology.run() as node:
                    await _burst(result, fleet, node, transport, admin, explain, schema)
    finally:
        await explain.close()
        await admin.close()
        await db.drop_schema(dsn, schema)
    for process in fleet.processes:
        assert not process.problems(), process.problems()
    return result


async def _burst(
    result: LoadRun,
    fleet: Fleet,
    node: Any,
    transport: PostgresTransport,
    admin: db.Admin,
    explain: asyncpg.Connection,
    schema: str,
) -> None:
    def rss() -> dict[str, int]:
        return {p.node_id: p.rss_kib() or 0 for p in fleet.live()}

    def requests(count: int) -> list[EnqueueRequest]:
        return [EnqueueRequest(kind="chaos.noop") for _ in range(count)]

    async def drained() -> None:
        # Polled: the work happens in other processes, nothing here could signal it.
        while True:
            if await _backlog(admin, schema) == (0, 0):
                return
            await asyncio.sleep(0.2)

    async def plan(when: str) -> None:
        backlog, _ = await _backlog(admin, schema)
        uses_index, text = await _claim_plan(explain, transport._sql["claim"])
        result.plans.append((when, backlog, uses_index, text))

    # Warm up (imports, connections, prepared statements), then take the baseline.
    for _ in range(WARMUP // BATCH + 1):
        await transport.enqueue_many(requests(BATCH))
    await drained()
    result.baseline_kib = rss()
    await plan("before the burst")

    stop = asyncio.Event()

    async def sample() -> None:
        while not stop.is_set():
            for name, kib in rss().items():
                result.peak_kib[name] = max(result.peak_kib.get(name, 0), kib)
            fill, capacity, seen = _mailboxes(node.system)
            result.max_mailbox = max(result.max_mailbox, fill)
            result.mailbox_capacity, result.actors_seen = capacity, seen
            try:
                await asyncio.wait_for(stop.wait(), 0.25)
            except TimeoutError:
                pass

    sampler = asyncio.create_task(sample())
    try:
        start = time.monotonic()
        for _ in range(BURST // BATCH):
            await transport.enqueue_many(requests(BATCH))
        result.enqueue_seconds = time.monotonic() - start
        result.peak_backlog, _ = await _backlog(admin, schema)
        await plan("burst enqueued")
        await drained()
        result.drain_seconds = time.monotonic() - start
    finally:
        stop.set()
        await sampler
    await plan("drained")
    result.final_kib = rss()
    result.dead_letters = node.system.statistics().dead_letters


@pytest.mark.timeout(600 if LONG else 300)
def test_a_burst_keeps_memory_flat_mailboxes_bounded_and_the_claim_on_its_index(
    postgres_dsn: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Under a burst of enqueued jobs, worker memory stays flat, mailboxes stay bounded and
    the claim query keeps reading its partial index."""
    run = asyncio.run(_run(postgres_dsn, tmp_path / "logs"))
    mib = 1024.0
    rows: list[tuple[object, ...]] = [
        (
            "burst",
            f"{BURST:,} no-op jobs in batches of {BATCH:,}, {PROCESSES} worker processes + 1 in-process node, concurrency {CONCURRENCY}",
        ),
        ("enqueued in", f"{run.enqueue_seconds:.1f}s ({BURST / run.enqueue_seconds:,.0f} jobs/s)"),
        (
            "all done after",
            f"{run.drain_seconds:.1f}s ({BURST / run.drain_seconds:,.0f} jobs/s, peak backlog {run.peak_backlog:,})",
        ),
    ]
    for name in sorted(run.baseline_kib):
        rows.append(
            (
                f"RSS {name}: warmed up / peak / drained",
                f"{run.baseline_kib[name] / mib:.1f} / {run.peak_kib.get(name, 0) / mib:.1f} / "
                f"{run.final_kib.get(name, 0) / mib:.1f} MiB",
            )
        )
    rows.append(
        (
            "mailboxes (in-process node)",
            f"at most {run.max_mailbox} waiting of {run.mailbox_capacity} capacity, "
            f"{run.actors_seen} actors, {run.dead_letters} dead letters",
        )
    )
    for when, backlog, uses_index, _ in run.plans:
        rows.append(
            (
                f"claim plan, {when} (backlog {backlog:,})",
                "jobs_due_idx" if uses_index else "NOT the due index",
            )
        )
    report = table("load and memory", ("", ""), rows)
    peak = max(run.peak_kib.values(), default=0) / mib
    publish(
        report,
        f"load: {BURST:,} jobs drained in {run.drain_seconds:.1f}s, peak worker RSS {peak:.1f} MiB",
    )
    with capsys.disabled():
        print("\n" + report)

    for name, base in run.baseline_kib.items():
        assert run.peak_kib.get(name, 0) <= base * RSS_GROWTH_ALLOWED + RSS_SLACK_KIB, name
    assert run.max_mailbox < run.mailbox_capacity
    assert run.dead_letters == 0
    for when, _, uses_index, text in run.plans:
        assert uses_index, f"{when}:\n{text}"
