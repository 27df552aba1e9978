"""Workflows under every fault: a sweep passes, and broken dependencies are caught."""

from __future__ import annotations

import attrs
import pytest

from actors.sim import (
    FaultRates,
    SimConfig,
    SimReport,
    SimWorkload,
    TransportFactory,
    simulate,
    sweep,
)

from ._broken import every_end_releases, failures_forgotten, results_lost
from .test_teeth import SMALL

#: Ten minutes at the fault rates seed 5 was chosen under (it runs a fan-in again).
WORKFLOWS = attrs.evolve(
    SMALL,
    workflows=True,
    duration=600.0,
    rates=FaultRates(crash=5, pause=20, storage=10, partition=10, skew=10, hang=0.02),
)


def _first_failure(
    config: SimConfig, seeds: range, factory: TransportFactory | None = None
) -> SimReport:
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


def test_workflows_hold_under_every_fault() -> None:
    """Chains and fan-out groups with a fan-in, some parents failing, under every fault: no
    dependent starts early, every workflow ends, every fan-in completes once per run and
    reads its members' results; steps and fan-ins do run again (only when an earlier run
    had not committed)."""
    summary = sweep(WORKFLOWS, range(1, 5))
    failed = [run.violation for run in summary.runs if run.violation is not None]
    assert not failed, failed[0]
    report = simulate(attrs.evolve(WORKFLOWS, seed=5))
    assert report.passed, report.render()
    assert report.chains > 0
    assert report.groups > 0
    assert report.workflows == {"final": report.chains + report.groups, "not final": 0}
    assert report.dependents_started > 0
    assert report.ran_after_failure > 0
    assert report.cancelled_by_parent > 0
    assert report.fan_ins_completed >= report.groups - report.cancelled_by_parent
    assert report.steps_run > report.steps_rerun > 0
    assert report.fan_ins_again > 0
    assert "workflows: " in report.render()
    assert "steps: " in report.render()
    assert "--workflows" in WORKFLOWS.command()


def test_dependents_released_by_a_failed_parent_are_caught() -> None:
    """A store that releases dependents when a parent ends dead is caught as
    parents_first."""
    report = _first_failure(WORKFLOWS, range(1, 41), every_end_releases)
    assert report.violation is not None
    assert report.violation.invariant == "parents_first"
    assert "while its parent" in report.violation.detail


def test_dependents_left_pending_by_a_failed_parent_are_caught() -> None:
    """A store that forgets the dependents of a failed parent (never cancelled, never run)
    is caught as workflows_final."""
    report = _first_failure(WORKFLOWS, range(1, 41), failures_forgotten)
    assert report.violation is not None
    assert report.violation.invariant == "workflows_final"
    assert "pending" in report.violation.detail


def test_a_fan_in_enqueued_twice_is_caught(monkeypatch: pytest.MonkeyPatch) -> None:
    """A group whose fan-in callback is enqueued twice (it runs twice per workflow run) is
    caught as fan_in_once."""
    monkeypatch.setattr(SimWorkload, "FAN_IN_COPIES", 2)
    report = _first_failure(WORKFLOWS, range(1, 41))
    assert report.violation is not None
    assert report.violation.invariant == "fan_in_once"


def test_a_fan_in_reading_lost_results_is_caught() -> None:
    """A store whose jobs read back without their results is caught as fan_in_results."""
    report = _first_failure(WORKFLOWS, range(1, 41), results_lost)
    assert report.violation is not None
    assert report.violation.invariant == "fan_in_results"
