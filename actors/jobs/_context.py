"""What a handler receives besides its payload."""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

import anyio
import anyio.lowlevel

from transports import Job, JobFilter, JsonValue, Transport
from transports.lowlevel import Lease, RenewResult

from ..core import Clock
from ._errors import ConfigInvalid, LeaseLost
from ._steps import StepLog
from ._tracing import trace_id_of

__all__ = ["JobContext"]

_log = logging.getLogger("actorq.job")


class _JobLogger(logging.LoggerAdapter[logging.Logger]):
    """Prefixes records with the job and adds its fields to ``record.__dict__``."""

    def process(
        self, msg: Any, kwargs: MutableMapping[str, Any]
    ) -> tuple[Any, MutableMapping[str, Any]]:
        extra = self.extra or {}
        kwargs["extra"] = {**extra, **kwargs.get("extra", {})}
        return (
            f"[{extra.get('job_kind')} #{extra.get('job_id')} try {extra.get('attempt')}] {msg}",
            kwargs,
        )


class JobContext:
    """The running job as its handler sees it.

    Attributes:
        job: the job as claimed (state running, ``attempt`` already counting this run).
        lease: the claim: its token and first expiry.
        clock: the node's clock: use ``await ctx.clock.sleep(s)``, never the event loop's own
            sleep, so simulation and tests control time.
    """

    # The logger and the cancel event are made on first use: most handlers never touch them,
    # and a worker builds one context per job.
    __slots__ = (
        "_cancel_event",
        "_cancelled",
        "_log",
        "_lost",
        "_renew",
        "_steps",
        "_transport",
        "clock",
        "job",
        "lease",
    )

    def __init__(
        self,
        lease: Lease,
        clock: Clock,
        renew: Callable[[], Awaitable[RenewResult]],
        *,
        transport: Transport | None = None,
        lost: Callable[[], object] | None = None,
    ) -> None:
        self.lease = lease
        self.job: Job = lease.job
        self.clock = clock
        self._renew = renew
        self._transport = transport
        self._cancelled = False
        self._cancel_event: anyio.Event | None = None
        self._log: _JobLogger | None = None
        self._transport = transport
        self._lost = lost
        self._steps: StepLog | None = None

    @property
    def log(self) -> logging.LoggerAdapter[logging.Logger]:
        """A logger bound to this job: messages are prefixed with its kind, id and attempt,
        and records carry ``job_id``, ``job_kind``, ``queue``, ``attempt`` and
        ``max_attempts`` fields (``trace_id`` too, when the job was enqueued under a trace)."""
        if self._log is None:
            job = self.job
            fields: dict[str, object] = {
                "job_id": job.id,
                "job_kind": job.kind,
                "queue": job.queue,
                "attempt": job.attempt,
                "max_attempts": job.max_attempts,
            }
            trace_id = trace_id_of(job)
            if trace_id is not None:
                fields["trace_id"] = trace_id
            self._log = _JobLogger(_log, fields)
        return self._log

    @property
    def job_id(self) -> int:
        """The job's id."""
        return self.job.id

    @property
    def attempt(self) -> int:
        """This run's attempt number, 1 for the first."""
        return self.job.attempt

    async def extend_lease(self) -> None:
        """Renew this job's lease now (before a long step), beyond the heartbeat's rhythm.

        When a cancel was requested meanwhile, ``cancel_requested`` becomes true and the
        handler is cancelled, as the next heartbeat would have done.

        Raises:
            LeaseLost: the lease is gone; stop working, the job belongs to someone else.
            transports.TransportError: the store could not be reached.
        """
        result = await self._renew()
        if result is RenewResult.LOST:
            raise LeaseLost(f"lease on job {self.job.id} was lost")
        if result is RenewResult.CANCEL_REQUESTED:
            self._request_cancel()

    # --- durable steps ----------------------------------------------------------------------

    def _step_log(self) -> StepLog:
        if self._steps is None:
            if self._transport is None:
                raise ConfigInvalid("this job context has no transport to record steps in")
            lost = self._lost if self._lost is not None else _nothing
            self._steps = StepLog(self.lease, self._transport, self.clock, lost)
        return self._steps

    async def step(self, name: str, fn: Callable[..., Any], *args: Any) -> Any:
        """Run ``fn(*args)`` once for this job and return its result, stored under ``name``.

        The first attempt that reaches the step runs ``fn`` (a function or a coroutine
        function), records its JSON result with the job, fenced by this attempt's lease, and
        returns it as stored (its JSON round trip: a tuple comes back a list). Every later
        attempt gets the stored result without running ``fn`` again. So a crash after the
        record re-runs nothing; a crash (or a lost lease) before it runs ``fn`` again on the
        next attempt: make ``fn`` safe to repeat until its result is recorded (an idempotency
        key with a payment provider, say). A name is one step per job: the second call with
        a name returns the first one's result.

        Args:
            name: the step's name, unique within the job: a label (1-255 characters, no
                control character) not starting with ``~``.
            fn: what the step does; its result must be JSON of at most
                ``transports.MAX_STEP_BYTES`` bytes.
            args: passed to ``fn``.

        Raises:
            transports.InvalidStepName: a bad name.
            transports.StepTooLarge, transports.PayloadNotSerializable: ``fn``'s result
                cannot be recorded (the attempt fails as any exception makes it; ``fn`` runs
                again on the next).
            LeaseLost: the lease is gone, so the result was not recorded; the attempt ends
                as lost and the job's next owner runs the step again.
        """
        return await self._step_log().step(name, fn, *args)

    async def steps(self) -> dict[str, JsonValue]:
        """The results recorded so far for this job (earlier attempts' too), by name."""
        return dict(await self._step_log().load())

    async def sleep_until(self, t: float) -> None:
        """Pause the job until clock time ``t`` without holding a worker or an attempt.

        When ``t`` has not come, this ends the attempt without spending it (the job is
        snoozed until ``t``) and the job runs again then, from the start of its handler: the
        steps it recorded return their results, and this call now returns at once. Each
        sleep is recorded like a step (the N-th sleep of the handler), so its wake-up time
        stays what the first attempt computed. Call it from the handler's own task.

        Raises:
            transports.InvalidRequest: ``t`` is not a finite number >= 0.
            LeaseLost: the lease is gone.
        """
        await self._step_log().sleep_until(t)

    async def sleep_for(self, seconds: float) -> None:
        """:meth:`sleep_until` ``now + seconds``, ``now`` taken when the job first got here."""
        await self._step_log().sleep_for(seconds)

    async def wait_for(self, event_key: str, *, timeout: float) -> JsonValue:
        """Wait for ``app.signal(event_key, value)`` without holding a worker or an attempt;
        return ``value``.

        When the event is set (before this call or since), its value is recorded like a step
        and returned, on this attempt and every later one. When it is not, this ends the
        attempt without spending it: the job is ``suspended`` until the signal comes (then it
        runs again from the start of its handler, its steps returning their results, and
        this call returns the value) or until ``timeout`` seconds after the job first got
        here (then this call raises :class:`WaitTimedOut`, on that attempt and every later
        one). Signals are kept, so one sent before the wait is not lost; the first value
        signalled wins. Call it from the handler's own task.

        Args:
            event_key: the event, an identifier (1-128 of ``[A-Za-z0-9_.:-]``), such as
                ``"order:42:paid"``; one wait per key and job.
            timeout: seconds (finite, > 0) after which the wait gives up.

        Raises:
            WaitTimedOut: the timeout passed before the signal came.
            transports.InvalidStepName: a bad key.
            transports.InvalidRequest: a bad timeout.
            LeaseLost: the lease is gone.
        """
        return await self._step_log().wait_for(event_key, timeout)

    @property
    def cancel_requested(self) -> bool:
        """True once an operator asked to cancel this job (the handler is cancelled soon)."""
        return self._cancelled

    async def wait_cancel_requested(self) -> None:
        """Wait until a cancel of this job is requested (returns at once if it was)."""
        if self._cancelled:
            await anyio.lowlevel.checkpoint()
            return
        if self._cancel_event is None:
            self._cancel_event = anyio.Event()
        await self._cancel_event.wait()

    def _request_cancel(self) -> None:
        self._cancelled = True
        if self._cancel_event is not None:
            self._cancel_event.set()

    async def parent_results(self) -> dict[int, JsonValue]:
        """The results of the jobs this one waited for (``after=``), by parent id in id
        order: a fan-in callback's members' results. A parent that did not succeed (the
        dependent ran anyway, ``on_failure="run"``) has None; a deleted one is left out.

        Raises:
            RuntimeError: the context has no store to read (built by hand, not by a Worker).
        """
        if self._transport is None:
            raise RuntimeError("this JobContext has no transport to read parents from")
        edges = await self._transport.list_edges([self.job.id])
        parents = sorted(edge.parent for edge in edges if edge.child == self.job.id)
        found: dict[int, JsonValue] = {}
        for start in range(0, len(parents), 1000):
            ids = parents[start : start + 1000]
            for job in await self._transport.list_jobs(JobFilter(ids=ids), limit=len(ids)):
                found[job.id] = job.result
        return {parent: found[parent] for parent in parents if parent in found}


def _nothing() -> None:
    """The lost-lease notice of a context nobody supervises."""
