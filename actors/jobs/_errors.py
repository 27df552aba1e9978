"""Errors of the job runtime.

Hierarchy::

    JobError
    ├── UnknownJobKind (also LookupError)   enqueue or lookup of a kind with no handler
    ├── DuplicateJobKind (also ValueError)  a kind registered twice
    ├── PayloadInvalid (also ValueError)    a payload does not fit its task's payload type
    ├── InvalidCronExpression (also ValueError)
    └── LeaseLost                            the job belongs to someone else now (raised by
                                             ``JobContext.extend_lease``)

Storage errors are :class:`transports.TransportError` and pass through unchanged.
"""

from __future__ import annotations

__all__ = [
    "DuplicateJobKind",
    "InvalidCronExpression",
    "JobError",
    "LeaseLost",
    "PayloadInvalid",
    "UnknownJobKind",
]


class JobError(Exception):
    """Root of the job runtime's own errors."""


class UnknownJobKind(JobError, LookupError):
    """No handler is registered for a job kind."""


class DuplicateJobKind(JobError, ValueError):
    """A job kind was registered twice in one App."""


class PayloadInvalid(JobError, ValueError):
    """A payload cannot be turned into (or made from) its task's payload type."""


class InvalidCronExpression(JobError, ValueError):
    """A cron schedule's expression does not parse."""


class LeaseLost(JobError):
    """The job's lease expired or was taken over; the handler must stop."""
