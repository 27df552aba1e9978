"""The Claimer: one per queue and node, it claims exactly for the Workers that are free.

It knows which of its queue's Workers are idle (each says so: ``Ready`` when it starts,
``Finished`` with each job's outcome), claims ``min(free Workers, batch_size)`` jobs in one
storage call, and hands each lease at once to an idle Worker (``Run``), so no job waits
unstarted under a lease and every free slot of the node fills from one call. It waits for
work (``wait_for_work``, at most ``poll_interval``, and no longer than the store's
``reopens_in``: a key held by its rate or a cool-down sends no wake-up when it reopens) only
while slots are free and nothing was claimable, and never claims while every Worker is busy.

Control goes through mailboxes; the jobs themselves do not. ``Ready`` (over the Claimer's
mailbox) gives the Claimer the Worker's :class:`Handoff`, a one-job channel its ``Run`` goes
into, and each ``Run`` names the Claimer's :class:`Reports`, where the Worker leaves its
``Finished``. A mailbox hop costs a task switch of the receiving actor's loop per message, one
per job each way on this path; the channels wake the Worker's serving task directly, and the
Claimer once for however many reports arrived together.

It also finalizes for the whole queue: the outcomes its Workers hand back are flushed in one
``finalize`` call, at most ``finalize_delay`` old (sooner when no Worker is busy or nothing is
claimable), fenced by each claim's token. Then it tells the LeaseKeeper to forget those
claims, logs jobs that ended dead and publishes each job's event (:func:`event_of`), the flush's
events together (``EventBus.publish_many``).
"""

from __future__ import annotations

import logging
from collections import deque
from typing import TYPE_CHECKING, Generic, TypeAlias, TypeVar

import anyio
import anyio.lowlevel
import attrs

from transports import Transport, TransportClosed
from transports.lowlevel import (
    Complete,
    Discard,
    FinalizeRequest,
    FinalizeResult,
    Lease,
    Outcome,
    Release,
)

from ..core import Actor, ActorRef, Clock, ExitReason, Reply
from ._app import App
from ._config import WorkerConfig
from ._decide import event_of
from ._errors import RETRYABLE
from ._events import EventBus, RuntimeEvent, new_job_succeeded
from ._execute import log_dead
from ._leases import Forget, Hold, LeaseLink

if TYPE_CHECKING:
    from ._worker import WorkerMessage

__all__ = [
    "Claimer",
    "ClaimerMessage",
    "Finished",
    "Flush",
    "Handoff",
    "Poll",
    "Ready",
    "Reports",
    "Run",
    "SlotStatistics",
    "StopClaiming",
]

_log = logging.getLogger("actorq.worker")

_DEFAULT_CONFIG = WorkerConfig()

#: Event-loop turns a claim waits for more slots to come free when some are still busy.
_GATHER_TURNS = 3

_T = TypeVar("_T")


class Handoff(Generic[_T]):
    """A one-item channel into one task of the node: a Worker's next job.

    ``put`` never waits (it refuses when an item is waiting or the channel is closed), ``get``
    waits for the item, and ``close`` ends it, handing back the item nobody took.
    """

    __slots__ = ("_arrived", "_closed", "_item", "_new_event")

    def __init__(self) -> None:
        self._item: _T | None = None
        self._arrived = anyio.Event()
        # ``anyio.Event()`` asks which event loop runs on every call; a channel of one loop
        # asks once (a new event per job is a measurable part of a no-op job's cost).
        self._new_event = type(self._arrived)
        self._closed = False

    def put(self, item: _T) -> bool:
        """Leave ``item`` for the reader; False when one waits already or it is closed."""
        if self._closed or self._item is not None:
            return False
        self._item = item
        self._arrived.set()
        return True

    def peek(self) -> _T | None:
        """The item waiting to be taken, if any."""
        return self._item

    async def get(self) -> _T:
        """Wait for the next item and take it.

        Raises:
            anyio.EndOfStream: the channel was closed.
        """
        while self._item is None:
            if self._closed:
                raise anyio.EndOfStream
            await self._arrived.wait()
            self._arrived = self._new_event()
        item, self._item = self._item, None
        return item

    def close(self) -> _T | None:
        """Take no more; the item left untaken, if any."""
        self._closed = True
        item, self._item = self._item, None
        self._arrived.set()
        return item


