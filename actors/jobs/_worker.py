"""The Worker and its Heartbeat: claim → run the handler → finalize with the token → wait.

A Worker runs one job at a time. When its queue is busy it claims a small batch and runs the
jobs one after another; its Heartbeat (a linked child actor, one per Worker so the renewal cost
does not grow per job) renews every lease the Worker holds in one batched call each TTL/3, from
claim to finalize, so a claimed job never waits so long that its lease lapses. A task with its
own ``lease_ttl`` has its leases renewed with that TTL (claims use the Worker's).

When the Heartbeat learns a lease was lost, it tells the Worker, which cancels that handler at
once (the job belongs to someone else now); a late finalize would be refused anyway. When it
learns a cancel was requested, the Worker cancels the handler and finalizes the job
``cancelled``, unless the handler already succeeded.
"""

from __future__ import annotations

import itertools
import logging
import math
import traceback
from random import Random  # allowed: type of the injected, seeded RNG only
from typing import Any, TypeAlias

import anyio
import attrs

from transports import Job, Transport, TransportClosed
from transports.lowlevel import (
    Cancel,
    Complete,
    Discard,
    FinalizeRequest,
    FinalizeResult,
    Lease,
    Outcome,
    Release,
    RenewRequest,
    RenewResult,
    Retry,
    Snooze,
)

from ..core import Actor, ActorRef, Clock, ExitReason, Reply
from ._app import App, Task
from ._config import WorkerConfig
from ._context import JobContext
from ._errors import RETRYABLE, PayloadInvalid
from ._events import (
    EventBus,
    FinalizeRefused,
    JobCancelled,
    JobClaimed,
    JobDead,
    JobLeaseLost,
    JobRetried,
    JobSnoozed,
    JobSucceeded,
    ShutdownPhase,
)
from ._outcomes import Done, Drop, RetryLater, SnoozeUntil

__all__ = [
    "CancelsRequested",
    "Drain",
    "Heartbeat",
    "HeartbeatMessage",
    "LeasesLost",
    "Worker",
    "WorkerMessage",
]

_log = logging.getLogger("actorq.worker")

_DEFAULT_CONFIG = WorkerConfig()
_RENEW_FRACTION = _DEFAULT_CONFIG.renew_fraction

#: The outcome of most jobs, shared (outcomes are frozen).
_COMPLETE = Complete()


# --- messages ------------------------------------------------------------------------------


@attrs.frozen(kw_only=True)
class Poll:
    """Claim now if idle, instead of waiting for a wake-up or the poll interval. Sent by
    anyone who knows work arrived."""


@attrs.frozen(kw_only=True)
class LeasesLost:
    """These leases are gone: stop their handlers. Sent by Heartbeat to Worker."""

    job_ids: tuple[int, ...]
    # The lost leases' tokens, pair by pair with job_ids: by the time this arrives the Worker
    # may hold a newer claim of the same job, which is not lost (empty: any claim).
    tokens: tuple[int, ...] = ()


@attrs.frozen(kw_only=True)
class CancelsRequested:
    """An operator asked to cancel these running jobs. Sent by Heartbeat to Worker."""

    job_ids: tuple[int, ...]


@attrs.frozen(kw_only=True)
class Drain:
    """Stop claiming, let the running job finish within the drain timeout, then cancel it and
    give every unfinished lease back. Sent by the queue supervisor on graceful shutdown."""

    reply_to: Reply[None]  # answered once nothing is held any more


WorkerMessage: TypeAlias = Poll | LeasesLost | CancelsRequested | Drain


@attrs.frozen(kw_only=True)
class Track:
    """Renew these leases from now on. Sent by Worker to Heartbeat right after a claim."""

    leases: tuple[Lease, ...]
    # The TTL each lease is renewed with, pair by pair with leases (its task's ``lease_ttl``);
    # empty: the Worker's TTL for every lease.
    ttls: tuple[float, ...] = ()


@attrs.frozen(kw_only=True)
class Untrack:
    """Stop renewing these jobs (finalized or released). Sent by Worker to Heartbeat."""

    job_ids: tuple[int, ...]


@attrs.frozen(kw_only=True)
class Beat:
    """Time to renew. Sent by the Heartbeat's ticker to the Heartbeat."""


