"""The Worker and its Heartbeat: claim → run the handler → finalize with the token → wait.

A Worker runs one job at a time. When its queue is busy it claims a small batch and runs the
jobs one after another; its Heartbeat (a linked child actor, one per Worker so the renewal cost
does not grow per job) renews every lease the Worker holds in one batched call each TTL/3, from
claim to finalize, so a claimed job never waits so long that its lease lapses.

When the Heartbeat learns a lease was lost, it tells the Worker, which cancels that handler at
once (the job belongs to someone else now); a late finalize would be refused anyway. When it
learns a cancel was requested, the Worker cancels the handler and finalizes the job
``cancelled``, unless the handler already succeeded.
"""

from __future__ import annotations

import itertools
import logging
import traceback
from random import Random  # allowed: type of the injected, seeded RNG only
from typing import TypeAlias

import anyio
import attrs

from transports import (
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
    Transport,
    TransportError,
)

from ..core import Actor, ActorRef, ExitReason, Reply
from ._app import App
from ._context import JobContext
from ._errors import PayloadInvalid
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
    "WorkerConfig",
    "WorkerMessage",
]

_log = logging.getLogger("actorq.worker")


@attrs.frozen(kw_only=True)
class WorkerConfig:
    """How a Worker claims and holds jobs."""

    lease_ttl: float = 30.0  # seconds a lease lives unrenewed; renewed every ttl / 3
    batch_size: int = 10  # most jobs claimed at once when the queue is busy
    poll_interval: float = 1.0  # longest idle wait before claiming again without a wake-up
    drain_timeout: float = 10.0  # on shutdown, how long running jobs may finish
    finalize_delay: float = 0.05  # finalized results are flushed in batches at most this old
    error_backoff: float = 1.0  # pause after a storage error before trying again


# --- messages ------------------------------------------------------------------------------


@attrs.frozen(kw_only=True)
class Poll:
    """Try to claim work. Sent by the Worker to itself (after a wake-up, poll or batch)."""


@attrs.frozen(kw_only=True)
class BatchFinished:
    """The batch runner has finalized its jobs. Sent by the Worker's runner task."""

    batch: int  # the batch's sequence number


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


WorkerMessage: TypeAlias = Poll | BatchFinished | LeasesLost | CancelsRequested | Drain


@attrs.frozen(kw_only=True)
class Track:
    """Renew these leases from now on. Sent by Worker to Heartbeat right after a claim."""

    leases: tuple[Lease, ...]


@attrs.frozen(kw_only=True)
class Untrack:
    """Stop renewing these jobs (finalized or released). Sent by Worker to Heartbeat."""

    job_ids: tuple[int, ...]


@attrs.frozen(kw_only=True)
class Beat:
    """Time to renew. Sent by the Heartbeat's ticker to the Heartbeat."""


HeartbeatMessage: TypeAlias = Track | Untrack | Beat


# --- the heartbeat -------------------------------------------------------------------------


class Heartbeat(Actor[HeartbeatMessage]):
    """Renews every lease its Worker holds, in one batched call each ``ttl / 3``."""

    def __init__(self, worker: ActorRef[WorkerMessage], transport: Transport, ttl: float) -> None:
        self._worker = worker
        self._transport = transport
        self._ttl = ttl
        self._held: dict[int, int] = {}  # job id -> lease token

    async def on_start(self) -> None:
        self.context.start_soon(self._tick)

    async def _tick(self) -> None:
        clock = self.context.clock
        ref = self.context.self_ref
        interval = self._ttl / 3
        while True:
            await clock.sleep(interval)
            if self._held:
                try:
                    ref.tell_nowait(Beat())
                except anyio.WouldBlock:
                    pass  # a beat is already queued

    async def receive(self, msg: HeartbeatMessage) -> None:
        if type(msg) is Track:
            for lease in msg.leases:
                self._held[lease.job_id] = lease.token
        elif type(msg) is Untrack:
            for job_id in msg.job_ids:
                self._held.pop(job_id, None)
        elif self._held:
            await self._renew()

    async def _renew(self) -> None:
        held = list(self._held.items())
        try:
            results = await self._transport.renew(
                [RenewRequest(job_id=j, token=t) for j, t in held], ttl=self._ttl
            )
        except TransportError as exc:
            # The store blinked: try again at the next beat. If it stays away the leases lapse,
            # and the next successful renewal reports them lost.
            _log.warning("heartbeat of %s could not renew: %s", self._worker.name, exc)
            return
        lost = []
        lost_tokens = []
        cancels = []
        for (job_id, token), result in zip(held, results, strict=True):
            if result is RenewResult.LOST:
                lost.append(job_id)
                lost_tokens.append(token)
                self._held.pop(job_id, None)
            elif result is RenewResult.CANCEL_REQUESTED:
                cancels.append(job_id)
        if lost:
            await self._worker.tell(LeasesLost(job_ids=tuple(lost), tokens=tuple(lost_tokens)))
        if cancels:
            await self._worker.tell(CancelsRequested(job_ids=tuple(cancels)))


