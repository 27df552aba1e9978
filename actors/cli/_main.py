"""The ``actorq`` command: run workers, enqueue, inspect, migrate, serve the dashboard,
demo, simulate.

The ``actorq jobs`` group (list, show, retry, discard, delete, cancel) is in :mod:`._jobs`.

Every mistake is one line on stderr, ``actorq: error: <what is wrong> (<what to do>)``, with
exit status 2 for a malformed command line and 1 for a request that failed (see
:mod:`._errors`); ``-v`` (before or after the subcommand) also prints the traceback. Option
values are checked by click types before anything connects; the worker's defaults are read
from :class:`~actors.jobs.WorkerConfig`, their one home. Read-only commands open the store
with ``create=False``, so a typo in a URL never creates a file or a schema.
"""

from __future__ import annotations

import contextlib
import copy
import datetime
import json
import logging
import secrets
import shlex
import signal
import socket
import sys
import tempfile
import traceback
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator, Sequence
from pathlib import Path
from typing import Any, NoReturn, TypeVar

import anyio
import attrs
import click
from rich.console import Console
from rich.table import Table

import transports
from transports import (
    DEFAULT_MAX_PAYLOAD_BYTES,
    MINUTE,
    EnqueueRequest,
    JobState,
    KeyLimit,
    QueueConfig,
    QueueStats,
    Transport,
    minute_of,
)
from transports.lowlevel import (
    INT32_MAX,
    MAX_PARTITION_COUNT,
    MAX_RATE_WINDOW,
    encode_payload,
    encode_step,
)

from ..core import RealClock
from ..jobs import App, CronSchedule, Topology, WorkerConfig
from ..telemetry import LOG_FORMATS, JsonFormatter, TelemetryUnavailable
from ._errors import USAGE, CliFailure, _one_line, describe, redact_url, scrub
from ._load import load_app
from ._types import URL_META, Duration, EventKey, LimitKey, QueueName, StoreURL

__all__ = ["main"]

T = TypeVar("T")
FC = TypeVar("FC", bound=Callable[..., Any] | click.Command)

DEFAULT_TRANSPORT = "sqlite:///actorq.db"
_VERBOSE = "actorq.verbose"  # ctx.meta key: how many -v were given, before and after the command
_LOGGING = "actorq.logging"  # ctx.meta key: True when this command set up logging itself
_WORKER_DEFAULTS = attrs.fields(WorkerConfig)


# --- click types --------------------------------------------------------------------------


def _transport_option(memory_refused: str | None) -> Callable[[FC], FC]:
    return click.option(
        "--transport",
        "-t",
        "url",
        envvar="ACTORQ_TRANSPORT",
        default=DEFAULT_TRANSPORT,
        show_default=True,
        type=StoreURL(memory_refused=memory_refused),
        help="Store URL: sqlite:///file.db, postgresql://user@host/db (env ACTORQ_TRANSPORT).",
    )


_loop_option = click.option(
    "--loop",
    type=click.Choice(["asyncio", "trio"]),
    default="asyncio",
    show_default=True,
    help="Event loop to run on.",
)


def _worker_default(name: str) -> Any:
    return getattr(_WORKER_DEFAULTS, name).default


# --- verbosity and errors -----------------------------------------------------------------


class _DriverInOneLine(logging.Filter):
    """A database driver's warning (asyncpg's pool retrying while the server is away) in one
    line, its exception's type and text after the message; the traceback only with -v."""

    verbose = 0

    def filter(self, record: logging.LogRecord) -> bool:
        if record.exc_info and not self.verbose and record.name.startswith("asyncpg"):
            exc = record.exc_info[1]
            if exc is not None:
                record.msg = f"{record.getMessage()}: {type(exc).__name__}: {_one_line(str(exc))}"
                record.args = None
            record.exc_info = None
            record.exc_text = None
        return True


_DRIVER_FILTER = _DriverInOneLine()


