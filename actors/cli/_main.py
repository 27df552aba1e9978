"""The ``actorq`` command: run workers, enqueue, inspect, cancel, migrate, demo, simulate."""

from __future__ import annotations

import importlib
import importlib.util
import json
import logging
import os
import signal
import sys
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

import anyio
import click
from rich.console import Console
from rich.table import Table

import transports
from transports import EnqueueRequest, JobState, QueueConfig, Transport, TransportError

from ..jobs import App, Topology, WorkerConfig

__all__ = ["load_app", "main"]

T = TypeVar("T")

DEFAULT_TRANSPORT = "sqlite:///actorq.db"
_transport_option = click.option(
    "--transport",
    "-t",
    "url",
    envvar="ACTORQ_TRANSPORT",
    default=DEFAULT_TRANSPORT,
    show_default=True,
    help="Store URL: memory://, sqlite:///file.db, postgresql://user@host/db (env ACTORQ_TRANSPORT).",
)
_loop_option = click.option(
    "--loop",
    type=click.Choice(["asyncio", "trio"]),
    default="asyncio",
    show_default=True,
    help="Event loop to run on.",
)


def load_app(path: str) -> App:
    """Import ``module:attribute`` (or ``path/to/file.py:attribute``) and return the App.

    The attribute may be an :class:`App` or a zero-argument callable returning one.

    Raises:
        click.BadParameter: the path does not name an App.
    """
    module_name, _, attribute = path.partition(":")
    attribute = attribute or "app"
    try:
        if module_name.endswith(".py"):
            spec = importlib.util.spec_from_file_location("actorq_user_app", module_name)
            if spec is None or spec.loader is None:
                raise ImportError(f"cannot load {module_name}")
            module = importlib.util.module_from_spec(spec)
            sys.modules[spec.name] = module
            spec.loader.exec_module(module)
        else:
            sys.path.insert(0, os.getcwd())
            module = importlib.import_module(module_name)
    except ImportError as exc:
        raise click.BadParameter(
            f"cannot import {module_name!r}: {exc}", param_hint="APP_PATH"
        ) from exc
    target = getattr(module, attribute, None)
    if callable(target) and not isinstance(target, App):
        target = target()
    if not isinstance(target, App):
        raise click.BadParameter(f"{path!r} is not an actorq App", param_hint="APP_PATH")
    return target


def _run(loop: str, fn: Callable[[], Awaitable[T]]) -> T:
    try:
        return anyio.run(fn, backend=loop)
    except TransportError as exc:
        raise click.ClickException(f"{type(exc).__name__}: {exc}") from exc


async def _with_transport(url: str, fn: Callable[[Transport], Awaitable[T]]) -> T:
    # No clock: each backend keeps its own time domain (PostgreSQL: the database's clock).
    async with transports.connect(url) as transport:
        return await fn(transport)


@click.group()
@click.option("-v", "--verbose", count=True, help="More logging (-v info, -vv debug).")
def main(verbose: int) -> None:
    """actorq: background jobs as a supervised actor system."""
    level = logging.WARNING - 10 * min(verbose, 2)
    logging.basicConfig(level=level, format="%(asctime)s %(levelname)s %(name)s: %(message)s")


