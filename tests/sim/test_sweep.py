"""The CI sweep: 200 seeds of a small, heavily faulted cluster all keep every invariant.

Split in twenty blocks of 10 seeds so each test stays well inside the per-test timeout on a
slow machine, and the parallel pass of ``make test`` can spread them over its workers. Every fifth seed runs the
workflow workload (``--workflows``: chains and fan-out groups with a fan-in, some parents
failing) instead of single jobs, and as many give the jobs fair-share partitions
(``--partitions``). Each block prints its summary (run pytest with -s to see
it): seeds passed, the recovery-bound distribution, executions refused by fencing, and the
simulator's speed.
"""

from __future__ import annotations

import attrs
import pytest

from actors.sim import FaultRates, SimConfig, SimReport, sweep

# Run without line tracing: the 200 seeds prove invariants, not lines (the runtime's lines are
# covered by its own tests), and under coverage a block takes about four times as long.
pytestmark = pytest.mark.no_cover

#: 3 nodes x 2 workers, 150 jobs in 400 simulated seconds (40 lease TTLs), every fault at
#: several times its default rate: per seed, about as many faults as 10 minutes at two thirds
#: of these rates, in two thirds of the simulator's time.
SMALL = SimConfig(
    nodes=3,
    workers=2,
    jobs=150,
    duration=400.0,
    lease_ttl=10.0,
    rates=FaultRates(crash=7.5, pause=30, storage=15, partition=15, skew=15, hang=0.02),
)


BLOCK = 10
#: Seeds divisible by this run workflows; those one above a multiple of it give the jobs
#: fair-share partitions (``fair_share_held``). Key limits and rates have sweeps of their own
#: in test_teeth.py.
WORKFLOW_EVERY = 5


def _config(seed: int) -> SimConfig:
    kind = seed % WORKFLOW_EVERY
    return attrs.evolve(SMALL, seed=seed, workflows=kind == 0, partitions=kind == 1)


@pytest.mark.parametrize(
    "block", range(200 // BLOCK), ids=lambda b: f"seeds-{BLOCK * b + 1}-{BLOCK * b + BLOCK}"
)
def test_sweep_keeps_every_invariant(block: int) -> None:
    """Every seed of the block passes every invariant, on a run that really was faulty."""
    failures: list[SimReport] = []
    faulty = 0

    def check(report: SimReport) -> None:
        nonlocal faulty
        if report.violation is not None:
            failures.append(report)
        faulty += bool(report.faults) and report.storage_errors > 0

    seeds = range(BLOCK * block + 1, BLOCK * block + BLOCK + 1)
    configs = [_config(s) for s in seeds]
    summary = sweep(configs, on_report=check)
    print(summary.render())
    assert not failures, failures[0].render()
    assert summary.passed
    assert len(summary.runs) == BLOCK
    assert faulty >= BLOCK * 9 // 10
    assert summary.recovery.count > 0
    assert summary.finalizes_refused > 0