def _count_verbose(ctx: click.Context, _param: click.Parameter, value: int) -> None:
    count = ctx.meta.get(_VERBOSE, 0) + (value or 0)
    ctx.meta[_VERBOSE] = count
    level = logging.WARNING - 10 * min(count, 2)
    root = logging.getLogger()
    if not root.handlers:
        logging.basicConfig(level=level, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
        for handler in root.handlers:
            handler.addFilter(_DRIVER_FILTER)
        ctx.meta[_LOGGING] = True
    elif ctx.meta.get(_LOGGING):  # ours: -v after the subcommand raises it further
        root.setLevel(level)
    _DRIVER_FILTER.verbose = count
    # Otherwise the host program (a test run, an embedding app) configured logging: keep it.


def _verbose_param() -> click.Option:
    return click.Option(
        ["-v", "--verbose"],
        count=True,
        expose_value=False,
        callback=_count_verbose,
        help="More logging (-v info, -vv debug), and the traceback of an error.",
    )


def _say_error(line: str) -> None:
    click.echo(f"actorq: error: {_one_line(line)}", err=True)


def _usage_line(exc: click.UsageError) -> str:
    text = exc.format_message().strip().rstrip(".")
    if len(text) > 1 and text[0].isupper() and text[1].islower():
        text = text[0].lower() + text[1:]
    path = exc.ctx.command_path if exc.ctx is not None else "actorq"
    return f'{text} (see "{path} -h")'


class _ActorqGroup(click.Group):
    """A group whose errors are one line each (see the module docstring)."""

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except (click.exceptions.Exit, click.Abort):
            raise
        except click.UsageError as exc:
            if exc.ctx is None and ctx.invoked_subcommand:
                # click's option parser raises without a context: name the command for it.
                exc.ctx = click.Context(
                    self.commands.get(ctx.invoked_subcommand, self),
                    info_name=ctx.invoked_subcommand,
                    parent=ctx,
                )
            raise
        except click.ClickException as exc:
            if ctx.meta.get(_VERBOSE) and exc.__cause__ is not None:
                traceback.print_exception(exc.__cause__, file=sys.stderr)
            raise
        except Exception as exc:
            if ctx.meta.get(_VERBOSE):
                traceback.print_exception(exc, file=sys.stderr)
            raise describe(exc, url=ctx.meta.get(URL_META)) from exc

    # ``actorq sim`` is the simulator's own click command, imported only when it is asked
    # for (a command of the job runtime never loads the simulator); a copy here takes -v.
    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted({*super().list_commands(ctx), "sim"})

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        command = super().get_command(ctx, cmd_name)
        if command is None and cmd_name == "sim":
            from ..sim.lowlevel import sim_command

            command = copy.copy(sim_command)
            command.params = [*sim_command.params, _verbose_param()]
            self.add_command(command, "sim")
        return command

    def main(
        self,
        args: Sequence[str] | None = None,
        prog_name: str | None = None,
        complete_var: str | None = None,
        standalone_mode: bool = True,
        **extra: Any,
    ) -> Any:
        if not standalone_mode:
            return super().main(args, prog_name, complete_var, False, **extra)
        try:
            status = super().main(args, prog_name, complete_var, False, **extra)
        except click.exceptions.NoArgsIsHelpError as exc:
            exc.show()
            sys.exit(exc.exit_code)
        except CliFailure as exc:
            _say_error(exc.format_message())
            sys.exit(exc.exit_code)
        except click.UsageError as exc:
            _say_error(_usage_line(exc))
            sys.exit(exc.exit_code)
        except click.ClickException as exc:
            _say_error(f"{exc.format_message()} (run with -v for the traceback)")
            sys.exit(exc.exit_code)
        except click.Abort:
            _say_error("interrupted (nothing more was done)")
            sys.exit(130)
        sys.exit(status if isinstance(status, int) else 0)


def _run(loop: str, fn: Callable[[], Awaitable[T]]) -> T:
    return anyio.run(fn, backend=loop)


async def _with_transport(
    url: str, fn: Callable[[Transport], Awaitable[T]], *, create: bool = True, **options: Any
) -> T:
    # No clock: each backend keeps its own time domain (PostgreSQL: the database's clock).
    async with transports.connect(url, create=create, **options) as transport:
        return await fn(transport)


@click.group(
    "actorq",
    cls=_ActorqGroup,
    context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100},
)
@click.version_option(package_name="actorq", prog_name="actorq", message="%(prog)s %(version)s")
def main() -> None:
    """actorq: background jobs as a supervised actor system.

    An ordinary mistake prints one line, "actorq: error: <what> (<what to do>)": exit status
    2 for a malformed command line, 1 for a request that failed. -v shows the traceback.
    """


main.params.append(_verbose_param())


# --- commands -----------------------------------------------------------------------------


