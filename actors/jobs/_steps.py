"""Durable steps inside a handler: ``ctx.step``, ``ctx.sleep_until`` and ``ctx.wait_for``.

A :class:`StepLog` is one attempt's view of its job's recorded steps. It loads them lazily,
on the first step call of the attempt (a job that never calls one costs nothing; measured in
``bench/``: one ``list_steps`` round trip per attempt that uses steps, where loading with
the claim would cost every claim a second query), records new ones through the transport's
fenced ``record_step``, and ends the attempt without spending it (:class:`AttemptEnded`) for
a sleep or a wait.

Names the runtime records for itself start with ``~`` (``~sleep:0``, ``~until:KEY``,
``~wait:KEY``), which a handler's own step names may not.
"""

from __future__ import annotations

import inspect
import json
from collections.abc import Callable
from typing import Any

from transports import InvalidStepName, JsonValue, Transport
from transports.lowlevel import (
    Lease,
    Outcome,
    Snooze,
    StepResult,
    Suspend,
    check_duration,
    check_event_key,
    check_step_name,
    check_time,
    encode_step,
)

from ..core import Clock
from ._errors import LeaseLost, WaitTimedOut

__all__ = ["AttemptEnded", "StepLog"]

_RESERVED = "~"  # the prefix of the names the runtime records for itself


class AttemptEnded(BaseException):
    """Ends the running attempt with ``outcome``, its attempt given back (a sleep or a wait).

    A ``BaseException``, so a handler's ``except Exception`` does not swallow it; the
    runtime's execution catches it and finalizes the outcome.
    """

    def __init__(self, outcome: Outcome) -> None:
        super().__init__(outcome)
        self.outcome = outcome


class StepLog:
    """One attempt's steps: what earlier attempts recorded, and this one's new records.

    Args:
        lease: the attempt's claim (its token fences every record).
        transport: where steps are recorded.
        clock: the node's clock (sleep and wait deadlines).
        lost: called when a record is refused as stale: the lease is gone.
    """

    __slots__ = ("_clock", "_lease", "_lost", "_sleeps", "_steps", "_transport")

    def __init__(
        self, lease: Lease, transport: Transport, clock: Clock, lost: Callable[[], object]
    ) -> None:
        self._lease = lease
        self._transport = transport
        self._clock = clock
        self._lost = lost
        self._steps: dict[str, JsonValue] | None = None
        self._sleeps = 0

    async def load(self) -> dict[str, JsonValue]:
        """The recorded steps by name (read from the store on first use)."""
        if self._steps is None:
            stored = await self._transport.list_steps(self._lease.job_id)
            self._steps = {step.name: step.value for step in stored}
        return self._steps

    async def record(self, name: str, value: JsonValue) -> JsonValue:
        """Record ``value`` as step ``name`` under the lease; returns it as stored (its JSON
        round trip, what a later attempt reads back).

        Raises:
            LeaseLost: the lease is gone (the record was refused); the attempt ends lost.
            transports.StepTooLarge, transports.PayloadNotSerializable: a bad value.
        """
        text = encode_step(value)
        lease = self._lease
        result = await self._transport.record_step(
            lease.job_id, token=lease.token, name=name, value=value
        )
        if result is StepResult.STALE:
            self._lost()
            raise LeaseLost(f"lease on job {lease.job_id} was lost; step {name!r} not recorded")
        stored = json.loads(text)
        steps = await self.load()
        steps.setdefault(name, stored)
        return steps[name]

    async def step(self, name: str, fn: Callable[..., Any], *args: Any) -> Any:
        """See :meth:`~actors.jobs.JobContext.step`."""
        if isinstance(name, str) and name.startswith(_RESERVED):
            raise InvalidStepName(f"step names starting with {_RESERVED!r} are the runtime's")
        check_step_name(name)
        steps = await self.load()
        if name in steps:
            return steps[name]
        value = fn(*args)
        if inspect.isawaitable(value):
            value = await value
        return await self.record(name, value)

    async def sleep_until(self, t: float) -> None:
        """See :meth:`~actors.jobs.JobContext.sleep_until`."""
        wake = check_time(t, "t")
        await self._sleep(lambda: wake)

    async def sleep_for(self, seconds: float) -> None:
        """See :meth:`~actors.jobs.JobContext.sleep_for`."""
        delay = check_time(seconds, "seconds")
        await self._sleep(lambda: self._clock.now() + delay)

    async def _sleep(self, wake_at: Callable[[], float]) -> None:
        name = f"{_RESERVED}sleep:{self._sleeps}"
        self._sleeps += 1
        steps = await self.load()
        wake = steps.get(name)
        if not isinstance(wake, int | float):
            wake = await self.record(name, wake_at())
        if self._clock.now() >= wake:
            return
        raise AttemptEnded(Snooze(run_at=float(wake)))

    async def wait_for(self, event_key: str, timeout: float) -> JsonValue:
        """See :meth:`~actors.jobs.JobContext.wait_for`."""
        check_event_key(event_key)
        check_duration(timeout, "timeout")
        steps = await self.load()
        done_name = f"{_RESERVED}wait:{event_key}"
        until_name = f"{_RESERVED}until:{event_key}"
        done = steps.get(done_name)
        deadline = steps.get(until_name)
        if isinstance(done, dict):
            if "value" in done:
                return done["value"]
            raise WaitTimedOut(event_key, float(deadline if deadline is not None else 0.0))
        if not isinstance(deadline, int | float):
            deadline = await self.record(until_name, self._clock.now() + timeout)
        event = await self._transport.get_signal(event_key)
        if event is not None:
            recorded = await self.record(done_name, {"value": event.value})
            return recorded["value"]
        if self._clock.now() >= deadline:
            await self.record(done_name, {"timed_out": True})
            raise WaitTimedOut(event_key, float(deadline))
        raise AttemptEnded(Suspend(event_key=event_key, run_at=float(deadline)))
