"""DrainResult counts, filters and renders the runs of a drain."""

from __future__ import annotations

from actors.testing import DrainResult, JobRun, RunOutcome
from transports import JobState


def _run(job_id: int, kind: str, outcome: RunOutcome, **fields: object) -> JobRun:
    values: dict[str, object] = {
        "job_id": job_id,
        "kind": kind,
        "queue": "default",
        "attempt": 1,
        "payload": None,
        "outcome": outcome,
        "state": JobState.SUCCEEDED,
        "error": None,
        "run_at": None,
        "started_at": 10.0,
        "finished_at": 12.0,
    }
    values.update(fields)
    return JobRun(**values)  # type: ignore[arg-type]


RUNS = (
    _run(1, "a", RunOutcome.SUCCEEDED),
    _run(2, "b", RunOutcome.RETRIED, state=JobState.SCHEDULED, error="boom", run_at=42.0),
    _run(3, "a", RunOutcome.DEAD, state=JobState.DEAD, error="gone"),
    _run(4, "b", RunOutcome.CANCELLED, state=JobState.CANCELLED),
    _run(5, "a", RunOutcome.SNOOZED, state=JobState.SCHEDULED, run_at=70.0),
)


def test_counts_by_outcome() -> None:
    """Each count is the runs of its outcome; ``failed`` is retried plus dead."""
    result = DrainResult(runs=RUNS)
    assert len(result) == 5
    assert (result.succeeded, result.retried, result.dead) == (1, 1, 1)
    assert (result.cancelled, result.snoozed, result.failed) == (1, 1, 2)
    assert result.counts() == {
        "succeeded": 1,
        "retried": 1,
        "dead": 1,
        "cancelled": 1,
        "snoozed": 1,
    }
    assert result.errors == ["boom", "gone"]
    assert [run.job_id for run in result.of_kind("a")] == [1, 3, 5]
    assert list(result) == list(RUNS)


def test_results_add_up_and_render() -> None:
    """Two results concatenate; each run renders on one line, with its wait and error."""
    joined = DrainResult(runs=RUNS[:2]) + DrainResult(runs=RUNS[2:])
    assert joined.runs == RUNS
    assert str(DrainResult()) == "nothing ran"
    lines = str(joined).splitlines()
    assert lines[0] == "#1 a try 1: succeeded"
    assert lines[1] == "#2 b try 1: retried (runs again in 30s): boom"
    assert lines[4] == "#5 a try 1: snoozed (runs again in 58s)"
