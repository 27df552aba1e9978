"""The cost of telemetry: drain throughput with metrics, tracing, both, beside neither.

One node drains pre-enqueued no-op jobs on the real clock, as in the runtime section; the
variants run interleaved (round after round, each variant once per round, on fresh stores) so
drift hits them alike, and each prints its median over the rounds and its ratio to the median
with telemetry off. Metrics: ``NodeMetrics.install`` (events folded by its actor, storage calls
timed). Tracing: the OpenTelemetry SDK with a simple span processor and an exporter that
drops the spans (the SDK's own cost, no I/O), producer spans at enqueue and a consumer span
per run. The issue's goal: at most 5% with metrics alone, 15% with tracing.
"""

from __future__ import annotations

import statistics
import tempfile
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import anyio

import transports
from actors.core import RealClock
from actors.jobs import App, JobContext, Topology, WorkerConfig

JOBS = 10_000
ROUNDS = 5
VARIANTS = ("off", "metrics", "tracing", "metrics+tracing")


def _provider() -> Any:
    from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
    from opentelemetry.sdk.trace.export import (
        SimpleSpanProcessor,
        SpanExporter,
        SpanExportResult,
    )

    class Dropping(SpanExporter):
        def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
            return SpanExportResult.SUCCESS

    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(Dropping()))
    return provider


async def drain(url: str, variant: str, *, jobs: int = JOBS, concurrency: int = 10) -> float:
    """Jobs/s for one node draining ``jobs`` no-op jobs with the telemetry of ``variant``."""
    from actors.telemetry import NodeMetrics, instrument_tracing

    app = App()
    done = anyio.Event()
    count = 0
    last = 0.0

    @app.task("noop")
    async def noop(ctx: JobContext, payload: None) -> None:
        nonlocal count, last
        count += 1
        if count == jobs:
            last = time.perf_counter()
            done.set()

    if "tracing" in variant:
        instrument_tracing(app, tracer_provider=_provider())
    clock = RealClock()
    async with transports.connect(url, clock=clock) as transport:
        for i in range(0, jobs, 1000):
            await app.enqueue_many(
                [app.request(noop) for _ in range(min(1000, jobs - i))], transport=transport
            )
        topology = Topology(app, transport, clock=clock).queue(
            "default",
            concurrency=concurrency,
            worker=WorkerConfig(batch_size=50, poll_interval=0.05),
        )
        if "metrics" in variant:
            NodeMetrics().install(topology)
        started = time.perf_counter()
        async with topology.run():
            await done.wait()
        return jobs / (last - started)


def _once(url: str, variant: str, jobs: int) -> float:
    async def main() -> float:
        return await drain(url, variant, jobs=jobs)

    return anyio.run(main)


def run(print_fn: Callable[[str], object] = print) -> None:
    """Print the drain throughput of each variant and its ratio to telemetry off."""
    try:
        import opentelemetry.sdk  # noqa: F401
        import prometheus_client  # noqa: F401
    except ImportError as exc:
        print_fn(f"\n== telemetry: skipped, {exc.name} is not installed ==")
        return
    print_fn(
        f"\n== telemetry: drain throughput, {ROUNDS} interleaved rounds, median, ratio to off =="
    )
    with tempfile.TemporaryDirectory() as folder:
        for label, make_url, jobs in (
            ("memory", lambda n: "memory://", JOBS),
            ("sqlite", lambda n: f"sqlite:///{Path(folder) / f'telemetry{n}.db'}", JOBS // 2),
        ):
            rates: dict[str, list[float]] = {v: [] for v in VARIANTS}
            n = 0
            for _ in range(ROUNDS):
                for variant in VARIANTS:
                    n += 1
                    rates[variant].append(_once(make_url(n), variant, jobs))
            base = statistics.median(rates["off"])
            for variant in VARIANTS:
                median = statistics.median(rates[variant])
                print_fn(
                    f"{label:7} {variant:16} {median:>9,.0f} jobs/s  {median / base:6.1%} of off"
                    f"  (cost {1 - median / base:+.1%}; runs: "
                    f"{', '.join(f'{r:,.0f}' for r in rates[variant])})"
                )


if __name__ == "__main__":
    run()
