"""Real interleavings: claimants as long-lived tasks, each on its own connection or instance.

Hypothesis writes the schedule: in each round some claimants act *at the same time* (claim,
renew what they hold, finalize, flush a batch that names a lease twice after a stale token,
reap) while the others stall, then the clock jumps. Renewals, too, repeat a lease and lead with
a stale token, so every position of a batch is checked while other claimants overlap it. Whatever the
database or the event loop makes of the overlap, the answers of every round must be those of
some sequential order of the same calls (checked against the reference model), and the lease
invariants must hold on the job table after every round.

The whole schedule is drawn before anything runs, so no draw depends on what a store answers,
and every example starts from an empty store with its ids and tokens counting from 1 at
``START``. The overlaps themselves are real, though: on SQL a replay may see another winner,
so a failure here is reported by its first sighting (``Harness.recording``) and need not shrink.
"""

from __future__ import annotations

from typing import Any

import anyio
import attrs
from anyio.abc import ObjectReceiveStream, ObjectSendStream
from hypothesis import given, note, settings
from hypothesis import strategies as st

from transports import Transport
from transports.lowlevel import FinalizeRequest, Lease, RenewRequest, RenewResult
from transports.testing import ManualClock

from .harness import Harness
from .model import Ledger, ReferenceModel, Violation
from .ops import Claim, Enqueue, Finalize, Op, Reap, Renew, settle
from .strategies import (
    QUEUES,
    WORKERS,
    EnqueueSpec,
    OutcomeSpec,
    advances,
    enqueue_batches,
    enqueue_specs,
    limits,
    outcome_specs,
    picks,
    ttls,
)


@attrs.frozen
class Step:
    """What one claimant does in a round."""

    kind: str  # "claim", "renew", "finalize", "flush", "reap" or "enqueue"
    limit: int = 1
    ttl: float = 5.0
    pick: int = 0
    outcome: OutcomeSpec | None = None
    jobs: tuple[EnqueueSpec, ...] = ()


steps = st.builds(
    Step,
    # Claims are the point (exactly one winner), so they are the likeliest step.
    kind=st.sampled_from(
        ["claim", "claim", "claim", "renew", "finalize", "flush", "reap", "enqueue"]
    ),
    limit=limits,
    ttl=ttls,
    pick=picks,
    outcome=outcome_specs,
    jobs=enqueue_batches.map(tuple),
)


@attrs.frozen
class Round:
    """Who acts at once (the others stall), then how far the clock jumps."""

    acting: dict[int, Step]  # claimant index -> its step
    advance: float


rounds = st.builds(
    Round,
    acting=st.dictionaries(
        st.integers(0, len(WORKERS) - 1), steps, min_size=1, max_size=len(WORKERS)
    ),
    advance=st.one_of(st.just(0.0), advances),
)
schedules = st.lists(rounds, min_size=1, max_size=25)


class _Answer:
    """Where a claimant puts the answer of one call."""

    def __init__(self) -> None:
        self.ready = anyio.Event()
        self.value: Any = None


class Claimant:
    """A worker as a task of its own: it waits for its next step, performs it, reports back."""

    def __init__(self, name: str, transport: Transport) -> None:
        self.name = name
        self.transport = transport
        self.held: list[Lease] = []
        self.old: list[Lease] = []  # leases it finalized or lost: stale tokens to send late
        send, receive = anyio.create_memory_object_stream[tuple[Op, _Answer]](1)
        self.inbox: ObjectSendStream[tuple[Op, _Answer]] = send
        self._inbox: ObjectReceiveStream[tuple[Op, _Answer]] = receive

    async def serve(self) -> None:
        """Perform each step sent to the inbox until it is closed."""
        async with self._inbox:
            async for op, answer in self._inbox:
                answer.value = await op.run(self.transport)
                answer.ready.set()

    def op_for(self, step: Step, now: float) -> Op | None:
        """The call this step makes, given what the claimant holds; None to stall instead."""
        if step.kind == "claim":
            return Claim(QUEUES[0], self.name, step.limit, step.ttl)
        if step.kind == "renew":
            if not self.held:
                return None
            # Every lease it holds, one of them twice, after a stale token when it has one.
            again = self.held[step.pick % len(self.held)]
            leases = [*self.old[-1:], *self.held, again]
            return Renew(
                tuple(RenewRequest(job_id=lease.job_id, token=lease.token) for lease in leases),
                step.ttl,
            )
        if step.kind == "flush":
            if not self.held:
                return None
            # A retried flush: a stale token first, then the picked lease twice around another.
            assert step.outcome is not None
            picked = self.held[step.pick % len(self.held)]
            other = self.held[(step.pick + 1) % len(self.held)]
            leases = [*self.old[-1:], picked, other, picked]
            outcome = step.outcome.outcome(now)
            return Finalize(
                tuple(
                    FinalizeRequest(job_id=lease.job_id, token=lease.token, outcome=outcome)
                    for lease in leases
                )
            )
        if step.kind == "finalize":
            if not self.held:
                return None
            lease = self.held[step.pick % len(self.held)]
            assert step.outcome is not None
            return Finalize(
                (
                    FinalizeRequest(
                        job_id=lease.job_id, token=lease.token, outcome=step.outcome.outcome(now)
                    ),
                )
            )
        if step.kind == "reap":
            return Reap(step.limit)
        return Enqueue(tuple(spec.request(now) for spec in step.jobs))

    def learn(self, op: Op, result: Any) -> None:
        """Keep the leases it won; drop what it finalized or lost."""
        if isinstance(op, Claim):
            self.held.extend(result)
        elif isinstance(op, Finalize):
            self._drop({(r.job_id, r.token) for r in op.requests})
        elif isinstance(op, Renew):
            self._drop(
                {
                    (r.job_id, r.token)
                    for r, answer in zip(op.requests, result, strict=True)
                    if answer is RenewResult.LOST
                }
            )

    def _drop(self, pairs: set[tuple[int, int]]) -> None:
        # (job, token) pairs: SQLite's tokens count per job, so a token alone names no lease.
        gone = [lease for lease in self.held if (lease.job_id, lease.token) in pairs]
        self.held = [lease for lease in self.held if (lease.job_id, lease.token) not in pairs]
        self.old = (self.old + gone)[-4:]


