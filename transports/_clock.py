"""The wall-clock fallback used by transports built without a clock.

This is the one place in ``transports`` that reads real time; everything else asks the
injected :class:`~transports.lowlevel.TimeSource`, so tests and simulation stay deterministic.
"""

from __future__ import annotations

import time  # allowed: wall-clock fallback

__all__ = ["WallClock"]


class WallClock:
    """A :class:`~transports.lowlevel.TimeSource` reading the system's POSIX time."""

    def now(self) -> float:
        """Seconds since the epoch, as the operating system reports them."""
        return time.time()  # allowed: wall-clock fallback