@main.command()
@click.argument("app_path")
@_transport_option
@click.option(
    "--queue", "-q", "queues", multiple=True, help="Queue to work (repeatable; default: the App's)."
)
@click.option("--concurrency", "-c", default=10, show_default=True, help="Workers per queue.")
@click.option(
    "--lease-ttl", default=10.0, show_default=True, help="Seconds a lease lives unrenewed."
)
@click.option(
    "--batch-size", default=10, show_default=True, help="Most jobs a Worker claims at once."
)
@click.option(
    "--poll-interval", default=1.0, show_default=True, help="Idle re-check interval, seconds."
)
@click.option("--reaper-interval", default=1.0, show_default=True, help="Seconds between reaps.")
@click.option(
    "--leader-ttl",
    default=10.0,
    show_default=True,
    help="Seconds the cron leader lease lives unrenewed (a new leader takes over within ~that).",
)
@click.option(
    "--drain-timeout", default=10.0, show_default=True, help="Shutdown grace for running jobs."
)
@click.option("--node-id", default=None, help="Name in leases and events (default host:pid:tag).")
@_loop_option
def worker(
    app_path: str,
    url: str,
    queues: tuple[str, ...],
    concurrency: int,
    lease_ttl: float,
    batch_size: int,
    poll_interval: float,
    reaper_interval: float,
    leader_ttl: float,
    drain_timeout: float,
    node_id: str | None,
    loop: str,
) -> None:
    """Run a worker node for the App at APP_PATH (module:attribute) until SIGINT/SIGTERM."""
    app = load_app(app_path)
    config = WorkerConfig(
        lease_ttl=lease_ttl,
        batch_size=batch_size,
        poll_interval=poll_interval,
        drain_timeout=drain_timeout,
    )

    async def run() -> None:
        # No clock for the store: lease expiry is decided by the database's clock, one clock
        # for every machine, so a worker whose clock runs ahead cannot reap live leases.
        async with transports.connect(url) as transport:
            app.transport = app.transport or transport
            topology = Topology.default(
                app,
                transport,
                queues=list(queues) or None,
                concurrency=concurrency,
                worker=config,
                reaper_interval=reaper_interval,
                leader_ttl=leader_ttl,
                node_id=node_id,
            )
            with anyio.open_signal_receiver(signal.SIGINT, signal.SIGTERM) as signals:
                async with topology.run(shutdown_timeout=drain_timeout + 5.0) as node:
                    logging.getLogger("actorq.node").warning(
                        "worker %s running queues %s on %s",
                        node.node_id,
                        ", ".join(queues or app.queues or ["default"]),
                        url.split("@")[-1],
                    )
                    async for signum in signals:
                        logging.getLogger("actorq.node").warning(
                            "received %s: shutting down gracefully", signal.Signals(signum).name
                        )
                        break

    _run(loop, run)


@main.command()
@click.argument("kind")
@click.argument("payload", default="null")
@_transport_option
@click.option("--queue", "-q", default="default", show_default=True)
@click.option("--priority", default=0, show_default=True, help="Lower runs first.")
@click.option("--delay", default=0.0, show_default=True, help="Seconds from now.")
@click.option("--max-attempts", default=20, show_default=True)
@click.option("--dedupe-key", default=None, help="Fold into an active job with this key.")
@click.option("--count", default=1, show_default=True, help="Enqueue this many copies (one batch).")
@_loop_option
def enqueue(
    kind: str,
    payload: str,
    url: str,
    queue: str,
    priority: int,
    delay: float,
    max_attempts: int,
    dedupe_key: str | None,
    count: int,
    loop: str,
) -> None:
    """Enqueue COUNT jobs of KIND with a JSON PAYLOAD."""
    try:
        data = json.loads(payload)
    except json.JSONDecodeError as exc:
        raise click.BadParameter(f"payload is not JSON: {exc}", param_hint="PAYLOAD") from exc
    try:
        requests = [
            EnqueueRequest(
                kind=kind,
                payload=data,
                queue=queue,
                priority=priority,
                delay=delay,
                max_attempts=max_attempts,
                dedupe_key=dedupe_key,
            )
            for _ in range(count)
        ]
    except TransportError as exc:
        raise click.ClickException(str(exc)) from exc

    async def run(transport: Transport) -> None:
        results = await transport.enqueue_many(requests)
        for result in results[:10]:
            suffix = " (deduplicated)" if result.deduplicated else ""
            click.echo(f"job {result.job_id}{suffix}")
        if len(results) > 10:
            click.echo(f"... {len(results)} jobs in all")

    _run(loop, lambda: _with_transport(url, run))