async def play(
    harness: Harness,
    transports: list[Transport],
    backlog: list[EnqueueSpec],
    schedule: list[Round],
    trace: list[str],
) -> None:
    """Run one schedule on the harness's loop, checking every round."""
    clock = harness.clock
    model, ledger = ReferenceModel(), Ledger()
    claimants = [Claimant(name, transports[i % len(transports)]) for i, name in enumerate(WORKERS)]
    first = Enqueue(tuple(spec.request(clock.now()) for spec in backlog))
    model, ledger = settle([(first, await first.run(transports[0]))], model, ledger, clock.now())
    try:
        async with anyio.create_task_group() as tg:
            for claimant in claimants:
                tg.start_soon(claimant.serve)
            try:
                await _rounds(transports, claimants, schedule, clock, model, ledger, trace)
            finally:
                for claimant in claimants:
                    claimant.inbox.close()
    except ExceptionGroup as group:
        # The finding is the violation itself, not the task group that carried it.
        violations = [e for e in _leaves(group) if isinstance(e, Violation)]
        if violations:
            raise violations[0] from None
        raise


def _leaves(group: BaseExceptionGroup[BaseException]) -> list[BaseException]:
    found: list[BaseException] = []
    for exc in group.exceptions:
        found.extend(_leaves(exc) if isinstance(exc, BaseExceptionGroup) else [exc])
    return found


async def _rounds(
    transports: list[Transport],
    claimants: list[Claimant],
    schedule: list[Round],
    clock: ManualClock,
    model: ReferenceModel,
    ledger: Ledger,
    trace: list[str],
) -> None:
    for number, round_ in enumerate(schedule):
        now = clock.now()
        calls: list[tuple[Claimant, Op, _Answer]] = []
        for index, step in sorted(round_.acting.items()):
            claimant = claimants[index]
            op = claimant.op_for(step, now)
            if op is not None:
                answer = _Answer()
                calls.append((claimant, op, answer))
                # Every acting claimant gets its step before any answer is awaited.
                claimant.inbox.send_nowait((op, answer))
        done = []
        for claimant, op, answer in calls:
            await answer.ready.wait()
            done.append((op, answer.value))
            claimant.learn(op, answer.value)
        trace.append(f"round {number} at {now}: {done!r}")
        if done:
            model, ledger = settle(done, model, ledger, now)
        jobs = await transports[0].list_jobs(limit=10_000)
        ledger.check_table(jobs, await transports[0].counts(), now)
        model.check_table(jobs, now)
        clock.advance(round_.advance)


def run_schedules(harness: Harness, settings_: settings) -> None:
    """Play hypothesis-chosen schedules on the harness until ``settings_`` says stop."""

    @settings_
    @given(backlog=st.lists(enqueue_specs, min_size=1, max_size=8), schedule=schedules)
    def run(backlog: list[EnqueueSpec], schedule: list[Round]) -> None:
        transports = harness.fresh()
        trace: list[str] = []
        try:
            with harness.recording():
                harness.call(play, harness, transports, backlog, schedule, trace)
        finally:
            for line in trace:
                note(line)

    run()
