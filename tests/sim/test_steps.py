"""Durable steps under every fault: a sweep passes, and broken step storage is caught."""

from __future__ import annotations

import attrs

from actors.sim import SimConfig, SimReport, TransportFactory, simulate, sweep

from ._broken import step_token_blind, steps_forgotten
from .test_teeth import SMALL

STEPS = attrs.evolve(SMALL, steps=True)


def _first_failure(config: SimConfig, factory: TransportFactory, seeds: range) -> SimReport:
    failures: list[SimReport] = []
    sweep(
        config,
        seeds,
        transport_factory=factory,
        stop_at_first=True,
        on_report=lambda r: None if r.passed else failures.append(r),
    )
    assert failures, "no violation"
    return failures[0]


def test_steps_hold_under_every_fault() -> None:
    """Multi-step handlers, some waiting for signals, under every fault: no step recorded
    without a live lease, none run again once recorded, no job left suspended, every job
    final; steps do run again (only those whose record had not committed)."""
    summary = sweep(STEPS, range(1, 5))
    failed = [run.violation for run in summary.runs if run.violation is not None]
    assert not failed, failed[0]
    report = simulate(attrs.evolve(STEPS, seed=3))
    assert report.passed
    assert report.steps_run > 0
    assert report.steps_rerun > 0
    assert report.signals > 0
    assert "steps: " in report.render()
    assert "--steps" in STEPS.command()


def test_a_step_record_ignoring_tokens_is_caught() -> None:
    """A record_step that ignores tokens and expiry is caught as fenced_step."""
    report = _first_failure(STEPS, step_token_blind, range(1, 41))
    assert report.violation is not None
    assert report.violation.invariant == "fenced_step"


def test_steps_never_read_back_are_caught() -> None:
    """Steps that later attempts cannot read back (so run again) are caught as step_once."""
    report = _first_failure(STEPS, steps_forgotten, range(1, 41))
    assert report.violation is not None
    assert report.violation.invariant == "step_once"
