"""The Worker: one slot of a queue, running the handler of the job its Claimer hands it.

A Worker never claims. It tells its Claimer when it is free (``Ready`` on start, ``Finished``
with each job's outcome), gets one job at a time (``Run``, through the one-job inbox, a
:class:`~actors.jobs.lowlevel.Handoff`, it gave the Claimer in ``Ready``), and runs it at once
— unless the node's clock says the lease is expired or about to expire (less than
``WorkerConfig.start_margin`` of its TTL left, measured from when the claim was sent), in which
case the job is given back (``Release``, which refunds the attempt) without running.

Lease notices come from the node's LeaseKeeper: ``LeasesLost`` cancels the handler at once (the
job belongs to someone else now, and nothing is finalized), ``CancelsRequested`` cancels it
and the job ends ``cancelled``. Each notice names the claim's token, and a notice about an
older claim of the same job is ignored. A notice about the job waiting in the inbox, handed
over but not started yet, holds for it too: it never starts on a lost lease.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable
from random import Random  # allowed: type of the injected, seeded RNG only
from typing import TypeAlias

import anyio
import attrs

from transports import Transport
from transports.lowlevel import Lease, Outcome, Release, RenewResult

from ..core import Actor, ActorRef, Clock, ExitReason, Reply
from . import _decide
from ._app import App
from ._claimer import ClaimerMessage, Finished, Handoff, Ready, Run
from ._config import WorkerConfig
from ._events import EventBus, JobLeaseLost, ShutdownPhase
from ._execute import Execution, execute, lose, request_cancel
from ._leases import CancelsRequested, LeaseLink, LeasesLost, RenewNow

__all__ = ["Drain", "Worker", "WorkerMessage"]

_log = logging.getLogger("actorq.worker")

_DEFAULT_CONFIG = WorkerConfig()


@attrs.frozen(kw_only=True)
class Drain:
    """Take no more jobs, let the running one finish within the drain timeout, then cancel it
    and give it back. Sent by the queue supervisor on graceful shutdown or scale-down."""

    reply_to: Reply[None]  # answered once nothing is held any more


WorkerMessage: TypeAlias = Drain | LeasesLost | CancelsRequested


class Worker(Actor[WorkerMessage]):
    """Runs the handlers of one queue's jobs, one at a time, as its Claimer hands them out.

    Args:
        worker_id: its name in events and logs (unique in the cluster).
        queue: the queue it serves.
        app: the handler registry.
        transport: the store its jobs are in (for ``ctx.extend_lease()``).
        events: where runtime events go.
        rng: the node's seeded RNG (backoff jitter).
        claimer: the queue's Claimer, told when this Worker is free.
        leases: where the node's LeaseKeeper is.
        config: lease, start and shutdown settings.
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
        claimer: ActorRef[ClaimerMessage],
        leases: LeaseLink,
        config: WorkerConfig = _DEFAULT_CONFIG,
    ) -> None:
        self.worker_id = worker_id
        self.queue = queue
        self._app = app
        self._transport = transport
        self._events = events
        self._rng = rng
        self._claimer = claimer
        self._leases = leases
        self._config = config
        self._runs = 0  # Run messages taken
        self._inbox: Handoff[Run] = Handoff()
        self._current: Execution | None = None
        # Notices about the Run waiting in the inbox, applied as it is taken.
        self._lost_early = False
        self._cancel_early = False
        # Set when the current job's outcome was handed over; made only when someone waits
        # for it (a drain, a stop), not for every job.
        self._done: anyio.Event | None = None
        self._draining = False
        self._clock: Clock  # the system's, set in on_start
        self._new_scope: Callable[[], anyio.CancelScope]  # this loop's class, set in on_start

    async def on_start(self) -> None:
        self._clock = self.context.clock
        self._new_scope = type(anyio.CancelScope())
        # One task runs every job in turn (a task per job would cost more than the quickest
        # handlers); the mailbox meanwhile takes lease notices and Drain.
        self.context.start_soon(self._serve)
        await self._claimer.tell(Ready(worker=self.context.self_ref, runs=0, inbox=self._inbox))

    async def on_stop(self, reason: ExitReason) -> None:
        # Normally Drain came first and nothing runs. After a crash, or a stop without Drain,
        # stop the running handler so its job is given back rather than waiting out its TTL.
        self._draining = True
        waiting = self._inbox.close()
        if waiting is not None:  # handed over, never started: given back at once
            self._runs += 1
            self._report(waiting, Release() if not self._lost_early else None, 0.0)
        if self._current is not None:
            await self._stop_current(grace=0.0)

    # --- messages --------------------------------------------------------------------------

    async def receive(self, msg: WorkerMessage) -> None:
        kind = type(msg)
        if kind is LeasesLost:
            assert isinstance(msg, LeasesLost)
            self._on_lost(msg.job_ids, msg.tokens)
        elif kind is CancelsRequested:
            assert isinstance(msg, CancelsRequested)
            current = self._current
            if current is not None and current.lease.job_id in msg.job_ids:
                request_cancel(current)
            waiting = self._inbox.peek()
            if waiting is not None and waiting.lease.job_id in msg.job_ids:
                self._cancel_early = True
        else:
            assert isinstance(msg, Drain)
            self._draining = True  # at once: a Run arriving now is given back unstarted
            self.context.start_soon(self._drain, msg.reply_to)

    def _on_lost(self, job_ids: tuple[int, ...], tokens: tuple[int, ...] = ()) -> None:
        waiting = self._inbox.peek()
        if waiting is not None and _names(job_ids, tokens, waiting.lease):
            self._lost_early = True  # lost before it started: it never will
        run = self._current
        if run is None:
            return
        for i, job_id in enumerate(job_ids):
            # A notice about an older claim of the job (its token) spares the running one.
            if job_id != run.lease.job_id or (tokens and tokens[i] != run.lease.token):
                continue
            if lose(run):
                self._events.publish(
                    JobLeaseLost(
                        at=self._clock.now(),
                        job_id=job_id,
                        kind=run.lease.job.kind,
                        queue=run.lease.job.queue,
                        worker=self.worker_id,
                        token=run.lease.token,
                    )
                )

    # --- running a job (in a task of this actor) -------------------------------------------

    async def _serve(self) -> None:
        inbox = self._inbox
        while True:
            try:
                msg = await inbox.get()
            except anyio.EndOfStream:
                return  # stopping
            self._runs += 1
            run = self._current = Execution(msg.lease)
            if self._lost_early:
                self._lost_early = False
                self._on_lost((msg.lease.job_id,), (msg.lease.token,))
            if self._cancel_early:
                self._cancel_early = False
                request_cancel(run)
            await self._run(run, msg)

    async def _run(self, run: Execution, msg: Run) -> None:
        clock = self._clock
        lease = msg.lease
        outcome: Outcome | None
        duration = 0.0
        if self._draining:
            outcome = Release()  # shutting down: not started, given back at once
        elif not _decide.may_start(
            now=clock.now(), sent_at=msg.sent_at, ttl=msg.ttl, margin=self._config.start_margin
        ):
            # The node's clock says the lease is gone or nearly so (a pause, a clock jump, a
            # slow hand-off): running now could overlap its next holder. Give it back.
            _log.warning(
                "%s: not starting job %d, its lease (claimed %.3fs ago, ttl %gs) is about to "
                "expire; giving it back",
                self.worker_id,
                lease.job_id,
                clock.now() - msg.sent_at,
                msg.ttl,
            )
            outcome = Release()
        else:
            outcome, duration = await execute(
                run,
                app=self._app,
                clock=clock,
                rng=self._rng,
                worker=self.worker_id,
                events=self._events,
                renew=lambda: self._renew_now(run),
                max_result_bytes=self._transport.max_result_bytes,
                transport=self._transport,
                new_scope=self._new_scope,
            )
        self._current = None
        self._report(msg, outcome, duration)
        done, self._done = self._done, None
        if done is not None:
            done.set()

    def _report(self, msg: Run, outcome: Outcome | None, duration: float) -> None:
        msg.report_to.put(
            Finished(
                worker=self.context.self_ref,
                worker_id=self.worker_id,
                runs=self._runs,
                lease=msg.lease,
                outcome=outcome,
                duration=duration,
                again=not self._draining,
            )
        )

    async def _renew_now(self, run: Execution) -> RenewResult:
        lease = run.lease
        result: RenewResult = await self._leases.get().ask(
            lambda r: RenewNow(
                transport=self._transport,
                job_id=lease.job_id,
                token=lease.token,
                ttl=self._ttl_of(lease),
                reply_to=r,
            ),
            timeout=math.inf,
        )
        if result is RenewResult.LOST:
            self._on_lost((lease.job_id,), (lease.token,))
        elif result is RenewResult.CANCEL_REQUESTED:
            request_cancel(run)
        return result

    def _ttl_of(self, lease: Lease) -> float:
        """The TTL a lease is renewed with: its task's ``lease_ttl``, else the Worker's."""
        task = self._app.get(lease.job.kind)
        ttl = None if task is None else task.options.lease_ttl
        return self._config.lease_ttl if ttl is None else ttl

    # --- shutdown ---------------------------------------------------------------------------

    async def _drain(self, reply_to: Reply[None]) -> None:
        if self._current is not None:
            self._publish_phase("draining", f"job {self._current.lease.job_id} running")
            await self._stop_current(grace=self._config.drain_timeout)
        reply_to.send(None)

    async def _stop_current(self, *, grace: float) -> None:
        clock = self._clock
        if self._current is None:
            return
        if self._done is None:
            self._done = anyio.Event()
        done = self._done
        with clock.move_on_after(grace):
            await done.wait()
        run = self._current
        if done.is_set() or run is None:
            return
        # Cancel the handler: its job is given back, so another node can take it now
        # instead of after the lease TTL.
        self._publish_phase("cancelling", self.worker_id)
        if run.scope is not None:
            run.scope.cancel()
        margin = self._config.shutdown_margin  # for the cancelled handler to return
        with anyio.CancelScope(shield=True), clock.move_on_after(margin):
            await done.wait()
        self._publish_phase("released", self.worker_id)

    def _publish_phase(self, phase: str, detail: str) -> None:
        self._events.publish(ShutdownPhase(at=self._clock.now(), phase=phase, detail=detail))
        _log.info("%s: %s (%s)", self.worker_id, phase, detail)


def _names(job_ids: tuple[int, ...], tokens: tuple[int, ...], lease: Lease) -> bool:
    """Whether a notice about ``job_ids`` (and ``tokens``, pair by pair; none: any claim) is
    about ``lease``."""
    for i, job_id in enumerate(job_ids):
        if job_id == lease.job_id and (not tokens or tokens[i] == lease.token):
            return True
    return False