class Reports:
    """Where a Claimer's Workers leave what became of their jobs (``Finished``), read in
    batches: a report wakes the reader once for every report that arrives before it runs."""

    __slots__ = ("_arrived", "_items", "_new_event")

    def __init__(self) -> None:
        self._items: deque[Finished] = deque()
        self._arrived = anyio.Event()
        self._new_event = type(self._arrived)  # as in Handoff

    def put(self, report: Finished) -> None:
        """Leave a report (never waits)."""
        self._items.append(report)
        self._arrived.set()

    def take_all(self) -> list[Finished]:
        """Every report left so far, oldest first."""
        items = list(self._items)
        self._items.clear()
        return items

    async def wait(self) -> None:
        """Until a report is waiting."""
        while not self._items:
            await self._arrived.wait()
            self._arrived = self._new_event()


@attrs.frozen(kw_only=True)
class Run:
    """Run this job now. Put by the Claimer into an idle Worker's Handoff right after the
    claim."""

    lease: Lease
    sent_at: float  # node clock time the claim was sent: the lease is measured from there
    ttl: float  # the TTL it was claimed with
    report_to: Reports  # where its Finished goes


@attrs.frozen(kw_only=True)
class Ready:
    """This Worker is free; its jobs go into ``inbox``. Sent by a Worker when it starts."""

    worker: ActorRef[WorkerMessage]
    runs: int  # jobs it was handed so far: an answer about an older hand-off is ignored
    inbox: Handoff[Run]


@attrs.frozen(kw_only=True)
class Finished:
    """A job of this Worker ended; store its outcome. Left by a Worker in its Run's
    ``report_to`` after each job."""

    worker: ActorRef[WorkerMessage]
    worker_id: str  # the Worker's name, in events and logs
    runs: int
    lease: Lease
    outcome: Outcome | None  # None: the lease was lost, nothing may be stored
    duration: float  # seconds the handler ran (for JobSucceeded)
    again: bool  # whether the Worker takes another job (False while it drains)


@attrs.frozen(kw_only=True)
class Poll:
    """Claim now if a slot is free, instead of waiting for a wake-up or the poll interval.
    Sent by anyone who knows work arrived."""


@attrs.frozen(kw_only=True)
class StopClaiming:
    """Claim no more (graceful shutdown); answered once no claim is in flight. Sent by the
    queue supervisor."""

    reply_to: Reply[None]


@attrs.frozen(kw_only=True)
class Flush:
    """Finalize every outcome handed back so far; answered once the store answered. Sent by
    the queue supervisor after its Workers drained."""

    reply_to: Reply[None]


ClaimerMessage: TypeAlias = Ready | Poll | StopClaiming | Flush


@attrs.frozen(kw_only=True)
class SlotStatistics:
    """A snapshot of one queue's slots on one node, from ``Claimer.statistics()``."""

    queue: str
    busy: int  # Workers running (or about to run) a job
    free: int  # Workers alive and waiting for one
    #: The longest the Claimer goes without a claim while it has a free slot and its store
    #: answers: the longer of its poll interval (a wake-up or a slot coming free cuts that
    #: short) and its backoff after a failed call.
    claim_gap: float


