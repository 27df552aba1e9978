"""``actorq demo``: a realistic mix of jobs on embedded SQLite, shown live, then summarised."""

from __future__ import annotations

import logging
import statistics
import tempfile
import time
from pathlib import Path

import anyio
import attrs
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

import transports
from transports import JobState

from ..core import RealClock
from ..jobs import (
    App,
    Constant,
    CronFired,
    JobClaimed,
    JobContext,
    JobDead,
    JobRetried,
    JobSucceeded,
    RuntimeEvent,
    Topology,
    WorkerConfig,
)
from ..jobs.lowlevel import EventBus

__all__ = ["build_demo_app", "run_demo"]


@attrs.frozen
class Thumbnail:
    """A quick job: resize one image."""

    image_id: int
    width: int = 256


@attrs.frozen
class Report:
    """A slow job: builds for longer than its lease, so its heartbeat must renew it."""

    report_id: int
    seconds: float


@attrs.frozen
class Webhook:
    """A flaky job: the endpoint fails twice, then answers."""

    url: str
    fail_times: int = 2


def build_demo_app() -> App:
    """The demo's handlers: quick, slow (heartbeated), flaky, and a cron digest."""
    app = App()

    @app.task("thumbnail.make", queue="media")
    async def make_thumbnail(ctx: JobContext, job: Thumbnail) -> None:
        await ctx.clock.sleep(0)  # real work would resize here

    @app.task("report.build", queue="reports", lease_ttl=1.5)
    async def build_report(ctx: JobContext, job: Report) -> None:
        # Longer than the 1.5 s lease: the node's LeaseKeeper renews it every 0.5 s.
        await ctx.clock.sleep(job.seconds)

    @app.task("webhook.deliver", queue="default", max_attempts=5, backoff=Constant(seconds=0.3))
    async def deliver(ctx: JobContext, job: Webhook) -> None:
        if ctx.attempt <= job.fail_times:
            raise ConnectionError(f"{job.url} answered 503 (attempt {ctx.attempt})")

    @app.task("digest.send", queue="default")
    async def send_digest(ctx: JobContext, payload: None) -> None:
        ctx.log.info("digest sent")

    app.schedule("digest", "* * * * * *", "digest.send")  # every second
    return app


async def run_demo(
    url: str | None, *, quick_jobs: int = 2000, concurrency: int = 8, quiet_failures: bool = True
) -> None:
    """Enqueue the mix, process it on one node with live progress, print a summary.

    Args:
        url: the store (default: a fresh SQLite file in a temporary folder).
        quick_jobs: how many quick thumbnail jobs.
        concurrency: Workers per queue.
        quiet_failures: hold back the WARNING logs of the failures the demo makes on purpose
            (they are counted in the summary); a dead job still logs its ERROR line.
    """
    console = Console()
    worker_log = logging.getLogger("actorq.worker")
    level = worker_log.level
    if quiet_failures:
        worker_log.setLevel(logging.ERROR)
    try:
        await _run_demo(console, url, quick_jobs=quick_jobs, concurrency=concurrency)
    finally:
        worker_log.setLevel(level)


