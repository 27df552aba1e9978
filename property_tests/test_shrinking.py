"""Failures on SQL backends replay and shrink: a broken store yields a short, exact example.

Hypothesis shrinks a failure by replaying variations of it, and a replay that sees other ids,
tokens, times or race winners than the run it replays is reported as flaky (or as
``FlakyStrategyDefinition``) instead of as a minimal example. Replays are exact because:

* every example starts from an empty store whose counters start again (see
  :class:`~property_tests.harness.PostgresBackend` and
  :class:`~property_tests.harness.SQLiteBackend`): job ids and fencing tokens are the same
  numbers in every replay;
* time is the harness's :class:`~transports.testing.ManualClock`, set back to ``START`` per
  example and passed to every transport, so no call reads the database clock;
* rules draw plain integers and pick with them among what the machine already knows (its
  workers' leases, the jobs it enqueued), so every replay draws the same way whatever the
  store answers;
* calls "at one instant" run in a drawn order, one after another, on SQL backends
  (:meth:`~property_tests.harness.Harness.gather`): a real race there has no fixed winner.

These tests prove it: two runs of the same examples see the same answers, call for call, and
the stateful machine against a PostgreSQL (and an SQLite) backend whose finalize ignores the
lease token reports the violation itself, shrunk to a few steps.
"""

from __future__ import annotations

import re
import shutil
import tempfile
from pathlib import Path

import pytest
from hypothesis import Phase, settings
from hypothesis.stateful import run_state_machine_as_test

from transports.testing import SQLMutant

from .harness import Harness, PostgresBackend, SQLiteBackend
from .machine import LeaseMachine
from .model import STALE_TOKEN_INERT, Violation
from .mutants import SQLiteFinalizeIgnoresToken

# Run without line tracing: these runs prove that failures shrink, not which lines run (the
# property suites cover them), and tracing makes them several times slower.
pytestmark = pytest.mark.no_cover

POSTGRES_FINALIZE_IGNORES_TOKEN = SQLMutant(
    dialect="postgres",
    query="finalize",
    old="WHERE j.id = req.id AND j.lease_token = req.token",
    new="WHERE j.id = req.id AND j.state = 'running'",
)
"""PostgreSQL's finalize fenced by the job's state instead of its lease token: a worker whose
lease was reaped and claimed again finalizes the new claim."""

POSTGRES_FINALIZE_COMPLETE_IGNORES_TOKEN = SQLMutant(
    dialect="postgres",
    query="finalize_complete",
    old="WHERE j.id = req.id AND j.lease_token = req.token",
    new="WHERE j.id = req.id AND j.state = 'running'",
)
"""The same bug in the statement of a batch of successes only (both are rewritten)."""

MAX_STEPS = 10
"""The longest shrunk example accepted (the bug needs an enqueue, two claims and a finalize)."""

_STEP = re.compile(r"^state\.(\w+)\(", re.MULTILINE)
_NOT_STEPS = {"table_holds", "teardown"}  # the invariant and the end, printed between steps


def _hunting() -> settings:
    """Deterministic: a fixed search (``derandomize``), no example database, one bug.

    The explain phase (which replays the minimal example many times over to say which
    arguments do not matter) is left out: it would double the run on PostgreSQL.
    """
    return settings(
        max_examples=1000,  # the mutants below fall within a few hundred
        # The bug takes about five steps; examples of up to 25 made every replay of the
        # search and of the shrinker longer (both hunts: 118 s at 25, 79 s at 15).
        stateful_step_count=15,
        derandomize=True,
        database=None,
        report_multiple_bugs=False,
        phases=[Phase.explicit, Phase.reuse, Phase.generate, Phase.shrink],
        print_blob=False,
    )


class _FinalizeHunt(LeaseMachine):
    """The machine with only the rules a stale finalize needs (enqueue, claim, time, reap,
    finalize, a late worker): the bug hunted here is the finalize's, and every rule it never
    needs only gives the search and the shrinker more to try. On PostgreSQL the whole machine
    took 1,916 examples (72 s); this one finds it in 40 and is done in 800 (23 s)."""

    # not rules here
    operate = cancel = pause = leader = advance_cursor = race = None  # type: ignore[assignment]
    mixed_batch = claim_race = stall = heartbeats = renew = None  # type: ignore[assignment]