@main.command()
@_transport_option
@_loop_option
def status(url: str, loop: str) -> None:
    """Show a table of queues by job state."""

    async def run(transport: Transport) -> None:
        counts = await transport.counts()
        configs = {c.name: c for c in await transport.list_queue_configs()}
        table = Table(title=f"actorq queues on {url.split('@')[-1]}")
        table.add_column("queue")
        for state in JobState:
            table.add_column(state.value, justify="right")
        table.add_column("paused")
        for c in counts:
            config = configs.get(c.queue)
            table.add_row(
                c.queue,
                *(str(c[state]) for state in JobState),
                "yes" if config and config.paused else "",
            )
        Console().print(table)

    _run(loop, lambda: _with_transport(url, run))


@main.command()
@click.argument("job_id", type=int)
@_transport_option
@_loop_option
def cancel(job_id: int, url: str, loop: str) -> None:
    """Cancel JOB_ID: a waiting job ends at once, a running one is asked to stop."""

    async def run(transport: Transport) -> None:
        result = await transport.cancel(job_id)
        click.echo(f"job {job_id}: {result.value}")

    _run(loop, lambda: _with_transport(url, run))


@main.command()
@click.argument("queue")
@_transport_option
@click.option("--pause/--resume", default=None, help="Stop or restart claiming.")
@click.option("--concurrency", type=int, default=None, help="Workers per node for this queue.")
@click.option("--retention", type=float, default=None, help="Seconds finished jobs are kept.")
@_loop_option
def queue(
    queue: str,
    url: str,
    pause: bool | None,
    concurrency: int | None,
    retention: float | None,
    loop: str,
) -> None:
    """Show or change a QUEUE's settings (running nodes follow within seconds)."""

    async def run(transport: Transport) -> None:
        config = await transport.get_queue_config(queue)
        changes: dict[str, Any] = {}
        if pause is not None:
            changes["paused"] = pause
        if concurrency is not None:
            changes["concurrency"] = concurrency
        if retention is not None:
            changes["retention"] = retention
        if changes:
            config = QueueConfig(
                name=config.name,
                paused=changes.get("paused", config.paused),
                concurrency=changes.get("concurrency", config.concurrency),
                retention=changes.get("retention", config.retention),
            )
            await transport.set_queue_config(config)
        click.echo(
            f"{config.name}: paused={config.paused} concurrency={config.concurrency} "
            f"retention={config.retention}"
        )

    _run(loop, lambda: _with_transport(url, run))


@main.command()
@_transport_option
def migrate(url: str) -> None:
    """Create or upgrade the store's schema to this version of actorq."""

    async def run(transport: Transport) -> None:
        migrate_fn = getattr(transport, "migrate", None)
        if migrate_fn is None:
            click.echo("nothing to migrate: this transport keeps no schema")
            return
        version = await migrate_fn()
        click.echo(f"schema is at version {version}")

    _run("asyncio", lambda: _with_transport(url, run))


@main.command()
@click.option(
    "--transport",
    "-t",
    "url",
    default=None,
    help="Store URL (default: a fresh SQLite file in a temporary folder).",
)
@click.option("--jobs", default=2000, show_default=True, help="Quick jobs in the mix.")
@click.option("--concurrency", default=8, show_default=True, help="Workers per queue.")
@_loop_option
def demo(url: str | None, jobs: int, concurrency: int, loop: str) -> None:
    """Run a realistic mix of jobs on embedded SQLite, with live progress and a summary."""
    from ._demo import run_demo

    _run(loop, lambda: run_demo(url, quick_jobs=jobs, concurrency=concurrency))


@main.command(
    context_settings={"ignore_unknown_options": True, "help_option_names": []},
    add_help_option=False,
)
@click.argument("options", nargs=-1, type=click.UNPROCESSED)
def sim(options: tuple[str, ...]) -> None:
    """Simulate a faulty cluster on virtual time (``actorq sim --help`` for the options).

    For example: ``actorq sim --seed 7 --nodes 5 --workers 20 --jobs 10000 --duration 6h
    --faults crash,pause,storage,partition,skew``, or ``--seeds 1..1000`` to sweep.
    """
    from ..sim.lowlevel import run_cli

    raise SystemExit(run_cli(list(options)))
