"""History: the node's per-queue, per-minute figures, added to the store's history table.

The :class:`StatsRecorder` (pure, no actor) turns the runtime events one node sees into
increments of :class:`~transports.QueueStats` per ``(queue, minute)``; the :class:`History`
actor subscribes it to the node's events and flushes it with ``Transport.add_stats`` every
``interval`` seconds and when it stops. Every figure is a sum and the latency histograms have
fixed buckets, so the increments of every node add up in the store to the cluster's figures
and percentiles need no leader: see ``transports/_base.py``, "What operators watch".
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import TypeAlias

import anyio

from transports import BUCKET_BOUNDS, COUNTERS, Histogram, QueueStats, Transport, minute_of
from transports.lowlevel import bucket_of

from ..core import Actor, ExitReason
from ._config import WorkerConfig, integer, number
from ._errors import RETRYABLE
from ._events import (
    EventBus,
    FinalizeRefused,
    JobCancelled,
    JobClaimed,
    JobDead,
    JobLeaseLost,
    JobReclaimed,
    JobRetried,
    JobSnoozed,
    JobSucceeded,
    RuntimeEvent,
)
from ._periodic import RunNow, Tick

__all__ = ["History", "HistoryMessage", "StatsRecorder"]

_log = logging.getLogger("actorq.history")

_DEFAULTS = WorkerConfig()

#: Most running jobs a recorder remembers the queue and start of (a job whose claim it saw
#: and whose end it did not, e.g. released at shutdown, is forgotten oldest first).
MAX_TRACKED = 100_000

_BUCKETS = len(BUCKET_BOUNDS) + 1


class _Minute:
    """The mutable figures of one (queue, minute) while they add up."""

    __slots__ = ("counters", "recovery", "run", "wait")

    def __init__(self) -> None:
        self.counters = dict.fromkeys(COUNTERS, 0)
        self.wait = [0] * _BUCKETS
        self.run = [0] * _BUCKETS
        self.recovery = [0] * _BUCKETS


class StatsRecorder:
    """Adds up one node's runtime events into history increments per queue and minute.

    Each figure is counted in the minute (of the node's clock) of the event that ends it:

    * ``JobClaimed``: one start; ``wait`` gets the time from when the job was due (its
      ``run_at``, or its enqueue if later) to the start, and ``recovery``, for a start that
      recovers a job whose holder lost it (``lost_at`` set), the time from that loss.
    * ``JobSucceeded``, ``JobRetried`` (``failed``), ``JobDead``, ``JobCancelled``: one each;
      ``run`` gets the handler's running time.
    * ``JobLeaseLost`` (``leases_lost``), ``FinalizeRefused`` (``finalize_refused``),
      ``JobReclaimed`` (``reclaimed``, counted by the node whose Reaper took the job back).

    A cancel's running time comes from the claim this node saw (a bounded number are
    tracked); one whose claim it did not see (the recorder restarted since) counts without it.

    Attributes:
        unattributed: events dated before 0 (a skewed clock), not counted.
    """

    def __init__(self, *, max_tracked: int = MAX_TRACKED) -> None:
        integer("StatsRecorder max_tracked", max_tracked, minimum=1, maximum=10**9)
        self._max_tracked = max_tracked
        self._minutes: dict[tuple[str, float], _Minute] = {}
        self._running: dict[int, tuple[str, float]] = {}  # job id -> (queue, started at)
        self.unattributed = 0

    def record(self, event: RuntimeEvent) -> None:
        """Count one event (events that carry no figure are ignored)."""
        kind = type(event)
        if kind is JobClaimed:
            assert isinstance(event, JobClaimed)
            self._claimed(event)
        elif kind is JobSucceeded:
            assert isinstance(event, JobSucceeded)
            self._running.pop(event.job_id, None)
            figures = self._figures(event.queue, event.at)
            if figures is not None:
                figures.counters["succeeded"] += 1
                figures.run[bucket_of(event.duration)] += 1
        elif kind is JobReclaimed:
            assert isinstance(event, JobReclaimed)
            figures = self._figures(event.queue, event.at)
            if figures is not None:
                figures.counters["reclaimed"] += 1
        elif kind in _ENDINGS:
            assert isinstance(
                event, JobRetried | JobDead | JobCancelled | JobLeaseLost | FinalizeRefused
            )
            self._ended(event, _ENDINGS[kind])
        elif kind is JobSnoozed:
            assert isinstance(event, JobSnoozed)
            self._running.pop(event.job_id, None)

    def _claimed(self, event: JobClaimed) -> None:
        running = self._running
        running.pop(event.job_id, None)
        if len(running) >= self._max_tracked:
            del running[next(iter(running))]
        running[event.job_id] = (event.queue, event.at)
        figures = self._figures(event.queue, event.at)
        if figures is not None:
            due = max(event.run_at, event.enqueued_at)
            figures.wait[bucket_of(max(0.0, event.at - due))] += 1
            if event.lost_at is not None:
                figures.recovery[bucket_of(max(0.0, event.at - event.lost_at))] += 1

    def _ended(
        self,
        event: JobRetried | JobDead | JobCancelled | JobLeaseLost | FinalizeRefused,
        counter: str,
    ) -> None:
        claim = self._running.pop(event.job_id, None)
        figures = self._figures(event.queue, event.at)
        if figures is None:
            return
        figures.counters[counter] += 1
        if counter not in _TIMED:
            return
        if isinstance(event, JobRetried | JobDead):
            figures.run[bucket_of(event.duration)] += 1
        elif claim is not None:  # a cancel names no running time: from the claim this node saw
            figures.run[bucket_of(max(0.0, event.at - claim[1]))] += 1

    def _figures(self, queue: str, at: float) -> _Minute | None:
        if not at >= 0:
            self.unattributed += 1
            return None
        key = (queue, minute_of(at))
        figures = self._minutes.get(key)
        if figures is None:
            figures = self._minutes[key] = _Minute()
        return figures

    @property
    def pending(self) -> int:
        """How many (queue, minute) rows wait to be flushed."""
        return len(self._minutes)

    def take(self) -> list[QueueStats]:
        """The increments counted since the last take, by minute then queue; starts afresh."""
        minutes, self._minutes = self._minutes, {}
        return [
            QueueStats(
                queue=queue,
                minute=minute,
                wait=Histogram(buckets=tuple(figures.wait)),
                run=Histogram(buckets=tuple(figures.run)),
                recovery=Histogram(buckets=tuple(figures.recovery)),
                **figures.counters,
            )
            for (queue, minute), figures in sorted(minutes.items(), key=lambda i: i[0][::-1])
        ]

    def give_back(self, rows: list[QueueStats]) -> None:
        """Put taken increments back (a flush that failed), to be flushed with the next."""
        for row in rows:
            figures = self._minutes.get((row.queue, row.minute))
            if figures is None:
                figures = self._minutes[(row.queue, row.minute)] = _Minute()
            for name in COUNTERS:
                figures.counters[name] += getattr(row, name)
            for index, count in enumerate(row.wait.buckets):
                figures.wait[index] += count
            for index, count in enumerate(row.run.buckets):
                figures.run[index] += count
            for index, count in enumerate(row.recovery.buckets):
                figures.recovery[index] += count


_ENDINGS: dict[type, str] = {
    JobRetried: "failed",
    JobDead: "dead",
    JobCancelled: "cancelled",
    JobLeaseLost: "leases_lost",
    FinalizeRefused: "finalize_refused",
}
_TIMED = frozenset({"failed", "dead", "cancelled"})


HistoryMessage: TypeAlias = Tick | RunNow | RuntimeEvent


class History(Actor[HistoryMessage]):
    """Records the node's events (a :class:`StatsRecorder`) and adds them to the store's
    history every ``interval`` seconds and when it stops.

    It subscribes to the node's events when it starts, so it runs before the queue
    supervisors and stops after them (it then flushes their last events). A flush that meets a
    storage error (``ConnectionLost``) is logged and its increments are kept for the next one:
    a flush whose outcome is unknown may so be counted twice, a figure is never lost while the
    node lives. Events its full mailbox cannot take are counted in ``EventBus.dropped``.
    """

    def __init__(
        self,
        *,
        transport: Transport,
        events: EventBus,
        interval: float = _DEFAULTS.stats_interval,
        release_timeout: float = _DEFAULTS.release_timeout,
    ) -> None:
        self.interval = number("History interval", interval)
        self._release_timeout = number("History release_timeout", release_timeout, strict=False)
        self._transport = transport
        self._events = events
        self._unsubscribe: Callable[[], None] | None = None
        self.recorder = StatsRecorder()
        self.flushed = 0  # rows added to the store so far

    async def on_start(self) -> None:
        self._unsubscribe = self._events.subscribe(self.context.self_ref.tell_nowait)
        self.context.start_soon(self._ticker)

    async def _ticker(self) -> None:
        ref = self.context.self_ref
        while True:
            await self.context.clock.sleep(self.interval)
            try:
                ref.tell_nowait(Tick())
            except anyio.WouldBlock:
                pass

    async def receive(self, msg: HistoryMessage) -> None:
        kind = type(msg)
        if kind is Tick or kind is RunNow:
            try:
                await self.flush()
            except RETRYABLE as exc:
                _log.warning("%s: storage error, flushing later: %s", self.context.name, exc)
            if isinstance(msg, RunNow):
                msg.reply_to.send(None)
            return
        self.recorder.record(msg)  # type: ignore[arg-type]  # the rest are runtime events

    async def flush(self) -> None:
        """Add what was recorded to the store now.

        Raises:
            ConnectionLost: the store could not be reached; the increments are kept.
        """
        rows = self.recorder.take()
        if not rows:
            return
        try:
            await self._transport.add_stats(rows)
        except BaseException:
            self.recorder.give_back(rows)
            raise
        self.flushed += len(rows)

    async def on_stop(self, reason: ExitReason) -> None:
        if self._unsubscribe is not None:
            self._unsubscribe()
            self._unsubscribe = None
        with self.context.clock.move_on_after(self._release_timeout):
            try:
                await self.flush()
            except RETRYABLE as exc:
                _log.info("%s: could not flush the last history: %s", self.context.name, exc)