@main.command()
@click.argument("app_path")
@_transport_option("a worker there sees no job another process enqueued")
@click.option(
    "--queue",
    "-q",
    "queues",
    multiple=True,
    type=QueueName(),
    help="Queue to work (repeatable; default: the App's).",
)
@click.option(
    "--concurrency",
    "-c",
    type=click.IntRange(min=1),
    default=_worker_default("concurrency"),
    show_default=True,
    help="Workers per queue.",
)
@click.option(
    "--lease-ttl",
    type=Duration(),
    default=_worker_default("lease_ttl"),
    show_default=True,
    help="Seconds a lease lives unrenewed (10, 10s, 1m).",
)
@click.option(
    "--batch-size",
    type=click.IntRange(min=1),
    default=_worker_default("batch_size"),
    show_default=True,
    help="Most jobs one claim takes (a queue claims for its free Workers).",
)
@click.option(
    "--poll-interval",
    type=Duration(),
    default=_worker_default("poll_interval"),
    show_default=True,
    help="Idle re-check interval.",
)
@click.option(
    "--reaper-interval",
    type=Duration(),
    default=_worker_default("reaper_interval"),
    show_default=True,
    help="Time between reaps of expired leases.",
)
@click.option(
    "--leader-ttl",
    type=Duration(),
    default=_worker_default("leader_ttl"),
    show_default=True,
    help="How long the cron leader lease lives unrenewed (a new leader takes over within it).",
)
@click.option(
    "--drain-timeout",
    type=Duration(open=False),
    default=_worker_default("drain_timeout"),
    show_default=True,
    help="Shutdown grace for running jobs.",
)
@click.option(
    "--node-heartbeat",
    type=Duration(),
    default=_worker_default("node_heartbeat"),
    show_default=True,
    help="Time between the node's heartbeats in the node registry (gone after 3 missed).",
)
@click.option(
    "--stats-interval",
    type=Duration(),
    default=_worker_default("stats_interval"),
    show_default=True,
    help="Time between flushes of the node's per-minute history to the store.",
)
@click.option("--node-id", default=None, help="Name in leases and events (default host:pid:tag).")
@click.option(
    "--metrics-port",
    type=click.IntRange(1, 65535),
    default=None,
    help="Serve Prometheus metrics at http://HOST:PORT/metrics (needs actorq[metrics]).",
)
@click.option(
    "--metrics-host",
    default="0.0.0.0",
    show_default=True,
    help="Address the metrics server listens on.",
)
@click.option(
    "--log-format",
    type=click.Choice(LOG_FORMATS),
    default="text",
    show_default=True,
    help="json: one object a line, with job id, kind, queue, attempt, node and trace id.",
)
@click.option(
    "--tracing/--no-tracing",
    default=False,
    show_default=True,
    help="OpenTelemetry spans for every run (needs actorq[tracing] and an SDK set up, "
    "e.g. by opentelemetry-instrument).",
)
@click.option(
    "--connect-timeout",
    type=Duration(open=False),
    default=30.0,
    show_default=True,
    help="How long to keep trying to reach the store at start (a server restarting or not "
    "up yet) before giving up; 0: give up at once.",
)
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
    node_heartbeat: float,
    stats_interval: float,
    node_id: str | None,
    metrics_port: int | None,
    metrics_host: str,
    log_format: str,
    tracing: bool,
    connect_timeout: float,
    loop: str,
) -> None:
    """Run a worker node for the App at APP_PATH (module:attribute) until SIGINT/SIGTERM."""
    formatter = _log_formatter(log_format)
    metrics = _node_metrics() if metrics_port is not None else None
    app = load_app(app_path)
    if tracing:
        _enable_tracing(app)
    config = WorkerConfig(
        lease_ttl=lease_ttl,
        batch_size=batch_size,
        poll_interval=poll_interval,
        concurrency=concurrency,
        reaper_interval=reaper_interval,
        leader_ttl=leader_ttl,
        drain_timeout=drain_timeout,
        node_heartbeat=node_heartbeat,
        stats_interval=stats_interval,
    )
    log = logging.getLogger("actorq.node")

    async def run() -> None:
        # No clock for the store: lease expiry is decided by the database's clock, one clock
        # for every machine, so a worker whose clock runs ahead cannot reap live leases.
        async with _reached(url, connect_timeout, log) as transport:
            app.transport = app.transport or transport
            topology = Topology.default(
                app, transport, queues=list(queues) or None, worker=config, node_id=node_id
            )
            if formatter is not None:
                formatter.node = topology.node_id  # for lines from outside the node's tasks
            async with contextlib.AsyncExitStack() as stack:
                if metrics is not None:
                    from ..telemetry import serve_metrics

                    metrics.install(topology)
                    assert metrics_port is not None
                    await stack.enter_async_context(
                        serve_metrics(metrics, port=metrics_port, host=metrics_host)
                    )
                    log.warning("metrics at http://%s:%d/metrics", metrics_host, metrics_port)
                await _run_node(topology, queues, app, url, log)

    _run(loop, run)


@contextlib.asynccontextmanager
async def _reached(url: str, timeout: float, log: logging.Logger) -> AsyncIterator[Transport]:
    """The open store, trying again while it cannot be reached, for up to ``timeout`` seconds.

    A worker started while its server restarts, fails over or is still starting (a container
    beside it) waits for it instead of exiting; a store that stays away past the timeout, and
    any other error (a schema mismatch, a read-only file), ends the command as before.
    """
    clock = RealClock()
    give_up = clock.now() + timeout
    pause = 0.25
    while True:
        transport = transports.connect(url)
        try:
            await transport.open()
            break
        except transports.ConnectionLost as exc:
            with anyio.CancelScope(shield=True):
                await transport.aclose()
            left = give_up - clock.now()
            if left <= 0:
                raise
            log.warning(
                "cannot reach the store at %s (%s); trying again for up to %.0fs",
                redact_url(url),
                scrub(_one_line(str(exc)), url),
                left,
            )
            await clock.sleep(min(pause, left))
            pause = min(pause * 2, 5.0)
        except BaseException:
            with anyio.CancelScope(shield=True):
                await transport.aclose()
            raise
    async with transport:
        yield transport


async def _run_node(
    topology: Topology, queues: tuple[str, ...], app: App, url: str, log: logging.Logger
) -> None:
    """Run the node until SIGINT or SIGTERM, then shut it down gracefully."""
    with anyio.open_signal_receiver(signal.SIGINT, signal.SIGTERM) as signals:
        async with topology.run() as node:
            log.warning(
                "worker %s running queues %s on %s",
                node.node_id,
                ", ".join(queues or app.queues or ["default"]),
                redact_url(url),
            )
            async for signum in signals:
                log.warning("received %s: shutting down gracefully", signal.Signals(signum).name)
                break


def _log_formatter(log_format: str) -> JsonFormatter | None:
    """Put JSON lines on the handler this command installed (a host program's own logging
    setup is left alone); returns the formatter, to name the node once it is known."""
    if log_format != "json":
        return None
    formatter = JsonFormatter()
    context = click.get_current_context()
    if context.find_root().meta.get(_LOGGING) or context.meta.get(_LOGGING):
        for handler in logging.getLogger().handlers:
            handler.setFormatter(formatter)
    return formatter


def _node_metrics() -> Any:
    try:
        from ..telemetry import NodeMetrics

        return NodeMetrics()
    except TelemetryUnavailable as exc:
        raise CliFailure(str(exc), "install the extra, or drop --metrics-port", USAGE) from exc


def _enable_tracing(app: App) -> None:
    try:
        from ..telemetry import instrument_tracing
    except ImportError as exc:
        raise CliFailure(
            f"--tracing needs opentelemetry-api: {exc}",
            "pip install 'actorq[tracing]', or drop --tracing",
            USAGE,
        ) from exc
    instrument_tracing(app)


