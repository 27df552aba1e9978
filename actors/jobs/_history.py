"""History: the node's per-queue, per-minute figures, added to the store's history table.

The :class:`StatsRecorder` (pure, no actor) turns the runtime events one node sees into
increments of :class:`~transports.QueueStats` per ``(queue, minute)``; the :class:`History`
actor subscribes it to the node's events and flushes it with ``Transport.add_stats`` every
``interval`` seconds and when it stops. Every figure is a sum and the latency histograms have
fixed buckets, so the increments of every node add up in the store to the cluster's figures
and percentiles need no leader: see ``transports/_base.py``, "What operators watch".
"""

from __future__ import annotations

import bisect
import logging
from collections.abc import Callable, Iterable, Sequence
from typing import TypeAlias

import anyio
import attrs

from transports import (
    BUCKET_BOUNDS,
    COUNTERS,
    MINUTE,
    Histogram,
    QueueStats,
    Transport,
    minute_of,
)
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

__all__ = ["Fold", "History", "HistoryMessage", "StatsRecorder"]

_log = logging.getLogger("actorq.history")

_DEFAULTS = WorkerConfig()
_bisect_left = bisect.bisect_left

#: Most running jobs a recorder remembers the start of (a job whose claim it saw
#: and whose end it did not, e.g. released at shutdown, is forgotten oldest first).
MAX_TRACKED = 100_000

#: Events a History buffers before it folds them into its recorder (it also folds on each
#: message, flushes included): what a run of jobs keeps alive in memory before it is counted.
FOLD_AT = 2_048

#: Most events a History buffers while it cannot fold (a flush waiting on the store): past
#: this, newer events are dropped and counted in ``EventBus.dropped``.
MAX_BUFFERED = 100_000

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
        self._running: dict[int, float] = {}  # job id -> started at
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

    def record_all(self, events: Iterable[RuntimeEvent]) -> None:
        """Count events in turn: the same figures as ``record`` of each."""
        record = self.record
        running = self._running
        most = self._max_tracked
        bounds = BUCKET_BOUNDS
        # The two events of every job are counted here as record does, without its calls;
        # a run of them in one queue and minute (a drain) looks its figures up once.
        queue = ""
        start = end = 0.0  # the minute [start, end) of ``figures``
        figures = _Minute()  # a placeholder until a first event is counted
        for event in events:
            kind = type(event)
            if kind is JobSucceeded:
                assert isinstance(event, JobSucceeded)
                value = event.duration  # the run time
                if type(value) is not float or not value >= 0.0:
                    record(event)  # bucket_of checks what a fold must not count blindly
                    continue
                running.pop(event.job_id, None)
            elif kind is JobClaimed:
                assert isinstance(event, JobClaimed)
                if event.lost_at is not None:
                    record(event)
                    continue
                job_id = event.job_id
                running.pop(job_id, None)
                if len(running) >= most:
                    del running[next(iter(running))]
                running[job_id] = event.at
                due = event.run_at if event.run_at > event.enqueued_at else event.enqueued_at
                value = event.at - due if event.at > due else 0.0  # the wait
            else:
                record(event)
                continue
            at = event.at
            if not (start <= at < end and event.queue == queue):
                found = self._figures(event.queue, at)
                if found is None:
                    continue  # counted as unattributed
                figures, queue = found, event.queue
                start = minute_of(at)
                end = start + MINUTE
            if kind is JobSucceeded:
                figures.counters["succeeded"] += 1
                figures.run[_bisect_left(bounds, value)] += 1
            else:
                figures.wait[_bisect_left(bounds, value)] += 1

    def _claimed(self, event: JobClaimed) -> None:
        running = self._running
        running.pop(event.job_id, None)
        if len(running) >= self._max_tracked:
            del running[next(iter(running))]
        running[event.job_id] = event.at
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
        started = self._running.pop(event.job_id, None)
        figures = self._figures(event.queue, event.at)
        if figures is None:
            return
        figures.counters[counter] += 1
        if counter not in _TIMED:
            return
        if isinstance(event, JobRetried | JobDead):
            figures.run[bucket_of(event.duration)] += 1
        elif started is not None:  # a cancel names no running time: from the claim this node saw
            figures.run[bucket_of(max(0.0, event.at - started))] += 1

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


@attrs.frozen
class Fold:
    """Events wait in the buffer. Sent by the subscriber when it holds ``FOLD_AT`` of them."""


HistoryMessage: TypeAlias = Tick | RunNow | Fold


class History(Actor[HistoryMessage]):
    """Records the node's events (a :class:`StatsRecorder`) and adds them to the store's
    history every ``interval`` seconds and when it stops.

    It subscribes to the node's events when it starts, so it runs before the queue
    supervisors and stops after them (it then flushes their last events). A flush that meets a
    storage error (``ConnectionLost``) is logged and its increments are kept for the next one:
    a flush whose outcome is unknown may so be counted twice, a figure is never lost while the
    node lives.

    The subscription costs a publisher one list extend: events are buffered as they come
    (several at once for a finalize call's outcomes) and counted by the actor before every
    message it handles, a :class:`Fold` being sent once ``FOLD_AT`` wait. Past
    ``MAX_BUFFERED`` waiting (a flush stuck on the store), newer events are dropped and counted
    in ``EventBus.dropped``.
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
        self._buffer: list[RuntimeEvent] = []
        self._asked = False  # a Fold is on its way
        self.recorder = StatsRecorder()
        self.flushed = 0  # rows added to the store so far

    async def on_start(self) -> None:
        self._unsubscribe = self._events.subscribe_batches(self._take)
        self.context.start_soon(self._ticker)

    def _take(self, events: Sequence[RuntimeEvent]) -> None:
        buffer = self._buffer
        buffer.extend(events)
        if len(buffer) < FOLD_AT:
            return
        excess = len(buffer) - MAX_BUFFERED
        if excess > 0:
            del buffer[MAX_BUFFERED:]
            self._events.dropped += excess
        if not self._asked:
            try:
                self.context.self_ref.tell_nowait(Fold())
            except anyio.WouldBlock:
                return  # the queued Tick or RunNow folds them
            self._asked = True

    def _fold(self) -> None:
        self._asked = False
        buffer = self._buffer
        if buffer:
            events = buffer.copy()
            buffer.clear()  # the same list: the subscriber extends it
            self.recorder.record_all(events)

    async def _ticker(self) -> None:
        ref = self.context.self_ref
        while True:
            await self.context.clock.sleep(self.interval)
            try:
                ref.tell_nowait(Tick())
            except anyio.WouldBlock:
                pass

    async def receive(self, msg: HistoryMessage) -> None:
        self._fold()
        if type(msg) is Fold:
            return
        try:
            await self.flush()
        except RETRYABLE as exc:
            _log.warning("%s: storage error, flushing later: %s", self.context.name, exc)
        if isinstance(msg, RunNow):
            msg.reply_to.send(None)

    async def flush(self) -> None:
        """Add what was recorded (every event buffered so far included) to the store now.

        Raises:
            ConnectionLost: the store could not be reached; the increments are kept.
        """
        self._fold()
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
        self._fold()
        with self.context.clock.move_on_after(self._release_timeout):
            try:
                await self.flush()
            except RETRYABLE as exc:
                _log.info("%s: could not flush the last history: %s", self.context.name, exc)
