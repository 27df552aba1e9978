"""The simulator's parts: fault injection, the invariant checker, trace events, CLI parsing.

Applications use :mod:`actors.sim` (``simulate``, ``simulate_app``, ``sweep``, ``shrink`` and
their configs and reports). These are for building a simulation of your own or reading a trace.
"""

from ._cli import SimHooks, config_from_argv, config_from_options, run_cli, sim_command
from ._clock import NodeClock
from ._config import format_duration, parse_duration, parse_faults, parse_rates, parse_seeds
from ._faults import Fault, FaultyTransport, NodeLink, WakeHub, plan_faults
from ._invariants import RESTART_SLACK, Checker, Health, NodeSlots
from ._rng import derive_rng
from ._simulate import run_simulation
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
    OperatorActed,
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
from ._workload import Stage, WorkflowFactory

__all__ = [
    "RESTART_SLACK",
    "CancelRequested",
    "Checker",
    "ClockStepped",
    "Fault",
    "FaultsStopped",
    "FaultyTransport",
    "HandlerHung",
    "Health",
    "JobsEnqueued",
    "NodeClock",
    "NodeCrashed",
    "NodeFailed",
    "NodeLink",
    "NodePaused",
    "NodeResumed",
    "NodeSlots",
    "NodeStarted",
    "OperatorActed",
    "PartitionHealed",
    "PartitionStarted",
    "SimEvent",
    "SimHooks",
    "Stage",
    "StorageCallFailed",
    "StorageFaultEnded",
    "StorageFaultStarted",
    "Trace",
    "TraceEntry",
    "ViolationFound",
    "WakeHub",
    "WorkflowFactory",
    "config_from_argv",
    "config_from_options",
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
    "sim_command",
]
