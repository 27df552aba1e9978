"""The simulator catches real bugs: broken transports fail a sweep of at most 200 seeds.

Each broken transport is swapped in through ``transport_factory``, under the faults; the
runtime above it is unchanged. A sweep stops at the first violation, which must name the
invariant the bug breaks and print the command that replays it.
"""

from __future__ import annotations

import attrs
import pytest

import transports._memory
from actors.sim import FaultRates, SimConfig, SimReport, TransportFactory, shrink, simulate, sweep
from actors.sim.lowlevel import OperatorActed, parse_faults, plan_faults
from transports import JobState

from ._broken import (
    backed_off_reclaim,
    cool_blind,
    eager_reaper,
    fixed_window,
    limit_blind,
    token_blind,
    turns_forgotten,
)

# Run without line tracing: these sweeps prove that bugs are caught, not which lines run (the
# simulator's lines are covered by its own tests), and tracing makes them several times slower.
pytestmark = pytest.mark.no_cover

#: Small and fast, busy enough that leases are often lost while their jobs run: 400 simulated
#: seconds (40 lease TTLs) at high fault rates, as in the CI sweep (test_sweep.py).
SMALL = SimConfig(
    nodes=3,
    workers=2,
    jobs=150,
    duration=400.0,
    lease_ttl=10.0,
    rates=FaultRates(crash=7.5, pause=30, storage=15, partition=15, skew=15, hang=0.02),
)


def _first_failure(config: SimConfig, factory: TransportFactory, seeds: range) -> SimReport:
    failures: list[SimReport] = []
    summary = sweep(
        config,
        seeds,
        transport_factory=factory,
        stop_at_first=True,
        on_report=lambda r: None if r.passed else failures.append(r),
    )
    assert failures, f"no violation in {len(summary.runs)} seeds"
    return failures[0]


def test_a_transport_ignoring_tokens_on_finalize_is_caught() -> None:
    """A finalize that ignores the lease token is caught as fenced_finalize within 200 seeds."""
    report = _first_failure(SMALL, token_blind, range(1, 201))
    assert report.violation is not None
    assert report.violation.invariant == "fenced_finalize"
    assert "stale token" in report.violation.detail


def test_a_reaper_ignoring_expiry_is_caught() -> None:
    """A reap that takes back live leases is caught as reap_only_expired within 200 seeds."""
    report = _first_failure(SMALL, eager_reaper, range(1, 201))
    assert report.violation is not None
    assert report.violation.invariant == "reap_only_expired"


def test_a_reap_that_holds_reclaimed_jobs_back_is_caught() -> None:
    """A reap that reports a job available but lets it run only a minute later leaves a free
    slot idle beside it: caught as running_again (long before the end's drain check)."""
    report = _first_failure(SMALL, backed_off_reclaim, range(1, 201))
    assert report.violation is not None
    assert report.violation.invariant == "running_again"
    assert "free slot" in report.violation.detail


def test_a_limiter_ignoring_running_jobs_is_caught() -> None:
    """A claim that counts only its own jobs against a key's limit is caught as
    key_limit_held within 200 seeds of a keyed workload."""
    report = _first_failure(attrs.evolve(SMALL, key_limit=1), limit_blind, range(1, 201))
    assert report.violation is not None
    assert report.violation.invariant == "key_limit_held"
    assert "--key-limit 1" in report.violation.command


@pytest.mark.parametrize("limit", [1, 2])
def test_key_limits_hold_under_every_fault(limit: int) -> None:
    """With keyed jobs limited to one or two at once, a sweep under every fault passes: no
    key ever has more live leases than its limit, and every job still ends final. (Twelve
    seeds a limit, each under every fault.)"""
    summary = sweep(attrs.evolve(SMALL, key_limit=limit), range(1, 13))
    failed = [run.violation for run in summary.runs if run.violation is not None]
    assert not failed, failed[0]
    assert len(summary.runs) == 12


def test_a_violation_report_replays() -> None:
    """A violation prints seed, invariant, the last events and the command; replaying it
    reproduces the same violation and the same trace."""
    config = attrs.evolve(SMALL, trace_tail=12)
    report = _first_failure(config, eager_reaper, range(1, 201))
    violation = report.violation
    assert violation is not None
    text = report.render()
    assert f"VIOLATION of {violation.invariant}" in text
    assert f"(seed {violation.seed})" in text
    assert 0 < len(violation.trace_tail) <= 12
    assert violation.trace_tail[-1].split()[2] == "ViolationFound"
    assert violation.command.startswith(f"actorq sim --seed {violation.seed} --nodes 3 ")
    assert "--lease-ttl 10s" in violation.command
    assert text.rstrip().endswith(violation.command)
    again = simulate(report.config, transport_factory=eager_reaper)
    assert again.violation == violation
    assert again.trace_hash == report.trace_hash


