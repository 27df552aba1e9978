"""A simulated node's clock: the store's virtual clock, seen with a skew, that can stop.

Every node incarnation gets its own :class:`NodeClock` over the one ``VirtualClock`` of the
run. Its ``now()`` is the store's time plus an offset (clock skew; lease expiry stays in the
store's clock domain). While the node is paused its sleepers do not wake: a sleep whose time
came during the pause returns only on resume, all of them late at once, as after a real
stop-the-world pause. Once the incarnation is dead, sleeps and timeouts return at once so that
whatever of it still runs (a shielded finalize) winds down without waiting.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import anyio
import anyio.lowlevel

from actors.core import Clock, ClockStatistics, VirtualClock

__all__ = ["NodeClock"]


@contextlib.contextmanager
def _cancelled_scope() -> Iterator[anyio.CancelScope]:
    with anyio.CancelScope() as scope:
        scope.cancel()
        yield scope


class NodeClock(Clock):
    """The clock of one node incarnation: ``base`` plus ``offset``, pausable, killable.

    Args:
        base: the run's virtual clock (the store's clock domain).
        offset: seconds this node's clock is ahead of the store's (negative: behind).
    """

    def __init__(self, base: VirtualClock, offset: float = 0.0) -> None:
        self._base = base
        #: Seconds this clock is ahead of the store's; a step changes it (pending sleeps keep
        #: their length, as with a wall clock stepped by NTP).
        self.offset = offset
        self._resumed: anyio.Event | None = None  # set on resume; None while running
        self._dead = False

    @property
    def paused(self) -> bool:
        """True between ``pause()`` and ``resume()``."""
        return self._resumed is not None

    @property
    def dead(self) -> bool:
        """True once ``kill()`` was called."""
        return self._dead

    def now(self) -> float:
        """The store's virtual time plus this node's offset."""
        return self._base.now() + self.offset

    async def sleep_until(self, deadline: float) -> None:
        """Sleep until ``now() >= deadline``, and then for as long as the node is paused."""
        if self._dead:
            await anyio.lowlevel.checkpoint()
            return
        await self._base.sleep_until(deadline - self.offset)
        await self.wait_running()

    def move_on_at(self, deadline: float) -> contextlib.AbstractContextManager[anyio.CancelScope]:
        """A cancel scope cancelled at ``deadline`` on this clock (at once when dead)."""
        if self._dead:
            return _cancelled_scope()
        return self._base.move_on_at(deadline - self.offset)

    def statistics(self) -> ClockStatistics:
        """The base clock's statistics, with times on this clock."""
        stats = self._base.statistics()
        deadline = stats.next_deadline
        return ClockStatistics(
            now=self.now(),
            sleeping=stats.sleeping,
            next_deadline=None if deadline is None else deadline + self.offset,
            jumps=stats.jumps,
        )

    async def wait_running(self) -> None:
        """Return at once unless paused; then wait for ``resume()`` (no checkpoint if running)."""
        while (resumed := self._resumed) is not None:
            await resumed.wait()

    def pause(self) -> None:
        """Stop the world: sleepers and storage calls of this node wait until ``resume()``."""
        if self._resumed is None and not self._dead:
            self._resumed = anyio.Event()

    def resume(self) -> None:
        """Let the node run again; every sleeper whose time passed wakes now."""
        resumed, self._resumed = self._resumed, None
        if resumed is not None:
            resumed.set()

    def kill(self) -> None:
        """The incarnation is dead: resume what waits, and make every later wait return."""
        self._dead = True
        self.resume()