HeartbeatMessage: TypeAlias = Track | Untrack | Beat


# --- the heartbeat -------------------------------------------------------------------------


class _Held:
    """One lease a Heartbeat renews."""

    __slots__ = ("renew_at", "token", "ttl")

    def __init__(self, token: int, ttl: float, renew_at: float) -> None:
        self.token = token
        self.ttl = ttl  # renewed with this TTL
        self.renew_at = renew_at  # a renewal period after it was last granted


class Heartbeat(Actor[HeartbeatMessage]):
    """Renews every lease its Worker holds, in one batched call per beat (per TTL in use).

    Each lease is renewed ``fraction`` of its TTL (a third by default) after it was granted
    (claimed or last renewed). The ticker beats every ``period`` seconds, that fraction of the
    shortest TTL a lease of this Worker can have, and each beat renews the leases due before
    the next one; with a single TTL that is every lease, every ``ttl * fraction``.

    Args:
        worker: the Worker to tell about lost leases and cancel requests.
        transport: the store.
        ttl: the TTL the Worker claims with (and renews with when Track gives none).
        period: seconds between beats (default ``ttl * fraction``).
        fraction: the part of a TTL after which a lease is renewed
            (``WorkerConfig.renew_fraction``).
    """

    def __init__(
        self,
        worker: ActorRef[WorkerMessage],
        transport: Transport,
        ttl: float,
        *,
        period: float | None = None,
        fraction: float = _RENEW_FRACTION,
    ) -> None:
        self._worker = worker
        self._transport = transport
        self._ttl = ttl
        self._fraction = fraction
        self._period = ttl * fraction if period is None else period
        self._held: dict[int, _Held] = {}  # by job id
        self._beat_queued = False

    async def on_start(self) -> None:
        self.context.start_soon(self._tick)

    async def _tick(self) -> None:
        clock = self.context.clock
        ref = self.context.self_ref
        period = self._period
        while True:
            await clock.sleep(period)
            if self._held and not self._beat_queued:
                try:
                    ref.tell_nowait(Beat())
                except anyio.WouldBlock:
                    continue  # a full mailbox: the next period tries again
                self._beat_queued = True

    async def receive(self, msg: HeartbeatMessage) -> None:
        if type(msg) is Track:
            # Claimed (just now) with the Worker's TTL: due for renewal a third of that later.
            # Measured on this node's clock, not from the lease's expiry: the store may keep
            # time by another clock (PostgreSQL's), and the two need not agree.
            renew_at = self.context.clock.now() + self._ttl * self._fraction
            ttls = msg.ttls
            for i, lease in enumerate(msg.leases):
                self._held[lease.job_id] = _Held(
                    lease.token, ttls[i] if ttls else self._ttl, renew_at
                )
        elif type(msg) is Untrack:
            for job_id in msg.job_ids:
                self._held.pop(job_id, None)
        else:
            self._beat_queued = False
            if self._held:
                await self._renew()

    async def _renew(self) -> None:
        now = self.context.clock.now()
        horizon = now + self._period  # due before the next beat: renew on this one
        due: dict[float, list[tuple[int, _Held]]] = {}
        for job_id, held in self._held.items():
            if held.renew_at <= horizon:
                due.setdefault(held.ttl, []).append((job_id, held))
        lost: list[int] = []
        lost_tokens: list[int] = []
        cancels: list[int] = []
        for ttl, group in due.items():
            try:
                results = await self._transport.renew(
                    [RenewRequest(job_id=job_id, token=held.token) for job_id, held in group],
                    ttl=ttl,
                )
            except RETRYABLE as exc:
                # The store blinked: these stay due and the next beat tries again. If it stays
                # away the leases lapse, and the next successful renewal reports them lost.
                # Any other error is a bug: it crashes the Heartbeat, and with it the Worker.
                _log.warning("heartbeat of %s could not renew: %s", self._worker.name, exc)
                continue
            for (job_id, held), result in zip(group, results, strict=True):
                if result is RenewResult.LOST:
                    lost.append(job_id)
                    lost_tokens.append(held.token)
                    if self._held.get(job_id) is held:
                        del self._held[job_id]
                    continue
                held.renew_at = now + ttl * self._fraction
                if result is RenewResult.CANCEL_REQUESTED:
                    cancels.append(job_id)
        if lost:
            await self._worker.tell(LeasesLost(job_ids=tuple(lost), tokens=tuple(lost_tokens)))
        if cancels:
            await self._worker.tell(CancelsRequested(job_ids=tuple(cancels)))


