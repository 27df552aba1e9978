"""The JobTester: your App on a memory store and a virtual clock, run inline by your test.

Nothing runs behind the test's back: jobs wait in the store until the test calls
:meth:`JobTester.drain`, time stands still until it calls :meth:`JobTester.advance`. A drain
claims each due job and runs it through the runtime's own Worker code (payload decoding,
timeout, the handler, the outcome decision with the task's backoff, the finalize fenced by
the lease token, the runtime events), so retries, snoozes, drops and dead jobs end exactly as
they would in production; only the concurrency is gone: jobs run one at a time, in order.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Iterable
from random import Random  # allowed: type of the seeded RNG only
from typing import Any

import anyio
import anyio.lowlevel

from actors.core import VirtualClock
from actors.jobs import App, CronFired, CronSchedule, Task, WorkerConfig
from actors.jobs.lowlevel import EventBus, Execution, event_of, execute, lose, request_cancel
from transports import (
    CancelResult,
    EnqueueResult,
    Job,
    JobFilter,
    JobState,
    MemoryTransport,
    Transport,
)
from transports.lowlevel import (
    Cancel,
    Discard,
    FinalizeRequest,
    FinalizeResult,
    Lease,
    Outcome,
    RenewRequest,
    RenewResult,
    Retry,
    SignalResult,
    Snooze,
    Suspend,
)

from ._errors import ClockMovedBackwards, DrainDidNotSettle, NotEnqueued, UnexpectedlyEnqueued
from ._match import _UNSET, Expectation, job_state, not_enqueued_message, unexpected_message
from ._results import DrainResult, JobRun, RunOutcome

__all__ = ["DEFAULT_START", "JobTester", "open_tester"]

#: Where a tester's virtual clock starts: 2026-01-01 00:00:00 UTC (cron reads it as UTC).
DEFAULT_START = 1_767_225_600.0

_OWNER = "tester"
_OUTCOME_OF_STATE = {
    JobState.SUCCEEDED: RunOutcome.SUCCEEDED,
    JobState.DEAD: RunOutcome.DEAD,
    JobState.CANCELLED: RunOutcome.CANCELLED,
}


class JobTester:
    """An App on a private :class:`~transports.MemoryTransport` with a virtual clock.

    Use it as an async context manager (or through :func:`open_tester`). While it is open,
    ``app.transport`` is the tester's store, so ``app.enqueue(...)`` from the test or from a
    handler lands there; the App's own transport is put back on exit.

    Args:
        app: your App.
        start: the virtual clock's start time, in seconds since the epoch (cron reads UTC).
        seed: seeds the RNG the runtime draws backoff jitter and cron jitter from.
        autojump: while a handler runs, jump virtual time to the next timer whenever every
            task waits, so ``await ctx.clock.sleep(30)`` and task timeouts take no real time.
            A handler waiting on real I/O then sees time jump too: pass False if it does.
        cron: fire the App's cron schedules as virtual time crosses their ticks.
        max_runs: the most runs one drain may make before it gives up with
            :class:`DrainDidNotSettle` (unless it was given a ``limit``).

    Attributes:
        app: the App under test.
        clock: the virtual clock every time in the store comes from.
        transport: the memory store the jobs live in.
        events: the runtime events of every run (``tester.events.subscribe(fn)``).
        rng: the seeded RNG.
    """

    def __init__(
        self,
        app: App,
        *,
        start: float = DEFAULT_START,
        seed: int = 0,
        autojump: bool = True,
        cron: bool = True,
        max_runs: int = 10_000,
    ) -> None:
        self.app = app
        self.clock = VirtualClock(start)
        self.transport = MemoryTransport(clock=self.clock)
        self.events = EventBus()
        self.rng = Random(seed)
        self.autojump = autojump
        self.cron = cron
        self.max_runs = max_runs
        self._config = WorkerConfig()
        self._cron_after = self.clock.now()  # ticks up to here have fired
        self._saved_transport: Transport | None = None

    async def __aenter__(self) -> JobTester:
        await self.transport.open()
        self._saved_transport = self.app.transport
        self.app.transport = self.transport
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        self.app.transport = self._saved_transport
        await self.transport.aclose()

    # --- the store --------------------------------------------------------------------------

    def now(self) -> float:
        """The virtual time."""
        return self.clock.now()

    async def enqueue(
        self,
        kind_or_task: str | Task[Any],
        payload: Any = None,
        *,
        queue: str | None = None,
        priority: int | None = None,
        delay: float = 0.0,
        run_at: float | None = None,
        max_attempts: int | None = None,
        dedupe_key: str | None = None,
    ) -> EnqueueResult:
        """Enqueue one job into the tester's store (as ``app.enqueue`` would).

        Raises:
            UnknownJobKind, PayloadInvalid: as ``App.enqueue``.
        """
        request = self.app.request(
            kind_or_task,
            payload,
            queue=queue,
            priority=priority,
            delay=delay,
            run_at=run_at,
            max_attempts=max_attempts,
            dedupe_key=dedupe_key,
        )
        return await self.transport.enqueue(request)

    async def jobs(
        self,
        kind_or_task: str | Task[Any] | None = None,
        *,
        queue: str | None = None,
        state: JobState | str | None = None,
    ) -> list[Job]:
        """Every stored job matching the filters, by id."""
        kind = kind_or_task.kind if isinstance(kind_or_task, Task) else kind_or_task
        found: list[Job] = []
        after = 0
        while True:
            page = await self.transport.list_jobs(
                JobFilter(
                    queue=queue,
                    states=() if state is None else (job_state(state),),
                    kind=kind,
                ),
                after_id=after,
                limit=500,
            )
            found.extend(page)
            if len(page) < 500:
                return found
            after = page[-1].id

    async def get(self, job_id: int) -> Job:
        """One job by id.

        Raises:
            transports.JobNotFound: no job has that id.
        """
        return await self.transport.get(job_id)

    async def cancel(self, job_id: int) -> CancelResult:
        """Cancel a job as an operator would (a waiting job ends cancelled at once)."""
        return await self.transport.cancel(job_id)

    # --- assertions -------------------------------------------------------------------------

    async def signal(self, event_key: str, value: Any = None) -> SignalResult:
        """``app.signal(event_key, value)`` on the tester's store: the jobs waiting for it
        are due at once (the next :meth:`drain` runs them)."""
        return await self.transport.signal(event_key, value)

    async def all_enqueued(
        self,
        kind_or_task: str | Task[Any] | None = None,
        *,
        payload: Any = _UNSET,
        queue: str | None = None,
        state: JobState | str | Iterable[JobState | str] | None = None,
        priority: int | None = None,
    ) -> list[Job]:
        """The stored jobs matching, by id (arguments as for :meth:`assert_enqueued`)."""
        expectation = Expectation.build(
            self.app, kind_or_task, payload=payload, queue=queue, state=state, priority=priority
        )
        return [job for job in await self.jobs() if not expectation.differences(job)]

    async def assert_enqueued(
        self,
        kind_or_task: str | Task[Any] | None = None,
        *,
        payload: Any = _UNSET,
        queue: str | None = None,
        state: JobState | str | Iterable[JobState | str] | None = None,
        priority: int | None = None,
    ) -> Job:
        """Check that a matching job is stored, and return it (the first by id).

        Args:
            kind_or_task: the job kind or its Task; None matches any kind.
            payload: an instance of the task's payload type matches the whole stored payload;
                a mapping matches the keys it names (nested mappings likewise) and ignores
                the rest. Unset: any payload.
            queue: the queue; None matches any.
            state: a state or several; None means waiting to run (available or scheduled).
            priority: the priority; None matches any.

        Raises:
            NotEnqueued: nothing matches; the message lists the jobs in those states, each
                with how it differs, and matching jobs found in other states.
        """
        expectation = Expectation.build(
            self.app, kind_or_task, payload=payload, queue=queue, state=state, priority=priority
        )
        jobs = await self.jobs()
        for job in jobs:
            if not expectation.differences(job):
                return job
        raise NotEnqueued(not_enqueued_message(expectation, jobs))

    async def refute_enqueued(
        self,
        kind_or_task: str | Task[Any] | None = None,
        *,
        payload: Any = _UNSET,
        queue: str | None = None,
        state: JobState | str | Iterable[JobState | str] | None = None,
        priority: int | None = None,
    ) -> None:
        """Check that no matching job is stored (arguments as for :meth:`assert_enqueued`).

        Raises:
            UnexpectedlyEnqueued: some job matches; the message lists every match.
        """
        expectation = Expectation.build(
            self.app, kind_or_task, payload=payload, queue=queue, state=state, priority=priority
        )
        matches = [job for job in await self.jobs() if not expectation.differences(job)]
        if matches:
            raise UnexpectedlyEnqueued(unexpected_message(expectation, matches))

    # --- time -------------------------------------------------------------------------------

    async def advance(self, seconds: float) -> None:
        """Move virtual time forward by ``seconds``, firing the cron ticks it crosses.

        Jobs that become due (retry waits, snoozes, delayed jobs, cron jobs) wait for the
        next :meth:`drain`; :meth:`run_for` moves time and runs them as it goes.

        Raises:
            ClockMovedBackwards: ``seconds`` is negative.
        """
        if seconds < 0:
            raise ClockMovedBackwards(f"cannot move time backwards (advance({seconds}))")
        await self.advance_to(self.clock.now() + seconds)

    async def advance_to(self, t: float) -> None:
        """Move virtual time forward to ``t``, firing the cron ticks it crosses, in order.

        Raises:
            ClockMovedBackwards: ``t`` is in the past.
        """
        if t < self.clock.now():
            raise ClockMovedBackwards(
                f"cannot move time backwards (from {self.clock.now():g} to {t:g})"
            )
        await self._fire_cron(t)
        self.clock.advance_to(t)
        await anyio.lowlevel.checkpoint()  # a checkpoint even when no tick fired

    async def _fire_cron(self, until: float) -> None:
        """Enqueue every cron tick in ``(last fired, until]``, stepping the clock to each.

        The cluster's cron leader does the same while it runs: it wakes at each tick and
        enqueues the schedule's job with the tick's dedupe key (which, under
        ``Overlap.SKIP``, folds into the previous run while that is still active).
        """
        after, self._cron_after = self._cron_after, max(self._cron_after, until)
        schedules = self.app.schedules if self.cron else []
        ticks = sorted(
            (tick, i, schedule)
            for i, schedule in enumerate(schedules)
            for tick in schedule.ticks_between(after, until)
        )
        for tick, _, schedule in ticks:
            if tick > self.clock.now():
                self.clock.advance_to(tick)
            await self._fire(schedule, tick)

    async def _fire(self, schedule: CronSchedule, tick: float) -> None:
        delay = self.rng.uniform(0.0, schedule.jitter) if schedule.jitter else 0.0
        request = self.app.request(
            schedule.kind,
            schedule.payload,
            queue=schedule.queue,
            dedupe_key=schedule.dedupe_key(tick),
            delay=delay,
        )
        result = await self.transport.enqueue(request)
        self.events.publish(
            CronFired(
                at=self.clock.now(),
                schedule=schedule.name,
                tick=tick,
                job_id=result.job_id,
                deduplicated=result.deduplicated,
            )
        )

    def _next_tick(self) -> float | None:
        schedules = self.app.schedules if self.cron else []
        return min((s.next_after(self._cron_after) for s in schedules), default=None)

    async def _next_run_at(self, queue: str | None) -> float | None:
        """When the next waiting job of an unpaused queue becomes due, or None."""
        paused = {c.name for c in await self.transport.list_queue_configs() if c.paused}
        waiting = await self.jobs(queue=queue, state=JobState.SCHEDULED)
        waiting += await self.jobs(queue=queue, state=JobState.SUSPENDED)  # their timeouts
        return min((job.run_at for job in waiting if job.queue not in paused), default=None)

    # --- running ----------------------------------------------------------------------------

    async def drain(
        self,
        *,
        queue: str | None = None,
        limit: int | None = None,
        with_scheduled: bool = False,
    ) -> DrainResult:
        """Run every due job, and the jobs those jobs enqueue, until nothing is due.

        Queues take turns, one job each, and each queue runs its jobs in the store's claim
        order (priority, then run_at, then id). A paused queue runs nothing.

        Args:
            queue: run only this queue's jobs.
            limit: stop after this many runs.
            with_scheduled: when nothing is due, move time forward to the next waiting job
                (a retry wait, a snooze, a delayed job) and go on, until no job waits. Cron
                ticks crossed on the way fire, but a drain never moves time just for them.

        Returns:
            every run, in order.

        Raises:
            DrainDidNotSettle: without ``limit``, more than ``max_runs`` runs and still work.
        """
        runs: list[JobRun] = []
        budget = limit if limit is not None else self.max_runs + 1
        await self._run_due(queue, runs, budget)
        while with_scheduled and len(runs) < budget:
            next_at = await self._next_run_at(queue)
            if next_at is None:
                break
            await self.advance_to(max(next_at, self.clock.now()))
            await self._run_due(queue, runs, budget)
        self._check_budget(limit, runs)
        return DrainResult(runs=tuple(runs))

    async def run_for(self, seconds: float, *, queue: str | None = None) -> DrainResult:
        """Let ``seconds`` of virtual time pass as a running node would see them.

        Runs what is due now, then jumps from one moment something happens (a waiting job
        becomes due, a cron tick) to the next, running what is due at each, and ends at
        ``now + seconds`` (or later, if a handler's own sleeps went past it).

        Raises:
            ClockMovedBackwards: ``seconds`` is negative.
            DrainDidNotSettle: more than ``max_runs`` runs.
        """
        if seconds < 0:
            raise ClockMovedBackwards(f"cannot move time backwards (run_for({seconds}))")
        return await self.run_until(self.clock.now() + seconds, queue=queue)

    async def run_until(self, t: float, *, queue: str | None = None) -> DrainResult:
        """Like :meth:`run_for`, up to the clock time ``t``."""
        runs: list[JobRun] = []
        budget = self.max_runs + 1
        await self._run_due(queue, runs, budget)
        while len(runs) < budget:
            candidates = [await self._next_run_at(queue), self._next_tick()]
            next_at = min((c for c in candidates if c is not None), default=None)
            if next_at is None or next_at > t:
                break
            await self.advance_to(max(next_at, self.clock.now()))
            await self._run_due(queue, runs, budget)
        if t > self.clock.now():
            await self.advance_to(t)
            await self._run_due(queue, runs, budget)
        self._check_budget(None, runs)
        return DrainResult(runs=tuple(runs))

    def _check_budget(self, limit: int | None, runs: list[JobRun]) -> None:
        if limit is None and len(runs) > self.max_runs:
            last = "\n".join(f"  {run}" for run in runs[-5:])
            raise DrainDidNotSettle(
                f"still running jobs after {self.max_runs} runs (max_runs); the last ones:\n{last}"
            )

    async def _run_due(self, queue: str | None, runs: list[JobRun], budget: int) -> None:
        """Run due jobs, queues taking turns, until none is due or ``budget`` runs were made."""
        while True:
            # Ticks a handler's sleeps went past fire now, as a live cron leader's would.
            await self._fire_cron(self.clock.now())
            queues = [queue] if queue is not None else await self._queues()
            progressed = False
            for name in queues:
                if len(runs) >= budget:
                    return
                leases = await self.transport.claim(
                    name, owner=_OWNER, limit=1, ttl=self._config.lease_ttl
                )
                if leases:
                    runs.append(await self._run(leases[0]))
                    progressed = True
            if not progressed:
                return

    async def _queues(self) -> list[str]:
        stored = {counts.queue for counts in await self.transport.counts()}
        return sorted(stored | set(self.app.queues))

    async def _run(self, lease: Lease) -> JobRun:
        """Run one claimed job through the runtime's own execution and outcome code (what a
        Worker runs), store its outcome, and publish the events a node would."""
        clock = self.clock
        started = clock.now()
        run = Execution(lease)

        async def renew() -> RenewResult:
            # ctx.extend_lease(): a cancel request or a lost lease stops the handler as it
            # would in production.
            (result,) = await self.transport.renew(
                [RenewRequest(job_id=lease.job_id, token=lease.token)],
                ttl=self._config.lease_ttl,
            )
            if result is RenewResult.LOST:
                lose(run)
            elif result is RenewResult.CANCEL_REQUESTED:
                request_cancel(run)
            return result

        async def go() -> tuple[Outcome | None, float]:
            return await execute(
                run,
                app=self.app,
                clock=clock,
                rng=self.rng,
                worker=_OWNER,
                events=self.events,
                renew=renew,
                max_result_bytes=self.transport.max_result_bytes,
                transport=self.transport,
            )

        if self.autojump:
            async with clock.autojump():
                outcome, duration = await go()
        else:
            outcome, duration = await go()
        job = lease.job
        if outcome is None:  # the lease was lost while it ran: nothing to store
            return self._record(lease, RunOutcome.REFUSED, job, None, started)
        (result,) = await self.transport.finalize(
            [FinalizeRequest(job_id=job.id, token=lease.token, outcome=outcome)]
        )
        event = event_of(
            job, lease.token, outcome, result, worker=_OWNER, now=clock.now(), duration=duration
        )
        if event is not None:
            self.events.publish(event)
        stored = await self.transport.get(job.id)
        if result is FinalizeResult.STALE:
            return self._record(lease, RunOutcome.REFUSED, stored, None, started)
        return self._record(lease, _run_outcome(outcome, stored), stored, _error(outcome), started)

    def _record(
        self, lease: Lease, outcome: RunOutcome, stored: Job, error: str | None, started: float
    ) -> JobRun:
        job = lease.job
        waiting = stored.state in (JobState.SCHEDULED, JobState.AVAILABLE, JobState.SUSPENDED)
        return JobRun(
            job_id=job.id,
            kind=job.kind,
            queue=job.queue,
            attempt=job.attempt,
            payload=job.payload,
            outcome=outcome,
            state=stored.state,
            error=error,
            run_at=stored.run_at if waiting and outcome is not RunOutcome.REFUSED else None,
            started_at=started,
            finished_at=self.clock.now(),
            result=stored.result,
        )


def _run_outcome(outcome: Outcome, stored: Job) -> RunOutcome:
    final = _OUTCOME_OF_STATE.get(stored.state)
    if final is not None:
        return final  # what the store made of it (a retry with no attempts left is dead)
    if isinstance(outcome, Retry):
        return RunOutcome.RETRIED
    if isinstance(outcome, Snooze):
        return RunOutcome.SNOOZED
    if isinstance(outcome, Suspend):
        return RunOutcome.SUSPENDED
    return RunOutcome.RELEASED


def _error(outcome: Outcome) -> str | None:
    if isinstance(outcome, Retry | Discard):
        return outcome.error
    if isinstance(outcome, Cancel):
        return outcome.reason
    return None


@contextlib.asynccontextmanager
async def open_tester(
    app: App,
    *,
    start: float = DEFAULT_START,
    seed: int = 0,
    autojump: bool = True,
    cron: bool = True,
    max_runs: int = 10_000,
) -> AsyncIterator[JobTester]:
    """Open a :class:`JobTester` for ``app`` (arguments as for the class)::

    async with open_tester(app) as tester:
        await app.enqueue(place_order, Order(id=1, cents=500))
        result = await tester.drain()
        assert result.succeeded == 2
        await tester.assert_enqueued("shop.receipt", payload={"order_id": 1})
    """
    async with JobTester(
        app, start=start, seed=seed, autojump=autojump, cron=cron, max_runs=max_runs
    ) as tester:
        yield tester
