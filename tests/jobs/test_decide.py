"""The runtime's decisions as pure functions, without actors, stores or loops."""

from __future__ import annotations

import math
from random import Random
from typing import Any

import pytest

from actors.jobs import (
    App,
    Constant,
    Done,
    Drop,
    Exponential,
    FinalizeRefused,
    JobCancelled,
    JobDead,
    JobRetried,
    JobSnoozed,
    JobSucceeded,
    RetryLater,
    SnoozeUntil,
    Task,
)
from actors.jobs.lowlevel import error_type_of, event_of, failure_of, may_start, outcome_of
from transports import Job, JobState, MemoryTransport
from transports.lowlevel import (
    Cancel,
    Complete,
    Discard,
    FinalizeResult,
    Outcome,
    Release,
    Retry,
    Snooze,
    Suspend,
)

NOW = 1_000.0


def _task() -> Task[Any]:
    app = App(MemoryTransport())

    @app.task("decided", backoff=Constant(seconds=7.0), max_attempts=3)
    async def decided(ctx: Any, payload: Any) -> None:
        return None

    return decided


def _job(attempt: int, max_attempts: int = 3) -> Job:
    return Job(
        id=1,
        kind="decided",
        queue="default",
        payload=None,
        state=JobState.RUNNING,
        priority=0,
        run_at=NOW,
        attempt=attempt,
        max_attempts=max_attempts,
        last_error=None,
        dedupe_key=None,
        created_at=NOW,
        updated_at=NOW,
        finished_at=None,
        lease_owner="n/default",
        lease_expires_at=NOW + 10,
        cancel_requested=False,
    )


@pytest.mark.parametrize(
    ("result", "attempt", "expected"),
    [
        (None, 1, Complete()),
        (Done(), 3, Complete()),
        (
            RetryLater(),
            1,
            Retry(
                run_at=NOW + 7.0, error="retry requested by the handler", error_type="RetryLater"
            ),
        ),
        (
            RetryLater(delay=2.0, reason="busy"),
            2,
            Retry(run_at=NOW + 2.0, error="busy", error_type="RetryLater"),
        ),
        (
            RetryLater(delay=2.0, reason="busy"),
            3,
            Discard(error="attempts exhausted (3/3): busy", error_type="RetryLater"),
        ),
        (
            RetryLater(delay=math.inf),
            1,
            Discard(
                error="handler returned RetryLater(delay=inf, "
                "reason=None): the delay must be finite",
                error_type="InvalidOutcome",
            ),
        ),
        (Drop(reason="bad input"), 1, Discard(error="bad input", error_type="Drop")),
        (SnoozeUntil(at=NOW + 60), 3, Snooze(run_at=NOW + 60)),
        (SnoozeUntil(at=NOW + 30, cool_down=True), 3, Snooze(run_at=NOW + 30, cool_down=True)),
        (
            SnoozeUntil(at=math.nan),
            1,
            Discard(
                error="handler returned SnoozeUntil(at=nan, cool_down=False): the time must be "
                "finite",
                error_type="InvalidOutcome",
            ),
        ),
        (42, 1, Complete(result=42)),
        ({"total": 3}, 1, Complete(result={"total": 3})),
        (Done(result=[1, "a"]), 1, Complete(result=[1, "a"])),
        (Done(result=None), 1, Complete()),
        (
            {1, 2},
            1,
            Discard(
                error="the handler's result cannot be stored: result is not JSON serialisable: "
                "Object of type set is not JSON serializable",
                error_type="ResultInvalid",
            ),
        ),
        (
            "x" * 300_000,
            1,
            Discard(
                error="the handler's result cannot be stored: result is 300002 bytes, over the "
                "limit of 262144",
                error_type="ResultInvalid",
            ),
        ),
    ],
)
def test_a_handler_result_decides_the_storage_action(
    result: object, attempt: int, expected: Outcome
) -> None:
    """Each value a handler can return maps to one storage action, attempts counted."""
    assert outcome_of(_job(attempt), _task(), result, now=NOW, rng=Random(0)) == expected


def test_a_failure_retries_with_the_tasks_backoff_until_no_attempt_is_left() -> None:
    """A failed attempt is retried after the task's backoff; the last one ends dead."""
    task = _task()
    assert failure_of(_job(1), task, "boom", now=NOW, rng=Random(0)) == Retry(
        run_at=NOW + 7.0, error="boom"
    )
    assert failure_of(_job(3), task, "boom", now=NOW, rng=Random(0)) == Discard(
        error="attempts exhausted (3/3): boom"
    )
    assert failure_of(
        _job(3), task, "boom", now=NOW, rng=Random(0), error_type="ValueError", traceback="tb"
    ) == Discard(error="attempts exhausted (3/3): boom", error_type="ValueError", traceback="tb")


class _Local(Exception):
    pass


def test_an_exception_is_recorded_by_its_qualified_class_name() -> None:
    """Builtins by their name, others prefixed with their module."""
    assert error_type_of(ValueError("x")) == "ValueError"
    assert error_type_of(_Local()) == "tests.jobs.test_decide._Local"
    weird = type("a\nb" + "x" * 300, (Exception,), {})
    name = error_type_of(weird())
    assert "\n" not in name
    assert len(name) == 255


