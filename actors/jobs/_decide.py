"""The runtime's decisions, as pure functions: handler result → outcome → event.

Nothing here awaits, reads a clock or touches an actor: the time and the RNG come in as
arguments, so each rule is tested on its own (``tests/jobs/test_decide.py``) and the same code
decides for a running node and for the test kit's inline drain.

* :func:`outcome_of` — what a handler's return value (or its failure) makes of the job: the
  storage action (``transports.lowlevel.Outcome``) its finalize carries.
* :func:`failure_of` — a failed attempt: retry with the task's backoff, or dead when no
  attempts remain.
* :func:`event_of` — the event a finalize's answer publishes (``None`` for a release).
* :func:`may_start` — whether a handed-over lease still has enough life, by the node's clock,
  for its handler to start.
"""

from __future__ import annotations

import math
from random import Random  # allowed: type of the injected, seeded RNG only
from typing import Any

from transports import (
    DEFAULT_MAX_RESULT_BYTES,
    Job,
    ResultNotSerializable,
    ResultTooLarge,
)
from transports.lowlevel import (
    MAX_LABEL_LENGTH,
    Cancel,
    Complete,
    Discard,
    FinalizeResult,
    Outcome,
    Retry,
    Snooze,
    Suspend,
    encode_result,
)

from ._app import Task
from ._events import (
    FinalizeRefused,
    JobCancelled,
    JobDead,
    JobRetried,
    JobSnoozed,
    JobSucceeded,
    RuntimeEvent,
    new_job_succeeded,
)
from ._outcomes import Done, Drop, RetryLater, SnoozeUntil

__all__ = [
    "DROP",
    "INVALID_OUTCOME",
    "PAYLOAD_INVALID",
    "RESULT_INVALID",
    "RETRY_LATER",
    "TIMEOUT",
    "UNKNOWN_KIND",
    "error_type_of",
    "event_of",
    "failure_of",
    "may_start",
    "outcome_of",
    "result_outcome",
]

# The error types the runtime records for causes that are not a handler's exception (see
# transports.AttemptError.type); an exception is recorded by its class name.
TIMEOUT = "Timeout"  # the task's timeout stopped the handler
RETRY_LATER = "RetryLater"  # the handler returned RetryLater
DROP = "Drop"  # the handler returned Drop
INVALID_OUTCOME = "InvalidOutcome"  # the handler returned something that is not an outcome
UNKNOWN_KIND = "UnknownKind"  # no handler is registered for the job's kind
PAYLOAD_INVALID = "PayloadInvalid"  # the payload does not fit the handler's type
RESULT_INVALID = "ResultInvalid"  # the handler's result is not JSON or over max_result_bytes


def error_type_of(exc: BaseException) -> str:
    """The error type recorded for an exception: its class's qualified name, prefixed by its
    module unless builtin, cut to a label's length (see ``transports.AttemptError``)."""
    cls = type(exc)
    name = (
        cls.__qualname__ if cls.__module__ == "builtins" else f"{cls.__module__}.{cls.__qualname__}"
    )
    name = "".join(ch for ch in name if ch.isprintable())[:MAX_LABEL_LENGTH]
    return name or "Error"


#: The outcome of most jobs, shared (outcomes are frozen).
COMPLETE = Complete()


def may_start(*, now: float, sent_at: float, ttl: float, margin: float) -> bool:
    """Whether a handler may start at ``now`` on a lease claimed for ``ttl`` seconds by a claim
    sent at ``sent_at``, keeping ``margin`` of the TTL (``WorkerConfig.start_margin``) in hand.

    Both times are on the node's clock. The store granted the lease after the claim was sent,
    so the node's deadline (``sent_at + ttl``) is never later than the store's expiry, as long
    as the two clocks run at the same rate; the margin covers a hand-off and a drift.
    """
    return now < sent_at + ttl * (1.0 - margin)


def failure_of(
    job: Job,
    task: Task[Any],
    error: str,
    *,
    now: float,
    rng: Random,
    error_type: str | None = None,
    traceback: str | None = None,
) -> Outcome:
    """A failed attempt of ``job`` (an exception, a timeout, a ``RetryLater()``): ``Retry`` at
    ``now`` plus the task's backoff, or ``Discard`` once ``job.attempt`` reaches its maximum.

    ``error_type`` (the exception's class name, or ``TIMEOUT`` / ``RETRY_LATER``) and the
    ``traceback`` go with the error into the job's history."""
    if job.attempt >= job.max_attempts:
        return Discard(
            error=f"attempts exhausted ({job.attempt}/{job.max_attempts}): {error}",
            error_type=error_type,
            traceback=traceback,
        )
    return Retry(
        run_at=now + task.options.backoff.delay(job.attempt, rng),
        error=error,
        error_type=error_type,
        traceback=traceback,
    )