def test_faults_can_be_turned_off() -> None:
    """Without faults the broken finalize goes unnoticed: the teeth come from the faults."""
    quiet = attrs.evolve(SMALL, faults=parse_faults("none"))
    for seed in range(1, 4):
        report = simulate(quiet.with_seed(seed), transport_factory=token_blind)
        assert report.passed, report.render()
        assert report.faults == {}
        assert report.storage_errors == 0


def test_shrinking_keeps_the_failure_with_fewer_faults() -> None:
    """shrink() drops faults from a failing seed's plan while the same invariant still breaks;
    the smaller plan replays from its command."""
    first = _first_failure(SMALL, token_blind, range(1, 201))
    assert first.violation is not None
    planned = len(plan_faults(first.config))
    smaller, report = shrink(first.config, transport_factory=token_blind, max_runs=40)
    assert smaller.keep_faults is not None
    assert len(smaller.keep_faults) < planned
    assert report.violation is not None
    assert report.violation.invariant == first.violation.invariant
    assert "--keep-faults" in report.violation.command
    again = simulate(smaller, transport_factory=token_blind)
    assert again.violation == report.violation


def test_operator_actions_under_every_fault_keep_every_invariant() -> None:
    """An operator retrying, discarding and cancelling jobs by filter while faults strike
    breaks nothing: every invariant holds, and the actions really changed jobs."""
    summary = sweep(attrs.evolve(SMALL, operators=True), range(1, 21))
    failed = [run.violation for run in summary.runs if run.violation is not None]
    assert not failed, failed[0]
    acted = simulate(attrs.evolve(SMALL, operators=True, seed=3)).trace
    changed = [e.event for e in acted.entries if type(e.event) is OperatorActed and e.event.job_ids]
    assert {e.action for e in changed} == {"retry", "discard", "cancel"}


def test_an_operator_discard_that_takes_running_jobs_is_caught(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A store whose discard also takes running jobs (overriding a live lease) is caught as
    operators_spare_leases within 200 seeds."""
    monkeypatch.setattr(
        transports._memory, "_WAITING", frozenset({*transports._memory._WAITING, JobState.RUNNING})
    )
    config = attrs.evolve(SMALL, operators=True)
    failures: list[SimReport] = []
    sweep(
        config,
        range(1, 201),
        stop_at_first=True,
        on_report=lambda r: None if r.passed else failures.append(r),
    )
    assert failures, "the broken discard was never noticed"
    assert failures[0].violation is not None
    assert failures[0].violation.invariant == "operators_spare_leases"
    assert "--operators" in failures[0].violation.command


def test_key_rates_and_cool_downs_hold_under_every_fault() -> None:
    """Keyed jobs started at most 3 per 20 s per key, their snoozes cooling their key down:
    a sweep under every fault passes (no window holds more starts than the rate, no cooled
    key starts early) and every job still ends final."""
    summary = sweep(attrs.evolve(SMALL, key_rate=(3, 20.0)), range(1, 11))
    failed = [run.violation for run in summary.runs if run.violation is not None]
    assert not failed, failed[0]
    assert len(summary.runs) == 10


def test_a_rate_window_that_does_not_slide_is_caught() -> None:
    """A limiter counting starts in fixed windows (a refilled bucket) lets one window's end
    and the next one's start exceed the rate: caught as key_rate_held."""
    report = _first_failure(attrs.evolve(SMALL, key_rate=(3, 20.0)), fixed_window, range(1, 101))
    assert report.violation is not None
    assert report.violation.invariant == "key_rate_held"
    assert "--key-rate 3/20s" in report.violation.command


def test_a_limiter_ignoring_cool_downs_is_caught() -> None:
    """A store that snoozes but never cools the key down is caught as key_rate_held."""
    report = _first_failure(attrs.evolve(SMALL, key_rate=(50, 1.0)), cool_blind, range(1, 101))
    assert report.violation is not None
    assert report.violation.invariant == "key_rate_held"
    assert "cooled down" in report.violation.detail


#: Busy enough that the tenants' backlogs wait: two nodes of two slots, 400 jobs.
CROWDED = attrs.evolve(SMALL, nodes=2, jobs=400, partitions=True)


def test_fair_share_holds_under_every_fault() -> None:
    """Jobs of a big tenant and three small ones, under every fault: no partition passes a
    waiting one twice, and the small tenants' jobs wait far less than the big one's."""
    reports: list[SimReport] = []
    sweep(CROWDED, range(1, 6), on_report=reports.append)
    failed = [report.violation for report in reports if report.violation is not None]
    assert not failed, failed[0].render()
    assert len(reports) == 5
    big = [report.partition_waits["sim:big"].p50 for report in reports]
    small = [report.partition_waits["sim:t1"].p50 for report in reports]
    assert sum(small) < sum(big) / 4, (small, big)


def test_a_rotation_that_forgets_its_turns_is_caught() -> None:
    """A fair claim that forgets whom it served lets the first partitions pass a waiting one
    again and again: caught as fair_share_held."""
    report = _first_failure(CROWDED, turns_forgotten, range(1, 51))
    assert report.violation is not None
    assert report.violation.invariant == "fair_share_held"
    assert "--partitions" in report.violation.command