def _payload_text(payload: str | None, payload_file: Path | None) -> str:
    if payload is not None and payload_file is not None:
        raise CliFailure(
            "both PAYLOAD and --payload-file were given", "give the payload once", USAGE
        )
    if payload_file is not None:
        source = str(payload_file)
    elif payload is None:
        return "null"
    elif payload == "-":
        return sys.stdin.read()
    elif payload.startswith("@"):
        source = payload[1:]
    else:
        return payload
    try:
        return Path(source).read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
        raise CliFailure(
            f"cannot read the payload file {source!r}: {reason}",
            "give a readable JSON file, or the JSON itself",
            USAGE,
        ) from exc


def _refuse_constant(name: str) -> NoReturn:
    raise ValueError(f"{name} is not a JSON number (JSON has no NaN or infinity)")


def _parse_payload(text: str) -> Any:
    try:
        return json.loads(text, parse_constant=_refuse_constant)
    except (ValueError, RecursionError) as exc:  # bad JSON, NaN, too many digits, too deep
        raise CliFailure(
            f"payload is not JSON: {exc}",
            """give JSON such as '{"id": 7}', @file.json or - for stdin""",
            USAGE,
        ) from exc


@main.command()
@click.argument("kind")
@click.argument("payload", required=False)
@click.option(
    "--app",
    "app_path",
    default=None,
    envvar="ACTORQ_APP",
    help="module:attribute of your App (env ACTORQ_APP): the task's queue and options are "
    "used and the payload is checked.",
)
@_transport_option("a job enqueued there is lost when this command exits")
@click.option(
    "--queue", "-q", type=QueueName(), default=None, help="Queue (default: the task's, or default)."
)
@click.option("--priority", type=int, default=None, help="Lower runs first (default: the task's).")
@click.option(
    "--delay", type=Duration(open=False), default=0.0, help="Run after this long (90, 15m, 2h)."
)
@click.option(
    "--max-attempts", type=click.IntRange(min=1), default=None, help="Default: the task's."
)
@click.option("--dedupe-key", default=None, help="Fold into an active job with this key.")
@click.option(
    "--count",
    type=click.IntRange(1, 100_000),
    default=1,
    show_default=True,
    help="Enqueue this many copies (one batch).",
)
@click.option(
    "--payload-file",
    type=click.Path(dir_okay=False, path_type=Path),
    default=None,
    help="Read the JSON payload from this file (as PAYLOAD @file does; - for stdin).",
)
@click.option(
    "--max-payload-bytes",
    type=click.IntRange(min=1),
    default=DEFAULT_MAX_PAYLOAD_BYTES,
    show_default=True,
    help="Longest JSON payload accepted.",
)
@_loop_option
def enqueue(
    kind: str,
    payload: str | None,
    app_path: str | None,
    url: str,
    queue: str | None,
    priority: int | None,
    delay: float,
    max_attempts: int | None,
    dedupe_key: str | None,
    count: int,
    payload_file: Path | None,
    max_payload_bytes: int,
    loop: str,
) -> None:
    """Enqueue COUNT jobs of KIND with a JSON PAYLOAD (text, @file, or - for stdin).

    With --app the job goes to the task's queue with the task's options, and the payload is
    checked against the task's payload type. Without it the job goes to --queue (default
    "default") exactly as given.
    """
    data = _parse_payload(_payload_text(payload, payload_file))
    options: dict[str, Any] = {
        "queue": queue,
        "priority": priority,
        "delay": delay,
        "max_attempts": max_attempts,
        "dedupe_key": dedupe_key,
    }
    if app_path is not None:
        request = _app_request(load_app(app_path), app_path, kind, data, options)
    else:
        request = EnqueueRequest(
            kind=kind,
            payload=data,
            queue=queue or "default",
            priority=0 if priority is None else priority,
            delay=delay,
            max_attempts=(
                transports.DEFAULT_MAX_ATTEMPTS if max_attempts is None else max_attempts
            ),
            dedupe_key=dedupe_key,
        )
    # The store's own encoding and size check, before connecting: a refused payload creates
    # no store and writes nothing.
    encode_payload(request.payload, max_payload_bytes)
    requests = [request] * count

    async def run(transport: Transport) -> None:
        results = await transport.enqueue_many(requests)
        if app_path is None:
            click.echo(
                f"actorq: note: enqueued onto queue {request.queue!r} as given "
                "(--app module:app uses the task's queue and options)",
                err=True,
            )
        for result in results[:10]:
            suffix = " (deduplicated)" if result.deduplicated else ""
            click.echo(f"job {result.job_id}{suffix}")
        if len(results) > 10:
            click.echo(f"... {len(results)} jobs in all")

    _run(loop, lambda: _with_transport(url, run, max_payload_bytes=max_payload_bytes))


def _app_request(
    app: App, app_path: str, kind: str, data: Any, options: dict[str, Any]
) -> EnqueueRequest:
    task = app.get(kind)
    if task is None:
        known = ", ".join(sorted(app.tasks)) or "none"
        raise CliFailure(
            f"unknown kind {kind!r}: {app_path} has no task of that kind",
            f"known kinds: {known}",
            USAGE,
        )
    given = {name: value for name, value in options.items() if value is not None}
    return task.request(task.structure(data), **given)


_OCCASIONAL_STATES = frozenset({JobState.PENDING, JobState.SUSPENDED})


