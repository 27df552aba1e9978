"""Deterministic simulation of a faulty actorq cluster, replayed byte for byte from one seed.

Several nodes, each running the real actors of ``actors.jobs`` (and your handlers and
topology), share one memory store through fault-injecting transports, on a virtual clock that
jumps ahead whenever every task waits. Nodes crash, pause, lose the store or see it fail, and
drift in time; handlers hang. Invariants are checked on every storage call and at the end. The
seed decides everything, so a failing run replays exactly from the command it prints.

Start with :func:`simulate` (one run), :func:`sweep` (many seeds) and, inside your tests,
:func:`simulate_app`.
"""

from ._cli import build_parser, config_from_options, run_cli
from ._clock import NodeClock
from ._cluster import SimNodeContext, TopologyFactory, TransportFactory, default_topology
from ._config import (
    ALL_FAULTS,
    FaultKind,
    FaultRates,
    SimConfig,
    format_duration,
    parse_duration,
    parse_faults,
    parse_rates,
    parse_seeds,
)
from ._faults import Fault, FaultyTransport, NodeLink, WakeHub, plan_faults
from ._invariants import Checker, Health, Violation
from ._report import Distribution, SimReport, SweepRun, SweepSummary
from ._rng import derive_rng
from ._simulate import run_simulation, shrink, simulate, sweep
from ._testing import SimulationFailed, simulate_app, sweep_app
from ._trace import (
    CancelRequested,
    ClockStepped,
    FaultsStopped,
    HandlerHung,
    JobsEnqueued,
    NodeCrashed,
    NodeFailed,
    NodePaused,
    NodeResumed,
    NodeStarted,
    PartitionHealed,
    PartitionStarted,
    SimEvent,
    StorageCallFailed,
    StorageFaultEnded,
    StorageFaultStarted,
    Trace,
    TraceEntry,
    ViolationFound,
    render_entry,
)
from ._workload import JobFactory, SimWorkload, Work, with_hangs

__all__ = [
    "ALL_FAULTS",
    "CancelRequested",
    "Checker",
    "ClockStepped",
    "Distribution",
    "Fault",
    "FaultKind",
    "FaultRates",
    "FaultsStopped",
    "FaultyTransport",
    "HandlerHung",
    "Health",
    "JobFactory",
    "JobsEnqueued",
    "NodeClock",
    "NodeCrashed",
    "NodeFailed",
    "NodeLink",
    "NodePaused",
    "NodeResumed",
    "NodeStarted",
    "PartitionHealed",
    "PartitionStarted",
    "SimConfig",
    "SimEvent",
    "SimNodeContext",
    "SimReport",
    "SimWorkload",
    "SimulationFailed",
    "StorageCallFailed",
    "StorageFaultEnded",
    "StorageFaultStarted",
    "SweepRun",
    "SweepSummary",
    "TopologyFactory",
    "Trace",
    "TraceEntry",
    "TransportFactory",
    "Violation",
    "ViolationFound",
    "WakeHub",
    "Work",
    "build_parser",
    "config_from_options",
    "default_topology",
    "derive_rng",
    "format_duration",
    "parse_duration",
    "parse_faults",
    "parse_rates",
    "parse_seeds",
    "plan_faults",
    "render_entry",
    "run_cli",
    "run_simulation",
    "shrink",
    "simulate",
    "simulate_app",
    "sweep",
    "sweep_app",
    "with_hangs",
]
