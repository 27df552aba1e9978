"""``actorq sim``: options to :class:`SimConfig`, and a runner the ``actorq`` command calls.

``run_cli(argv)`` parses the options with argparse and runs one seed, a sweep (``--seeds``) or
a shrink (``--shrink``); the ``actorq`` command can hand it its arguments as they are.
``config_from_options`` is the piece to reuse from another option parser.
"""

from __future__ import annotations

import argparse
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path

from actors.jobs import App

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
from ._simulate import shrink, simulate, sweep
from ._workload import JobFactory

__all__ = ["build_parser", "config_from_options", "run_cli"]

_DEFAULT = SimConfig()


def _keep(text: str) -> tuple[int, ...]:
    if text.strip().lower() in ("none", ""):
        return ()
    return tuple(int(part) for part in text.split(",") if part.strip())


def build_parser(prog: str = "actorq sim") -> argparse.ArgumentParser:
    """The ``actorq sim`` option parser (every option has the SimConfig default)."""
    parser = argparse.ArgumentParser(
        prog=prog,
        description="Simulate a faulty actorq cluster on virtual time; replay any run from its seed.",
    )
    add = parser.add_argument
    add("--seed", type=int, default=_DEFAULT.seed, help="the seed that decides everything")
    add("--seeds", type=parse_seeds, help="sweep these seeds instead: 1..1000 or 1,5,9..12")
    add("--nodes", type=int, default=_DEFAULT.nodes, help="simulated nodes")
    add("--workers", type=int, default=_DEFAULT.workers, help="workers per node and queue")
    add("--jobs", type=int, default=_DEFAULT.jobs, help="jobs the producer enqueues")
    add(
        "--duration",
        type=parse_duration,
        default=_DEFAULT.duration,
        help=f"the faulty phase: 90s, 15m, 6h (default {format_duration(_DEFAULT.duration)})",
    )
    add(
        "--faults",
        type=parse_faults,
        default=_DEFAULT.faults,
        help="crash,pause,storage,partition,skew,hang, all or none (default all)",
    )
    add("--rates", help="fault rates per node per hour (hang: per run), e.g. crash=2,pause=0.5")
    add("--lease-ttl", type=parse_duration, default=_DEFAULT.lease_ttl, help="worker lease TTL")
    add(
        "--reaper-interval",
        type=parse_duration,
        default=_DEFAULT.reaper_interval,
        help="seconds between reaps",
    )
    add(
        "--poll-interval",
        type=parse_duration,
        default=_DEFAULT.poll_interval,
        help="idle workers' longest wait between claims",
    )
    add("--tail", type=parse_duration, default=_DEFAULT.tail, help="longest quiet tail")
    add("--cron", default=_DEFAULT.cron, help="cron expression of the built-in schedule, or none")
    add("--backend", choices=("asyncio", "trio"), default=_DEFAULT.backend, help="event loop")
    add("--keep-faults", type=_keep, help="run only these faults of the plan: 3,7,12 or none")
    add("--shrink", action="store_true", help="on a violation, shrink the fault plan")
    add("--stop-at-first", action="store_true", help="stop a sweep at its first violation")
    add("--trace", type=Path, help="write the canonical trace of a single run to this file")
    return parser


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
        backend=backend,
        keep_faults=keep_faults,
    )


def run_cli(
    argv: Sequence[str] | None = None,
    *,
    print_fn: Callable[[str], object] = print,
    app: App | None = None,
    make_job: JobFactory | None = None,
    topology_factory: TopologyFactory | None = None,
    transport_factory: TransportFactory | None = None,
) -> int:
    """Run ``actorq sim`` with ``argv`` (the options after ``sim``); returns the exit status.

    0 when every run passed, 1 when an invariant broke, 2 for bad options. The keyword
    arguments are those of :func:`simulate`: give ``app`` and ``make_job`` to build an
    ``actorq sim`` for your own App.
    """
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as exit:  # argparse reports bad options (and --help) by exiting
        return exit.code if isinstance(exit.code, int) else 2
    try:
        config = config_from_options(
            seed=args.seed,
            nodes=args.nodes,
            workers=args.workers,
            jobs=args.jobs,
            duration=args.duration,
            faults=args.faults,
            rates=args.rates,
            lease_ttl=args.lease_ttl,
            reaper_interval=args.reaper_interval,
            poll_interval=args.poll_interval,
            tail=args.tail,
            cron=args.cron,
            backend=args.backend,
            keep_faults=args.keep_faults,
        )
    except ValueError as exc:
        print_fn(f"actorq sim: {exc}")
        return 2
    if args.seeds is not None:

        def progress(report: SimReport) -> None:
            if report.violation is not None:
                print_fn(report.violation.render())

        summary = sweep(
            config,
            args.seeds,
            app=app,
            make_job=make_job,
            topology_factory=topology_factory,
            transport_factory=transport_factory,
            stop_at_first=args.stop_at_first,
            on_report=progress,
        )
        print_fn(summary.render())
        return 0 if summary.passed else 1
    report = simulate(
        config,
        app=app,
        make_job=make_job,
        topology_factory=topology_factory,
        transport_factory=transport_factory,
    )
    if args.trace is not None:
        args.trace.write_text(report.trace.text())
    print_fn(report.render())
    if report.passed:
        return 0
    if args.shrink:
        smaller, shrunk = shrink(
            config,
            app=app,
            make_job=make_job,
            topology_factory=topology_factory,
            transport_factory=transport_factory,
        )
        kept = smaller.keep_faults or ()
        print_fn(f"shrunk to {len(kept)} fault(s): {smaller.command()}")
        for fault in plan_faults(smaller):
            if fault.index in kept:
                print_fn(f"  {fault.describe()}")
        if shrunk.violation is not None:
            print_fn(shrunk.violation.render())
    return 1