@main.command()
@_transport_option("there is nothing to show")
@_loop_option
def status(url: str, loop: str) -> None:
    """Show a table of queues by job state (never creates a store); a column for suspended
    jobs only when some queue has any."""

    async def run(transport: Transport) -> None:
        counts = await transport.counts()
        configs = {c.name: c for c in await transport.list_queue_configs()}
        table = Table(title=f"actorq queues on {redact_url(url)}")
        table.add_column("queue")
        # States only some stores use (jobs waiting for parents or for an event) get a column
        # when any job is in them.
        shown = [
            state
            for state in JobState
            if state not in _OCCASIONAL_STATES or any(c[state] for c in counts)
        ]
        for state in shown:
            table.add_column(state.value, justify="right")
        table.add_column("paused")
        for c in counts:
            config = configs.get(c.queue)
            table.add_row(
                c.queue,
                *(str(c[state]) for state in shown),
                "yes" if config and config.paused else "",
            )
        console = Console()
        console.print(table)
        limits = await transport.list_limits()
        if limits:
            console.print(_limits_table(limits))

    _run(loop, lambda: _with_transport(url, run, create=False))


def _limits_table(limits: Sequence[KeyLimit]) -> Table:
    table = Table(title="concurrency limits (cluster-wide)")
    table.add_column("key", overflow="fold")
    for column in ("limit", "running", "rate", "started", "waiting"):
        table.add_column(column, justify="right")
    table.add_column("cooling down until")
    for limit in limits:
        table.add_row(
            limit.key,
            "-" if limit.concurrency is None else str(limit.concurrency),
            str(limit.running),
            _rate_of(limit.rate, limit.per),
            "-" if limit.rate is None else str(limit.started),
            str(limit.waiting),
            "" if limit.cooldown_until is None else _when(limit.cooldown_until),
        )
    return table


def _rate_of(rate: int | None, per: float | None) -> str:
    """A rate as ``100/60s``, or ``-`` for none."""
    return "-" if rate is None or per is None else f"{rate}/{per:g}s"


@main.group(invoke_without_command=True)
@_transport_option("there is nothing to show")
@_loop_option
@click.pass_context
def limits(ctx: click.Context, url: str, loop: str) -> None:
    """Show each concurrency key's limits and use: its live leases, its rate and the starts
    in its current window, its waiting jobs and any cool-down (never creates a store);
    ``limits set`` changes one."""
    if ctx.invoked_subcommand is not None:
        return

    async def run(transport: Transport) -> None:
        found = await transport.list_limits()
        if found:
            Console().print(_limits_table(found))
        else:
            click.echo("no concurrency limits are set")  # nor rates, nor cool-downs

    _run(loop, lambda: _with_transport(url, run, create=False))


def _when(t: float | None) -> str:
    """A stored time for a table: UTC, to the second."""
    if t is None:
        return "never"
    try:
        return datetime.datetime.fromtimestamp(t, datetime.UTC).strftime("%Y-%m-%d %H:%M:%S")
    except (OverflowError, OSError, ValueError):
        return repr(t)


def _ago(seconds: float) -> str:
    if seconds < 0:
        return "in the future"
    if seconds < 120:
        return f"{seconds:.0f}s ago"
    if seconds < 7200:
        return f"{seconds / 60:.0f}m ago"
    return f"{seconds / 3600:.1f}h ago"


@main.command()
@_transport_option("there are no nodes there to show")
@_loop_option
def nodes(url: str, loop: str) -> None:
    """Show the registered nodes: alive or gone (3 heartbeats missed), what each leads."""

    async def run(transport: Transport) -> None:
        registered = await transport.list_nodes()
        leaders = await transport.list_leaders()
        now = RealClock().now()
        table = Table(title=f"actorq nodes on {redact_url(url)}")
        for column in ["id", "host", "pid", "queues", "slots", "version", "started"]:
            # Ids and queue names fold rather than end in "...": they are copied from here.
            table.add_column(
                column, justify="right" if column in ("pid", "slots") else "left", overflow="fold"
            )
        for column in ["last seen", "state", "leader of"]:
            table.add_column(column)
        for node in registered:
            leads = [lead.name for lead in leaders if lead.holder == node.id]
            table.add_row(
                node.id,
                node.host,
                str(node.pid),
                ", ".join(node.queues) or "-",
                str(node.slots),
                node.version,
                _when(node.started_at),
                _ago(now - node.last_seen),
                "alive" if node.is_alive(now) else "gone",
                ", ".join(leads),
            )
        Console().print(table)
        unheld = [lead for lead in leaders if lead.holder not in {n.id for n in registered}]
        for lead in unheld:
            click.echo(f"leader of {lead.name}: {lead.holder} (not a registered node)")

    _run(loop, lambda: _with_transport(url, run, create=False))


@main.command()
@click.argument("queue", type=QueueName())
@click.option("--after", default=None, help="Start after this partition key (paging).")
@click.option(
    "--limit",
    type=click.IntRange(1, 10_000),
    default=100,
    show_default=True,
    help="Most partitions to show.",
)
@_transport_option("there is nothing to show")
@_loop_option
def partitions(queue: str, after: str | None, limit: int, url: str, loop: str) -> None:
    """Show the fair-share partitions of QUEUE that have waiting jobs, by key: each one's
    waiting and running jobs and its last turn (never creates a store)."""

    async def run(transport: Transport) -> None:
        found = await transport.list_partitions(queue, after=after, limit=limit)
        if not found:
            click.echo(f"no partition of {queue!r} has waiting jobs")
            return
        table = Table(title=f"fair-share partitions of {queue!r} with waiting jobs")
        table.add_column("partition", overflow="fold")
        table.add_column("waiting", justify="right")
        table.add_column("running", justify="right")
        table.add_column("last turn")
        for info in found:
            waiting = str(info.waiting)
            if info.waiting >= MAX_PARTITION_COUNT:
                waiting = f"{MAX_PARTITION_COUNT:,}+"
            table.add_row(info.key, waiting, str(info.running), _when(info.served_at))
        Console().print(table)
        if len(found) == limit:
            click.echo(f"more may follow: --after {shlex.quote(found[-1].key)}")

    _run(loop, lambda: _with_transport(url, run, create=False))


