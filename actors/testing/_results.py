"""What a drain reports: one :class:`JobRun` per handler run, and counts over them."""

from __future__ import annotations

import enum
from collections.abc import Iterator

import attrs

from transports import JobState, JsonValue

__all__ = ["DrainResult", "JobRun", "RunOutcome"]


class RunOutcome(enum.StrEnum):
    """How one run ended, as the runtime decided it."""

    SUCCEEDED = "succeeded"  # returned None or Done
    RETRIED = "retried"  # raised, timed out or returned RetryLater, with attempts left
    SNOOZED = "snoozed"  # returned SnoozeUntil or slept (ctx.sleep_until): runs again later
    SUSPENDED = "suspended"  # waits for a signal (ctx.wait_for), the attempt given back
    DEAD = "dead"  # returned Drop, failed its last attempt, or could not run (poison payload)
    CANCELLED = "cancelled"  # a cancel was requested while it ran
    RELEASED = "released"  # given back unfinished (the runtime's shutdown path)
    REFUSED = "refused"  # the store refused the result: the lease was no longer this run's


@attrs.frozen(kw_only=True)
class JobRun:
    """One run of one job during a drain."""

    job_id: int
    kind: str
    queue: str
    attempt: int  # this run's attempt number, 1 for the first
    payload: JsonValue  # as stored
    outcome: RunOutcome
    state: JobState  # the job's state once the run was finalized
    error: str | None  # why it did not succeed (the exception, a RetryLater or Drop reason)
    run_at: float | None  # when it runs again (retried or snoozed), else None
    started_at: float  # clock time the run started
    finished_at: float  # clock time its result was stored
    result: JsonValue = None  # what the handler returned, as stored (succeeded runs only)

    def __str__(self) -> str:
        text = f"#{self.job_id} {self.kind} try {self.attempt}: {self.outcome}"
        if self.run_at is not None:
            text += f" (runs again in {self.run_at - self.finished_at:g}s)"
        if self.error:
            text += f": {self.error}"
        return text


@attrs.frozen(kw_only=True)
class DrainResult:
    """Every run of a drain, in the order they ran, with counts by outcome.

    Iterate it for the runs; ``len()`` is how many ran. ``failed`` counts the runs that
    ended with an error, whether they will be retried or ended dead.
    """

    runs: tuple[JobRun, ...] = ()

    def __iter__(self) -> Iterator[JobRun]:
        return iter(self.runs)

    def __len__(self) -> int:
        return len(self.runs)

    def __add__(self, other: DrainResult) -> DrainResult:
        return DrainResult(runs=self.runs + other.runs)

    def _count(self, outcome: RunOutcome) -> int:
        return sum(1 for run in self.runs if run.outcome is outcome)

    @property
    def succeeded(self) -> int:
        """Runs that succeeded."""
        return self._count(RunOutcome.SUCCEEDED)

    @property
    def retried(self) -> int:
        """Runs that failed and will be retried."""
        return self._count(RunOutcome.RETRIED)

    @property
    def snoozed(self) -> int:
        """Runs that snoozed."""
        return self._count(RunOutcome.SNOOZED)

    @property
    def suspended(self) -> int:
        """Runs that ended waiting for a signal (``ctx.wait_for``)."""
        return self._count(RunOutcome.SUSPENDED)

    @property
    def dead(self) -> int:
        """Runs after which the job ended dead."""
        return self._count(RunOutcome.DEAD)

    @property
    def cancelled(self) -> int:
        """Runs after which the job ended cancelled."""
        return self._count(RunOutcome.CANCELLED)

    @property
    def failed(self) -> int:
        """Runs that ended with an error: retried plus dead."""
        return self.retried + self.dead

    @property
    def errors(self) -> list[str]:
        """The error of every run that had one, in run order."""
        return [run.error for run in self.runs if run.error]

    def of_kind(self, kind: str) -> list[JobRun]:
        """The runs of one job kind."""
        return [run for run in self.runs if run.kind == kind]

    def counts(self) -> dict[str, int]:
        """Runs per outcome, only outcomes that occurred (handy in one assertion)."""
        found: dict[str, int] = {}
        for run in self.runs:
            found[run.outcome.value] = found.get(run.outcome.value, 0) + 1
        return found

    def __str__(self) -> str:
        if not self.runs:
            return "nothing ran"
        return "\n".join(str(run) for run in self.runs)
