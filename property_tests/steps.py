"""The stateful test of durable steps: workers running steps, suspending and being signalled.

:class:`StepMachine` drives one transport through claims by several workers, steps run the
way a handler runs them (the runtime's own :class:`~actors.jobs.lowlevel.StepLog`: read the
recorded steps, run the step only when it is missing, record it under the lease), stale
workers recording late, retries, suspensions on a few event keys, signals, timeouts, reaps,
cancels and clock jumps. It checks, after every step, what the contract promises:

* ``STEP_FENCED``: a record under a token that is no longer live (finalized, expired,
  re-claimed) is ``STALE`` and changes no step; one under a live token is ``RECORDED``.
* ``STEP_ONCE``: once a step's record committed, no later attempt runs it again (the only
  re-runs are of steps whose record was refused); the stored value is the first recorded.
* ``SIGNAL_WAKES_ONCE``: a signal wakes exactly the jobs suspended on its key, each once;
  a second signal of a key wakes nobody.
* ``NONE_LEFT_SUSPENDED``: no job is suspended on a key that has been signalled.

Replays are exact as in :mod:`property_tests.machine`: a fresh store per example, the manual
clock, rules that pick among what the machine knows with plain integers.
"""

from __future__ import annotations

import functools
from typing import Any, cast

from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, rule

from actors.core import Clock
from actors.jobs import LeaseLost, WaitTimedOut
from actors.jobs.lowlevel import AttemptEnded, StepLog
from transports import EnqueueRequest, JobFilter, JobState, Transport
from transports.lowlevel import (
    Complete,
    FinalizeRequest,
    Lease,
    Retry,
    Suspend,
)

from .harness import Harness
from .model import Violation

__all__ = ["StepMachine"]

STEP_FENCED = "a record under a stale token is refused and changes nothing"
STEP_ONCE = "a step whose record committed is never run again"
SIGNAL_WAKES_ONCE = "a signal wakes exactly the jobs suspended on its key, once"
NONE_LEFT_SUSPENDED = "no job stays suspended on a key that was signalled"

WORKERS = ("w1", "w2")
STEP_NAMES = ("charge", "reserve", "mail")
KEYS = ("paid", "shipped")
TTL = 30.0

picks = st.integers(min_value=0, max_value=1_000)


class _Now:
    """The harness's manual clock as a StepLog's clock (which only reads ``now``)."""

    def __init__(self, harness: Harness) -> None:
        self._harness = harness

    def now(self) -> float:
        return self._harness.clock.now()


def _log(harness: Harness, lease: Lease, transport: Transport, lost: Any) -> StepLog:
    return StepLog(lease, transport, cast(Clock, _Now(harness)), lost)


