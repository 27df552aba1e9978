"""Benchmark of actors.sim: simulated seconds per wall second of a busy, faulty cluster.

5 nodes x 20 workers, every fault on, one simulated hour (plus the quiet tail), 10,000 jobs;
the goal is under 20 wall seconds on a 2-core machine. Run ``python -m bench sim`` or
``python -c 'import bench._sim as b; b.run(print)'``. Prints; asserts nothing.
"""

from __future__ import annotations

import time
from collections.abc import Callable

import attrs

from actors.sim import SimConfig, simulate

#: The cluster of the goal.
CONFIG = SimConfig(seed=1, nodes=5, workers=20, jobs=10_000, duration=3600.0)
#: Wall seconds the goal allows for CONFIG.
GOAL = 20.0


def run(print_fn: Callable[[str], object] = print) -> None:
    """Simulate CONFIG on each event loop and print the speed."""
    print_fn(f"== sim: {CONFIG.command()} ==")
    print_fn(
        f"{'backend':8} {'sim s':>8} {'wall s':>7} {'cpu s':>7} {'sim s/wall s':>13} {'jobs':>6}"
        f" {'claims':>7} {'refused':>8} {'faults':>7} {'trace':>7}  goal < {GOAL:g} wall s"
    )
    for backend in ("asyncio", "trio"):
        cpu = time.process_time()
        report = simulate(attrs.evolve(CONFIG, backend=backend))
        cpu = time.process_time() - cpu
        verdict = "met" if report.wall_seconds < GOAL else "missed"
        if report.violation is not None:
            verdict += f" (VIOLATION of {report.violation.invariant})"
        print_fn(
            f"{backend:8} {report.sim_seconds:>8.0f} {report.wall_seconds:>7.1f} {cpu:>7.1f}"
            f" {report.speed:>13.1f} {report.jobs:>6} {report.claims:>7}"
            f" {report.finalizes_refused:>8} {sum(report.faults.values()):>7} {len(report.trace):>7}"
            f"  {verdict}"
        )


if __name__ == "__main__":
    run(print)
