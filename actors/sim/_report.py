"""What a run and a sweep found, as data and as text."""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence

import attrs

from transports import QueueStats

from ._config import SimConfig, format_duration
from ._invariants import Violation
from ._trace import Trace

__all__ = ["Distribution", "SimReport", "SweepRun", "SweepSummary"]


@attrs.frozen(kw_only=True)
class Distribution:
    """Percentiles of a set of durations, in seconds (nearest rank)."""

    count: int
    p50: float
    p95: float
    max: float

    @classmethod
    def of(cls, samples: Iterable[float]) -> Distribution:
        """The distribution of ``samples`` (all zeros when there are none)."""
        ordered = sorted(samples)
        if not ordered:
            return cls(count=0, p50=0.0, p95=0.0, max=0.0)

        def rank(p: float) -> float:
            return ordered[max(0, math.ceil(p * len(ordered)) - 1)]

        return cls(count=len(ordered), p50=rank(0.5), p95=rank(0.95), max=ordered[-1])

    def render(self) -> str:
        """``n=12 p50=15.2s p95=15.9s max=16.0s``."""
        if not self.count:
            return "n=0"
        return f"n={self.count} p50={self.p50:.3f}s p95={self.p95:.3f}s max={self.max:.3f}s"


@attrs.frozen(kw_only=True)
class SimReport:
    """The outcome of one run.

    ``passed`` is False exactly when ``violation`` is set. ``trace`` holds every event;
    ``trace_hash`` is the sha256 of its canonical text, equal for two runs of one config.
    """

    config: SimConfig
    violation: Violation | None
    trace: Trace = attrs.field(repr=False, eq=False)
    trace_hash: str
    sim_seconds: float  # virtual seconds the run lasted, tail included
    tail_seconds: float  # of which the quiet tail
    wall_seconds: float
    jobs: int  # jobs enqueued (producer and cron)
    final_states: Mapping[str, int]  # jobs per state at the end
    claims: int
    renewals: int
    finalizes_applied: int
    finalizes_refused: int  # stale tokens the store refused (late or duplicate executions)
    leases_lost: int  # leases workers learnt they had lost
    reclaims: int  # expired leases the reapers took back
    recovery: Distribution  # orphan: holder's last renewal -> re-runnable
    recovery_samples: tuple[float, ...] = attrs.field(repr=False)  # one per orphan
    recovery_bound: float
    recovery_late: int  # orphans past the bound, each while no node had a healthy reaper
    rerun: Distribution  # orphan: lease expiry -> claimed again
    restart: Distribution  # orphan: holder's last renewal -> its handler running again
    restart_bound: float  # lease TTL + reaper interval + poll interval (the wake-up)
    restart_late: int  # orphans that started past that bound (all slots busy, nodes down)
    # reaped jobs ``running_again`` held to their bound (a node had a free slot at the reap)
    reruns_checked: int
    # reaped lease's expiry -> handler running again: the history's recovery time
    recovered: Distribution
    recovered_samples: tuple[float, ...] = attrs.field(repr=False)
    faults: Mapping[str, int]  # faults injected, by kind
    storage_errors: int  # storage calls that raised ConnectionLost by the simulator's hand
    restarts: int  # node incarnations started after the first
    cron_fires: int
    worker_crashes: int
    # the store's history as the nodes flushed it (a node killed loses what it had not flushed)
    history: QueueStats | None = None
    # durable steps (runs with ``steps``): step functions run, of which runs again of a step
    # already run (each because its record had not committed: a lost lease, a lost reply, a
    # crash), records the store took and refused for a stale lease, signals sent, waits
    # timed out
    steps_run: int = 0
    steps_rerun: int = 0
    steps_recorded: int = 0
    steps_refused: int = 0
    signals: int = 0
    waits_timed_out: int = 0
    # workflows (runs with ``workflows``): by their state at the end (final or not), chains
    # and groups enqueued, first starts of jobs with parents (of which after a parent that
    # did not succeed, on a ``run`` edge), jobs a failed parent cancelled, fan-in callbacks
    # completed (of which again: an earlier run's completion had not committed)
    workflows: Mapping[str, int] = attrs.field(factory=dict)
    chains: int = 0
    groups: int = 0
    dependents_started: int = 0
    ran_after_failure: int = 0
    cancelled_by_parent: int = 0
    fan_ins_completed: int = 0
    fan_ins_again: int = 0
    # fair share (runs with ``partitions``): each partition's wait from a job's due time to its
    # first start, and the most partitions that started jobs while one waited its turn
    partition_waits: Mapping[str, Distribution] = attrs.field(factory=dict)
    most_bypassed: int = 0

    @property
    def passed(self) -> bool:
        """True when no invariant broke."""
        return self.violation is None

    def _history_line(self) -> str:
        h = self.history
        if h is None:
            return "  history (as the nodes flushed it): none"

        def ms(value: float | None) -> str:
            return "-" if value is None else f"{value * 1000:.0f}ms"

        return (
            f"  history (as the nodes flushed it): {h.succeeded} succeeded, {h.failed} failed, "
            f"{h.dead} dead, {h.cancelled} cancelled; {h.finalize_refused} refused, "
            f"{h.leases_lost} lost, {h.reclaimed} reclaimed, {h.deduplicated} folded; wait p50 "
            f"{ms(h.wait.quantile(0.5))} p99 {ms(h.wait.quantile(0.99))}, run p50 "
            f"{ms(h.run.quantile(0.5))} p99 {ms(h.run.quantile(0.99))}, recovery p50 "
            f"{ms(h.recovery.quantile(0.5))} p99 {ms(h.recovery.quantile(0.99))}"
        )

    @property
    def speed(self) -> float:
        """Simulated seconds per wall second."""
        return self.sim_seconds / self.wall_seconds if self.wall_seconds > 0 else math.inf

    def render(self) -> str:
        """A human summary; on a violation, its report and the replay command."""
        c = self.config
        faults = ",".join(sorted(c.faults)) or "none"
        lines = [
            f"actorq sim: seed {c.seed}, {c.nodes} nodes x {c.workers} workers, {c.jobs} jobs, "
            f"{format_duration(c.duration)} of faults ({faults}), backend {c.backend}",
            f"  result: {'PASSED' if self.passed else 'FAILED'}",
            f"  time: {self.sim_seconds:.1f} simulated s ({self.tail_seconds:.1f} s quiet tail) in "
            f"{self.wall_seconds:.2f} wall s = {self.speed:.1f} simulated s per wall s",
            f"  jobs: {self.jobs} enqueued; final states: "
            + (", ".join(f"{n} {s}" for s, n in sorted(self.final_states.items())) or "none"),
            f"  leases: {self.claims} claims, {self.renewals} renewals, {self.leases_lost} lost, "
            f"{self.reclaims} reclaimed by reapers",
            f"  finalizes: {self.finalizes_applied} applied, {self.finalizes_refused} refused for a "
            "stale token (late or repeated executions fenced off)",
            "  faults: "
            + (", ".join(f"{k} {n}" for k, n in sorted(self.faults.items())) or "none")
            + f"; {self.storage_errors} storage calls failed; {self.restarts} node restarts; "
            f"{self.worker_crashes} worker crashes",
            f"  orphan recovery (last renewal -> re-runnable, bound {self.recovery_bound:g}s): "
            f"{self.recovery.render()}; {self.recovery_late} past the bound, each while no node "
            "had a healthy reaper",
            f"  orphan re-run (lease expiry -> claimed again): {self.rerun.render()}",
            f"  orphan restart (last renewal -> handler running again, bound "
            f"{self.restart_bound:g}s): {self.restart.render()}; {self.restart_late} past it; "
            f"{self.reruns_checked} reaped with a slot free held to their node's claim gap "
            "(running_again)",
            f"  recovery time (lease expiry -> handler running again): {self.recovered.render()}",
            f"  cron: {self.cron_fires} ticks fired",
            (
                f"  steps: {self.steps_run} run, {self.steps_rerun} run again (only steps whose "
                f"record had not committed), {self.steps_recorded} recorded, "
                f"{self.steps_refused} refused for a stale lease; {self.signals} signals, "
                f"{self.waits_timed_out} waits timed out"
                if c.steps or c.workflows
                else ""
            ),
            (
                f"  workflows: {self.chains} chains, {self.groups} groups with a fan-in; "
                + ", ".join(f"{n} {s}" for s, n in sorted(self.workflows.items()))
                + f"; {self.dependents_started} dependents started ({self.ran_after_failure} "
                f"after a failed parent, on_failure=run), {self.cancelled_by_parent} cancelled "
                f"by a failed parent; fan-ins: {self.fan_ins_completed} completed, "
                f"{self.fan_ins_again} again (an earlier run had not committed)"
                if c.workflows
                else ""
            ),
            (
                "  fair share (due -> first start, by partition): "
                + "; ".join(f"{name} {d.render()}" for name, d in self.partition_waits.items())
                + f"; at most {self.most_bypassed} partitions started ahead of a waiting one"
                if c.partitions
                else ""
            ),
            self._history_line(),
            f"  trace: {len(self.trace)} events, sha256 {self.trace_hash}",
        ]
        if self.violation is not None:
            lines.append(self.violation.render())
        return "\n".join(line for line in lines if line)