def _steps(report: str) -> list[str]:
    """The rules, in order, of the failing example hypothesis printed."""
    return [name for name in _STEP.findall(report) if name not in _NOT_STEPS]


def _shrinks(harness: Harness) -> None:
    """Run the machine against a broken backend; check hypothesis reports a short example."""
    with harness:
        try:
            run_state_machine_as_test(lambda: _FinalizeHunt(harness), settings=_hunting())
        except Exception as raised:  # whatever hypothesis reports is checked below
            error = raised
        else:
            pytest.fail(f"{harness.examples} examples passed against a broken backend")
    # Not Flaky, not FlakyStrategyDefinition, not a group of distinct failures: the violation.
    assert isinstance(error, Violation), f"{type(error).__name__}: {error}"
    assert error.prop == STALE_TOKEN_INERT
    report = "\n".join(getattr(error, "__notes__", []))
    steps = _steps(report)
    assert steps, f"no failing example in the report:\n{report}"
    assert len(steps) <= MAX_STEPS, f"{len(steps)} steps ({steps}):\n{report}"
    # Found during the search, then replayed and shrunk: the report is the shrinker's work.
    assert harness.found is not None
    assert harness.examples > harness.found_in, "the failure was never replayed"


# Shrinking replays hundreds of examples, each on a wiped store: on a busy machine under
# coverage (the other worker running the simulator's sweeps) the PostgreSQL hunt has taken
# over 300 s without hanging, so its hang guard is 900 s.
SHRINK_TIMEOUT = pytest.mark.timeout(900)


@SHRINK_TIMEOUT
@pytest.mark.postgres
def test_a_broken_postgres_finalize_shrinks_to_a_few_steps(
    postgres_dsn: str, postgres_schema: str
) -> None:
    """Against a PostgreSQL finalize that ignores the lease token, hypothesis reports the
    stale-token violation with a minimal example of at most ten steps, never a flaky one."""
    # PostgreSQL renders its queries when it opens: the harness opens it inside the rewrite.
    with (
        POSTGRES_FINALIZE_IGNORES_TOKEN.active(),
        POSTGRES_FINALIZE_COMPLETE_IGNORES_TOKEN.active(),
    ):
        _shrinks(Harness("asyncio", PostgresBackend(postgres_dsn, postgres_schema)))


@SHRINK_TIMEOUT
def test_a_broken_sqlite_finalize_shrinks_to_a_few_steps(tmp_path: Path) -> None:
    """Against an SQLite finalize that ignores the lease token, hypothesis reports the
    stale-token violation with a minimal example of at most ten steps, never a flaky one."""
    # Shrinking replays about two thousand examples, each wiped and committed: in memory-backed
    # files (where the machine has them) that takes half the time; durability is not on trial.
    shm = Path("/dev/shm")
    folder = Path(tempfile.mkdtemp(dir=shm)) if shm.is_dir() else tmp_path
    try:
        backend = SQLiteBackend(str(folder / "jobs.db"), SQLiteFinalizeIgnoresToken)
        _shrinks(Harness("asyncio", backend))
    finally:
        if folder != tmp_path:
            shutil.rmtree(folder, ignore_errors=True)


def test_two_runs_of_the_same_examples_see_the_same_answers(harness: Harness) -> None:
    """The same examples, run twice on one store, make the same calls and get the same
    answers, call for call: ids, tokens, times and race winners included."""
    again = settings(
        max_examples=15, stateful_step_count=30, derandomize=True, phases=[Phase.generate]
    )
    run_state_machine_as_test(lambda: LeaseMachine(harness), settings=again)
    first, harness.traces = harness.traces, []
    run_state_machine_as_test(lambda: LeaseMachine(harness), settings=again)
    second = harness.traces
    assert len(first) == len(second) > 1
    for number, (one, other) in enumerate(zip(first, second, strict=True)):
        differs = [(a, b) for a, b in zip(one, other, strict=False) if a != b][:1]
        assert one == other, f"example {number} differs when run again: {differs}"
