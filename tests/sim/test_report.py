"""Reports and summaries: the numbers, and the text people read."""

from __future__ import annotations

import attrs

from actors.jobs import JobClaimed
from actors.jobs.lowlevel import StatsRecorder
from actors.sim import Distribution, FaultRates, SimConfig, SweepRun, SweepSummary, simulate
from transports import Histogram

from ._broken import eager_reaper


def test_distribution_percentiles_by_nearest_rank() -> None:
    """p50, p95 and max of a sample; an empty sample is all zeros."""
    dist = Distribution.of(float(i) for i in range(1, 101))
    assert (dist.count, dist.p50, dist.p95, dist.max) == (100, 50.0, 95.0, 100.0)
    assert Distribution.of([3.0]) == Distribution(count=1, p50=3.0, p95=3.0, max=3.0)
    assert Distribution.of([]).render() == "n=0"
    assert "p95=95.000s" in dist.render()


def test_a_passing_report_says_what_happened() -> None:
    """The text names the config, the result, the speed, the leases, faults and the hash."""
    report = simulate(SimConfig(seed=2, nodes=2, workers=2, jobs=40, duration=300.0))
    assert report.passed
    text = report.render()
    assert text.startswith("actorq sim: seed 2, 2 nodes x 2 workers, 40 jobs, 5m of faults")
    assert "result: PASSED" in text
    assert "simulated s per wall s" in text
    assert f"sha256 {report.trace_hash}" in text
    assert report.jobs >= 40
    assert sum(report.final_states.values()) == report.jobs
    assert set(report.final_states) <= {"succeeded", "dead", "cancelled"}
    assert report.sim_seconds >= 300.0
    assert report.speed > 1.0
    # The store's history as the nodes flushed it: an approximation under faults (a crashed
    # node loses what it had not flushed; a flush whose reply was lost may count twice).
    history = report.history
    assert history is not None
    assert history.succeeded > report.final_states["succeeded"] // 2
    assert history.run.count >= history.succeeded
    assert f"history (as the nodes flushed it): {history.succeeded} succeeded" in text


def test_a_failing_report_ends_with_the_replay_command() -> None:
    """A violation's report carries the invariant, the last events and the command."""
    report = simulate(
        SimConfig(seed=1, nodes=2, workers=2, jobs=40), transport_factory=eager_reaper
    )
    assert not report.passed
    text = report.render()
    assert "result: FAILED" in text
    assert "VIOLATION of reap_only_expired" in text
    assert text.splitlines()[-1].strip() == report.config.command()


def test_a_sweep_summary_lists_failing_seeds_with_their_commands() -> None:
    """The summary counts seeds passed and shows each failure's replay command."""
    good = simulate(SimConfig(seed=1, jobs=10, duration=120.0))
    bad = simulate(SimConfig(seed=2, jobs=10), transport_factory=eager_reaper)
    summary = SweepSummary.of([SweepRun.of(good), SweepRun.of(bad)], [1.0, 2.0, 3.0])
    assert not summary.passed
    assert [r.seed for r in summary.failures] == [2]
    text = summary.render()
    assert text.startswith("actorq sim sweep: 1/2 seeds passed")
    assert "n=3 p50=2.000s" in text
    assert bad.config.command() in text
    assert attrs.evolve(summary, runs=(SweepRun.of(good),)).passed


def test_the_history_measures_recovery_as_the_simulator_does() -> None:
    """Recovery time as the nodes record it (their starts' ``lost_at``, from the store)
    equals the simulator's own measure, lease expiry to handler start, bucket for bucket;
    the store's history holds what the nodes flushed of it."""
    config = SimConfig(
        seed=3,
        nodes=3,
        workers=2,
        jobs=60,
        duration=300.0,
        faults={"crash", "pause"},
        rates=FaultRates(crash=20.0, pause=40.0),
        cron=None,
    )
    report = simulate(config)
    assert report.passed, report.render()
    recorder = StatsRecorder()
    for entry in report.trace.entries:
        if isinstance(entry.event, JobClaimed):
            recorder.record(entry.event)
    recorded = sum((row.recovery for row in recorder.take()), Histogram.empty())
    assert report.recovered.count >= 3  # the faults made the nodes lose jobs
    assert recorded == Histogram.of(report.recovered_samples)
    assert report.history is not None
    assert 0 < report.history.recovery.count <= recorded.count
    assert "recovery time (lease expiry -> handler running again): n=" in report.render()
