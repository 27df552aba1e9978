"""Deterministic simulation of a faulty actorq cluster, replayed byte for byte from one seed.

Several nodes, each a real ``actors.jobs`` Topology (LeaseKeepers, queue Supervisors, Claimers, Workers,
Reaper, Cron, Cleanup, and your own actors) in its own actor system, share one memory store
through fault-injecting transports, on one virtual clock that jumps to the next timer whenever
every task waits: simulated hours take seconds. Nodes crash without cleanup and come back as
new incarnations, pause for longer than their leases, lose the store, see it fail or crawl,
and drift in time; handlers hang. Invariants (see ``_invariants``) are checked on every
storage call and at the end. The seed decides everything, so a failing run prints the command
that replays it exactly.

Three ways in:

* the command: ``actorq sim --seed 7 --nodes 5 --workers 20 --jobs 10000 --duration 6h
  --faults crash,pause,storage,partition,skew``, or ``--seeds 1..1000`` to sweep
  (:func:`actors.sim.lowlevel.run_cli` implements it);
* the library: ``simulate(SimConfig(...))`` returns a :class:`SimReport`, ``sweep(config,
  seeds)`` a :class:`SweepSummary`, ``shrink(config)`` a smaller failing fault plan; both
  reports ``render()`` as text;
* your tests: ``simulate_app(app, make_job, seed=..., **options)`` runs your App (and your
  topology, via ``topology_factory``) and raises :class:`SimulationFailed`; see
  ``examples/simulate_my_app.py``.

Determinism holds on asyncio and on trio. asyncio runs ready callbacks in order, so a fixed
program replays; the simulator hands out wake-ups itself, in arrival order, and keeps object
ids and set order out of every decision. trio shuffles tasks that become runnable together:
:func:`simulate` seeds that shuffle from the run's seed for the length of the run (trio's own
deterministic mode). Traces differ between the two loops; each replays exactly.
"""

from ._cluster import SimNodeContext, TopologyFactory, TransportFactory, default_topology
from ._config import ALL_FAULTS, FaultKind, FaultRates, SimConfig
from ._invariants import Violation
from ._report import Distribution, SimReport, SweepRun, SweepSummary
from ._simulate import shrink, simulate, sweep
from ._testing import SimulationFailed, simulate_app, sweep_app
from ._workload import JobFactory, SimWorkload, Work, with_hangs

__all__ = [
    "ALL_FAULTS",
    "Distribution",
    "FaultKind",
    "FaultRates",
    "JobFactory",
    "SimConfig",
    "SimNodeContext",
    "SimReport",
    "SimWorkload",
    "SimulationFailed",
    "SweepRun",
    "SweepSummary",
    "TopologyFactory",
    "TransportFactory",
    "Violation",
    "Work",
    "default_topology",
    "shrink",
    "simulate",
    "simulate_app",
    "sweep",
    "sweep_app",
    "with_hangs",
]
