"""The runtime's typed event stream: what happened to jobs, leases, cron and workers.

Actors publish events on the node's :class:`EventBus`; user code and user actors subscribe.
Delivery never blocks a publisher: an actor subscriber whose mailbox is full misses the event,
which is counted in ``EventBus.dropped`` (mailboxes stay bounded under any burst).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from typing import Any, TypeAlias, TypeVar

import anyio
import attrs

from transports import JobState

__all__ = [
    "CronFired",
    "EventBus",
    "FinalizeRefused",
    "JobCancelled",
    "JobClaimed",
    "JobDead",
    "JobLeaseLost",
    "JobReclaimed",
    "JobRetried",
    "JobSnoozed",
    "JobSucceeded",
    "LeasesRenewed",
    "RuntimeEvent",
    "ShutdownPhase",
    "WorkerCrashed",
]

_log = logging.getLogger("actorq.events")
_E = TypeVar("_E", bound=attrs.AttrsInstance)


@attrs.frozen(kw_only=True)
class JobClaimed:
    """A Worker leased a job and is about to run it. Sent by Worker."""

    at: float  # clock time
    job_id: int
    kind: str
    queue: str
    attempt: int
    worker: str
    token: int  # the lease token of this claim
    enqueued_at: float  # when the job was created, for enqueue-to-start latency
    run_at: float  # when it was due
    # when the job's previous holder lost it (its lease expired and was reaped), if this
    # start recovers it (``Lease.lost_at``): recovery time is ``at - lost_at``
    lost_at: float | None = None


@attrs.frozen(kw_only=True)
class JobSucceeded:
    """A handler finished and the transport accepted the result. Sent by Worker."""

    at: float
    job_id: int
    kind: str
    queue: str
    attempt: int
    worker: str
    duration: float  # seconds the handler ran


@attrs.frozen(kw_only=True)
class JobRetried:
    """A run failed and the job will run again at ``run_at``. Sent by Worker."""

    at: float
    job_id: int
    kind: str
    queue: str
    attempt: int
    worker: str
    run_at: float
    error: str
    duration: float = 0.0  # seconds the handler ran


@attrs.frozen(kw_only=True)
class JobSnoozed:
    """A handler asked to run again later without spending an attempt (``SnoozeUntil``,
    ``ctx.sleep_until``), or waits for an event (``ctx.wait_for``: the job is suspended until
    ``app.signal(event_key, ...)``, ``run_at`` being the wait's timeout). Sent by Worker."""

    at: float
    job_id: int
    kind: str
    queue: str
    worker: str
    run_at: float
    event_key: str | None = None  # the event a suspended job waits for; None for a snooze


@attrs.frozen(kw_only=True)
class JobDead:
    """A job ended dead: non-retryable, attempts exhausted, unknown kind or poison payload."""

    at: float
    job_id: int
    kind: str
    queue: str
    attempt: int
    worker: str
    reason: str
    duration: float = 0.0  # seconds the handler ran (0 when it never started)


@attrs.frozen(kw_only=True)
class JobCancelled:
    """A running job's cancel request was honoured. Sent by Worker."""

    at: float
    job_id: int
    kind: str
    queue: str
    worker: str


@attrs.frozen(kw_only=True)
class JobLeaseLost:
    """A Worker's lease on a job was lost; its handler was cancelled. Sent by Worker."""

    at: float
    job_id: int
    kind: str
    queue: str
    worker: str
    token: int


@attrs.frozen(kw_only=True)
class FinalizeRefused:
    """The transport refused a finalize because its token was stale. Sent by Worker."""

    at: float
    job_id: int
    kind: str
    queue: str
    worker: str
    token: int


@attrs.frozen(kw_only=True)
class LeasesRenewed:
    """One renewal call of the node's leases was answered. Sent by LeaseKeeper."""

    at: float
    renewed: int  # leases the store extended
    lost: int  # leases the store no longer held for this node (their holders were told)
    cancels: int  # leases renewed whose job an operator asked to cancel


@attrs.frozen(kw_only=True)
class JobReclaimed:
    """The Reaper took back an expired lease. Sent by Reaper."""

    at: float
    job_id: int
    kind: str
    queue: str
    attempt: int  # the attempt whose lease lapsed
    lost_by: str  # the worker that stopped renewing
    expired_at: float
    state: JobState  # available again, dead, or cancelled


@attrs.frozen(kw_only=True)
class CronFired:
    """The cron leader enqueued a schedule's tick. Sent by Cron."""

    at: float
    schedule: str
    tick: float
    job_id: int
    deduplicated: bool  # the tick folded into an active job (overlap skip)


@attrs.frozen(kw_only=True)
class WorkerCrashed:
    """A Worker crashed (its supervisor restarts it). Sent by the queue supervisor."""

    at: float
    queue: str
    worker: str
    error: str


@attrs.frozen(kw_only=True)
class ShutdownPhase:
    """A step of graceful shutdown. Sent by Worker and Node."""

    at: float
    phase: str  # "draining", "cancelling", "released", "stopped"
    detail: str = ""


def _positional(cls: type[_E]) -> Callable[..., _E]:
    """A constructor of the frozen event class ``cls`` taking its fields positionally, in
    their declared order: the same event as ``cls(**fields)``, built without the keyword-only
    ``__init__``'s argument parsing (about half a microsecond less, for the per-job events)."""
    names = [field.name for field in attrs.fields(cls)]
    namespace: dict[str, Any] = {"_new": object.__new__, "_cls": cls}
    lines = [f"def make({', '.join(names)}):", "    event = _new(_cls)"]
    for name in names:
        namespace[f"_set_{name}"] = cls.__dict__[name].__set__  # the slot, past frozen's guard
        lines.append(f"    _set_{name}(event, {name})")
    lines.append("    return event")
    exec("\n".join(lines), namespace)  # as attrs builds __init__
    make: Callable[..., _E] = namespace["make"]
    make.__qualname__ = make.__name__ = f"new_{cls.__name__}"
    return make


#: ``JobClaimed(at, job_id, kind, queue, attempt, worker, token, enqueued_at, run_at,
#: lost_at)``, positionally: what a Worker publishes as each job starts.
new_job_claimed = _positional(JobClaimed)
#: ``JobSucceeded(at, job_id, kind, queue, attempt, worker, duration)``, positionally: what
#: the Claimer publishes for each job whose success the store took.
new_job_succeeded = _positional(JobSucceeded)


RuntimeEvent: TypeAlias = (
    JobClaimed
    | JobSucceeded
    | JobRetried
    | JobSnoozed
    | JobDead
    | JobCancelled
    | JobLeaseLost
    | FinalizeRefused
    | LeasesRenewed
    | JobReclaimed
    | CronFired
    | WorkerCrashed
    | ShutdownPhase
)
"""Every event the runtime publishes to the subscribers of ``node.events``."""


class EventBus:
    """Fan-out of runtime events to subscribers; never blocks (or fails) the publisher.

    Publishers are the runtime's own actors, in the middle of their work (a Worker between
    finalizing a job and claiming the next): a subscriber must neither slow them down nor
    crash them. So delivery is synchronous and non-blocking, an actor subscriber whose
    mailbox is full misses the event (counted in ``dropped``), and a subscriber that raises is
    logged and counted in ``errors``, the other subscribers still being served.

    Attributes:
        dropped: events a full subscriber mailbox could not take.
        errors: deliveries that raised (a bug in the subscriber).
    """

    __slots__ = ("_batch_subscribers", "_subscribers", "dropped", "errors", "has_subscribers")

    def __init__(self) -> None:
        # Replaced, never mutated: publish iterates a snapshot, so subscribing or
        # unsubscribing from inside a subscriber is safe.
        self._subscribers: tuple[Callable[[RuntimeEvent], Any], ...] = ()
        self._batch_subscribers: tuple[Callable[[Sequence[RuntimeEvent]], Any], ...] = ()
        self.dropped = 0
        self.errors = 0
        #: Whether anyone listens (publishers skip building events nobody would get); an
        #: attribute, not a property, since workers read it for every job.
        self.has_subscribers = False

    def subscribe(self, subscriber: Callable[[RuntimeEvent], Any]) -> Callable[[], None]:
        """Call ``subscriber(event)`` for every event; returns an unsubscribe function.

        Pass an actor's ``ref.tell_nowait`` to deliver events to an actor's mailbox (and
        unsubscribe in its ``on_stop``).
        """
        self._subscribers = (*self._subscribers, subscriber)
        self.has_subscribers = True

        def unsubscribe() -> None:
            remaining = list(self._subscribers)
            if subscriber in remaining:
                remaining.remove(subscriber)
                self._subscribers = tuple(remaining)
                self._listened()

        return unsubscribe

    def subscribe_batches(
        self, subscriber: Callable[[Sequence[RuntimeEvent]], Any]
    ) -> Callable[[], None]:
        """Call ``subscriber(events)`` with every event, in order, several at a time when a
        publisher has several at once (the outcomes of one finalize call), else one at a
        time (a sequence of one); returns an unsubscribe function.

        For a subscriber that buffers (``buffer.extend``): one call instead of one per event.
        Raising ``anyio.WouldBlock`` drops the whole batch (counted in ``dropped``).
        """
        self._batch_subscribers = (*self._batch_subscribers, subscriber)
        self.has_subscribers = True

        def unsubscribe() -> None:
            remaining = list(self._batch_subscribers)
            if subscriber in remaining:
                remaining.remove(subscriber)
                self._batch_subscribers = tuple(remaining)
                self._listened()

        return unsubscribe

    def _listened(self) -> None:
        self.has_subscribers = bool(self._subscribers or self._batch_subscribers)

    def publish(self, event: RuntimeEvent) -> None:
        """Deliver ``event`` to every subscriber, counting those that could not take it."""
        for subscriber in self._subscribers:
            try:
                subscriber(event)
            except anyio.WouldBlock:
                self.dropped += 1
            except Exception:
                self.errors += 1
                _log.exception("event subscriber %r failed on %s", subscriber, event)
        for takes_batches in self._batch_subscribers:  # as _deliver does, without its call
            try:
                takes_batches((event,))
            except anyio.WouldBlock:
                self.dropped += 1
            except Exception:
                self.errors += 1
                _log.exception("event subscriber %r failed on 1 event(s)", takes_batches)

    def publish_many(self, events: Sequence[RuntimeEvent]) -> None:
        """Deliver ``events``, in order, to every subscriber: one call per batch subscriber,
        one per event and subscriber for the others."""
        if not events:
            return
        # Event by event, as that many publish calls would: a subscriber that unsubscribes
        # meanwhile gets no more of them.
        for event in events:
            for subscriber in self._subscribers:
                try:
                    subscriber(event)
                except anyio.WouldBlock:
                    self.dropped += 1
                except Exception:
                    self.errors += 1
                    _log.exception("event subscriber %r failed on %s", subscriber, event)
        if self._batch_subscribers:
            self._deliver(events)

    def _deliver(self, events: Sequence[RuntimeEvent]) -> None:
        for subscriber in self._batch_subscribers:
            try:
                subscriber(events)
            except anyio.WouldBlock:
                self.dropped += len(events)
            except Exception:
                self.errors += 1
                _log.exception("event subscriber %r failed on %d event(s)", subscriber, len(events))
