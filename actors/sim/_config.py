"""What a simulation runs: the cluster, the workload, the faults, and the seed that decides all.

A :class:`SimConfig` is plain data. Together with the code of the App under test it determines
the run completely: the same config gives the same trace, byte for byte. ``to_argv()`` turns it
back into ``actorq sim`` options, which is how a failing run prints the command replaying it.
"""

from __future__ import annotations

import enum
import math
import shlex
from collections.abc import Iterable
from typing import Any

import attrs

from ..cli._types import format_duration, parse_duration

__all__ = [
    "ALL_FAULTS",
    "FaultKind",
    "FaultRates",
    "SimConfig",
    "format_duration",
    "parse_duration",
    "parse_faults",
    "parse_rates",
    "parse_seeds",
]


class FaultKind(enum.StrEnum):
    """The faults the simulator injects; each can be turned on or off and given a rate."""

    CRASH = "crash"  # a node dies without cleanup, and restarts later as a new incarnation
    PAUSE = "pause"  # a node stops the world for longer than its leases, then resumes
    STORAGE = "storage"  # a node's storage calls fail (ConnectionLost) or are slow for a while
    PARTITION = "partition"  # a node loses the store for a while
    SKEW = "skew"  # a node's clock steps away from the store's
    HANG = "hang"  # a handler run hangs until cancelled (only tasks with a timeout)


#: Every fault kind, the default.
ALL_FAULTS: frozenset[FaultKind] = frozenset(FaultKind)


def _non_negative(_inst: object, attr: attrs.Attribute[float], value: float) -> None:
    if not (value >= 0 and math.isfinite(value)):
        raise ValueError(f"{attr.name} must be a finite number >= 0, got {value}")


def _positive(_inst: object, attr: attrs.Attribute[float], value: float) -> None:
    if not (value > 0 and math.isfinite(value)):
        raise ValueError(f"{attr.name} must be a finite number > 0, got {value}")


def _at_least_one(_inst: object, attr: attrs.Attribute[int], value: int) -> None:
    if value < 1:
        raise ValueError(f"{attr.name} must be >= 1, got {value}")


@attrs.frozen(kw_only=True)
class FaultRates:
    """How often each fault strikes, when it is turned on.

    Node faults are counted per node per simulated hour (a Poisson process per node and kind);
    ``hang`` is the probability that one handler run hangs.
    """

    crash: float = attrs.field(default=2.0, validator=_non_negative)
    pause: float = attrs.field(default=2.0, validator=_non_negative)
    storage: float = attrs.field(default=4.0, validator=_non_negative)
    partition: float = attrs.field(default=1.0, validator=_non_negative)
    skew: float = attrs.field(default=2.0, validator=_non_negative)
    hang: float = attrs.field(default=0.005, validator=_non_negative)

    def of(self, kind: FaultKind) -> float:
        """The rate of ``kind``."""
        rate: float = getattr(self, kind.value)
        return rate


def _backend(_inst: object, _attr: object, value: str) -> None:
    if value not in ("asyncio", "trio"):
        raise ValueError(f"backend must be 'asyncio' or 'trio', got {value!r}")


def _faults(value: Iterable[FaultKind | str]) -> frozenset[FaultKind]:
    return frozenset(FaultKind(v) for v in value)


def _keep(value: Iterable[int] | None) -> tuple[int, ...] | None:
    return None if value is None else tuple(sorted(set(value)))


def _key_rate_field(value: Any) -> tuple[int, float] | None:
    return _key_rate(value)


def _key_rate(value: tuple[int, float] | str | None) -> tuple[int, float] | None:
    if value is None:
        return None
    if isinstance(value, str):
        return parse_key_rate(value)
    rate, per = value
    if isinstance(rate, bool) or not isinstance(rate, int) or rate < 1:
        raise ValueError(f"a key rate needs at least 1 start, got {rate!r}")
    if not (isinstance(per, int | float) and math.isfinite(per) and per > 0):
        raise ValueError(f"a key rate needs a window above 0 seconds, got {per!r}")
    return rate, float(per)


