"""Clocks: the only place in ``actors`` that reads real time.

Actors never call ``time`` or ``anyio.sleep`` directly; they use ``self.context.clock``. Swapping
``RealClock`` for ``VirtualClock`` then makes a whole actor system run on virtual time, which is
what tests and the simulator rely on.
"""

from __future__ import annotations

import abc
import asyncio
import contextlib
import heapq
import itertools
import math
import time
from collections import deque
from collections.abc import AsyncIterator, Iterator
from types import TracebackType

import anyio
import anyio.lowlevel
import attrs

__all__ = ["Clock", "ClockStatistics", "RealClock", "VirtualClock"]


@attrs.frozen(kw_only=True)
class ClockStatistics:
    """A snapshot of a clock, returned by ``Clock.statistics()``."""

    #: The clock's current time, in seconds.
    now: float
    #: Tasks currently sleeping on this clock (plus pending clock timeouts).
    sleeping: int
    #: The earliest pending deadline, or None when nothing is scheduled (always None on RealClock).
    next_deadline: float | None
    #: How many times autojump moved virtual time forward (always 0 on RealClock).
    jumps: int


class Clock(abc.ABC):
    """The source of time for an actor system.

    All times are float seconds on the clock's own axis. Every waiting method is a checkpoint,
    even when it returns at once (``sleep(0)``, a deadline in the past).
    """

    @abc.abstractmethod
    def now(self) -> float:
        """Return the current time in seconds."""

    async def sleep(self, seconds: float) -> None:
        """Sleep for ``seconds`` (0 or less only checkpoints)."""
        await self.sleep_until(self.now() + seconds)

    @abc.abstractmethod
    async def sleep_until(self, deadline: float) -> None:
        """Sleep until ``now() >= deadline`` (a past deadline only checkpoints)."""

    def move_on_after(self, seconds: float) -> contextlib.AbstractContextManager[anyio.CancelScope]:
        """Return a cancel scope that is cancelled ``seconds`` from now on this clock.

        Use it like ``anyio.move_on_after``; check ``scope.cancelled_caught`` afterwards.
        """
        return self.move_on_at(self.now() + seconds)

    @abc.abstractmethod
    def move_on_at(self, deadline: float) -> contextlib.AbstractContextManager[anyio.CancelScope]:
        """Return a cancel scope that is cancelled when this clock reaches ``deadline``."""

    @abc.abstractmethod
    def statistics(self) -> ClockStatistics:
        """Return a snapshot of this clock."""


class RealClock(Clock):
    """Wall-clock time (epoch seconds), so timestamps mean something outside the process.

    Sleeps and timeouts go through anyio's own timers; a wall-clock step (NTP) therefore shifts
    ``now()`` but not the length of a pending sleep.
    """

    __slots__ = ("_sleeping",)

    def __init__(self) -> None:
        self._sleeping = 0

    #: Return the wall-clock time in seconds since the epoch: ``time.time`` itself (allowed:
    #: real clock), so a read costs one C call, not a method's frame as well (the runtime
    #: reads the clock several times a job).
    now = staticmethod(time.time)

    async def sleep(self, seconds: float) -> None:
        """Sleep for ``seconds`` of real time."""
        self._sleeping += 1
        try:
            await anyio.sleep(max(0.0, seconds))  # allowed: real clock
        finally:
            self._sleeping -= 1

    async def sleep_until(self, deadline: float) -> None:
        """Sleep until the wall clock reaches ``deadline``."""
        await self.sleep(deadline - time.time())  # allowed: real clock

    def move_on_at(self, deadline: float) -> contextlib.AbstractContextManager[anyio.CancelScope]:
        """Return an anyio cancel scope expiring at the wall-clock ``deadline``."""
        if math.isinf(deadline):
            return anyio.CancelScope()
        return anyio.move_on_after(max(0.0, deadline - time.time()))  # allowed: real clock

    def statistics(self) -> ClockStatistics:
        """Return a snapshot (only ``now`` and ``sleeping`` are meaningful)."""
        return ClockStatistics(now=self.now(), sleeping=self._sleeping, next_deadline=None, jumps=0)


