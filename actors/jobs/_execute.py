"""Running one claimed job's handler: decode, run under its timeout, decide the outcome.

:func:`execute` is what a Worker does with a job it was handed, and what the test kit's inline
drain does with a job it claimed, so both end jobs by the same code. The state that changes
while the handler awaits (lease lost, cancel requested) lives on an :class:`Execution`, which
the caller updates from its notices (:func:`lose` and :func:`request_cancel`).
"""

from __future__ import annotations

import logging
import traceback
from collections.abc import Awaitable, Callable
from random import Random  # allowed: type of the injected, seeded RNG only

import anyio

from transports import DEFAULT_MAX_RESULT_BYTES, Job, Transport
from transports.lowlevel import MAX_TRACEBACK, Cancel, Discard, Lease, Outcome, Release, RenewResult

from ..core import Clock
from ._app import App
from ._context import JobContext
from ._decide import (
    COMPLETE,
    PAYLOAD_INVALID,
    TIMEOUT,
    UNKNOWN_KIND,
    error_type_of,
    failure_of,
    outcome_of,
)
from ._errors import PayloadInvalid
from ._events import EventBus, new_job_claimed
from ._steps import AttemptEnded
from ._tracing import trace_id_of

__all__ = ["Execution", "execute", "lose", "request_cancel"]

_log = logging.getLogger("actorq.worker")


class Execution:
    """One claimed job as its runner sees it, from hand-off to outcome."""

    __slots__ = ("cancel", "context", "lease", "lost", "scope")

    def __init__(self, lease: Lease) -> None:
        self.lease = lease
        self.scope: anyio.CancelScope | None = None  # set while the handler runs
        self.lost = False  # the lease is gone: no outcome, someone else owns the job
        self.cancel = False  # an operator asked to cancel it
        self.context: JobContext | None = None

    def is_lost(self) -> bool:
        """Whether the lease was lost (a method, since it changes while the handler awaits)."""
        return self.lost

    def is_cancelled(self) -> bool:
        """Whether a cancel was requested (a method, for the same reason)."""
        return self.cancel


def lose(run: Execution) -> bool:
    """The lease of ``run`` is gone: stop its handler. False when it was lost already."""
    if run.lost:
        return False
    run.lost = True
    if run.scope is not None:
        run.scope.cancel()
    return True


def request_cancel(run: Execution) -> None:
    """An operator asked to cancel ``run``: tell its handler and stop it."""
    if run.cancel:
        return
    run.cancel = True
    if run.context is not None:
        run.context._request_cancel()
    if run.scope is not None:
        run.scope.cancel()


async def execute(
    run: Execution,
    *,
    app: App,
    clock: Clock,
    rng: Random,
    worker: str,
    events: EventBus,
    renew: Callable[[], Awaitable[RenewResult]],
    max_result_bytes: int = DEFAULT_MAX_RESULT_BYTES,
    transport: Transport | None = None,
    new_scope: Callable[[], anyio.CancelScope] = anyio.CancelScope,
) -> tuple[Outcome | None, float]:
    """Run the handler of ``run``'s job and decide what becomes of the job.

    Publishes ``JobClaimed`` as the handler starts. A job of an unknown kind or with a payload
    its task cannot decode ends dead without running. Cancelling ``run.scope`` (through
    :func:`lose`, :func:`request_cancel`, or a shutdown) stops the handler.

    Args:
        run: the job, its lease, and what happened to it meanwhile.
        app: the handler registry.
        clock: the node's clock (timeouts, retry times).
        rng: the node's seeded RNG (backoff jitter).
        worker: the runner's name, in events and logs.
        events: where ``JobClaimed`` goes.
        renew: what the handler's ``ctx.extend_lease()`` calls.
        max_result_bytes: the store's limit on a result (a larger one ends the job dead).
        transport: where the handler's ``ctx.step`` records steps (and ``ctx.wait_for``
            reads signals; ``ctx.parent_results`` its parents' results); a record refused as
            stale loses ``run``.
        new_scope: makes the handler's cancel scope: ``anyio.CancelScope`` or, cheaper, the
            running loop's own class of it (``anyio.CancelScope()`` asks which loop runs on
            every call), as a Worker passes.

    Returns:
        The outcome to finalize (``None`` when the lease was lost: nothing may be stored), and
        the handler's running time in seconds (0 when nobody listens for events).
    """
    tracer = app.tracer
    try:
        if tracer is None or run.lost:
            return await _execute(
                run,
                app=app,
                clock=clock,
                rng=rng,
                worker=worker,
                events=events,
                renew=renew,
                max_result_bytes=max_result_bytes,
                transport=transport,
                new_scope=new_scope,
            )
        with tracer.run(run.lease.job, worker=worker) as trace:
            outcome, duration = await _execute(
                run,
                app=app,
                clock=clock,
                rng=rng,
                worker=worker,
                events=events,
                renew=renew,
                max_result_bytes=max_result_bytes,
                transport=transport,
                new_scope=new_scope,
            )
            trace.done(outcome)
        return outcome, duration
    finally:
        # The context's callbacks refer back to ``run``: drop the cycle now, so the job's
        # objects go by reference counting, not by the cyclic collector (which, run for
        # every few jobs over a large heap, was a third of a no-op job's cost).
        run.context = None