@pytest.mark.parametrize(
    ("outcome", "event"),
    [
        (Complete(), JobSucceeded),
        (Retry(run_at=NOW + 1, error="e"), JobRetried),
        (Discard(error="e"), JobDead),
        (Snooze(run_at=NOW + 1), JobSnoozed),
        (Cancel(reason="asked"), JobCancelled),
    ],
)
def test_an_applied_finalize_publishes_its_outcomes_event(
    outcome: Outcome, event: type[object]
) -> None:
    """An applied finalize announces what became of the job; a refused one, whatever its
    outcome, announces only the refusal; a release announces nothing."""
    job = _job(1)
    applied = event_of(job, 9, outcome, FinalizeResult.APPLIED, worker="w", now=NOW, duration=0.5)
    assert type(applied) is event
    refused = event_of(job, 9, outcome, FinalizeResult.STALE, worker="w", now=NOW)
    assert refused == FinalizeRefused(
        at=NOW, job_id=1, kind=job.kind, queue=job.queue, worker="w", token=9
    )


def test_a_release_publishes_nothing() -> None:
    """Giving a job back is not an event of the job's life."""
    assert event_of(_job(1), 9, Release(), FinalizeResult.APPLIED, worker="w", now=NOW) is None


def test_a_success_reports_how_long_the_handler_ran() -> None:
    """JobSucceeded carries the handler's running time."""
    event = event_of(
        _job(2), 9, Complete(), FinalizeResult.APPLIED, worker="w", now=NOW, duration=1.5
    )
    assert event == JobSucceeded(
        at=NOW, job_id=1, kind="decided", queue="default", attempt=2, worker="w", duration=1.5
    )


@pytest.mark.parametrize(
    ("elapsed", "allowed"),
    [(0.0, True), (8.9, True), (9.0, False), (10.0, False), (500.0, False)],
)
def test_a_handler_starts_only_with_more_than_the_margin_of_its_lease_left(
    elapsed: float, allowed: bool
) -> None:
    """With a 10 s lease and a 10% margin, a job may start up to 9 s after its claim was sent
    (by the node's clock), never later."""
    assert may_start(now=NOW + elapsed, sent_at=NOW, ttl=10.0, margin=0.1) is allowed


_ABOUT: dict[str, Any] = {"at": NOW, "job_id": 1, "kind": "decided", "queue": "default"}


@pytest.mark.parametrize(
    ("outcome", "event"),
    [
        (Complete(), JobSucceeded(**_ABOUT, attempt=2, worker="w", duration=0.5)),
        (
            Retry(run_at=NOW + 1, error="e"),
            JobRetried(**_ABOUT, attempt=2, worker="w", run_at=NOW + 1, error="e", duration=0.5),
        ),
        (
            Retry(run_at=NOW + 1),
            JobRetried(**_ABOUT, attempt=2, worker="w", run_at=NOW + 1, error="", duration=0.5),
        ),
        (
            Discard(error="e"),
            JobDead(**_ABOUT, attempt=2, worker="w", reason="e", duration=0.5),
        ),
        (Snooze(run_at=NOW + 1), JobSnoozed(**_ABOUT, worker="w", run_at=NOW + 1)),
        (
            Suspend(event_key="order:1:paid", run_at=NOW + 5),
            JobSnoozed(**_ABOUT, worker="w", run_at=NOW + 5, event_key="order:1:paid"),
        ),
        (Cancel(reason="asked"), JobCancelled(**_ABOUT, worker="w")),
    ],
)
def test_an_applied_finalizes_event_carries_the_jobs_attempt_and_running_time(
    outcome: Outcome, event: object
) -> None:
    """Every field of the event an applied finalize publishes, a retry without an error
    message reporting an empty one."""
    got = event_of(_job(2), 9, outcome, FinalizeResult.APPLIED, worker="w", now=NOW, duration=0.5)
    assert got == event


def test_an_event_without_a_running_time_reports_none_spent() -> None:
    """``duration`` defaults to 0: the handler never ran (a poison payload, say)."""
    got = event_of(_job(1), 9, Discard(error="e"), FinalizeResult.APPLIED, worker="w", now=NOW)
    assert got == JobDead(**_ABOUT, attempt=1, worker="w", reason="e", duration=0.0)


def test_an_exception_class_without_a_printable_name_is_recorded_as_error() -> None:
    nameless = type("\n", (Exception,), {"__module__": "builtins"})
    assert error_type_of(nameless()) == "Error"


@pytest.mark.parametrize("delay", [0.0, 0.5])
def test_retry_later_with_a_delay_under_a_second_retries_then(delay: float) -> None:
    """Any finite delay from 0 up is the handler's to choose."""
    outcome = outcome_of(_job(1), _task(), RetryLater(delay=delay), now=NOW, rng=Random(0))
    assert outcome == Retry(
        run_at=NOW + delay, error="retry requested by the handler", error_type="RetryLater"
    )


def test_retry_later_without_a_delay_draws_the_backoffs_jitter_from_the_nodes_rng() -> None:
    app = App(MemoryTransport())

    @app.task("jittered", backoff=Exponential(base=10.0))
    async def jittered(ctx: Any, payload: Any) -> None:
        return None

    outcome = outcome_of(_job(2), jittered, RetryLater(), now=NOW, rng=Random(3))
    assert isinstance(outcome, Retry)
    assert outcome.run_at == NOW + Exponential(base=10.0).delay(2, Random(3))


@pytest.mark.parametrize("result", ["x" * 100, Done(result="x" * 100)])
def test_a_result_over_the_stores_limit_ends_the_job_dead(result: object) -> None:
    """The limit is the store's (``max_result_bytes``), not the default."""
    outcome = outcome_of(_job(1), _task(), result, now=NOW, rng=Random(0), max_result_bytes=50)
    assert outcome == Discard(
        error="the handler's result cannot be stored: result is 102 bytes, over the limit of 50",
        error_type="ResultInvalid",
    )
