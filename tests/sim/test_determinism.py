"""Same seed, same trace, byte for byte: in one process, across processes, on both loops.

asyncio runs ready callbacks first in, first out, so a fixed program replays exactly. trio
shuffles tasks that become runnable together; the simulator seeds that shuffle from the run's
seed (trio's own deterministic mode), so trio runs replay exactly too.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import attrs
import pytest

from actors.sim import FaultRates, SimConfig, simulate

ROOT = Path(__file__).resolve().parents[2]

#: Small but busy: every fault kind strikes several times within ten minutes.
BUSY = SimConfig(
    nodes=3,
    workers=2,
    jobs=120,
    duration=600.0,
    lease_ttl=10.0,
    rates=FaultRates(crash=6, pause=12, storage=12, partition=6, skew=12, hang=0.02),
)

BACKENDS = ["asyncio", "trio"]


@pytest.mark.parametrize("backend", BACKENDS)
def test_two_runs_of_a_seed_give_the_same_trace(backend: str) -> None:
    """Two runs of one config in one process produce identical trace text and hash."""
    config = attrs.evolve(BUSY, seed=11, backend=backend)
    first = simulate(config)
    second = simulate(config)
    assert first.passed, first.render()
    assert first.trace.text() == second.trace.text()
    assert first.trace_hash == second.trace_hash
    # The run really was faulty, or identical traces would prove little.
    assert len(first.faults) >= 4
    assert first.storage_errors > 0
    assert first.finalizes_refused + first.leases_lost + first.reclaims > 0


@pytest.mark.parametrize("backend", BACKENDS)
def test_other_seeds_give_other_traces(backend: str) -> None:
    """Different seeds lead to different runs."""
    configs = [attrs.evolve(BUSY, seed=seed, backend=backend, jobs=30) for seed in (1, 2, 3)]
    hashes = {simulate(config).trace_hash for config in configs}
    assert len(hashes) == 3


_SCRIPT = """
import sys
from actors.sim import SimConfig, FaultRates, simulate
config = SimConfig(seed=5, nodes=3, workers=2, jobs=120, duration=600.0, lease_ttl=10.0,
    rates=FaultRates(crash=6, pause=12, storage=12, partition=6, skew=12, hang=0.02),
    backend=sys.argv[1])
print(simulate(config).trace_hash)
"""


@pytest.mark.parametrize("backend", BACKENDS)
def test_processes_with_different_hash_seeds_agree(backend: str) -> None:
    """Runs in fresh processes with different PYTHONHASHSEED (and addresses) give one hash.

    String hashing and object addresses change between processes; a trace that depended on
    set iteration order or on ids would differ here.
    """
    hashes = set()
    for hash_seed in ("1", "2"):
        env = {**os.environ, "PYTHONHASHSEED": hash_seed}
        result = subprocess.run(
            [sys.executable, "-c", _SCRIPT, backend],
            capture_output=True,
            text=True,
            timeout=100,
            cwd=ROOT,
            env=env,
            check=True,
        )
        hashes.add(result.stdout.strip())
    assert len(hashes) == 1, hashes
    assert len(hashes.pop()) == 64


def test_the_two_loops_schedule_differently() -> None:
    """asyncio and trio schedule differently, so one seed gives each loop its own trace."""
    config = attrs.evolve(BUSY, seed=4, jobs=40)
    on_asyncio = simulate(config)
    on_trio = simulate(attrs.evolve(config, backend="trio"))
    assert on_asyncio.passed
    assert on_trio.passed
    assert on_asyncio.trace_hash != on_trio.trace_hash