async def _run_demo(
    console: Console, url: str | None, *, quick_jobs: int, concurrency: int
) -> None:
    with tempfile.TemporaryDirectory(prefix="actorq-demo-") as folder:
        url = url or f"sqlite:///{Path(folder) / 'demo.db'}"
        app = build_demo_app()
        clock = RealClock()
        async with transports.connect(url, clock=clock) as transport:
            app.transport = transport
            requests = [
                app.request("thumbnail.make", Thumbnail(image_id=i)) for i in range(quick_jobs)
            ]
            requests += [
                app.request("report.build", Report(report_id=i, seconds=2.5)) for i in range(4)
            ]
            requests += [
                app.request("webhook.deliver", Webhook(url=f"https://hooks.example/{i}"))
                for i in range(20)
            ]
            # A payload that does not fit its type: ends dead as poison, the worker carries on.
            requests.append(
                transports.EnqueueRequest(
                    kind="thumbnail.make", queue="media", payload={"image": "x"}
                )
            )
            started = time.perf_counter()
            await app.enqueue_many(requests)
            total = len(requests)
            console.print(
                f"[bold]actorq demo[/]: {total} jobs on {url.split('///')[-1]} — "
                f"{quick_jobs} thumbnails, 4 slow reports (heartbeated), 20 flaky webhooks, "
                "1 poison payload, a digest every second"
            )

            latencies: list[float] = []
            finished = {"succeeded": 0, "dead": 0}
            quick = {"done": 0, "first": 0.0, "last": 0.0}
            retries = 0
            cron_fired = 0
            done = anyio.Event()

            def on_event(event: RuntimeEvent) -> None:
                nonlocal retries, cron_fired
                if type(event) is JobClaimed and event.attempt == 1:
                    latencies.append(event.at - max(event.enqueued_at, event.run_at))
                elif type(event) is JobSucceeded and event.kind != "digest.send":
                    finished["succeeded"] += 1
                    if event.kind == "thumbnail.make":
                        quick["done"] += 1
                        quick["last"] = event.at
                        quick["first"] = quick["first"] or event.at
                elif type(event) is JobDead:
                    finished["dead"] += 1
                elif type(event) is JobRetried:
                    retries += 1
                elif type(event) is CronFired:
                    cron_fired += 1
                if sum(finished.values()) >= total and cron_fired >= 2:
                    done.set()

            topology = Topology.default(
                app,
                transport,
                concurrency=concurrency,
                worker=WorkerConfig(lease_ttl=5.0, poll_interval=0.2),
                reaper_interval=0.5,
                clock=clock,
            )
            progress = Progress(
                TextColumn("[progress.description]{task.description}"),
                BarColumn(),
                MofNCompleteColumn(),
                TextColumn("{task.fields[detail]}"),
                TimeElapsedColumn(),
                console=console,
            )
            with progress:
                bar = progress.add_task("processing", total=total, detail="")
                events = EventBus()
                events.subscribe(on_event)  # before the node starts, so no event is missed
                async with topology.run(events=events):
                    with anyio.move_on_after(60):
                        while not done.is_set():
                            progress.update(
                                bar,
                                completed=sum(finished.values()),
                                detail=f"retries {retries}, dead {finished['dead']}, cron {cron_fired}",
                            )
                            with anyio.move_on_after(0.1):
                                await done.wait()
                    progress.update(
                        bar,
                        completed=sum(finished.values()),
                        detail=f"retries {retries}, dead {finished['dead']}, cron {cron_fired}",
                    )
            elapsed = time.perf_counter() - started
            counts = dict.fromkeys(JobState, 0)
            for c in await transport.counts():
                for state in JobState:
                    counts[state] += c[state]
            dead_reasons = [
                (job.kind, job.last_error or "")
                for job in await transport.list_jobs(
                    transports.JobFilter(states=(JobState.DEAD,)), limit=5
                )
            ]

        table = Table(title="summary")
        table.add_column("what")
        table.add_column("value", justify="right")
        for state in JobState:
            if counts[state]:
                table.add_row(f"jobs {state.value}", str(counts[state]))
        table.add_row("retries (flaky webhooks)", str(retries))
        table.add_row("cron ticks fired", str(cron_fired))
        table.add_row("wall time", f"{elapsed:.2f} s")
        span = quick["last"] - quick["first"]
        if span > 0:
            table.add_row("throughput (thumbnails)", f"{quick['done'] / span:,.0f} jobs/s")
        if latencies:
            latencies.sort()
            p50 = statistics.median(latencies)
            p99 = latencies[min(len(latencies) - 1, int(len(latencies) * 0.99))]
            table.add_row("enqueue-to-start p50 / p99", f"{p50 * 1000:.1f} / {p99 * 1000:.1f} ms")
        console.print(table)
        for kind, reason in dead_reasons:
            console.print(f"dead: [bold]{kind}[/] — {reason[:120]}")
        if not done.is_set():
            raise SystemExit("demo did not finish within 60 s")
