"""Durable steps and signals, model-checked on every backend and both loops."""

from __future__ import annotations

from hypothesis import settings
from hypothesis.stateful import run_state_machine_as_test

from .conftest import examples
from .harness import Harness
from .steps import StepMachine

EXAMPLES = {"memory": 30, "sqlite": 10, "postgres": 10}


def test_steps_are_fenced_and_signals_wake_once(harness: Harness) -> None:
    """Under any sequence of claims, steps run by live and stale workers, retries, waits,
    signals, timeouts, reaps, cancels and clock jumps: a stale token never records a step, a
    committed step is never run again, a signal wakes exactly the jobs suspended on its key,
    and no job stays suspended on a signalled key."""
    n = examples(EXAMPLES[harness.backend.name])
    run_state_machine_as_test(
        lambda: StepMachine(harness),
        settings=settings(max_examples=n, stateful_step_count=30),
    )
