"""The wall-clock fallback used by transports built without a clock.

This is the one place in ``transports`` that reads real time; everything else asks the
injected :class:`~transports.lowlevel.TimeSource`, so tests and simulation stay deterministic.
"""

from __future__ import annotations

import time  # allowed: wall-clock fallback

import anyio

__all__ = ["WallClock"]


class WallClock:
    """A :class:`~transports.lowlevel.TimeSource` reading the system's POSIX time."""

    def now(self) -> float:
        """Seconds since the epoch, as the operating system reports them."""
        return time.time()  # allowed: wall-clock fallback


async def poll_pause(seconds: float) -> None:
    """Wait ``seconds`` of real time between two looks at a store that cannot notify.

    The one real-time wait in ``transports``: a backend's own watcher (SQLite's, which asks
    the file whether another process committed) runs on the driver's event loop, which may be
    a private one behind :class:`~transports.lowlevel.BridgedTransport`, where no injected
    clock can reach. What the watcher decides never depends on how long it waited.
    """
    await anyio.sleep(seconds)  # allowed: a watcher's real-time pause
