"""The cost of telemetry: drain throughput with metrics, tracing, both, beside neither.

One node drains pre-enqueued no-op jobs on the real clock: the node ``actorq worker`` runs
(``Topology.default``: the queue, History, Reaper, Cleanup and the node's registration), so
"off" is a worker as deployed, and each variant adds what ``--metrics-port`` or tracing adds
to it. The variants run interleaved (round after round, each variant once per round in a rotating order,
on fresh stores) so drift hits them alike, and each prints its median over the rounds and its
ratio to the median with telemetry off, per second of this process's CPU time (the SDK's
export thread counted; moved less than wall time by whatever else runs on the machine, though
not immune: on a shared virtual machine a run's figure still moves by ten points) and per
second of wall time. Metrics: ``NodeMetrics.install`` (events folded by its actor, storage
calls timed). Tracing: the OpenTelemetry SDK set up as a service runs it, a
``BatchSpanProcessor`` (spans queued, handed to the exporter in batches by its thread; its
queue holds a whole drain, so none is dropped) with an exporter that drops them (the SDK's own
cost, before the encoding and I/O a real exporter adds), a consumer span per run (the
enqueue's producer spans are made before the clock starts); "tracing 10%" samples one trace
in ten (``ParentBased(TraceIdRatioBased(0.1))``, as a busy deployment would). The issue's
goal: at most 5% with metrics alone, 15% with tracing.

Each backend runs: memory, SQLite (the embedded default) and PostgreSQL (``ACTORQ_TEST_POSTGRES_DSN``,
a fresh schema per run, dropped after; skipped when no server answers). Tracing's cost is also
printed in microseconds of CPU per job beside the SDK's own floor, measured in the same
process: one ``start_span`` and ``end`` of a consumer span with the run's attributes, link and
remote parent, through the same provider. A no-op job costs tens of microseconds, about
what the SDK spends on one span, so that floor is the most of tracing's cost that no
instrumentation of the runtime can remove.
"""

from __future__ import annotations

import gc
import os
import statistics
import tempfile
import time
import uuid
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import anyio

import transports
from actors.core import RealClock
from actors.jobs import App, JobContext, Topology, WorkerConfig

JOBS = 5_000
ROUNDS = 8
DSN = os.environ.get("ACTORQ_TEST_POSTGRES_DSN", "postgresql://root@127.0.0.1:5432/test")
VARIANTS = ("off", "metrics", "tracing", "metrics+tracing", "tracing 10%")


def _provider(ratio: float = 1.0) -> Any:
    from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
    from opentelemetry.sdk.trace.export import (
        BatchSpanProcessor,
        SpanExporter,
        SpanExportResult,
    )
    from opentelemetry.sdk.trace.sampling import ParentBased, TraceIdRatioBased

    class Dropping(SpanExporter):
        def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
            return SpanExportResult.SUCCESS

    provider = TracerProvider(sampler=ParentBased(TraceIdRatioBased(ratio)))
    # A queue no run here fills (each job's producer span and its run's consumer span): a span
    # dropped for a full queue would cost nothing.
    provider.add_span_processor(BatchSpanProcessor(Dropping(), max_queue_size=2 * JOBS))
    return provider


async def drain(
    url: str, variant: str, *, jobs: int = JOBS, concurrency: int = 10
) -> tuple[float, float]:
    """Jobs per second of wall time and per second of this process's CPU time, for one node
    draining ``jobs`` no-op jobs with the telemetry of ``variant``."""
    from actors.telemetry import NodeMetrics, instrument_tracing

    app = App()
    done = anyio.Event()
    count = 0
    last = last_cpu = 0.0

    @app.task("noop")
    async def noop(ctx: JobContext, payload: None) -> None:
        nonlocal count, last, last_cpu
        count += 1
        if count == jobs:
            last = time.perf_counter()
            last_cpu = time.process_time()
            done.set()

    provider = _provider(0.1 if "10%" in variant else 1.0) if "tracing" in variant else None
    if provider is not None:
        instrument_tracing(app, tracer_provider=provider)
    clock = RealClock()
    try:
        async with transports.connect(url, clock=clock) as transport:
            for i in range(0, jobs, 1000):
                await app.enqueue_many(
                    [app.request(noop) for _ in range(min(1000, jobs - i))], transport=transport
                )
            topology = Topology.default(
                app,
                transport,
                clock=clock,
                concurrency=concurrency,
                worker=WorkerConfig(batch_size=50, poll_interval=0.05),
            )
            if "metrics" in variant:
                NodeMetrics().install(topology)
            started = time.perf_counter()
            started_cpu = time.process_time()
            async with topology.run():
                await done.wait()
            return jobs / (last - started), jobs / (last_cpu - started_cpu)
    finally:
        if provider is not None:
            provider.shutdown()  # stops its export thread (the clock has stopped)


def _once(url: str, variant: str, jobs: int) -> tuple[float, float]:
    async def main() -> tuple[float, float]:
        return await drain(url, variant, jobs=jobs)

    return anyio.run(main)