@limits.command("set")
@click.argument("key", type=LimitKey())
@click.option(
    "--concurrency",
    type=click.IntRange(0, INT32_MAX),
    default=None,
    help="Most jobs with KEY running at once, cluster-wide (0 holds them all).",
)
@click.option("--no-concurrency", is_flag=True, help="Remove KEY's concurrency limit.")
@click.option(
    "--rate",
    type=click.IntRange(1, INT32_MAX),
    default=None,
    help="Most starts of KEY's jobs in any window of --per, cluster-wide.",
)
@click.option(
    "--per",
    type=Duration(maximum=MAX_RATE_WINDOW),
    default=None,
    help="The window of --rate (60, 1m, 1h).",
)
@click.option("--no-rate", is_flag=True, help="Remove KEY's rate.")
@click.option("--remove", is_flag=True, help="Remove every limit of KEY: its jobs run freely.")
@_transport_option("a limit set there is lost when this command exits")
@_loop_option
def limits_set(
    key: str,
    concurrency: int | None,
    no_concurrency: bool,
    rate: int | None,
    per: float | None,
    no_rate: bool,
    remove: bool,
    url: str,
    loop: str,
) -> None:
    """Set (or remove) the limits of KEY; what is not named is kept. Running nodes follow at
    their next claim."""
    changes = concurrency is not None or no_concurrency or rate is not None or per is not None
    if remove == (changes or no_rate):
        raise click.UsageError(
            "give --concurrency N, --rate N --per W, --no-concurrency or --no-rate, or --remove "
            "alone"
        )
    if concurrency is not None and no_concurrency:
        raise click.UsageError("give --concurrency or --no-concurrency, not both")
    if (rate is not None or per is not None) and no_rate:
        raise click.UsageError("give --rate and --per, or --no-rate, not both")
    if (rate is None) != (per is None):
        raise click.UsageError("--rate and --per go together: give both")

    async def run(transport: Transport) -> None:
        current = {limit.key: limit for limit in await transport.list_limits()}.get(key)
        new_concurrency = None if remove or no_concurrency else concurrency
        new_rate, new_per = (None, None) if remove or no_rate else (rate, per)
        if current is not None and not remove:
            if concurrency is None and not no_concurrency:
                new_concurrency = current.concurrency
            if rate is None and not no_rate:
                new_rate, new_per = current.rate, current.per
        await transport.set_limit(key, concurrency=new_concurrency, rate=new_rate, per=new_per)
        shown = []
        if new_concurrency is not None:
            shown.append(f"concurrency={new_concurrency}")
        if new_rate is not None:
            shown.append(f"rate={_rate_of(new_rate, new_per)}")
        click.echo(f"{key}: {' '.join(shown) or 'no limit'}")

    _run(loop, lambda: _with_transport(url, run))


@main.command("signal")
@click.argument("key", type=EventKey())
@click.argument("value", required=False)
@_transport_option("a signal sent there is lost when this command exits")
@_loop_option
def signal_command(key: str, value: str | None, url: str, loop: str) -> None:
    """Set the event KEY to the JSON VALUE (default null) and wake the jobs waiting for it.

    The jobs suspended in ctx.wait_for(KEY) become available at once and their wait returns
    VALUE; a job that reaches the wait later gets it too. The first value wins: signalling
    KEY again changes nothing.
    """
    data = None if value is None else _parse_payload(value)
    encode_step(data)  # refused before connecting: nothing is written

    async def run(transport: Transport) -> None:
        result = await transport.signal(key, data)
        if not result.stored:
            click.echo(f"{key}: already signalled (the first value stays); nothing changed")
            return
        woken = len(result.woken)
        click.echo(f"{key}: signalled; {woken} waiting job{'' if woken == 1 else 's'} woken")

    _run(loop, lambda: _with_transport(url, run))


@main.command()
@click.argument("app_path")
@_transport_option("there is no cron cursor there")
@_loop_option
def schedules(app_path: str, url: str, loop: str) -> None:
    """Show the cron schedules of the App at APP_PATH: last fired tick (the cursor) and next."""
    app = load_app(app_path)

    async def run(transport: Transport) -> None:
        now = RealClock().now()
        leaders = {lead.name: lead.holder for lead in await transport.list_leaders()}
        table = Table(title=f"cron schedules of {app_path} on {redact_url(url)}")
        for column in ["schedule", "expression", "kind", "queue", "last fired", "next fire"]:
            table.add_column(column)
        for schedule in app.schedules:
            cursor = await transport.get_cursor(schedule.cursor)
            task = app.get(schedule.kind)
            queue = schedule.queue or (task.options.queue if task is not None else "-")
            table.add_row(
                schedule.name,
                schedule.expression,
                schedule.kind,
                queue,
                _when(cursor),
                _when(schedule.next_after(now)),
            )
        Console().print(table)
        click.echo(f"cron leader: {leaders.get('cron', 'none')}")

    _run(loop, lambda: _with_transport(url, run, create=False))