class StepMachine(RuleBasedStateMachine):
    """A transport, workers running steps, and what each property needs to know.

    Args:
        harness: the loop, clock and transports (a fresh store per example).
    """

    def __init__(self, harness: Harness) -> None:
        super().__init__()
        self.harness = harness
        self.transport: Transport = harness.fresh()[0]
        self.clock = harness.clock
        self.job_ids: list[int] = []
        self.held: list[tuple[str, Lease]] = []  # leases workers believe they hold
        self.old: list[Lease] = []  # leases finalized or taken back
        self.finished: set[tuple[int, int]] = set()  # (job, token) pairs finalized
        self.committed: dict[tuple[int, str], Any] = {}  # steps recorded: their first value
        self.runs: dict[tuple[int, str], int] = {}  # how often each step's fn ran
        self.suspended_on: dict[int, str] = {}  # job -> key, from our own finalizes
        self.signalled: set[str] = set()

    # --- plumbing -----------------------------------------------------------------------

    @property
    def now(self) -> float:
        return self.clock.now()

    def _call(self, fn: Any, *args: Any, **kwargs: Any) -> Any:
        result = self.harness.call(functools.partial(fn, *args, **kwargs))
        self.harness.log(f"{getattr(fn, '__name__', fn)}{args!r} {kwargs!r} -> {result!r}")
        return result

    def _fail(self, prop: str, text: str) -> None:
        with self.harness.recording():
            raise Violation(prop, text)

    def _live(self, lease: Lease) -> bool:
        """Whether ``lease`` still owns its job: not finalized, not expired (so not reaped or
        re-claimed either: the machine never renews)."""
        return (lease.job_id, lease.token) not in self.finished and self.now < lease.expires_at

    def _steps(self, job_id: int) -> dict[str, Any]:
        steps = self._call(self.transport.list_steps, job_id)
        return {step.name: step.value for step in steps}

    # --- rules --------------------------------------------------------------------------

    @initialize(n=st.integers(min_value=1, max_value=4))
    def backlog(self, n: int) -> None:
        """Start with a few jobs."""
        self.enqueue(n)

    @rule(n=st.integers(min_value=1, max_value=2))
    def enqueue(self, n: int) -> None:
        requests = [EnqueueRequest(kind="steps", queue="q", max_attempts=50) for _ in range(n)]
        results = self._call(self.transport.enqueue_many, requests)
        self.job_ids.extend(result.job_id for result in results)

    @rule(worker=st.sampled_from(WORKERS), ttl=st.sampled_from([5.0, TTL]))
    def claim(self, worker: str, ttl: float) -> None:
        leases = self._call(self.transport.claim, "q", owner=worker, limit=1, ttl=ttl)
        for lease in leases:
            self.suspended_on.pop(lease.job_id, None)
            self.held.append((worker, lease))

    @rule(pick=picks, name=st.sampled_from(STEP_NAMES), stale=st.booleans())
    def step(self, pick: int, name: str, stale: bool) -> None:
        """A worker (or a stale one, late) runs a step as a handler does."""
        pool = self.old if stale else [lease for _, lease in self.held]
        if not pool:
            return
        lease = pool[pick % len(pool)]
        live = self._live(lease)
        key = (lease.job_id, name)
        before = self._steps(lease.job_id)
        lost: list[bool] = []
        log = _log(self.harness, lease, self.transport, lambda: lost.append(True))
        runs_before = self.runs.get(key, 0)

        def work() -> dict[str, Any]:
            self.runs[key] = self.runs.get(key, 0) + 1
            return {"by": lease.token, "n": self.runs[key]}

        try:
            value = self.harness.call(log.step, name, work)
        except LeaseLost:
            value = None
        after = self._steps(lease.job_id)
        self.harness.log(f"step {name} of {lease.job_id}/{lease.token} live={live} -> {value!r}")
        if key in self.committed:
            if self.runs.get(key, 0) != runs_before:
                self._fail(STEP_ONCE, f"{key} ran again after its record committed")
            if after.get(name) != self.committed[key]:
                self._fail(STEP_ONCE, f"{key} holds {after.get(name)!r}, not its first value")
            if live and value != self.committed[key]:
                self._fail(STEP_ONCE, f"{key} returned {value!r} instead of its stored value")
            return
        if not live:
            if not lost or after != before:
                self._fail(STEP_FENCED, f"a stale token recorded {key}: {before} -> {after}")
            return
        if lost or after.get(name) != value:
            self._fail(STEP_FENCED, f"a live token could not record {key} ({value!r}, {after})")
        self.committed[key] = value

    @rule(pick=picks, how=st.sampled_from(["complete", "retry", "suspend", "suspend"]))
    def finish(self, pick: int, how: str) -> None:
        """A worker ends its attempt: done, a retry, or a wait on an event."""
        if not self.held:
            return
        _, lease = self.held.pop(pick % len(self.held))
        key = KEYS[pick % len(KEYS)]
        if how == "complete":
            outcome: Any = Complete()
        elif how == "retry":
            outcome = Retry(run_at=self.now, error="crash")
        else:
            log = _log(self.harness, lease, self.transport, lambda: None)

            async def wait() -> Any:
                # AttemptEnded is a BaseException: caught here, on the loop, as the runtime
                # catches it around a handler.
                try:
                    await log.wait_for(key, 60.0)
                except AttemptEnded as ended:
                    return ended.outcome
                except (LeaseLost, WaitTimedOut):
                    pass  # a stale one is refused below; a timeout ends the handler
                return Complete()  # the event was set: the handler goes on and ends

            outcome = self.harness.call(wait)
        (result,) = self._call(
            self.transport.finalize,
            [FinalizeRequest(job_id=lease.job_id, token=lease.token, outcome=outcome)],
        )
        self.finished.add((lease.job_id, lease.token))
        self.old.append(lease)
        if isinstance(outcome, Suspend) and result == "applied":
            job = self._call(self.transport.get, lease.job_id)
            if job.state is JobState.SUSPENDED:
                self.suspended_on[lease.job_id] = outcome.event_key

    @rule(key=st.sampled_from(KEYS), value=st.integers())
    def signal(self, key: str, value: int) -> None:
        expected = sorted(
            job_id
            for job_id, on in self.suspended_on.items()
            if on == key and self._suspended(job_id)
        )
        result = self._call(self.transport.signal, key, value)
        if result.stored == (key in self.signalled):
            self._fail(SIGNAL_WAKES_ONCE, f"signal {key} stored={result.stored} twice or never")
        if list(result.woken) != (expected if result.stored else []):
            self._fail(SIGNAL_WAKES_ONCE, f"signal {key} woke {result.woken}, not {expected}")
        for job_id in result.woken:
            self.suspended_on.pop(job_id, None)
        self.signalled.add(key)

    def _suspended(self, job_id: int) -> bool:
        job = self._call(self.transport.get, job_id)
        return bool(job.state is JobState.SUSPENDED)

    @rule(seconds=st.sampled_from([1.0, 10.0, 31.0, 61.0]))
    def advance(self, seconds: float) -> None:
        self.clock.advance(seconds)

    @rule()
    def reap(self) -> None:
        for reclaimed in self._call(self.transport.reap):
            for _, lease in self.held:
                if lease.job_id == reclaimed.job_id:
                    self.old.append(lease)
            self.held = [(w, lease) for w, lease in self.held if lease.job_id != reclaimed.job_id]

    @rule(pick=picks)
    def cancel(self, pick: int) -> None:
        if self.job_ids:
            job_id = self.job_ids[pick % len(self.job_ids)]
            self._call(self.transport.cancel_jobs, JobFilter.one(job_id))

    # --- invariants ---------------------------------------------------------------------

    @invariant()
    def nobody_left_suspended(self) -> None:
        """No suspended job waits on a key that was signalled; every committed step is
        stored with its first value."""
        suspended = self._call(
            self.transport.list_jobs, JobFilter(states=[JobState.SUSPENDED]), limit=1000
        )
        for job in suspended:
            if job.wait_key in self.signalled:
                self._fail(NONE_LEFT_SUSPENDED, f"job {job.id} still waits on {job.wait_key}")
        for (job_id, name), value in self.committed.items():
            if self._steps(job_id).get(name) != value:
                self._fail(STEP_ONCE, f"step {name} of job {job_id} changed or vanished")

    def teardown(self) -> None:
        pass