@attrs.frozen(kw_only=True)
class SweepRun:
    """One run of a sweep, without its trace."""

    seed: int
    violation: Violation | None
    trace_hash: str
    sim_seconds: float
    wall_seconds: float
    finalizes_refused: int
    recovery_bound: float
    recovery_late: int
    reruns_checked: int

    @classmethod
    def of(cls, report: SimReport) -> SweepRun:
        """The summary of ``report``."""
        return cls(
            seed=report.config.seed,
            violation=report.violation,
            trace_hash=report.trace_hash,
            sim_seconds=report.sim_seconds,
            wall_seconds=report.wall_seconds,
            finalizes_refused=report.finalizes_refused,
            recovery_bound=report.recovery_bound,
            recovery_late=report.recovery_late,
            reruns_checked=report.reruns_checked,
        )


@attrs.frozen(kw_only=True)
class SweepSummary:
    """The outcome of many runs (usually one config over many seeds)."""

    runs: Sequence[SweepRun]
    recovery: Distribution  # over every orphan of every run
    recovery_bound: float
    recovery_late: int
    reruns_checked: int  # reaped jobs held to the running-again bound, over every run
    finalizes_refused: int
    sim_seconds: float
    wall_seconds: float

    @classmethod
    def of(cls, runs: Iterable[SweepRun], recovery: Iterable[float]) -> SweepSummary:
        """Summarise ``runs`` and the orphan recovery samples gathered from them."""
        runs = tuple(runs)
        return cls(
            runs=runs,
            recovery=Distribution.of(recovery),
            recovery_bound=max((r.recovery_bound for r in runs), default=0.0),
            recovery_late=sum(r.recovery_late for r in runs),
            reruns_checked=sum(r.reruns_checked for r in runs),
            finalizes_refused=sum(r.finalizes_refused for r in runs),
            sim_seconds=sum(r.sim_seconds for r in runs),
            wall_seconds=sum(r.wall_seconds for r in runs),
        )

    @property
    def failures(self) -> list[SweepRun]:
        """The runs that broke an invariant."""
        return [r for r in self.runs if r.violation is not None]

    @property
    def passed(self) -> bool:
        """True when every run passed."""
        return not self.failures

    def render(self) -> str:
        """Seeds passed, failing seeds with their replay commands, recovery, speed."""
        total = len(self.runs)
        failures = self.failures
        speed = self.sim_seconds / self.wall_seconds if self.wall_seconds > 0 else math.inf
        lines = [
            f"actorq sim sweep: {total - len(failures)}/{total} seeds passed",
            f"  orphan recovery (last renewal -> re-runnable, bound {self.recovery_bound:g}s): "
            f"{self.recovery.render()}; {self.recovery_late} past the bound, each while no node "
            "had a healthy reaper",
            f"  running again: {self.reruns_checked} reaped jobs with a slot free held to their "
            "node's claim gap (running_again)",
            f"  finalizes refused for a stale token (late or repeated executions fenced off): "
            f"{self.finalizes_refused}",
            f"  speed: {self.sim_seconds:.0f} simulated s in {self.wall_seconds:.1f} wall s = "
            f"{speed:.1f} simulated s per wall s",
        ]
        for run in failures:
            assert run.violation is not None
            lines.append(f"  seed {run.seed}: {run.violation.invariant}: {run.violation.detail}")
            lines.append(f"    replay: {run.violation.command}")
        return "\n".join(lines)
