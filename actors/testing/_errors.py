"""What the test kit raises: each one a test failure, so a runner reports it as one.

Hierarchy::

    AssertionError
    └── TestingError            the root: every error this package raises
        ├── NotEnqueued         assert_enqueued found no matching job
        ├── UnexpectedlyEnqueued refute_enqueued found one
        ├── DrainDidNotSettle   jobs kept coming back past the drain's run budget
        └── ClockMovedBackwards advance() by a negative amount, advance_to() the past
"""

from __future__ import annotations

__all__ = [
    "ClockMovedBackwards",
    "DrainDidNotSettle",
    "NotEnqueued",
    "TestingError",
    "UnexpectedlyEnqueued",
]


class TestingError(AssertionError):
    """The root of the test kit's errors (an ``AssertionError``: a failed test, not a crash)."""

    __test__ = False  # a class named Test* is not a test class for pytest


class NotEnqueued(TestingError):
    """No stored job matched ``assert_enqueued``; the message lists what is enqueued."""


class UnexpectedlyEnqueued(TestingError):
    """A stored job matched ``refute_enqueued``; the message lists the matches."""


class DrainDidNotSettle(TestingError):
    """A drain ran more jobs than its budget and still found work (a job that always snoozes
    or retries, or jobs that keep enqueueing each other)."""


class ClockMovedBackwards(TestingError):
    """Virtual time only moves forward."""