@attrs.frozen(kw_only=True)
class SimConfig:
    """One simulated run: a cluster of nodes over one store, a workload, faults, a seed.

    The run has two phases. For ``duration`` seconds the producer enqueues ``jobs`` jobs and
    faults strike; then faults stop (crashed nodes restart, pauses, partitions and storage
    faults end) and a quiet tail runs until every job enqueued before it is final, for at most
    ``tail`` seconds. Times are virtual seconds.
    """

    seed: int = 0  # decides everything else: workload, handler behaviour, faults, scheduling
    nodes: int = attrs.field(default=3, validator=_at_least_one)
    workers: int = attrs.field(default=4, validator=_at_least_one)  # per node and queue
    jobs: int = attrs.field(default=200, validator=attrs.validators.ge(0))
    duration: float = attrs.field(default=600.0, validator=_positive)  # the faulty phase
    faults: frozenset[FaultKind] = attrs.field(default=ALL_FAULTS, converter=_faults)
    rates: FaultRates = FaultRates()
    lease_ttl: float = attrs.field(default=30.0, validator=_positive)  # the Workers' leases
    reaper_interval: float = attrs.field(default=1.0, validator=_positive)
    poll_interval: float = attrs.field(default=10.0, validator=_positive)  # Workers' idle poll
    tail: float = attrs.field(default=3600.0, validator=_positive)  # longest quiet tail
    cron: str | None = "* * * * *"  # the built-in workload's cron schedule; None: no cron
    # the built-in workload's jobs take one of KEYS concurrency keys, each limited to this
    # many live leases cluster-wide; None: no keys, no limits
    key_limit: int | None = attrs.field(
        default=None, validator=attrs.validators.optional(attrs.validators.ge(0))
    )
    # the built-in workload's keys also start at most (rate, per): rate starts in any window
    # of per seconds each, cluster-wide (``--key-rate 5/1m``); None: no rate
    key_rate: tuple[int, float] | None = attrs.field(default=None, converter=_key_rate_field)
    # an operator also retries dead jobs, discards scheduled ones and cancels available ones,
    # by filter, while faults strike (as ``actorq jobs retry --state dead`` would)
    operators: bool = False
    # the built-in workload's handlers run as durable steps (ctx.step), some wait for a signal
    # the producer sends (ctx.wait_for); the report counts the steps run again
    steps: bool = False
    # the built-in producer enqueues workflows instead of single jobs: chains and fan-out
    # groups with a fan-in callback (``after=``), some of whose jobs fail so their dependents'
    # ``on_failure`` decides; each job runs durable steps. ``jobs`` still counts jobs: about a
    # quarter as many workflows are enqueued
    workflows: bool = False
    # the built-in workload's jobs belong to fair-share partitions: one big tenant with most of
    # the jobs, a few small ones; the report measures each one's wait (``fair_share_held``)
    partitions: bool = False
    backend: str = attrs.field(default="asyncio", validator=_backend)
    keep_faults: tuple[int, ...] | None = attrs.field(default=None, converter=_keep)
    trace_tail: int = attrs.field(default=30, validator=attrs.validators.ge(0))

    def with_seed(self, seed: int) -> SimConfig:
        """This config with another seed."""
        return attrs.evolve(self, seed=seed)

    def to_argv(self) -> list[str]:
        """The ``actorq sim`` options that rebuild this config (defaults left out)."""
        default = SimConfig()
        argv = [
            "--seed", str(self.seed),
            "--nodes", str(self.nodes),
            "--workers", str(self.workers),
            "--jobs", str(self.jobs),
            "--duration", format_duration(self.duration),
            "--faults", ",".join(sorted(self.faults)) if self.faults else "none",
        ]  # fmt: skip
        if self.rates != default.rates:
            argv += ["--rates", _format_rates(self.rates)]
        for option, value in (
            ("--lease-ttl", self.lease_ttl),
            ("--reaper-interval", self.reaper_interval),
            ("--poll-interval", self.poll_interval),
            ("--tail", self.tail),
        ):
            if value != getattr(default, option[2:].replace("-", "_")):
                argv += [option, format_duration(value)]
        if self.cron != default.cron:
            argv += ["--cron", self.cron or "none"]
        if self.key_limit is not None:
            argv += ["--key-limit", str(self.key_limit)]
        if self.key_rate is not None:
            argv += ["--key-rate", format_key_rate(self.key_rate)]
        if self.operators:
            argv.append("--operators")
        if self.steps:
            argv.append("--steps")
        if self.workflows:
            argv.append("--workflows")
        if self.partitions:
            argv.append("--partitions")
        if self.backend != default.backend:
            argv += ["--backend", self.backend]
        if self.keep_faults is not None:
            argv += ["--keep-faults", ",".join(map(str, self.keep_faults)) or "none"]
        return argv

    def command(self) -> str:
        """The shell command replaying this run: ``actorq sim --seed N ...``."""
        return shlex.join(["actorq", "sim", *self.to_argv()])

    def call(self, function: str = "simulate_app(app, make_job") -> str:
        """The Python call replaying this run with your own App: ``simulate_app(..., seed=N)``."""
        argv = self.to_argv()
        args = []
        while argv:
            name = argv.pop(0)[2:].replace("-", "_")
            if not argv or argv[0].startswith("--"):  # a flag (--operators, --steps, --workflows)
                args.append(f"{name}=True")
                continue
            value = argv.pop(0)
            args.append(f"{name}={value}" if value.lstrip("-").isdigit() else f"{name}={value!r}")
        return f"{function}, {', '.join(args)})"