def _seconds(value: float | None) -> str:
    if value is None:
        return "-"
    if value < 1:
        return f"{value * 1000:.0f}ms"
    return f"{value:.3g}s"


@main.command()
@_transport_option("there is no history there")
@click.option("--queue", "-q", type=QueueName(), default=None, help="Only this queue.")
@click.option(
    "--minutes",
    "-m",
    type=click.IntRange(1, 7 * 24 * 60),
    default=15,
    show_default=True,
    help="How many minutes back to show (up to a week).",
)
@_loop_option
def stats(url: str, queue: str | None, minutes: int, loop: str) -> None:
    """Show each queue's history per minute: outcomes, wait and run p50/p99, the
    correctness counters (stale finalizes refused, leases lost, reclaimed, dedupe folds) and
    the recovery time p50/p99 (a holder lost a job: its lease's expiry to running again)."""

    async def run(transport: Transport) -> None:
        since = minute_of(RealClock().now()) - (minutes - 1) * MINUTE
        rows = await transport.list_stats(queue=queue, since=since)
        table = Table(title=f"actorq history on {redact_url(url)} (last {minutes} min, UTC)")
        columns = ["minute", "queue", "ok", "failed", "dead", "cancelled"]
        columns += ["wait p50", "wait p99", "run p50", "run p99"]
        columns += ["refused", "lost", "reclaimed", "folded", "recovery p50", "recovery p99"]
        for column in columns:
            table.add_column(column, justify="left" if column in ("minute", "queue") else "right")
        for row in rows:
            table.add_row(*_stats_cells(row))
        Console().print(table)

    _run(loop, lambda: _with_transport(url, run, create=False))


def _stats_cells(row: QueueStats) -> list[str]:
    return [
        _when(row.minute)[:-3],
        row.queue,
        str(row.succeeded),
        str(row.failed),
        str(row.dead),
        str(row.cancelled),
        _seconds(row.wait.quantile(0.5)),
        _seconds(row.wait.quantile(0.99)),
        _seconds(row.run.quantile(0.5)),
        _seconds(row.run.quantile(0.99)),
        str(row.finalize_refused),
        str(row.leases_lost),
        str(row.reclaimed),
        str(row.deduplicated),
        _seconds(row.recovery.quantile(0.5)),
        _seconds(row.recovery.quantile(0.99)),
    ]


@main.command()
@click.argument("queue", type=QueueName())
@_transport_option("there is nothing to show or change")
@click.option("--pause/--resume", default=None, help="Stop or restart claiming.")
@click.option(
    "--concurrency",
    type=click.IntRange(min=0),
    default=None,
    help="Workers per node for this queue.",
)
@click.option(
    "--retention",
    type=Duration(open=False),
    default=None,
    help="How long finished jobs are kept (3600, 1h, 7d).",
)
@click.option(
    "--global-concurrency",
    type=click.IntRange(0, INT32_MAX),
    default=None,
    help="Most jobs of this queue running at once, cluster-wide.",
)
@click.option("--no-global-concurrency", is_flag=True, help="Remove the cluster-wide cap.")
@_loop_option
def queue(
    queue: str,
    url: str,
    pause: bool | None,
    concurrency: int | None,
    retention: float | None,
    global_concurrency: int | None,
    no_global_concurrency: bool,
    loop: str,
) -> None:
    """Show or change a QUEUE's settings (running nodes follow within seconds).

    Showing never creates a store; a change creates it if needed.
    """
    changes: dict[str, Any] = {}
    if pause is not None:
        changes["paused"] = pause
    if concurrency is not None:
        changes["concurrency"] = concurrency
    if retention is not None:
        changes["retention"] = retention
    if global_concurrency is not None and no_global_concurrency:
        raise click.UsageError("give --global-concurrency N or --no-global-concurrency, not both")
    if global_concurrency is not None or no_global_concurrency:
        changes["global_concurrency"] = global_concurrency
    if changes:
        QueueConfig(name=queue, **changes)  # refuse a value no node could honour before connecting

    async def run(transport: Transport) -> None:
        config = await transport.get_queue_config(queue)
        if changes:
            config = QueueConfig(
                name=config.name,
                paused=changes.get("paused", config.paused),
                concurrency=changes.get("concurrency", config.concurrency),
                retention=changes.get("retention", config.retention),
                global_concurrency=changes.get("global_concurrency", config.global_concurrency),
            )
            await transport.set_queue_config(config)
        click.echo(
            f"{config.name}: paused={config.paused} concurrency={config.concurrency} "
            f"retention={config.retention} global_concurrency={config.global_concurrency}"
        )

    _run(loop, lambda: _with_transport(url, run, create=bool(changes)))


@main.command()
@_transport_option("there is nothing to show")
@click.option(
    "--host",
    default="127.0.0.1",
    show_default=True,
    help="Address to listen on (0.0.0.0: every interface; put it behind TLS then).",
)
@click.option(
    "--port", "-p", type=click.IntRange(1, 65535), default=8077, show_default=True, help="Port."
)
@click.option("--read-only", is_flag=True, help="Show everything, change nothing.")
@click.option(
    "--token",
    envvar="ACTORQ_DASHBOARD_TOKEN",
    default=None,
    help="Secret that pages and actions need (env ACTORQ_DASHBOARD_TOKEN; default: a fresh "
    "one, printed at start).",
)
@click.option(
    "--app",
    "app_path",
    default=None,
    envvar="ACTORQ_APP",
    help="module:attribute of your App (env ACTORQ_APP): its cron schedules are shown.",
)
def dashboard(
    url: str, host: str, port: int, read_only: bool, token: str | None, app_path: str | None
) -> None:
    """Serve the web dashboard of the store at -t (never creates a store)."""
    _need_dashboard()
    if token is not None and not token.strip():
        raise CliFailure("--token is empty", "give a secret, or leave it out", USAGE)
    schedules = load_app(app_path).schedules if app_path is not None else []
    _serve_dashboard(url, host, port, read_only=read_only, token=token, schedules=schedules)