def sdk_floor(ratio: float = 1.0, spans: int = 5_000) -> float:
    """Microseconds of this process's CPU (the export thread counted) the SDK spends on one
    consumer span like a run's (its attributes, a link, a remote parent): start and end."""
    from opentelemetry import trace
    from opentelemetry.context import Context
    from opentelemetry.trace import Link, NonRecordingSpan, SpanContext, SpanKind, TraceFlags

    provider = _provider(ratio)
    tracer = provider.get_tracer("actorq")
    # Remote parents sampled as often as the enqueues' producer spans were (``ratio``).
    parents = []
    for flags in (TraceFlags(0), TraceFlags(1)):
        remote = SpanContext(0x1F2E3D4C5B6A79880102030405060708, 0x1122334455667788, True, flags)
        parent = trace.set_span_in_context(NonRecordingSpan(remote), Context())
        parents.append((parent, (Link(remote, {"messaging.operation.type": "send"}),)))
    try:
        started = time.process_time()
        for n in range(spans):
            parent, links = parents[int((n + 1) * ratio) > int(n * ratio)]
            tracer.start_span(
                "process default",
                context=parent,
                kind=SpanKind.CONSUMER,
                links=links,
                attributes={
                    "messaging.system": "actorq",
                    "messaging.operation.type": "process",
                    "messaging.operation.name": "run",
                    "messaging.destination.name": "default",
                    "messaging.message.id": str(n),
                    "actorq.job.kind": "noop",
                    "actorq.job.attempt": 1,
                    "actorq.job.max_attempts": 3,
                    "actorq.worker": "node/default/1",
                },
            ).end()
        provider.force_flush()
        return (time.process_time() - started) / spans * 1e6
    finally:
        provider.shutdown()


def _backends(
    folder: str, print_fn: Callable[[str], object]
) -> list[tuple[str, Callable[[int], str], int]]:
    backends: list[tuple[str, Callable[[int], str], int]] = [
        ("memory", lambda n: "memory://", JOBS),
        ("sqlite", lambda n: f"sqlite:///{Path(folder) / f'telemetry{n}.db'}", JOBS),
    ]
    try:
        import asyncpg

        async def reachable() -> None:
            conn = await asyncpg.connect(DSN, timeout=5)
            await conn.close()

        anyio.run(reachable)
    except (ImportError, OSError) as exc:
        print_fn(f"   postgresql: skipped ({exc})")
        return backends
    backends.append(
        ("postgres", lambda n: f"{DSN}?schema=bench_tel_{uuid.uuid4().hex[:10]}", 4_000)
    )
    return backends


def _drop_schemas() -> None:
    import asyncpg

    async def drop() -> None:
        conn = await asyncpg.connect(DSN)
        try:
            for (schema,) in await conn.fetch(
                "SELECT nspname FROM pg_namespace WHERE nspname LIKE 'bench_tel_%'"
            ):
                await conn.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')
        finally:
            await conn.close()

    anyio.run(drop)


def run(print_fn: Callable[[str], object] = print) -> None:
    """Print the drain throughput of each variant and its ratio to telemetry off, and the cost
    of tracing per job beside the SDK's own floor."""
    try:
        import opentelemetry.sdk  # noqa: F401
        import prometheus_client  # noqa: F401
    except ImportError as exc:
        print_fn(f"\n== telemetry: skipped, {exc.name} is not installed ==")
        return
    print_fn(
        f"\n== telemetry: drain throughput, {ROUNDS} interleaved rounds, medians, ratio to off =="
    )
    print_fn(
        "   per CPU second of this process (the SDK's export thread counted) and per wall"
        " second; tracing: a BatchSpanProcessor, its spans dropped by the exporter"
    )
    floors = {1.0: statistics.median(sdk_floor(1.0) for _ in range(3))}
    floors[0.1] = statistics.median(sdk_floor(0.1) for _ in range(3))
    with tempfile.TemporaryDirectory() as folder:
        backends = _backends(folder, print_fn)
        try:
            for label, make_url, jobs in backends:
                _backend(print_fn, label, make_url, jobs, floors)
        finally:
            if any(label == "postgres" for label, _, _ in backends):
                _drop_schemas()
    print_fn(
        f"   the SDK's own consumer span (start + end, same attributes, link and parent): "
        f"{floors[1.0]:.1f} us of CPU sampled, {floors[0.1]:.1f} us at 10% sampling"
    )


def _backend(
    print_fn: Callable[[str], object],
    label: str,
    make_url: Callable[[int], str],
    jobs: int,
    floors: dict[float, float],
) -> None:
    wall: dict[str, list[float]] = {v: [] for v in VARIANTS}
    cpu: dict[str, list[float]] = {v: [] for v in VARIANTS}
    n = 0
    for round_ in range(ROUNDS):
        # Each round in another order, so no variant always runs first or last.
        shift = round_ % len(VARIANTS)
        for variant in VARIANTS[shift:] + VARIANTS[:shift]:
            n += 1
            gc.collect()  # the previous run's garbage is not this one's cost
            per_wall, per_cpu = _once(make_url(n), variant, jobs)
            wall[variant].append(per_wall)
            cpu[variant].append(per_cpu)
    base_cpu = statistics.median(cpu["off"])
    base_wall = statistics.median(wall["off"])
    for variant in VARIANTS:
        c = statistics.median(cpu[variant])
        w = statistics.median(wall[variant])
        extra = ""
        if "tracing" in variant and "metrics" not in variant:
            per_job = (1 / c - 1 / base_cpu) * 1e6
            floor = floors[0.1 if "10%" in variant else 1.0]
            extra = f" | {per_job:+.1f} us/job, SDK floor {floor:.1f}"
        print_fn(
            f"{label:8} {variant:16} cpu {c:>8,.0f} jobs/s {c / base_cpu:6.1%} of off"
            f" (cost {1 - c / base_cpu:+.1%}) | wall {w:>8,.0f} jobs/s"
            f" {w / base_wall:6.1%}{extra} (runs: {', '.join(f'{r:,.0f}' for r in wall[variant])})"
        )


if __name__ == "__main__":
    run()