class _Timer:
    """One pending wake-up on a VirtualClock: a sleeping task or a timeout scope."""

    __slots__ = ("cancelled", "deadline", "event", "scope")

    def __init__(
        self, deadline: float, event: anyio.Event | None, scope: anyio.CancelScope | None
    ) -> None:
        self.deadline = deadline
        self.event = event
        self.scope = scope
        self.cancelled = False


class _VirtualTimeout:
    """Context manager behind ``VirtualClock.move_on_at``: a cancel scope plus a timer."""

    __slots__ = ("_clock", "_deadline", "_scope", "_timer")

    def __init__(self, clock: VirtualClock, deadline: float) -> None:
        self._clock = clock
        self._deadline = deadline
        self._scope = anyio.CancelScope()
        self._timer: _Timer | None = None

    def __enter__(self) -> anyio.CancelScope:
        scope = self._scope.__enter__()
        if self._deadline <= self._clock._now:
            scope.cancel()
        elif not math.isinf(self._deadline):
            self._timer = self._clock._push(self._deadline, None, scope)
        return scope

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> bool:
        if self._timer is not None:
            self._timer.cancelled = True
        return self._scope.__exit__(exc_type, exc, tb)


async def _wait_all_tasks_blocked() -> None:
    """Return once every other task of the event loop is blocked, on asyncio and trio alike."""
    try:
        loop = asyncio.get_running_loop()
    except RuntimeError:
        import trio.testing  # trio is optional: imported only when running on it

        await trio.testing.wait_all_tasks_blocked()
        return
    # anyio's asyncio version polls with a real 0.1 s sleep, far too slow for autojump. Instead,
    # yield once per loop iteration and look at the loop's ready queue: when it is empty after our
    # own turn, nothing else can run until a future (I/O, timer, our clock) completes.
    ready = getattr(loop, "_ready", None)
    this_task = asyncio.current_task()
    while True:
        # anyio's checkpoint on asyncio, without asking which loop runs on every turn (the
        # simulator's autojump comes here hundreds of thousands of times per run)
        await asyncio.sleep(0)
        if ready is not None:
            if not ready:
                return
            continue
        # Event loops without a ready queue (uvloop): fall back to inspecting every task.
        for task in asyncio.all_tasks():
            waiter = getattr(task, "_fut_waiter", None)
            if task is not this_task and (waiter is None or waiter.done()):
                break
        else:
            return


