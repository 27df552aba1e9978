"""Errors of the job runtime, and which storage errors it treats as weather.

Hierarchy::

    JobError
    ├── ConfigInvalid (also ValueError)      a setting is out of range or of the wrong type;
    │   │                                     raised at construction (WorkerConfig, task
    │   │                                     options, Topology builder, schedules), before
    │   │                                     anything runs or is written
    │   └── InvalidCronExpression             a schedule's expression does not parse, or has
    │                                         a field count other than 5 or 6
    ├── UnknownJobKind (also LookupError)    enqueue or lookup of a kind with no handler
    ├── DuplicateJobKind (also ValueError)   a kind registered twice
    ├── PayloadInvalid (also ValueError)     a payload does not fit its task's payload type
    ├── LeaseLost                            the job belongs to someone else now (raised by
    │                                        ``JobContext.extend_lease`` and ``ctx.step``)
    ├── JobFailed                            ``App.result``: the job ended dead or cancelled
    │                                        (its state and last error are on the exception)
    ├── ResultTimeout (also TimeoutError)    ``App.result``: the job did not end in time
    └── WaitTimedOut                         ``ctx.wait_for``'s event was not signalled before
                                             its timeout

The API of :mod:`actors.jobs` raises these, or a :class:`transports.TransportError`, which
passes through unchanged (``transports.InvalidQueueName`` for a malformed queue name, for
instance); never a bare ``ValueError`` or ``TypeError``.

At run time the runtime sorts storage errors in two: :data:`RETRYABLE` errors (the store
went away or was busy, or it was closed under a running node) are the store's weather, logged
at WARNING and retried after a pause; every other error, ``transports.InvalidRequest`` or
``transports.JobNotFound`` above all, is a bug: it crashes the actor, whose supervisor logs it
at ERROR and restarts it within its restart intensity, past which the node fails.
"""

from __future__ import annotations

from transports import AttemptError, ConnectionLost, Job, JobState, TransportClosed, TransportError

__all__ = [
    "ConfigInvalid",
    "DuplicateJobKind",
    "InvalidCronExpression",
    "JobError",
    "JobFailed",
    "LeaseLost",
    "PayloadInvalid",
    "ResultTimeout",
    "UnknownJobKind",
    "WaitTimedOut",
]

#: Storage errors worth retrying: the call may succeed later unchanged. ``ConnectionLost``
#: covers a busy or locked store and a timeout too (the backends map those to it).
RETRYABLE: tuple[type[TransportError], ...] = (ConnectionLost, TransportClosed)


class JobError(Exception):
    """Root of the job runtime's own errors."""


class ConfigInvalid(JobError, ValueError):
    """A setting is out of range or of the wrong type (the message names it and its value)."""


class UnknownJobKind(JobError, LookupError):
    """No handler is registered for a job kind."""


class DuplicateJobKind(JobError, ValueError):
    """A job kind was registered twice in one App."""


class PayloadInvalid(JobError, ValueError):
    """A payload cannot be turned into (or made from) its task's payload type."""


class InvalidCronExpression(ConfigInvalid):
    """A cron schedule's expression does not parse, or has neither 5 nor 6 fields."""


class LeaseLost(JobError):
    """The job's lease expired or was taken over; the handler must stop."""


class JobFailed(JobError):
    """The job ended without a result to give: dead or cancelled (raised by ``App.result``).

    Attributes:
        job: the job as last read, final.
        state: ``JobState.DEAD`` (attempts ran out, dropped, discarded) or
            ``JobState.CANCELLED``.
        last_error: its newest error text (the reason it died, or its cancel's reason).
        errors: its error history, oldest first.
    """

    def __init__(self, job: Job) -> None:
        self.job = job
        self.state: JobState = job.state
        self.last_error: str | None = job.last_error
        self.errors: tuple[AttemptError, ...] = job.errors
        why = job.last_error if job.last_error is not None else "no error recorded"
        super().__init__(f"job {job.id} ({job.kind}) ended {job.state.value}: {why}")


class ResultTimeout(JobError, TimeoutError):
    """The job did not end within ``App.result``'s timeout (it may still)."""


class WaitTimedOut(JobError):
    """``ctx.wait_for(key, timeout=...)`` reached its timeout before ``key`` was signalled.

    Raised on every later attempt too (the timeout is recorded like a step), so a handler
    that catches it decides once what a missing event means.

    Attributes:
        event_key: the event waited for.
        deadline: when the wait timed out (clock time).
    """

    def __init__(self, event_key: str, deadline: float) -> None:
        super().__init__(f"no signal of {event_key!r} came before its timeout")
        self.event_key = event_key
        self.deadline = deadline