# --- the worker ----------------------------------------------------------------------------


class _Entry:
    """One claimed job inside a batch."""

    __slots__ = ("cancel", "context", "lease", "lost", "scope")

    def __init__(self, lease: Lease) -> None:
        self.lease = lease
        self.scope: anyio.CancelScope | None = None
        self.lost = False
        self.cancel = False
        self.context: JobContext | None = None

    def is_lost(self) -> bool:
        """Whether the lease was lost (a method, since it changes while the handler awaits)."""
        return self.lost


class _Batch:
    __slots__ = ("done", "entries", "number", "releasing")

    def __init__(self, number: int, leases: list[Lease]) -> None:
        self.number = number
        self.entries = {lease.job_id: _Entry(lease) for lease in leases}
        self.done = anyio.Event()
        self.releasing = False  # shutting down: give back what has not finished


_worker_numbers = itertools.count(1)


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
        config: WorkerConfig = WorkerConfig(),
    ) -> None:
        self.worker_id = worker_id
        self.queue = queue
        self._app = app
        self._transport = transport
        self._events = events
        self._rng = rng
        self._config = config
        self._heartbeat: ActorRef[HeartbeatMessage] | None = None
        self._batch: _Batch | None = None
        self._batches = itertools.count(1)
        self._waiting = False
        self._busy = False  # the last claim came back full: claim a batch next time
        self._draining = False
        self._pending: list[tuple[_Entry, Outcome, str | None]] = []
        self._pending_since = 0.0

    # --- lifecycle -------------------------------------------------------------------------

    async def on_start(self) -> None:
        self._heartbeat = await self.context.spawn(
            Heartbeat(self.context.self_ref, self._transport, self._config.lease_ttl),
            name=f"{self.worker_id}/heartbeat",
        )
        self.context.self_ref.tell_nowait(Poll())

    async def on_stop(self, reason: ExitReason) -> None:
        # Normally Drain came first and nothing is held. After a crash, or a stop without
        # Drain, give back what is still held so it does not wait out its lease TTL.
        self._draining = True
        if self._batch is not None and not self._batch.done.is_set():
            await self._release(self._batch, grace=0.0)

    async def _drain(self, reply_to: Reply[None]) -> None:
        self._draining = True
        batch = self._batch
        if batch is not None and not batch.done.is_set():
            self._publish_phase("draining", f"{len(batch.entries)} job(s) held")
            await self._release(batch, grace=self._config.drain_timeout)
        reply_to.send(None)

    async def _release(self, batch: _Batch, *, grace: float) -> None:
        clock = self.context.clock
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
        with anyio.CancelScope(shield=True), clock.move_on_after(max(grace, 5.0)):
            await batch.done.wait()
        self._publish_phase("released", self.worker_id)

    # --- messages --------------------------------------------------------------------------

    async def receive(self, msg: WorkerMessage) -> None:
        kind = type(msg)
        if kind is Poll:
            self._waiting = False
            await self._poll()
        elif kind is BatchFinished:
            assert isinstance(msg, BatchFinished)
            if self._batch is not None and self._batch.number == msg.batch:
                self._batch = None
            if not self._draining:
                self.context.self_ref.tell_nowait(Poll())
        elif kind is LeasesLost:
            assert isinstance(msg, LeasesLost)
            self._on_lost(msg.job_ids, msg.tokens)
        elif kind is Drain:
            assert isinstance(msg, Drain)
            self.context.start_soon(self._drain, msg.reply_to)
        else:
            assert isinstance(msg, CancelsRequested)
            self._on_cancel_requested(msg.job_ids)

    async def _poll(self) -> None:
        if self._draining or self._batch is not None:
            return
        limit = self._config.batch_size if self._busy else 1
        try:
            leases = await self._transport.claim(
                self.queue, owner=self.worker_id, limit=limit, ttl=self._config.lease_ttl
            )
        except TransportError as exc:
            _log.warning("%s could not claim from %r: %s", self.worker_id, self.queue, exc)
            self._wait(self._config.error_backoff, listen=False)
            return
        self._busy = len(leases) == limit
        if not leases:
            self._wait(self._config.poll_interval, listen=True)
            return
        assert self._heartbeat is not None
        await self._heartbeat.tell(Track(leases=tuple(leases)))
        batch = _Batch(next(self._batches), leases)
        self._batch = batch
        self.context.start_soon(self._run_batch, batch)

    def _wait(self, seconds: float, *, listen: bool) -> None:
        if not self._waiting:
            self._waiting = True
            self.context.start_soon(self._wait_then_poll, seconds, listen)

    async def _wait_then_poll(self, seconds: float, listen: bool) -> None:
        with self.context.clock.move_on_after(seconds):
            if listen:
                try:
                    await self._transport.wait_for_work([self.queue])
                except TransportError:
                    await self.context.clock.sleep(seconds)
            else:
                await self.context.clock.sleep(seconds)
        try:
            self.context.self_ref.tell_nowait(Poll())
        except anyio.WouldBlock:
            self._waiting = False

    def _on_lost(self, job_ids: tuple[int, ...], tokens: tuple[int, ...] = ()) -> None:
        batch = self._batch
        now = self.context.clock.now()
        for i, job_id in enumerate(job_ids):
            entry = batch.entries.get(job_id) if batch is not None else None
            if entry is None or entry.lost or (tokens and entry.lease.token != tokens[i]):
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
            if entry is None or entry.cancel:
                continue
            entry.cancel = True
            if entry.context is not None:
                entry.context._request_cancel()
            if entry.scope is not None:
                entry.scope.cancel()

    # --- running a batch (in a task of this actor) -----------------------------------------

    async def _run_batch(self, batch: _Batch) -> None:
        try:
            for entry in list(batch.entries.values()):
                if batch.releasing or self._draining and entry.scope is None:
                    self._add(entry, Release(), None)
                    continue
                await self._run_one(entry)
                if self._pending and (
                    self.context.clock.now() - self._pending_since >= self._config.finalize_delay
                ):
                    await self._flush()
            await self._flush()
        finally:
            batch.done.set()
            if not self._draining:
                self.context.self_ref.tell_nowait(BatchFinished(batch=batch.number))

    async def _run_one(self, entry: _Entry) -> None:
        lease = entry.lease
        job = lease.job
        clock = self.context.clock
        if entry.lost:
            return
        self._events.publish(
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
            self._add(entry, Discard(error=f"no handler is registered for job kind {job.kind!r}"), None)
            return
        try:
            payload = task.structure(job.payload)
        except PayloadInvalid as exc:
            self._add(entry, Discard(error=f"poison payload: {exc}"), None)
            return
        ctx = JobContext(lease, clock, lambda: self._renew_now(entry))
        entry.context = ctx
        started = clock.now()
        error: str | None = None
        result: object = None
        timeout = task.options.timeout
        with anyio.CancelScope() as scope:
            entry.scope = scope
            try:
                if timeout is None:
                    result = await task.fn(ctx, payload)
                else:
                    with clock.move_on_after(timeout) as timer:
                        result = await task.fn(ctx, payload)
                    if timer.cancelled_caught:
                        error = f"timed out after {timeout:g}s"
            except Exception as exc:
                error = _describe(exc)
                ctx.log.info("failed: %s", error, exc_info=_log.isEnabledFor(logging.DEBUG))
        entry.scope = None
        duration = clock.now() - started
        if entry.is_lost():
            return  # someone else owns the job now; any finalize would be refused
        if error is not None:
            self._add(entry, self._failure(job.attempt, job.max_attempts, task.options, error), error)
        elif scope.cancelled_caught:
            # Cancelled by us: an operator's cancel, or a shutdown giving the job back.
            self._add(entry, Cancel(reason="cancel requested") if entry.cancel else Release(), None)
        else:
            self._add(entry, self._outcome(result, job.attempt, job.max_attempts, task.options), duration)

    def _failure(self, attempt: int, max_attempts: int, options: object, error: str) -> Outcome:
        if attempt >= max_attempts:
            return Discard(error=f"attempts exhausted ({attempt}/{max_attempts}): {error}")
        delay = options.backoff.delay(attempt, self._rng)  # type: ignore[attr-defined]
        return Retry(run_at=self.context.clock.now() + delay, error=error)

    def _outcome(self, result: object, attempt: int, max_attempts: int, options: object) -> Outcome:
        if result is None or type(result) is Done:
            return Complete()
        if isinstance(result, RetryLater):
            reason = result.reason or "retry requested by the handler"
            if result.delay is None:
                return self._failure(attempt, max_attempts, options, reason)
            if attempt >= max_attempts:
                return Discard(error=f"attempts exhausted ({attempt}/{max_attempts}): {reason}")
            return Retry(run_at=self.context.clock.now() + result.delay, error=reason)
        if isinstance(result, Drop):
            return Discard(error=result.reason)
        if isinstance(result, SnoozeUntil):
            return Snooze(run_at=result.at)
        return Discard(error=f"handler returned {result!r}, which is not an outcome")

    # --- finalizing ------------------------------------------------------------------------

    def _add(self, entry: _Entry, outcome: Outcome, detail: str | float | None) -> None:
        if not self._pending:
            self._pending_since = self.context.clock.now()
        self._pending.append((entry, outcome, detail))  # type: ignore[arg-type]

    async def _flush(self) -> None:
        pending, self._pending = self._pending, []
        if not pending:
            return
        requests = [
            FinalizeRequest(job_id=e.lease.job_id, token=e.lease.token, outcome=o)
            for e, o, _ in pending
        ]
        with anyio.CancelScope(shield=True):
            # A finalize must not be half-observed: once sent, wait for its answer.
            results = await self._finalize(requests)
        assert self._heartbeat is not None
        self._heartbeat.tell_nowait(Untrack(job_ids=tuple(r.job_id for r in requests)))
        if results is None:
            return
        now = self.context.clock.now()
        for (entry, outcome, detail), result in zip(pending, results, strict=True):
            self._announce(now, entry, outcome, detail, result)

    async def _finalize(self, requests: list[FinalizeRequest]) -> list[FinalizeResult] | None:
        clock = self.context.clock
        for attempt in range(3):
            try:
                return await self._transport.finalize(requests)
            except TransportError as exc:
                # The leases keep being renewed meanwhile; if the store stays away they lapse
                # and the Reaper hands the jobs to someone else (the result is lost, the job
                # is not).
                _log.warning("%s could not finalize (try %d): %s", self.worker_id, attempt + 1, exc)
                await clock.sleep(self._config.error_backoff * (attempt + 1))
        return None

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
        if result is FinalizeResult.STALE:
            publish(FinalizeRefused(at=now, job_id=job.id, worker=self.worker_id, token=entry.lease.token))
            return
        kind = type(outcome)
        if kind is Complete:
            duration = detail if isinstance(detail, float) else 0.0
            publish(JobSucceeded(at=now, job_id=job.id, kind=job.kind, queue=job.queue, attempt=job.attempt, worker=self.worker_id, duration=duration))
        elif kind is Retry:
            assert isinstance(outcome, Retry)
            publish(JobRetried(at=now, job_id=job.id, kind=job.kind, attempt=job.attempt, worker=self.worker_id, run_at=outcome.run_at, error=outcome.error or ""))
        elif kind is Discard:
            assert isinstance(outcome, Discard)
            publish(JobDead(at=now, job_id=job.id, kind=job.kind, attempt=job.attempt, worker=self.worker_id, reason=outcome.error))
        elif kind is Snooze:
            assert isinstance(outcome, Snooze)
            publish(JobSnoozed(at=now, job_id=job.id, kind=job.kind, worker=self.worker_id, run_at=outcome.run_at))
        elif kind is Cancel:
            publish(JobCancelled(at=now, job_id=job.id, kind=job.kind, worker=self.worker_id))

    async def _renew_now(self, entry: _Entry) -> RenewResult:
        (result,) = await self._transport.renew(
            [RenewRequest(job_id=entry.lease.job_id, token=entry.lease.token)],
            ttl=self._config.lease_ttl,
        )
        if result is RenewResult.LOST:
            self._on_lost((entry.lease.job_id,), (entry.lease.token,))
        return result

    def _publish_phase(self, phase: str, detail: str) -> None:
        self._events.publish(ShutdownPhase(at=self.context.clock.now(), phase=phase, detail=detail))
        _log.info("%s: %s (%s)", self.worker_id, phase, detail)


def _describe(exc: BaseException) -> str:
    lines = traceback.format_exception_only(type(exc), exc)
    return "".join(lines).strip()[:2000]