def result_outcome(value: object, max_result_bytes: int = DEFAULT_MAX_RESULT_BYTES) -> Outcome:
    """``Complete`` storing ``value`` as the job's result, or ``Discard`` (type
    ``RESULT_INVALID``) when it is not JSON or its encoding is over ``max_result_bytes``: a
    run again would return the same, so it is not retried."""
    if value is None:
        return COMPLETE
    try:
        encode_result(value, max_result_bytes)
    except (ResultNotSerializable, ResultTooLarge) as exc:
        return Discard(
            error=f"the handler's result cannot be stored: {exc}", error_type=RESULT_INVALID
        )
    return Complete(result=value)


def outcome_of(
    job: Job,
    task: Task[Any],
    result: object,
    *,
    now: float,
    rng: Random,
    max_result_bytes: int = DEFAULT_MAX_RESULT_BYTES,
) -> Outcome:
    """The storage action for a handler of ``job`` that returned ``result``.

    ``None`` and ``Done()`` complete the job; ``RetryLater`` spends an attempt (the task's
    backoff, or its own finite delay); ``Drop`` ends it dead; ``SnoozeUntil`` waits without
    spending an attempt (and, with ``cool_down``, cools the job's key down until then);
    ``Done(result=value)`` and any other value complete the job with the value as its result
    (see :func:`result_outcome`: one that cannot be stored ends it dead).
    """
    if result is None:
        return COMPLETE
    if type(result) is Done:
        return result_outcome(result.result, max_result_bytes)
    if isinstance(result, RetryLater):
        reason = result.reason or "retry requested by the handler"
        if result.delay is None:
            return failure_of(job, task, reason, now=now, rng=rng, error_type=RETRY_LATER)
        if not (result.delay >= 0 and math.isfinite(result.delay)):
            return Discard(
                error=f"handler returned {result!r}: the delay must be finite",
                error_type=INVALID_OUTCOME,
            )
        if job.attempt >= job.max_attempts:
            return Discard(
                error=f"attempts exhausted ({job.attempt}/{job.max_attempts}): {reason}",
                error_type=RETRY_LATER,
            )
        return Retry(run_at=now + result.delay, error=reason, error_type=RETRY_LATER)
    if isinstance(result, Drop):
        return Discard(error=result.reason, error_type=DROP)
    if isinstance(result, SnoozeUntil):
        if not math.isfinite(result.at):
            return Discard(
                error=f"handler returned {result!r}: the time must be finite",
                error_type=INVALID_OUTCOME,
            )
        return Snooze(run_at=result.at, cool_down=result.cool_down is True)
    return result_outcome(result, max_result_bytes)


def event_of(
    job: Job,
    token: int,
    outcome: Outcome,
    result: FinalizeResult,
    *,
    worker: str,
    now: float,
    duration: float = 0.0,
) -> RuntimeEvent | None:
    """The event published once the store answered a finalize of ``job`` with ``outcome``.

    A refused (stale) finalize is ``FinalizeRefused`` whatever the outcome; a ``Release``
    publishes nothing (the job simply becomes available again). ``duration`` is the handler's
    running time, reported by ``JobSucceeded``, ``JobRetried`` and ``JobDead``.
    """
    if type(outcome) is Complete and result is FinalizeResult.APPLIED:
        # The event of nearly every job, so built positionally (no shared fields' dict).
        return new_job_succeeded(now, job.id, job.kind, job.queue, job.attempt, worker, duration)
    # Every event names the job, its queue and kind, the worker and the time.
    about: dict[str, Any] = {
        "at": now,
        "job_id": job.id,
        "kind": job.kind,
        "queue": job.queue,
        "worker": worker,
    }
    if result is FinalizeResult.STALE:
        return FinalizeRefused(**about, token=token)
    if type(outcome) is Complete:
        return JobSucceeded(**about, attempt=job.attempt, duration=duration)
    if isinstance(outcome, Retry):
        error = outcome.error or ""
        return JobRetried(
            **about, attempt=job.attempt, run_at=outcome.run_at, error=error, duration=duration
        )
    if isinstance(outcome, Discard):
        return JobDead(**about, attempt=job.attempt, reason=outcome.error, duration=duration)
    if isinstance(outcome, Snooze):
        return JobSnoozed(**about, run_at=outcome.run_at)
    if isinstance(outcome, Cancel):
        return JobCancelled(**about)
    if isinstance(outcome, Suspend):
        return JobSnoozed(**about, run_at=outcome.run_at, event_key=outcome.event_key)
    return None
