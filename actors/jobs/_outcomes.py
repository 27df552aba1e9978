"""What a handler can tell the Worker about its job, by returning one of these.

Returning ``None`` means :class:`Done`. Returning any other value that is not one of these
classes makes it the job's *result*: the job succeeds and the value (JSON, at most the
transport's ``max_result_bytes`` encoded) is stored with it, as ``Done(result=value)`` does.
Raising any exception means "retry with the task's backoff until ``max_attempts``, then dead".
A timeout counts as such a failure.
"""

from __future__ import annotations

from typing import Any, TypeAlias

import attrs

__all__ = ["Done", "Drop", "HandlerOutcome", "RetryLater", "SnoozeUntil"]


@attrs.frozen(kw_only=True)
class Done:
    """The job succeeded; ``result`` (JSON; None: none) is stored with it."""

    result: Any = None


@attrs.frozen(kw_only=True)
class RetryLater:
    """Try again; spends an attempt. Ends dead when no attempts remain."""

    delay: float | None = None  # seconds; None: the task's backoff decides
    reason: str | None = None  # recorded as the job's last error


@attrs.frozen(kw_only=True)
class Drop:
    """Give up now: the job ends dead and is never retried (bad input, gone resource)."""

    reason: str


@attrs.frozen(kw_only=True)
class SnoozeUntil:
    """Run again at ``at`` (clock time) without spending an attempt (waiting on something).

    With ``cool_down=True`` (the remote said "429, retry after 30 s"), the job's concurrency
    key also cools down until ``at`` for the whole cluster: no node starts a job of that key
    before then. A job without a key only snoozes.
    """

    at: float
    cool_down: bool = False


HandlerOutcome: TypeAlias = Done | RetryLater | Drop | SnoozeUntil
"""What a handler may return (returning ``None`` is the same as ``Done()``)."""