def parse_key_rate(text: str) -> tuple[int, float]:
    """``"5/1m"``: at most 5 starts per key in any minute.

    Raises:
        ValueError: the text is not ``N/DURATION`` with N >= 1 and a duration above 0.
    """
    count, sep, window = text.partition("/")
    if not sep or not count.strip().isdigit():
        raise ValueError(f"a key rate is N/DURATION, like 5/1m; got {text!r}")
    return _key_rate((int(count), parse_duration(window.strip())))  # type: ignore[return-value]


def format_key_rate(rate: tuple[int, float]) -> str:
    """The ``--key-rate`` text of a rate: ``5/1m``."""
    return f"{rate[0]}/{format_duration(rate[1])}"


def parse_seeds(text: str) -> list[int]:
    """The seeds in ``"7"``, ``"1..1000"`` (inclusive) or ``"1,5,9..12"``, in order.

    Raises:
        ValueError: the text is not a seed list, or a range runs backwards.
    """
    seeds: list[int] = []
    for part in text.replace(" ", "").split(","):
        if not part:
            continue
        low, dots, high = part.partition("..")
        try:
            first = int(low)
            last = int(high) if dots else first
        except ValueError:
            raise ValueError(f"invalid seeds {text!r}: use e.g. 7, 1..1000 or 1,5,9..12") from None
        if last < first:
            raise ValueError(f"invalid seed range {part!r}: it runs backwards")
        seeds.extend(range(first, last + 1))
    if not seeds:
        raise ValueError(f"no seeds in {text!r}")
    return seeds


def parse_faults(text: str) -> frozenset[FaultKind]:
    """The fault kinds in ``"crash,pause,storage,partition,skew,hang"``, ``"all"`` or ``"none"``.

    Raises:
        ValueError: an unknown fault kind.
    """
    names = [n for n in text.replace(" ", "").lower().split(",") if n]
    if names == ["all"]:
        return ALL_FAULTS
    if not names or names == ["none"]:
        return frozenset()
    try:
        return frozenset(FaultKind(n) for n in names)
    except ValueError:
        known = ", ".join(k.value for k in FaultKind)
        raise ValueError(f"unknown fault in {text!r}: choose from {known}, all, none") from None


def parse_rates(text: str, base: FaultRates | None = None) -> FaultRates:
    """Fault rates from ``"crash=2,pause=0.5,hang=0.01"`` (others keep ``base``'s values).

    Raises:
        ValueError: an unknown fault kind or a bad number.
    """
    changes: dict[str, float] = {}
    for part in text.replace(" ", "").split(","):
        if not part:
            continue
        name, eq, value = part.partition("=")
        if not eq or name not in FaultKind._value2member_map_:
            raise ValueError(f"invalid rate {part!r}: use KIND=NUMBER, e.g. crash=2")
        changes[name] = float(value)
    return attrs.evolve(base or FaultRates(), **changes)


def _format_rates(rates: FaultRates) -> str:
    return ",".join(f"{kind.value}={rates.of(kind)!r}" for kind in FaultKind)
