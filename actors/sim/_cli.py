"""``actorq sim``: a click command from options to :class:`SimConfig`, and a runner around it.

:data:`sim_command` is the command the ``actorq`` group mounts as ``actorq sim``: it runs one
seed, a sweep (``--seeds``) or a shrink (``--shrink``) and returns the exit status (0 every
run passed, 1 an invariant broke; a bad option is a click usage error, status 2).
:func:`run_cli` runs it on a list of arguments, with your own App if you like;
:func:`config_from_options` turns option values (text or parsed) into a :class:`SimConfig`
and :func:`config_from_argv` does so for an argument list, such as a printed replay command.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import Any, TypeVar

import attrs
import click

from actors.jobs import App

from ..cli._types import Duration
from ._cluster import TopologyFactory, TransportFactory
from ._config import (
    FaultKind,
    FaultRates,
    SimConfig,
    format_duration,
    parse_duration,
    parse_faults,
    parse_rates,
    parse_seeds,
)
from ._faults import plan_faults
from ._report import SimReport
from ._simulate import shrink as shrink_plan
from ._simulate import simulate, sweep
from ._workload import JobFactory

__all__ = [
    "SimHooks",
    "config_from_argv",
    "config_from_options",
    "run_cli",
    "sim_command",
]

_DEFAULT = SimConfig()


class _Parsed(click.ParamType[Any]):
    """A click type from a parse function that raises ValueError."""

    def __init__(self, name: str, parse: Callable[[str], Any]) -> None:
        self.name = name
        self.parse = parse

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> Any:
        if not isinstance(value, str):
            return value
        try:
            return self.parse(value)
        except ValueError as exc:
            self.fail(str(exc), param, ctx)


def _keep(text: str) -> tuple[int, ...]:
    if text.strip().lower() in ("none", ""):
        return ()
    try:
        return tuple(int(part) for part in text.split(",") if part.strip())
    except ValueError:
        raise ValueError(f"invalid fault list {text!r}: use e.g. 3,7,12 or none") from None


@attrs.frozen(kw_only=True)
class SimHooks:
    """What :func:`run_cli` hands the command (as ``ctx.obj``): output and the App to run."""

    print_fn: Callable[[str], object] = click.echo
    app: App | None = None
    make_job: JobFactory | None = None
    topology_factory: TopologyFactory | None = None
    transport_factory: TransportFactory | None = None


_RUN_OPTIONS = ("seeds", "shrink", "stop_at_first", "trace")

_F = TypeVar("_F", bound=Callable[..., Any])


def _defaulted(
    name: str, kind: click.ParamType[Any], default: Any, text: str
) -> Callable[[_F], _F]:
    """An option with a default that ``--help`` shows."""
    return click.option(name, type=kind, default=default, show_default=True, help=text)


def _duration(name: str, default: float, text: str) -> Callable[[_F], _F]:
    """A duration option (90s, 15m, 6h) defaulting to ``default`` seconds."""
    return _defaulted(name, Duration(), format_duration(default), text)


@click.command(
    "sim",
    context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100},
)
@click.option("--seed", type=int, default=_DEFAULT.seed, show_default=True, help="The seed.")
@click.option(
    "--seeds",
    type=_Parsed("seeds", parse_seeds),
    default=None,
    help="Sweep these seeds instead: 1..1000 or 1,5,9..12.",
)
@_defaulted("--nodes", click.IntRange(min=1), _DEFAULT.nodes, "Nodes of the cluster.")
@_defaulted("--workers", click.IntRange(min=1), _DEFAULT.workers, "Workers per node and queue.")
@_defaulted("--jobs", click.IntRange(min=0), _DEFAULT.jobs, "Jobs the producer enqueues.")
@_duration("--duration", _DEFAULT.duration, "The faulty phase: 90s, 15m, 6h.")
@_defaulted(
    "--faults",
    _Parsed("faults", parse_faults),
    "all",
    "crash,pause,storage,partition,skew,hang, all or none.",
)
@click.option(
    "--rates",
    type=_Parsed("rates", parse_rates),
    default=None,
    help="Fault rates per node per hour (hang: per run), e.g. crash=2,pause=0.5.",
)
@_duration("--lease-ttl", _DEFAULT.lease_ttl, "The Workers' lease TTL.")
@_duration("--reaper-interval", _DEFAULT.reaper_interval, "Time between reaps.")
@_duration("--poll-interval", _DEFAULT.poll_interval, "Idle workers' longest wait between claims.")
@_duration("--tail", _DEFAULT.tail, "Longest quiet tail.")
@_defaulted(
    "--cron", click.STRING, _DEFAULT.cron, "Cron expression of the built-in schedule, or none."
)
@click.option(
    "--key-limit",
    type=click.IntRange(min=0),
    default=None,
    help="Give the built-in jobs concurrency keys, each limited to this many running.",
)
@click.option(
    "--key-rate",
    type=click.STRING,
    default=None,
    help="Give the built-in jobs concurrency keys, each starting at most N per window (5/1m).",
)
@click.option(
    "--operators",
    is_flag=True,
    help="An operator retries dead, discards scheduled and cancels available jobs meanwhile.",
)
@click.option(
    "--steps",
    is_flag=True,
    help="The built-in jobs run as durable steps, some waiting for a signal.",
)
@click.option(
    "--workflows",
    is_flag=True,
    help="The producer enqueues workflows: chains and fan-out groups with a fan-in callback.",
)
@click.option(
    "--partitions",
    is_flag=True,
    help="The built-in jobs belong to tenants (fair-share partitions): one big, a few small.",
)
@_defaulted("--backend", click.Choice(["asyncio", "trio"]), _DEFAULT.backend, "Event loop.")
@click.option(
    "--keep-faults",
    type=_Parsed("faults", _keep),
    default=None,
    help="Run only these faults of the plan: 3,7,12 or none.",
)
@click.option("--shrink", is_flag=True, help="On a violation, shrink the fault plan.")
@click.option("--stop-at-first", is_flag=True, help="Stop a sweep at its first violation.")
@click.option(
    "--trace",
    type=click.Path(dir_okay=False, writable=True, path_type=Path),
    default=None,
    help="Write the canonical trace of a single run to this file.",
)
@click.pass_context
def sim_command(ctx: click.Context, /, **options: Any) -> int:
    """Simulate a faulty actorq cluster on virtual time; replay any run from its seed.

    For example: ``actorq sim --seed 7 --nodes 5 --workers 20 --jobs 10000 --duration 6h
    --faults crash,pause,storage,partition,skew``, or ``--seeds 1..1000`` to sweep. Exits 0
    when every run passed, 1 when an invariant broke.
    """
    hooks = ctx.obj if isinstance(ctx.obj, SimHooks) else SimHooks()
    run = {name: options.pop(name) for name in _RUN_OPTIONS}
    try:
        config = config_from_options(**options)
    except ValueError as exc:
        raise click.UsageError(str(exc), ctx) from exc
    return _run(config, hooks, **run)


def _run(
    config: SimConfig,
    hooks: SimHooks,
    *,
    seeds: list[int] | None,
    shrink: bool,
    stop_at_first: bool,
    trace: Path | None,
) -> int:
    say = hooks.print_fn
    factories: dict[str, Any] = {
        "app": hooks.app,
        "make_job": hooks.make_job,
        "topology_factory": hooks.topology_factory,
        "transport_factory": hooks.transport_factory,
    }
    if seeds is not None:

        def progress(report: SimReport) -> None:
            if report.violation is not None:
                say(report.violation.render())

        summary = sweep(config, seeds, stop_at_first=stop_at_first, on_report=progress, **factories)
        say(summary.render())
        return 0 if summary.passed else 1
    report = simulate(config, **factories)
    if trace is not None:
        trace.write_text(report.trace.text())
    say(report.render())
    if report.passed:
        return 0
    if shrink:
        _shrink(config, say, factories)
    return 1


def _shrink(config: SimConfig, say: Callable[[str], object], factories: dict[str, Any]) -> None:
    smaller, shrunk = shrink_plan(config, **factories)
    kept = smaller.keep_faults or ()
    say(f"shrunk to {len(kept)} fault(s): {smaller.command()}")
    for fault in plan_faults(smaller):
        if fault.index in kept:
            say(f"  {fault.describe()}")
    if shrunk.violation is not None:
        say(shrunk.violation.render())


def config_from_options(
    *,
    seed: int = _DEFAULT.seed,
    nodes: int = _DEFAULT.nodes,
    workers: int = _DEFAULT.workers,
    jobs: int = _DEFAULT.jobs,
    duration: float | str = _DEFAULT.duration,
    faults: str | Iterable[FaultKind | str] = _DEFAULT.faults,
    rates: FaultRates | str | None = None,
    lease_ttl: float | str = _DEFAULT.lease_ttl,
    reaper_interval: float | str = _DEFAULT.reaper_interval,
    poll_interval: float | str = _DEFAULT.poll_interval,
    tail: float | str = _DEFAULT.tail,
    cron: str | None = _DEFAULT.cron,
    key_limit: int | None = None,
    key_rate: str | tuple[int, float] | None = None,
    operators: bool = False,
    steps: bool = False,
    workflows: bool = False,
    partitions: bool = False,
    backend: str = _DEFAULT.backend,
    keep_faults: Sequence[int] | str | None = None,
) -> SimConfig:
    """A SimConfig from option values, as text (``"6h"``, ``"crash,pause"``) or parsed.

    Raises:
        ValueError: a value does not parse or is out of range.
    """

    def seconds(value: float | str) -> float:
        return parse_duration(value) if isinstance(value, str) else float(value)

    if isinstance(faults, str):
        faults = parse_faults(faults)
    if isinstance(rates, str):
        rates = parse_rates(rates)
    if isinstance(keep_faults, str):
        keep_faults = _keep(keep_faults)
    if cron is not None and cron.strip().lower() == "none":
        cron = None
    return SimConfig(
        seed=seed,
        nodes=nodes,
        workers=workers,
        jobs=jobs,
        duration=seconds(duration),
        faults=faults,
        rates=rates or FaultRates(),
        lease_ttl=seconds(lease_ttl),
        reaper_interval=seconds(reaper_interval),
        poll_interval=seconds(poll_interval),
        tail=seconds(tail),
        cron=cron,
        key_limit=key_limit,
        key_rate=key_rate,
        operators=operators,
        steps=steps,
        workflows=workflows,
        partitions=partitions,
        backend=backend,
        keep_faults=keep_faults,
    )


def config_from_argv(argv: Sequence[str]) -> SimConfig:
    """The SimConfig that ``actorq sim`` builds from ``argv`` (the options after ``sim``).

    Raises:
        click.UsageError: an option is unknown or its value does not parse.
        ValueError: the values do not make a config.
    """
    ctx = sim_command.make_context("actorq sim", list(argv))
    options = {k: v for k, v in ctx.params.items() if k not in _RUN_OPTIONS}
    return config_from_options(**options)


def run_cli(
    argv: Sequence[str] | None = None,
    *,
    print_fn: Callable[[str], object] = click.echo,
    app: App | None = None,
    make_job: JobFactory | None = None,
    topology_factory: TopologyFactory | None = None,
    transport_factory: TransportFactory | None = None,
) -> int:
    """Run ``actorq sim`` with ``argv`` (the options after ``sim``); returns the exit status.

    0 when every run passed, 1 when an invariant broke, 2 for bad options (reported through
    ``print_fn`` in one line). The keyword arguments are those of :func:`simulate`: give
    ``app`` and ``make_job`` to build an ``actorq sim`` for your own App.
    """
    hooks = SimHooks(
        print_fn=print_fn,
        app=app,
        make_job=make_job,
        topology_factory=topology_factory,
        transport_factory=transport_factory,
    )
    try:
        status = sim_command.main(
            list(argv or ()), prog_name="actorq sim", standalone_mode=False, obj=hooks
        )
    except click.ClickException as exc:
        print_fn(f"actorq sim: error: {exc.format_message()}")
        return exc.exit_code
    return status if isinstance(status, int) else 0
