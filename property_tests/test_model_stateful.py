"""Model-based stateful tests: every backend, on both loops, agrees with the reference model."""

from __future__ import annotations

from hypothesis import settings
from hypothesis.stateful import run_state_machine_as_test

from .conftest import examples
from .harness import Harness
from .machine import FlowMachine, LeaseMachine

EXAMPLES = {"memory": 100, "sqlite": 40, "postgres": 40}


def test_leases_never_lie(harness: Harness) -> None:
    """Under any sequence of enqueues, claims, renewals, finalizes (batches naming a lease twice
    or a stale token before a live one included), cancels, clock jumps, reaps, crashes, late
    calls, leader and cursor moves and races, the transport keeps every lease invariant and
    answers exactly as the reference model, position by position."""
    n = examples(EXAMPLES[harness.backend.name])
    run_state_machine_as_test(lambda: LeaseMachine(harness), settings=settings(max_examples=n))


FLOW_EXAMPLES = {"memory": 60, "sqlite": 25, "postgres": 25}


def test_limits_hold_under_every_interleaving(harness: Harness) -> None:
    """Under any sequence of the lease machine's steps mixed with keyed enqueues and limits set,
    changed and removed, no claim leaves a key more live leases than its limit, and every
    claim starts exactly the jobs the contract names (none waits while its key has room)."""
    n = examples(FLOW_EXAMPLES[harness.backend.name])
    run_state_machine_as_test(lambda: FlowMachine(harness), settings=settings(max_examples=n))