def _need_dashboard() -> None:
    """Refuse, in one line, when the ``dashboard`` extra is not installed."""
    try:
        import uvicorn  # noqa: F401

        from ..dashboard import create_dashboard  # noqa: F401
    except ImportError as exc:
        raise CliFailure(
            f"the dashboard needs {exc.name}", "pip install 'actorq[dashboard]'"
        ) from exc


def _serve_dashboard(
    url: str,
    host: str,
    port: int,
    *,
    read_only: bool,
    token: str | None,
    schedules: Sequence[CronSchedule] = (),
) -> None:
    """Serve the dashboard of the store at ``url`` until SIGINT / SIGTERM (then return)."""
    import uvicorn

    from ..dashboard import create_dashboard

    fresh = token is None and not read_only
    if fresh:
        token = secrets.token_urlsafe(18)
    sock = _listen(host, port)

    class Server(uvicorn.Server):
        # SIGINT / SIGTERM are this command's (a graceful stop, exit 0), not uvicorn's.
        @contextlib.contextmanager
        def capture_signals(self) -> Iterator[None]:
            yield

    async def run(transport: Transport) -> None:
        app = create_dashboard(transport, read_only=read_only, token=token, schedules=schedules)
        config = uvicorn.Config(app, log_level="warning", lifespan="on", access_log=False)
        server = Server(config)
        shown = f"[{host}]" if ":" in host else host
        click.echo(f"actorq dashboard of {redact_url(url)} at http://{shown}:{port}/", err=True)
        if fresh:
            click.echo(f"log in with the token {token} (or give --token)", err=True)
        with anyio.open_signal_receiver(signal.SIGINT, signal.SIGTERM) as signals:
            async with anyio.create_task_group() as group:

                async def stop_on_signal() -> None:
                    async for _signum in signals:
                        server.should_exit = True
                        return

                group.start_soon(stop_on_signal)
                await server.serve(sockets=[sock])
                group.cancel_scope.cancel()

    try:
        _run("asyncio", lambda: _with_transport(url, run, create=False))
    finally:
        sock.close()


def _listen(host: str, port: int) -> socket.socket:
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
        family, kind, proto, _name, address = infos[0]
        sock = socket.socket(family, kind, proto)
    except OSError as exc:
        raise CliFailure(
            f"cannot listen on {host}:{port}: {exc.strerror or exc}", "check --host", USAGE
        ) from exc
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(address)
        sock.listen(128)
    except OSError as exc:
        sock.close()
        raise CliFailure(
            f"cannot listen on {host}:{port}: {exc.strerror or exc}",
            "pick another --port, or stop what holds this one",
        ) from exc
    return sock


@main.command()
@_transport_option(None)
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
    type=StoreURL(),
    help="Store URL (default: a fresh SQLite file in a temporary folder).",
)
@click.option(
    "--jobs", type=click.IntRange(min=1), default=2000, show_default=True, help="Quick jobs."
)
@click.option(
    "--concurrency",
    type=click.IntRange(min=1),
    default=8,
    show_default=True,
    help="Workers per queue.",
)
@click.option(
    "--dashboard",
    "serve",
    is_flag=True,
    help="Then serve the demo's store in the web dashboard (read-only) until Ctrl-C.",
)
@click.option(
    "--port",
    "-p",
    type=click.IntRange(1, 65535),
    default=8077,
    show_default=True,
    help="The dashboard's port (with --dashboard).",
)
@_loop_option
def demo(url: str | None, jobs: int, concurrency: int, serve: bool, port: int, loop: str) -> None:
    """Run a realistic mix of jobs on embedded SQLite, with live progress and a summary.

    The demo's failures are deliberate and counted in its summary, so their WARNING logs are
    held back; ``-v`` shows them as a worker would. With ``--dashboard`` the jobs it ran stay
    on view in the web dashboard until Ctrl-C.
    """
    from ._demo import run_demo

    if serve and url is not None and url.startswith("memory:"):
        raise CliFailure(
            "--dashboard cannot show a memory store (it ends with the demo)",
            "leave out -t, or give a SQLite or PostgreSQL URL",
            USAGE,
        )
    if serve:
        _need_dashboard()  # before any job runs
    quiet = not click.get_current_context().meta.get(_VERBOSE, 0)
    with tempfile.TemporaryDirectory(prefix="actorq-demo-") as folder:
        store = url or f"sqlite:///{Path(folder) / 'demo.db'}"
        _run(
            loop,
            lambda: run_demo(store, quick_jobs=jobs, concurrency=concurrency, quiet_failures=quiet),
        )
        if serve:
            _serve_dashboard(store, "127.0.0.1", port, read_only=True, token=None)
        elif url is None:
            click.echo(
                "See these jobs in the web dashboard: actorq demo --dashboard "
                "(make demo ARGS=--dashboard)"
            )
        else:
            click.echo(
                f"See these jobs in the web dashboard: actorq dashboard -t {redact_url(url)}"
            )


for _command in main.commands.values():
    _command.params.append(_verbose_param())
