"""The suite has teeth: against every deliberately broken transport it finds a counterexample.

Each test runs a property suite against one mutant from ``mutants.py`` with shrinking off (the
first counterexample is the finding) and a budget of examples. Passing on a broken transport
fails the test. How many examples each mutant took, and which property caught it, is printed in
the run's summary (and recorded for the note on issue 5).
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import anyio
import pytest
from hypothesis import Phase, given, settings
from hypothesis.stateful import run_state_machine_as_test

from transports import MemoryTransport, SQLiteTransport

from .conftest import FINDINGS, examples
from .harness import Harness, MemoryBackend, SQLiteBackend
from .interleavings import run_schedules
from .machine import FlowMachine, LeaseMachine
from .model import Violation
from .mutants import (
    FLOW_MUTANTS,
    MEMORY_MUTANTS,
    SQLITE_MUTANTS,
    ClaimWithoutLock,
    FinalizeIgnoresToken,
    ReapBacksOff,
    ReapIgnoresExpiry,
    RenewIgnoresToken,
    SQLiteClaimWithoutLock,
)
from .runtime import Scenario, check, run, scenarios

# Run without line tracing: these runs prove that broken stores are caught, not which lines run
# (the property suites cover them), and tracing makes them several times slower.
pytestmark = pytest.mark.no_cover

BUDGET = 1000
"""Examples a suite may use to catch one mutant (ci); the slowest needs a fraction of it."""


def _hunting() -> settings:
    return settings(
        max_examples=examples(BUDGET),
        phases=[Phase.generate],  # the first counterexample is enough: no shrinking
        report_multiple_bugs=False,
        print_blob=False,
    )


def _hunt(suite: str, mutant: type, harness: Harness, run: Callable[[], None]) -> None:
    """Run ``run`` against the mutant; fail unless a property violation comes out of it."""
    with harness:
        try:
            run()
        except Exception:
            # A race need not fail again when hypothesis replays it (it may then report a
            # flaky failure or flaky data instead): the first violation seen is the finding.
            if harness.found is None:
                raise
            FINDINGS.append((mutant.__name__, suite, harness.found_in, harness.found.prop))
            return
    pytest.fail(
        f"{suite} passed {harness.examples} examples against the broken {mutant.__name__}: "
        f"{(mutant.__doc__ or '').strip()}"
    )


@pytest.mark.parametrize("mutant", MEMORY_MUTANTS, ids=lambda m: m.__name__)
def test_stateful_suite_catches_memory_mutant(mutant: type[MemoryTransport]) -> None:
    """The stateful suite finds a counterexample against each broken memory transport."""
    harness = Harness("asyncio", MemoryBackend(mutant))
    _hunt(
        "stateful",
        mutant,
        harness,
        lambda: run_state_machine_as_test(lambda: LeaseMachine(harness), settings=_hunting()),
    )


@pytest.mark.parametrize("mutant", SQLITE_MUTANTS, ids=lambda m: m.__name__)
def test_stateful_suite_catches_sqlite_mutant(
    mutant: type[SQLiteTransport], tmp_path: Path
) -> None:
    """The stateful suite finds a counterexample against each broken SQLite transport."""
    # Real races (no shrinking here, so replays need not match): SQLiteClaimWithoutLock is a race.
    harness = Harness("asyncio", SQLiteBackend(str(tmp_path / "jobs.db"), mutant), concurrent=True)
    _hunt(
        "stateful",
        mutant,
        harness,
        lambda: run_state_machine_as_test(lambda: LeaseMachine(harness), settings=_hunting()),
    )


@pytest.mark.parametrize("mutant", FLOW_MUTANTS, ids=lambda m: m.__name__)
def test_flow_suite_catches_broken_limiter(mutant: type, tmp_path: Path) -> None:
    """The flow machine finds a counterexample against each broken limiter."""
    if issubclass(mutant, SQLiteTransport):
        backend: MemoryBackend | SQLiteBackend = SQLiteBackend(str(tmp_path / "jobs.db"), mutant)
    else:
        backend = MemoryBackend(mutant)
    harness = Harness("asyncio", backend)
    _hunt(
        "flow",
        mutant,
        harness,
        lambda: run_state_machine_as_test(lambda: FlowMachine(harness), settings=_hunting()),
    )


RUNTIME_MUTANTS = (
    ClaimWithoutLock,
    RenewIgnoresToken,
    FinalizeIgnoresToken,
    ReapIgnoresExpiry,
    ReapBacksOff,
)
"""The mutants a running cluster exposes on its own. (RenewRevivesExpired needs a renewal
between a lease's expiry and the next reap, which the Reapers' one-second rhythm rarely leaves
open: the stateful suite is the one that catches it.)"""


@pytest.mark.parametrize("mutant", RUNTIME_MUTANTS, ids=lambda m: m.__name__)
def test_runtime_suite_catches_mutant(mutant: type[MemoryTransport]) -> None:
    """Nodes of real Claimers, Workers, LeaseKeepers and Reapers over a broken transport break a promise."""
    count = [0]

    @_hunting()
    @given(scenario=scenarios())
    def scenario_holds(scenario: Scenario) -> None:
        count[0] += 1
        check(anyio.run(run, scenario, mutant))

    try:
        scenario_holds()
    except Violation as violation:
        # The runtime suite is deterministic (memory store, virtual clock): the failing example
        # is the last one tried, replayed once for the report.
        FINDINGS.append((mutant.__name__, "runtime", count[0] - 1, violation.prop))
        return
    pytest.fail(
        f"the runtime suite passed {count[0]} examples against the broken {mutant.__name__}"
    )


def test_interleavings_catch_claim_without_lock() -> None:
    """Racing claimants on the memory backend catch a claim that leases what it read earlier."""
    harness = Harness("asyncio", MemoryBackend(ClaimWithoutLock))
    _hunt("interleavings", ClaimWithoutLock, harness, lambda: run_schedules(harness, _hunting()))


def test_interleavings_catch_sqlite_claim_without_lock(tmp_path: Path) -> None:
    """Racing claimants on one SQLite file catch a claim split into a SELECT and an UPDATE."""
    backend = SQLiteBackend(str(tmp_path / "jobs.db"), SQLiteClaimWithoutLock)
    harness = Harness("asyncio", backend)
    _hunt(
        "interleavings", SQLiteClaimWithoutLock, harness, lambda: run_schedules(harness, _hunting())
    )