class VirtualClock(Clock):
    """A clock whose time moves only when told to: ``advance``, ``advance_to`` or autojump.

    Sleepers (and clock timeouts) wake in deadline order, ties in the order they went to sleep.
    Wake-ups are released one at a time, because trio may reorder tasks made runnable together:
    after ``advance`` the next sleeper is released when the previous one has resumed; under
    autojump, only when every task is blocked again, so each woken task runs to quiescence
    before the next wakes. A program whose tasks interact only through this clock and the actor
    core therefore produces the same trace on every run, on asyncio and on trio.

    Args:
        start: the initial time, in seconds.
    """

    def __init__(self, start: float = 0.0) -> None:
        self._now = float(start)
        self._heap: list[tuple[float, int, _Timer]] = []
        self._seq = itertools.count()
        self._due: deque[_Timer] = deque()
        self._handoff: _Timer | None = None
        self._new_timer: anyio.Event | None = None
        self._jumps = 0
        self._autojumping = False
        self._holds = 0
        self._unheld: anyio.Event | None = None

    def now(self) -> float:
        """Return the current virtual time."""
        return self._now

    async def sleep_until(self, deadline: float) -> None:
        """Sleep until virtual time reaches ``deadline``."""
        if deadline <= self._now:
            await anyio.lowlevel.checkpoint()
            return
        timer = self._push(deadline, anyio.Event(), None)
        assert timer.event is not None
        try:
            await timer.event.wait()
        finally:
            timer.cancelled = True
            if self._handoff is timer:
                self._handoff = None
                if not self._autojumping:
                    self._release_due()

    def move_on_at(self, deadline: float) -> contextlib.AbstractContextManager[anyio.CancelScope]:
        """Return a cancel scope cancelled when virtual time reaches ``deadline``."""
        return _VirtualTimeout(self, deadline)

    def advance(self, seconds: float) -> None:
        """Move time forward by ``seconds`` and wake every sleeper whose deadline has passed.

        Raises:
            ValueError: if ``seconds`` is negative.
        """
        if seconds < 0:
            raise ValueError(f"cannot move a clock backwards (advance({seconds}))")
        self.advance_to(self._now + seconds)

    def advance_to(self, t: float) -> None:
        """Set time to ``t`` and wake every sleeper with a deadline ``<= t``.

        Raises:
            ValueError: if ``t`` is earlier than ``now()``.
        """
        if t < self._now:
            raise ValueError(f"cannot move a clock backwards (from {self._now} to {t})")
        self._now = t
        heap = self._heap
        while heap and heap[0][0] <= t:
            timer = heapq.heappop(heap)[2]
            if not timer.cancelled:
                self._due.append(timer)
        self._release_due()

    def next_deadline(self) -> float | None:
        """Return the earliest pending deadline, or None when nobody waits on this clock."""
        heap = self._heap
        while heap and heap[0][2].cancelled:
            heapq.heappop(heap)
        if self._due:
            return self._now
        return heap[0][0] if heap else None

    @contextlib.contextmanager
    def hold(self) -> Iterator[None]:
        """Keep autojump from moving time while the block runs; blocks may nest.

        Autojump counts a task waiting for a thread or a socket as blocked, so while a real
        database query runs, virtual time would race through every pending timer (leases
        would expire mid-query). Wrap such a wait in ``hold()``: time then stands still until
        it returns, as it does for the memory backend. ``advance`` still works while held.
        """
        self._holds += 1
        try:
            yield
        finally:
            self._holds -= 1
            if not self._holds and self._unheld is not None:
                self._unheld.set()
                self._unheld = None

    @contextlib.asynccontextmanager
    async def autojump(self) -> AsyncIterator[VirtualClock]:
        """Run ``run_autojump`` in the background for the duration of the block."""
        body_error: Exception | None = None
        async with anyio.create_task_group() as tg:
            tg.start_soon(self.run_autojump)
            try:
                yield self
            except Exception as exc:
                body_error = exc  # re-raised outside the task group, so not in an ExceptionGroup
            finally:
                tg.cancel_scope.cancel()
        if body_error is not None:
            raise body_error

    async def run_autojump(self) -> None:
        """Jump to the next deadline whenever every other task is blocked; runs until cancelled.

        "Blocked" means waiting for something; a task waiting for real I/O, a thread or a real
        timer counts as blocked too, so virtual time may jump while it waits.
        """
        if self._autojumping:
            raise RuntimeError("autojump is already running on this clock")
        self._autojumping = True
        try:
            while True:
                await _wait_all_tasks_blocked()
                if self._holds:
                    self._unheld = unheld = anyio.Event()
                    await unheld.wait()
                    continue
                self._handoff = None
                if self._release_due():
                    continue
                deadline = self.next_deadline()
                if deadline is None:
                    self._new_timer = event = anyio.Event()
                    await event.wait()
                    continue
                self._jumps += 1
                self.advance_to(max(deadline, self._now))
        finally:
            self._autojumping = False
            self._handoff = None
            self._release_due()

    def statistics(self) -> ClockStatistics:
        """Return a snapshot of pending sleepers, the next deadline and the jump count."""
        pending = sum(1 for _, _, timer in self._heap if not timer.cancelled)
        pending += sum(1 for timer in self._due if not timer.cancelled)
        return ClockStatistics(
            now=self._now, sleeping=pending, next_deadline=self.next_deadline(), jumps=self._jumps
        )

    def _push(
        self, deadline: float, event: anyio.Event | None, scope: anyio.CancelScope | None
    ) -> _Timer:
        timer = _Timer(deadline, event, scope)
        heapq.heappush(self._heap, (deadline, next(self._seq), timer))
        if self._new_timer is not None:
            self._new_timer.set()
            self._new_timer = None
        return timer

    def _release_due(self) -> bool:
        """Release due timers in order, one per call under autojump; True if one was released.

        Without autojump, a woken sleeper releases the next one when it resumes.
        """
        due = self._due
        released = False
        while due and self._handoff is None:
            timer = due.popleft()
            if timer.cancelled:
                continue
            released = True
            if timer.scope is not None:
                timer.cancelled = True
                timer.scope.cancel()
            else:
                assert timer.event is not None
                self._handoff = timer
                timer.event.set()
            if self._autojumping:
                break
        return released

    def __repr__(self) -> str:
        return f"<VirtualClock now={self._now}>"