async def _execute(
    run: Execution,
    *,
    app: App,
    clock: Clock,
    rng: Random,
    worker: str,
    events: EventBus,
    renew: Callable[[], Awaitable[RenewResult]],
    max_result_bytes: int,
    transport: Transport | None,
    new_scope: Callable[[], anyio.CancelScope],
) -> tuple[Outcome | None, float]:
    lease = run.lease
    job = lease.job
    if run.lost:
        return None, 0.0
    listened = events.has_subscribers
    started = clock.now() if listened else 0.0  # the run's start, for its events only
    if listened:
        events.publish(
            new_job_claimed(
                started,  # at
                job.id,
                job.kind,
                job.queue,
                job.attempt,
                worker,
                lease.token,
                job.created_at,  # enqueued_at
                job.run_at,
                lease.lost_at,
            )
        )
    if run.cancel:
        return Cancel(reason="cancel requested before start"), 0.0
    task = app.get(job.kind)
    if task is None:
        return (
            Discard(
                error=f"no handler is registered for job kind {job.kind!r}",
                error_type=UNKNOWN_KIND,
            ),
            0.0,
        )
    try:
        payload = task.structure(job.payload)
    except PayloadInvalid as exc:
        return Discard(error=f"poison payload: {exc}", error_type=PAYLOAD_INVALID), 0.0
    ctx = JobContext(lease, clock, renew, transport=transport, lost=lambda: lose(run))
    run.context = ctx
    error: str | None = None
    error_type: str | None = None
    trace: str | None = None
    result: object = None
    ended: Outcome | None = None  # a sleep or a wait ended the attempt
    timeout = task.options.timeout
    with new_scope() as scope:
        run.scope = scope
        try:
            if timeout is None:
                result = await task.fn(ctx, payload)
            else:
                with clock.move_on_after(timeout) as timer:
                    result = await task.fn(ctx, payload)
                if timer.cancelled_caught:
                    error = f"timed out after {timeout:g}s"
                    error_type = TIMEOUT
                    log_failure(job, error, None, worker)
        except AttemptEnded as end:
            ended = end.outcome
        except Exception as exc:
            error = _describe(exc)
            error_type = error_type_of(exc)
            trace = _traceback_tail(exc)
            if not run.is_lost():  # a lost lease (a refused step record) is no failure
                log_failure(job, error, exc, worker)
        finally:
            run.scope = None
    if run.is_lost():
        return None, 0.0  # someone else owns the job now; any finalize would be refused
    if run.is_cancelled():
        # An operator's cancel reached the handler (it stopped it, or the handler noticed
        # the request and returned): cancelled, whatever it returned.
        return Cancel(reason="cancel requested"), 0.0
    if scope.cancel_called:
        return Release(), 0.0  # a shutdown stopped it: give the job back
    duration = clock.now() - started if listened else 0.0
    if ended is not None:
        return ended, duration
    if error is not None:
        outcome = failure_of(
            job, task, error, now=clock.now(), rng=rng, error_type=error_type, traceback=trace
        )
        return outcome, duration
    if result is None:
        return COMPLETE, duration
    outcome = outcome_of(
        job, task, result, now=clock.now(), rng=rng, max_result_bytes=max_result_bytes
    )
    return outcome, duration


def log_failure(job: Job, error: str, exc: BaseException | None, worker: str) -> None:
    """A failed attempt: WARNING, with the traceback when the handler raised."""
    then = "will retry" if job.attempt < job.max_attempts else "no attempts left"
    _log.warning(
        "job %d (%s) on queue %r failed, attempt %d/%d, %s: %s",
        job.id,
        job.kind,
        job.queue,
        job.attempt,
        job.max_attempts,
        then,
        error,
        exc_info=exc,
        extra=log_fields(job, worker),
    )


def log_dead(job: Job, outcome: Discard, worker: str) -> None:
    """A job that ended dead: ERROR, with its reason (never its payload)."""
    _log.error(
        "job %d (%s) on queue %r is dead after attempt %d/%d: %s",
        job.id,
        job.kind,
        job.queue,
        job.attempt,
        job.max_attempts,
        outcome.error,
        extra=log_fields(job, worker),
    )


def log_fields(job: Job, worker: str) -> dict[str, object]:
    """The ``extra=`` fields of a job's log records, for structured logging (``trace_id``
    too when the job was enqueued under a trace)."""
    fields: dict[str, object] = {
        "job_id": job.id,
        "job_kind": job.kind,
        "queue": job.queue,
        "attempt": job.attempt,
        "max_attempts": job.max_attempts,
        "worker": worker,
    }
    trace_id = trace_id_of(job)
    if trace_id is not None:
        fields["trace_id"] = trace_id
    return fields


def _traceback_tail(exc: BaseException) -> str:
    """The last ``MAX_TRACEBACK`` characters of the exception's formatted traceback (the
    innermost frames and the error itself, which matter most)."""
    text = "".join(traceback.format_exception(type(exc), exc, exc.__traceback__))
    return text[-MAX_TRACEBACK:]


def _describe(exc: BaseException) -> str:
    lines = traceback.format_exception_only(type(exc), exc)
    return "".join(lines).strip()[:2000]
