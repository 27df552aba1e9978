"""Where a tracing system hooks into the runtime: around an enqueue, around each run.

The runtime knows no tracing library. An App whose ``tracer`` is set (see
``actors.telemetry.instrument_tracing`` for OpenTelemetry) opens a trace around each
``enqueue`` / ``enqueue_many`` (which may add its context to each request's headers) and one
around every run of a handler (which is current while the handler runs, so the handler's own
spans and log lines belong to it), told the outcome at the end.
"""

from __future__ import annotations

from collections.abc import Sequence
from contextlib import AbstractContextManager
from typing import Protocol

from transports import EnqueueRequest, EnqueueResult, Job
from transports.lowlevel import Outcome

__all__ = ["EnqueueTrace", "RunTrace", "Tracer", "trace_id_of"]


class EnqueueTrace(Protocol):
    """One enqueue as its tracer sees it."""

    #: The requests to write: those given, with the trace context added to their headers.
    requests: list[EnqueueRequest]

    def done(self, results: Sequence[EnqueueResult]) -> None:
        """The store took the requests (one result each, in order)."""


class RunTrace(Protocol):
    """One run of a handler as its tracer sees it."""

    def done(self, outcome: Outcome | None) -> None:
        """The run ended with ``outcome`` (None: its lease was lost, nothing is stored)."""


class Tracer(Protocol):
    """What ``App.tracer`` is: opens the trace of an enqueue and of a run.

    An exception raised in either block (a storage error, a cancelled run) passes through
    the context manager, which ends its trace as failed.
    """

    def enqueue(self, requests: list[EnqueueRequest]) -> AbstractContextManager[EnqueueTrace]:
        """Around writing ``requests``; the trace's ``requests`` are what gets written."""
        ...

    def run(self, job: Job, *, worker: str) -> AbstractContextManager[RunTrace]:
        """Around running a claimed ``job``'s handler on ``worker``."""
        ...


def trace_id_of(job: Job) -> str | None:
    """The trace id of the W3C ``traceparent`` stored in ``job``'s headers, if any."""
    parent = job.headers.get("traceparent")
    if not isinstance(parent, str):
        return None
    parts = parent.split("-")
    if len(parts) < 4 or len(parts[1]) != 32 or parts[1] == "0" * 32:
        return None
    return parts[1]