class Claimer(Actor[ClaimerMessage]):
    """Claims a queue's jobs for its free Workers and finalizes what they hand back.

    Args:
        owner: the lease owner name of its claims (unique in the cluster; shows in
            ``Reclaimed.lost_by``).
        queue: the queue.
        app: the handler registry (for each task's own ``lease_ttl``).
        transport: the store.
        events: where runtime events go.
        leases: where the node's LeaseKeeper is.
        config: claim, lease and finalize settings.
    """

    def __init__(
        self,
        *,
        owner: str,
        queue: str,
        app: App,
        transport: Transport,
        events: EventBus,
        leases: LeaseLink,
        config: WorkerConfig = _DEFAULT_CONFIG,
    ) -> None:
        self.owner = owner
        self.queue = queue
        self._app = app
        self._transport = transport
        self._events = events
        self._leases = leases
        self._config = config
        self._handed: dict[ActorRef[WorkerMessage], int] = {}  # Run messages sent, by Worker
        self._inboxes: dict[ActorRef[WorkerMessage], Handoff[Run]] = {}
        self._reports = Reports()
        self._idle: dict[ActorRef[WorkerMessage], None] = {}  # free Workers, in arrival order
        self._busy = 0
        self._changed = anyio.Event()  # set when a Worker became free, or on Poll / stop
        self._stopping = False
        self._stopped = anyio.Event()  # the claim loop has ended
        self._in_flight = 0  # claims sent and not answered yet
        self._dry = False  # a claim found fewer jobs than it asked for
        self._failed = False  # a claim failed with the store's weather: back off
        self._pending: list[tuple[str, Lease, Outcome, float]] = []
        self._pending_since = 0.0
        self._flush_timer = False
        self._flushing = anyio.Lock()  # one finalize call at a time, in order
        self._ttls: dict[str, float] = {}  # each kind's renewal TTL (see _ttl_of)
        self._clock: Clock

    async def on_start(self) -> None:
        self._clock = self.context.clock
        self.context.start_soon(self._claim_loop)
        self.context.start_soon(self._read_reports)

    def statistics(self) -> SlotStatistics:
        """The queue's slots now: busy Workers, and live ones waiting for a job."""
        live = sum(1 for worker in self._handed if worker.is_alive)
        busy = self._busy
        return SlotStatistics(
            queue=self.queue,
            busy=busy,
            free=max(0, live - busy),
            claim_gap=max(self._config.poll_interval, self._config.error_backoff),
        )

    async def on_stop(self, reason: ExitReason) -> None:
        self._stopping = True
        self._take_reports()
        if reason.is_normal:
            with (
                anyio.CancelScope(shield=True),
                self._clock.move_on_after(self._config.shutdown_margin),
            ):
                await self._flush()
        if self._pending:
            # Not stored (a crash, or the store stayed away): the leases lapse and are reaped.
            pending, self._pending = self._pending, []
            self._forget([lease for _, lease, _, _ in pending])

    # --- messages --------------------------------------------------------------------------

    async def receive(self, msg: ClaimerMessage) -> None:
        kind = type(msg)
        if kind is Ready:
            assert isinstance(msg, Ready)
            known = self._handed.setdefault(msg.worker, msg.runs)
            self._inboxes[msg.worker] = msg.inbox
            if known == msg.runs:
                self._free(msg.worker)
        elif kind is Poll:
            self._changed.set()
        elif kind is StopClaiming:
            assert isinstance(msg, StopClaiming)
            self._stopping = True
            self._changed.set()
            self.context.start_soon(self._answer_stopped, msg.reply_to)
        else:
            assert isinstance(msg, Flush)
            self.context.start_soon(self._answer_flush, msg.reply_to)

    async def _read_reports(self) -> None:
        reports = self._reports
        while True:
            await reports.wait()
            self._take_reports()

    def _take_reports(self) -> None:
        """Take in what the Workers reported: free their slots, keep the outcomes to store."""
        for msg in self._reports.take_all():
            if self._handed.get(msg.worker) == msg.runs:
                self._busy -= 1
                if msg.again:
                    self._free(msg.worker)
            if msg.outcome is None:
                self._forget([msg.lease])
            else:
                self._add(msg.worker_id, msg.lease, msg.outcome, msg.duration)

    def _free(self, worker: ActorRef[WorkerMessage]) -> None:
        self._idle[worker] = None
        self._changed.set()
        if not self._busy and self._pending:
            self._flush_soon()  # nothing else is running: store what is done now

    async def _answer_stopped(self, reply_to: Reply[None]) -> None:
        await self._stopped.wait()
        reply_to.send(None)

    async def _answer_flush(self, reply_to: Reply[None]) -> None:
        self._take_reports()
        await self._flush()
        reply_to.send(None)

    # --- the claim loop (one task for the Claimer's life) ----------------------------------

    async def _claim_loop(self) -> None:
        try:
            await self._claim_forever()
            while self._in_flight:  # stopping: let the claims in flight give their jobs back
                await self._wait_changed()
        finally:
            self._stopped.set()

    async def _wait_changed(self) -> None:
        self._changed = anyio.Event()
        await self._changed.wait()

    async def _claim_forever(self) -> None:
        config = self._config
        while not self._stopping:
            if self._failed:
                self._failed = False
                await self._clock.sleep(config.error_backoff)
                continue
            if self._dry:
                # The last claim found less than it asked for: wait for work (or a free slot,
                # or the poll interval) once the claims in flight are back.
                if self._in_flight:
                    await self._wait_changed()
                    continue
                self._dry = False
                self._flush_soon()  # the queue is empty for now: store what is done
                await self._wait_for_work()
                continue
            free = self._free_workers()
            # One claim in flight for whatever slots are free; more at once only for full
            # batches, so a busy queue's claims stay large and an idle one answers at once.
            if not free or (self._in_flight and len(free) < config.batch_size):
                await self._wait_changed()  # every slot is busy or reserved: claim for none
                continue
            if len(free) < config.batch_size and self._busy:
                # Jobs that end together hand their slots back within a few turns of the event
                # loop: gather those (never waiting on time) so one claim fills them all.
                for _ in range(_GATHER_TURNS):
                    await anyio.lowlevel.checkpoint()
                free = self._free_workers()
                if not free:
                    continue
            reserved = free[: config.batch_size]
            for worker in reserved:
                del self._idle[worker]
            self._in_flight += 1
            self.context.start_soon(self._claim_for, reserved)
            await anyio.lowlevel.checkpoint()

    async def _claim_for(self, reserved: list[ActorRef[WorkerMessage]]) -> None:
        """Claim at most one job per reserved Worker and hand each over at once."""
        config = self._config
        leases: list[Lease] = []
        try:
            sent_at = self._clock.now()
            try:
                leases = await self._transport.claim(
                    self.queue, owner=self.owner, limit=len(reserved), ttl=config.lease_ttl
                )
            except RETRYABLE as exc:
                # Any other error (an invalid request: a bug) crashes the Claimer.
                _log.warning("%s could not claim from %r: %s", self.owner, self.queue, exc)
                self._failed = True
            if leases:
                await self._hand_out(leases, reserved, sent_at)
            if len(leases) < len(reserved) and not self._failed:
                self._dry = True
        finally:
            for worker in reserved[len(leases) :]:
                if worker.is_alive and worker in self._handed:
                    self._idle[worker] = None  # not needed this time
            self._in_flight -= 1
            self._changed.set()

    def _free_workers(self) -> list[ActorRef[WorkerMessage]]:
        idle = self._idle
        for worker in [w for w in idle if not w.is_alive]:
            del idle[worker]  # stopped meanwhile
        handed = self._handed
        for worker in [w for w in handed if not w.is_alive]:
            del handed[worker]
            self._inboxes.pop(worker, None)
        return list(idle)

    async def _hand_out(
        self, leases: list[Lease], reserved: list[ActorRef[WorkerMessage]], sent_at: float
    ) -> None:
        ttl = self._config.lease_ttl
        given: list[Lease] = []
        holders: list[ActorRef[WorkerMessage]] = []
        for lease, worker in zip(leases, reserved, strict=False):
            if self._stopping or not worker.is_alive:
                # Shutting down, or the Worker stopped meanwhile: not started, given back.
                self._add(self.owner, lease, Release(), 0.0)
                continue
            given.append(lease)
            holders.append(worker)
        if given:
            # Held (and renewed) from before any handler starts, so a lost lease or a cancel
            # request always finds its holder.
            await self._leases.get().tell(
                Hold(
                    transport=self._transport,
                    leases=tuple(given),
                    holders=tuple(holders),
                    ttls=tuple(self._ttl_of(lease) for lease in given),
                    sent_at=sent_at,
                    claimed_ttl=ttl,
                )
            )
        reports = self._reports
        for lease, worker in zip(given, holders, strict=True):
            inbox = self._inboxes.get(worker)
            run = Run(lease=lease, sent_at=sent_at, ttl=ttl, report_to=reports)
            if not worker.is_alive or inbox is None or not inbox.put(run):
                # Stopped while the Hold was on its way: not started, given back.
                self._add(self.owner, lease, Release(), 0.0)
                continue
            self._handed[worker] = self._handed.get(worker, 0) + 1
            self._busy += 1
        if self._stopping:
            self._flush_soon()

    async def _wait_for_work(self) -> None:
        clock = self._clock
        self._changed = anyio.Event()
        changed = self._changed
        # A job held by a key's rate or cool-down gives no wake-up when its key reopens:
        # wait no longer than the store says the first held key needs.
        timeout = self._config.poll_interval
        try:
            reopens = await self._transport.reopens_in(self.queue)
        except RETRYABLE:
            reopens = None
        if reopens is not None:
            timeout = min(timeout, max(reopens, 0.0))
        with clock.move_on_after(timeout):
            async with anyio.create_task_group() as tg:

                async def stop_on_change() -> None:
                    await changed.wait()
                    tg.cancel_scope.cancel()

                tg.start_soon(stop_on_change)
                try:
                    await self._transport.wait_for_work([self.queue])
                except RETRYABLE:
                    await clock.sleep(self._config.poll_interval)
                tg.cancel_scope.cancel()

    def _ttl_of(self, lease: Lease) -> float:
        """The TTL a lease is renewed with: its task's ``lease_ttl``, else the queue's."""
        kind = lease.job.kind
        ttl = self._ttls.get(kind)
        if ttl is None:
            task = self._app.get(kind)
            own = None if task is None else task.options.lease_ttl
            ttl = self._config.lease_ttl if own is None else own
            if task is not None:  # a kind registered later is looked up again
                self._ttls[kind] = ttl
        return ttl

    # --- finalizing ------------------------------------------------------------------------

    def _add(self, worker_id: str, lease: Lease, outcome: Outcome, duration: float) -> None:
        if not self._pending:
            self._pending_since = self._clock.now()
        self._pending.append((worker_id, lease, outcome, duration))
        if not self._busy or self._config.finalize_delay == 0:
            self._flush_soon()
        elif not self._flush_timer:
            self._flush_timer = True
            self.context.start_soon(
                self._flush_at, self._pending_since + self._config.finalize_delay
            )

    def _flush_soon(self) -> None:
        if self._pending:
            self.context.start_soon(self._flush)

    async def _flush_at(self, deadline: float) -> None:
        await self._clock.sleep_until(deadline)
        self._flush_timer = False
        await self._flush()

    def _forget(self, leases: list[Lease]) -> None:
        ref = self._leases.ref
        if ref is not None and leases:
            ref.tell_nowait(
                Forget(
                    transport=self._transport,
                    job_ids=tuple(lease.job_id for lease in leases),
                    tokens=tuple(lease.token for lease in leases),
                )
            )

    async def _flush(self) -> None:
        async with self._flushing:
            pending, self._pending = self._pending, []
            if not pending:
                return
            requests = [
                FinalizeRequest(job_id=lease.job_id, token=lease.token, outcome=outcome)
                for _, lease, outcome, _ in pending
            ]
            results = await self._finalize(requests)
            self._forget([lease for _, lease, _, _ in pending])
            if results is None:
                return
            for (worker, lease, outcome, _), result in zip(pending, results, strict=True):
                if type(outcome) is Discard and result is FinalizeResult.APPLIED:
                    log_dead(lease.job, outcome, worker)
            events = self._events
            if not events.has_subscribers:
                return
            now = self._clock.now()
            published: list[RuntimeEvent] = []
            for (worker, lease, outcome, duration), result in zip(pending, results, strict=True):
                job = lease.job
                if type(outcome) is Complete and result is FinalizeResult.APPLIED:
                    # Nearly every job: event_of's JobSucceeded, without the call.
                    published.append(
                        new_job_succeeded(
                            now, job.id, job.kind, job.queue, job.attempt, worker, duration
                        )
                    )
                    continue
                event = event_of(
                    job, lease.token, outcome, result, worker=worker, now=now, duration=duration
                )
                if event is not None:
                    published.append(event)
            events.publish_many(published)  # one call for a subscriber of batches

    async def _finalize(self, requests: list[FinalizeRequest]) -> list[FinalizeResult] | None:
        clock = self._clock
        pause = self._config.error_backoff
        while True:
            try:
                with anyio.CancelScope(shield=True):
                    # A finalize must not be half-observed: once sent, wait for its answer.
                    return await self._transport.finalize(requests)
            except TransportClosed:
                return None  # the node is going away; the leases lapse and are reaped
            except RETRYABLE as exc:
                # Only the store's weather is retried; any other error is a bug and crashes
                # the Claimer (its supervisor logs it), the leases lapse and are reaped.
                _log.warning("%s could not finalize %d job(s): %s", self.owner, len(requests), exc)
            # Keep the results and try again: the LeaseKeeper keeps renewing the leases
            # meanwhile, and a lease that lapsed is refused as stale (the job runs again).
            await clock.sleep(pause)
            pause = min(pause * 2, max(self._config.error_backoff, self._config.renew_every))