# --- the worker ----------------------------------------------------------------------------


class _Entry:
    """One claimed job inside a batch."""

    __slots__ = ("cancel", "context", "lease", "lost", "scope", "settled")

    def __init__(self, lease: Lease) -> None:
        self.lease = lease
        self.scope: anyio.CancelScope | None = None
        self.lost = False
        self.cancel = False
        self.settled = False  # its outcome is decided (pending or sent to finalize)
        self.context: JobContext | None = None

    def is_lost(self) -> bool:
        """Whether the lease was lost (a method, since it changes while the handler awaits)."""
        return self.lost

    def is_cancelled(self) -> bool:
        """Whether a cancel was requested (a method, for the same reason)."""
        return self.cancel


class _Batch:
    __slots__ = ("done", "entries", "number", "releasing")

    def __init__(self, number: int, leases: list[Lease]) -> None:
        self.number = number
        self.entries = {lease.job_id: _Entry(lease) for lease in leases}
        self.done = anyio.Event()
        self.releasing = False  # shutting down: give back what has not finished


class Worker(Actor[WorkerMessage]):
    """Claims jobs of one queue and runs their handlers, one at a time.

    Args:
        worker_id: the lease owner name (unique in the cluster; shows in ``Reclaimed.lost_by``).
        queue: the queue to work.
        app: the handler registry.
        transport: the store.
        events: where runtime events go.
        rng: the node's seeded RNG (backoff jitter).
        config: claim and lease settings.
    """

    def __init__(
        self,
        *,
        worker_id: str,
        queue: str,
        app: App,
        transport: Transport,
        events: EventBus,
        rng: Random,
        config: WorkerConfig = _DEFAULT_CONFIG,
    ) -> None:
        self.worker_id = worker_id
        self.queue = queue
        self._app = app
        self._transport = transport
        self._events = events
        self._rng = rng
        self._config = config
        # Tasks with their own lease TTL: their jobs are renewed with it, and the Heartbeat
        # beats often enough for the shortest one. Any job of the App may land on any queue.
        self._own_ttls = any(t.options.lease_ttl is not None for t in app.tasks.values())
        self._heartbeat_period = (
            min(
                [config.lease_ttl]
                + [t.options.lease_ttl for t in app.tasks.values() if t.options.lease_ttl]
            )
            * config.renew_fraction
        )
        self._heartbeat: ActorRef[HeartbeatMessage] | None = None
        self._batch: _Batch | None = None
        self._batches = itertools.count(1)
        self._idle: anyio.CancelScope | None = None  # cancelled to end an idle wait early
        self._draining = False
        self._pending: list[tuple[_Entry, Outcome, str | float | None]] = []
        self._pending_since = 0.0
        self._flush_timer = False  # a task flushes the pending results when they get old
        self._flushing: anyio.Lock | None = None  # one finalize call at a time, in order
        self._clock: Clock  # the system's, set in on_start (read for every job)

    # --- lifecycle -------------------------------------------------------------------------

    async def on_start(self) -> None:
        self._clock = self.context.clock
        # The finalize that follows checkpoints anyway: no extra yield when uncontended.
        self._flushing = anyio.Lock(fast_acquire=True)
        self._heartbeat = await self.context.spawn(
            Heartbeat(
                self.context.self_ref,
                self._transport,
                self._config.lease_ttl,
                period=self._heartbeat_period,
                fraction=self._config.renew_fraction,
            ),
            name=f"{self.worker_id}/heartbeat",
        )
        self.context.start_soon(self._run)

    async def on_stop(self, reason: ExitReason) -> None:
        # Normally Drain came first and nothing is held. After a crash, or a stop without
        # Drain, give back what is still held so it does not wait out its lease TTL.
        self._draining = True
        if self._batch is not None and not self._batch.done.is_set():
            await self._release(self._batch, grace=0.0)

    async def _drain(self, reply_to: Reply[None]) -> None:
        batch = self._batch
        if batch is not None and not batch.done.is_set():
            self._publish_phase("draining", f"{len(batch.entries)} job(s) held")
            await self._release(batch, grace=self._config.drain_timeout)
        reply_to.send(None)

    async def _release(self, batch: _Batch, *, grace: float) -> None:
        clock = self._clock
        with clock.move_on_after(grace):
            await batch.done.wait()
        if batch.done.is_set():
            return
        # Cancel what still runs and give every unfinished lease back, so another node can
        # take those jobs now instead of after the lease TTL.
        self._publish_phase("cancelling", self.worker_id)
        batch.releasing = True
        for entry in batch.entries.values():
            if entry.scope is not None:
                entry.scope.cancel()
        margin = self._config.shutdown_margin  # for cancelled handlers to return
        with anyio.CancelScope(shield=True), clock.move_on_after(margin):
            await batch.done.wait()
        self._publish_phase("released", self.worker_id)

    # --- messages --------------------------------------------------------------------------

    async def receive(self, msg: WorkerMessage) -> None:
        kind = type(msg)
        if kind is LeasesLost:
            assert isinstance(msg, LeasesLost)
            self._on_lost(msg.job_ids, msg.tokens)
        elif kind is CancelsRequested:
            assert isinstance(msg, CancelsRequested)
            self._on_cancel_requested(msg.job_ids)
        elif kind is Drain:
            assert isinstance(msg, Drain)
            # At once, not in the task: the run loop must not claim again.
            self._draining = True
            self._wake()
            self.context.start_soon(self._drain, msg.reply_to)
        else:
            self._wake()

    def _wake(self) -> None:
        if self._idle is not None:
            self._idle.cancel()

    # --- the run loop (one task for the Worker's life) --------------------------------------

    async def _run(self) -> None:
        """Claim, run the batch, repeat; between batches wait for work when there is none.

        One task runs every batch in turn, so a busy Worker goes from one batch to the next
        without a message round trip. The actor's own loop meanwhile handles lost leases,
        cancel requests and Drain.
        """
        config = self._config
        busy = False  # the last claim came back full: claim a batch next time
        while not self._draining:
            limit = config.batch_size if busy else 1
            try:
                leases = await self._transport.claim(
                    self.queue, owner=self.worker_id, limit=limit, ttl=config.lease_ttl
                )
            except RETRYABLE as exc:
                # Any other error (an invalid request: a bug) crashes the Worker.
                _log.warning("%s could not claim from %r: %s", self.worker_id, self.queue, exc)
                await self._wait(config.error_backoff, listen=False)
                continue
            busy = len(leases) == limit
            if not leases:
                await self._wait(config.poll_interval, listen=True)
                continue
            assert self._heartbeat is not None
            ttls = tuple(self._ttl_of(lease) for lease in leases) if self._own_ttls else ()
            await self._heartbeat.tell(Track(leases=tuple(leases), ttls=ttls))
            batch = _Batch(next(self._batches), leases)
            self._batch = batch
            await self._run_batch(batch)
            self._batch = None

    async def _wait(self, seconds: float, *, listen: bool) -> None:
        """Wait ``seconds`` (less when work arrives, if ``listen``), or until woken."""
        clock = self._clock
        with anyio.CancelScope() as self._idle, clock.move_on_after(seconds):
            if self._draining:
                return
            if listen:
                try:
                    await self._transport.wait_for_work([self.queue])
                except RETRYABLE:
                    await clock.sleep(seconds)
            else:
                await clock.sleep(seconds)
        self._idle = None

    def _ttl_of(self, lease: Lease) -> float:
        """The TTL a lease is renewed with: its task's ``lease_ttl``, else the Worker's."""
        task = self._app.get(lease.job.kind)
        ttl = None if task is None else task.options.lease_ttl
        return self._config.lease_ttl if ttl is None else ttl

    def _on_lost(self, job_ids: tuple[int, ...], tokens: tuple[int, ...] = ()) -> None:
        batch = self._batch
        now = self._clock.now()
        for i, job_id in enumerate(job_ids):
            entry = batch.entries.get(job_id) if batch is not None else None
            if (
                entry is None
                or entry.lost
                or (tokens and entry.lease.token != tokens[i])
                # Its outcome is already on the way: the finalize's answer tells whether the
                # lease was still ours (a renewal racing our own finalize comes back LOST).
                or entry.settled
            ):
                continue
            entry.lost = True
            if entry.scope is not None:
                entry.scope.cancel()
            self._events.publish(
                JobLeaseLost(at=now, job_id=job_id, worker=self.worker_id, token=entry.lease.token)
            )

    def _on_cancel_requested(self, job_ids: tuple[int, ...]) -> None:
        batch = self._batch
        for job_id in job_ids:
            entry = batch.entries.get(job_id) if batch is not None else None
            if entry is None or entry.cancel or entry.settled:
                continue  # a handler that already finished keeps its outcome
            entry.cancel = True
            if entry.context is not None:
                entry.context._request_cancel()
            if entry.scope is not None:
                entry.scope.cancel()

    # --- running a batch (in a task of this actor) -----------------------------------------

    async def _run_batch(self, batch: _Batch) -> None:
        clock = self._clock
        delay = self._config.finalize_delay
        entries = list(batch.entries.values())
        position = 0
        try:
            while position < len(entries):
                # One cancel scope for the batch's jobs, which run one after another: the
                # handler that must stop (lease lost, cancel requested, shutdown) cancels it,
                # and the rest of the batch goes on in a fresh one. A scope per job would cost
                # more than the quickest handlers it wraps.
                with anyio.CancelScope() as scope:
                    while position < len(entries) and not scope.cancel_called:
                        entry = entries[position]
                        position += 1
                        if batch.releasing or self._draining:
                            # Shutting down: jobs not started yet go back at once.
                            self._add(entry, Release(), None)
                            continue
                        if self._pending and not self._flush_timer:
                            # Results wait at most finalize_delay, even behind a long handler.
                            self._flush_timer = True
                            self.context.start_soon(self._flush_at, self._pending_since + delay)
                        await self._run_one(entry, scope)
                        if (
                            self._pending
                            and not scope.cancel_called
                            and clock.now() - self._pending_since >= delay
                        ):
                            await self._flush()
                if scope.cancel_called:
                    self._interrupted(entries[position - 1])
            await self._flush()
        finally:
            batch.done.set()

    async def _flush_at(self, deadline: float) -> None:
        await self._clock.sleep_until(deadline)
        self._flush_timer = False
        await self._flush()

    async def _run_one(self, entry: _Entry, scope: anyio.CancelScope) -> None:
        """Run one job's handler in the batch's cancel scope and settle its outcome.

        Cancelling ``entry.scope`` (set while the handler runs) interrupts the handler; the
        cancellation then leaves this method and ``_interrupted`` settles the job.
        """
        lease = entry.lease
        job = lease.job
        clock = self._clock
        if entry.lost:
            return
        events = self._events
        if events.has_subscribers:
            events.publish(
                JobClaimed(
                    at=clock.now(),
                    job_id=job.id,
                    kind=job.kind,
                    queue=job.queue,
                    attempt=job.attempt,
                    worker=self.worker_id,
                    token=lease.token,
                    enqueued_at=job.created_at,
                    run_at=job.run_at,
                )
            )
        if entry.cancel:
            self._add(entry, Cancel(reason="cancel requested before start"), None)
            return
        task = self._app.get(job.kind)
        if task is None:
            self._add(
                entry, Discard(error=f"no handler is registered for job kind {job.kind!r}"), None
            )
            return
        try:
            payload = task.structure(job.payload)
        except PayloadInvalid as exc:
            self._add(entry, Discard(error=f"poison payload: {exc}"), None)
            return
        ctx = JobContext(lease, clock, lambda: self._renew_now(entry))
        entry.context = ctx
        started = clock.now() if events.has_subscribers else 0.0  # for JobSucceeded only
        error: str | None = None
        result: object = None
        timeout = task.options.timeout
        entry.scope = scope
        try:
            if timeout is None:
                result = await task.fn(ctx, payload)
            else:
                with clock.move_on_after(timeout) as timer:
                    result = await task.fn(ctx, payload)
                if timer.cancelled_caught:
                    error = f"timed out after {timeout:g}s"
                    self._log_failure(job, error, None)
        except Exception as exc:
            error = _describe(exc)
            self._log_failure(job, error, exc)
        finally:
            entry.scope = None
        # The handler ended by itself (perhaps just as someone asked it to stop).
        if entry.is_lost():
            return  # someone else owns the job now; any finalize would be refused
        if entry.is_cancelled():
            # An operator's cancel reached the handler before it finished (it noticed the
            # request and returned): cancelled, whatever it returned.
            self._add(entry, Cancel(reason="cancel requested"), None)
        elif error is not None:
            self._add(entry, self._failure(job.attempt, job.max_attempts, task, error), error)
        elif result is None:
            self._add(entry, _COMPLETE, clock.now() - started if started else 0.0)
        else:
            outcome = self._outcome(result, job.attempt, job.max_attempts, task)
            self._add(entry, outcome, clock.now() - started if started else 0.0)

    def _log_failure(self, job: Job, error: str, exc: BaseException | None) -> None:
        """A failed attempt: WARNING, with the traceback when the handler raised."""
        then = "will retry" if job.attempt < job.max_attempts else "no attempts left"
        _log.warning(
            "job %d (%s) on queue %r failed, attempt %d/%d, %s: %s",
            job.id,
            job.kind,
            job.queue,
            job.attempt,
            job.max_attempts,
            then,
            error,
            exc_info=exc,
            extra=_fields(job, self.worker_id),
        )

    def _interrupted(self, entry: _Entry) -> None:
        """Settle a job whose handler was cancelled by the Worker."""
        if entry.settled or entry.lost:
            return  # settled already, or someone else owns the job now
        if entry.cancel:
            self._add(entry, Cancel(reason="cancel requested"), None)
        else:
            self._add(entry, Release(), None)  # a shutdown: give the job back

    def _failure(self, attempt: int, max_attempts: int, task: Task[Any], error: str) -> Outcome:
        if attempt >= max_attempts:
            return Discard(error=f"attempts exhausted ({attempt}/{max_attempts}): {error}")
        delay = task.options.backoff.delay(attempt, self._rng)
        return Retry(run_at=self._clock.now() + delay, error=error)

    def _outcome(self, result: object, attempt: int, max_attempts: int, task: Task[Any]) -> Outcome:
        if result is None or type(result) is Done:
            return _COMPLETE
        if isinstance(result, RetryLater):
            reason = result.reason or "retry requested by the handler"
            if result.delay is None:
                return self._failure(attempt, max_attempts, task, reason)
            if not (result.delay >= 0 and math.isfinite(result.delay)):
                return Discard(error=f"handler returned {result!r}: the delay must be finite")
            if attempt >= max_attempts:
                return Discard(error=f"attempts exhausted ({attempt}/{max_attempts}): {reason}")
            return Retry(run_at=self._clock.now() + result.delay, error=reason)
        if isinstance(result, Drop):
            return Discard(error=result.reason)
        if isinstance(result, SnoozeUntil):
            if not math.isfinite(result.at):
                return Discard(error=f"handler returned {result!r}: the time must be finite")
            return Snooze(run_at=result.at)
        return Discard(error=f"handler returned {result!r}, which is not an outcome")

    # --- finalizing ------------------------------------------------------------------------

    def _add(self, entry: _Entry, outcome: Outcome, detail: str | float | None) -> None:
        if not self._pending:
            self._pending_since = self._clock.now()
        entry.settled = True
        self._pending.append((entry, outcome, detail))

    async def _flush(self) -> None:
        assert self._flushing is not None
        async with self._flushing:
            pending, self._pending = self._pending, []
            if not pending:
                return
            requests = [
                FinalizeRequest(job_id=e.lease.job_id, token=e.lease.token, outcome=o)
                for e, o, _ in pending
            ]
            results = await self._finalize(requests)
            assert self._heartbeat is not None
            self._heartbeat.tell_nowait(Untrack(job_ids=tuple(r.job_id for r in requests)))
            if results is None:
                return
            for (entry, outcome, _), result in zip(pending, results, strict=True):
                if type(outcome) is Discard and result is FinalizeResult.APPLIED:
                    self._log_dead(entry.lease.job, outcome)
            if not self._events.has_subscribers:
                return
            now = self._clock.now()
            for (entry, outcome, detail), result in zip(pending, results, strict=True):
                self._announce(now, entry, outcome, detail, result)

    def _log_dead(self, job: Job, outcome: Discard) -> None:
        """A job that ended dead: ERROR, with its reason (never its payload)."""
        _log.error(
            "job %d (%s) on queue %r is dead after attempt %d/%d: %s",
            job.id,
            job.kind,
            job.queue,
            job.attempt,
            job.max_attempts,
            outcome.error,
            extra=_fields(job, self.worker_id),
        )

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
                # the Worker (its supervisor logs it), the leases lapse and are reaped.
                _log.warning(
                    "%s could not finalize %d job(s): %s", self.worker_id, len(requests), exc
                )
            # Keep the results and try again: the Heartbeat keeps renewing the leases meanwhile,
            # and a lease that lapsed is refused as stale (the job runs again, never lost).
            await clock.sleep(pause)
            pause = min(pause * 2, max(self._config.error_backoff, self._config.renew_every))

    def _announce(
        self,
        now: float,
        entry: _Entry,
        outcome: Outcome,
        detail: str | float | None,
        result: FinalizeResult,
    ) -> None:
        job = entry.lease.job
        publish = self._events.publish
        worker = self.worker_id
        if result is FinalizeResult.STALE:
            publish(FinalizeRefused(at=now, job_id=job.id, worker=worker, token=entry.lease.token))
            return
        kind = type(outcome)
        if kind is Complete:
            duration = detail if isinstance(detail, float) else 0.0
            publish(
                JobSucceeded(
                    at=now,
                    job_id=job.id,
                    kind=job.kind,
                    queue=job.queue,
                    attempt=job.attempt,
                    worker=worker,
                    duration=duration,
                )
            )
        elif kind is Retry:
            assert isinstance(outcome, Retry)
            publish(
                JobRetried(
                    at=now,
                    job_id=job.id,
                    kind=job.kind,
                    attempt=job.attempt,
                    worker=worker,
                    run_at=outcome.run_at,
                    error=outcome.error or "",
                )
            )
        elif kind is Discard:
            assert isinstance(outcome, Discard)
            publish(
                JobDead(
                    at=now,
                    job_id=job.id,
                    kind=job.kind,
                    attempt=job.attempt,
                    worker=worker,
                    reason=outcome.error,
                )
            )
        elif kind is Snooze:
            assert isinstance(outcome, Snooze)
            publish(
                JobSnoozed(
                    at=now, job_id=job.id, kind=job.kind, worker=worker, run_at=outcome.run_at
                )
            )
        elif kind is Cancel:
            publish(JobCancelled(at=now, job_id=job.id, kind=job.kind, worker=worker))

    async def _renew_now(self, entry: _Entry) -> RenewResult:
        lease = entry.lease
        (result,) = await self._transport.renew(
            [RenewRequest(job_id=lease.job_id, token=lease.token)], ttl=self._ttl_of(lease)
        )
        if result is RenewResult.LOST:
            self._on_lost((lease.job_id,), (lease.token,))
        elif result is RenewResult.CANCEL_REQUESTED:
            self._on_cancel_requested((lease.job_id,))
        return result

    def _publish_phase(self, phase: str, detail: str) -> None:
        self._events.publish(ShutdownPhase(at=self._clock.now(), phase=phase, detail=detail))
        _log.info("%s: %s (%s)", self.worker_id, phase, detail)


def _fields(job: Job, worker: str) -> dict[str, object]:
    """The ``extra=`` fields of a job's log records, for structured logging."""
    return {
        "job_id": job.id,
        "job_kind": job.kind,
        "queue": job.queue,
        "attempt": job.attempt,
        "max_attempts": job.max_attempts,
        "worker": worker,
    }


def _describe(exc: BaseException) -> str:
    lines = traceback.format_exception_only(type(exc), exc)
    return "".join(lines).strip()[:2000]
