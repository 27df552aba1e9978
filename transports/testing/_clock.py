"""A clock that moves only when a test moves it."""

from __future__ import annotations

__all__ = ["ManualClock"]


class ManualClock:
    """A :class:`~transports.lowlevel.TimeSource` whose time is set by hand.

    Tests inject it into a transport and move time with :meth:`advance` or :meth:`set` to
    expire leases and bring scheduled jobs due, without ever sleeping.

    Args:
        start: the initial time, in POSIX seconds.
    """

    def __init__(self, start: float = 1_000_000.0) -> None:
        self._now = start

    def now(self) -> float:
        """The current time."""
        return self._now

    def advance(self, seconds: float) -> float:
        """Move time forward by ``seconds`` (>= 0) and return the new time.

        Raises:
            ValueError: ``seconds`` is negative.
        """
        if seconds < 0:
            raise ValueError(f"cannot advance by a negative amount ({seconds})")
        self._now += seconds
        return self._now

    def set(self, now: float) -> None:
        """Jump to ``now``, forwards or backwards (backwards models a clock stepping back)."""
        self._now = now

    def __repr__(self) -> str:
        return f"ManualClock(now={self._now!r})"
