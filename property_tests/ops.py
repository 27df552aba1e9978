"""Transport calls as values: run one against a transport, then check its answer.

Each operation knows how to call the transport and how to feed the answer to the
:class:`~property_tests.model.Ledger` (the invariants) and the
:class:`~property_tests.model.ReferenceModel` (the exact expected answer). Operations that ran
at the same time are checked by :func:`settle`, which looks for one sequential order that
explains every answer (linearizability).
"""

from __future__ import annotations

import abc
import itertools
from collections.abc import Sequence
from typing import Any

import attrs

from transports import EnqueueRequest, Job, JobFilter, JobNotFound, QueueConfig, Transport
from transports.lowlevel import FinalizeRequest, Lease, RenewRequest

from .model import (
    LINEARIZABLE,
    MATCHES_MODEL,
    ONE_CLAIMANT,
    Ledger,
    ReferenceModel,
    Violation,
)

__all__ = [
    "AcquireLeader",
    "AdvanceCursor",
    "CancelJob",
    "CapQueue",
    "Claim",
    "Enqueue",
    "Finalize",
    "GetCursor",
    "Op",
    "Operate",
    "Pause",
    "Reap",
    "ReleaseLeader",
    "Renew",
    "SetLimit",
    "settle",
]


class Op(abc.ABC):
    """One transport call and the checks of its answer."""

    @abc.abstractmethod
    async def run(self, transport: Transport) -> Any:
        """Make the call; return its answer."""

    def record(self, ledger: Ledger, result: Any, now: float) -> None:
        """Feed the answer to the ledger, which checks the invariants (most calls have none)."""
        return None

    @abc.abstractmethod
    def apply(self, model: ReferenceModel, result: Any, now: float) -> None:
        """Check the answer against the model, then move the model."""


@attrs.frozen
class Enqueue(Op):
    requests: tuple[EnqueueRequest, ...]
    # The job table just before, when nothing else runs at the same time: dedupe is checked
    # against the keys it shows active.
    before: tuple[Job, ...] | None = attrs.field(default=None, eq=False, repr=False)

    async def run(self, transport: Transport) -> Any:
        return await transport.enqueue_many(self.requests)

    def record(self, ledger: Ledger, result: Any, now: float) -> None:
        if self.before is not None:
            ledger.check_dedupe(self.requests, result, self.before)
        ledger.enqueued_jobs(result)

    def apply(self, model: ReferenceModel, result: Any, now: float) -> None:
        model.apply_enqueue(self.requests, now, result)


@attrs.frozen
class Claim(Op):
    queue: str
    owner: str
    limit: int
    ttl: float
    # Raced only other claims of its queue: a SQL claim skips rows the others hold locked (FOR
    # UPDATE SKIP LOCKED), so it may take due jobs past the first ones; settle then checks that
    # the claims together took exactly the first due jobs.
    concurrent: bool = False

    async def run(self, transport: Transport) -> Any:
        return await transport.claim(self.queue, owner=self.owner, limit=self.limit, ttl=self.ttl)

    def record(self, ledger: Ledger, result: Any, now: float) -> None:
        ledger.claimed(result, now)

    def apply(self, model: ReferenceModel, result: Any, now: float) -> None:
        model.apply_claim(
            self.queue, self.owner, self.limit, self.ttl, now, result, subset=self.concurrent
        )


@attrs.frozen
class Renew(Op):
    requests: tuple[RenewRequest, ...]
    ttl: float

    async def run(self, transport: Transport) -> Any:
        return await transport.renew(self.requests, ttl=self.ttl)

    def record(self, ledger: Ledger, result: Any, now: float) -> None:
        for request, answer in zip(self.requests, result, strict=True):
            ledger.renewed(request, answer, self.ttl, now)

    def apply(self, model: ReferenceModel, result: Any, now: float) -> None:
        model.apply_renew(self.requests, self.ttl, now, result)


@attrs.frozen
class Finalize(Op):
    requests: tuple[FinalizeRequest, ...]

    async def run(self, transport: Transport) -> Any:
        return await transport.finalize(self.requests)

    def record(self, ledger: Ledger, result: Any, now: float) -> None:
        for request, answer in zip(self.requests, result, strict=True):
            ledger.finalized(request, answer)

    def apply(self, model: ReferenceModel, result: Any, now: float) -> None:
        model.apply_finalize(self.requests, now, result)


@attrs.frozen
class Reap(Op):
    limit: int
    # Ran beside other calls: a SQL reap skips rows those calls hold locked (SKIP LOCKED), so
    # it may take back a subset of the expired leases; the next reap takes the rest.
    concurrent: bool = False

    async def run(self, transport: Transport) -> Any:
        return await transport.reap(limit=self.limit)

    def record(self, ledger: Ledger, result: Any, now: float) -> None:
        ledger.reaped(result, self.limit, now, complete=not self.concurrent)

    def apply(self, model: ReferenceModel, result: Any, now: float) -> None:
        model.apply_reap(self.limit, now, result, subset=self.concurrent)


@attrs.frozen
class CancelJob(Op):
    job_id: int

    async def run(self, transport: Transport) -> Any:
        try:
            return await transport.cancel(self.job_id)
        except JobNotFound:
            return None

    def record(self, ledger: Ledger, result: Any, now: float) -> None:
        ledger.cancel_requested(self.job_id, result)

    def apply(self, model: ReferenceModel, result: Any, now: float) -> None:
        model.apply_cancel(self.job_id, now, result)


@attrs.frozen
class Operate(Op):
    """An operator's ``retry_jobs`` / ``discard_jobs`` / ``cancel_jobs`` of some jobs by id."""

    action: str  # "retry", "discard" or "cancel"
    ids: tuple[int, ...]
    limit: int
    reason: str = "by an operator"

    async def run(self, transport: Transport) -> Any:
        where = JobFilter(ids=self.ids)
        if self.action == "retry":
            return await transport.retry_jobs(where, limit=self.limit)
        if self.action == "discard":
            return await transport.discard_jobs(where, reason=self.reason, limit=self.limit)
        return await transport.cancel_jobs(where, limit=self.limit)

    def record(self, ledger: Ledger, result: Any, now: float) -> None:
        ledger.operated(self.action, result)

    def apply(self, model: ReferenceModel, result: Any, now: float) -> None:
        model.apply_operator(self.action, self.ids, self.limit, self.reason, now, result)


@attrs.frozen
class Pause(Op):
    queue: str
    paused: bool

    async def run(self, transport: Transport) -> Any:
        await transport.set_queue_config(QueueConfig(name=self.queue, paused=self.paused))

    def record(self, ledger: Ledger, result: Any, now: float) -> None:
        ledger.queue_configured(self.queue, None)

    def apply(self, model: ReferenceModel, result: Any, now: float) -> None:
        model.apply_pause(self.queue, self.paused)


@attrs.frozen
class CapQueue(Op):
    """Set a queue's cluster-wide cap (``global_concurrency``), keeping its pause."""

    queue: str
    paused: bool
    cap: int | None

    async def run(self, transport: Transport) -> Any:
        config = QueueConfig(name=self.queue, paused=self.paused, global_concurrency=self.cap)
        await transport.set_queue_config(config)

    def record(self, ledger: Ledger, result: Any, now: float) -> None:
        ledger.queue_configured(self.queue, self.cap)

    def apply(self, model: ReferenceModel, result: Any, now: float) -> None:
        model.apply_queue_config(self.queue, self.paused, self.cap)


@attrs.frozen
class SetLimit(Op):
    key: str
    concurrency: int | None
    rate: int | None = None
    per: float | None = None

    async def run(self, transport: Transport) -> Any:
        await transport.set_limit(
            self.key, concurrency=self.concurrency, rate=self.rate, per=self.per
        )

    def record(self, ledger: Ledger, result: Any, now: float) -> None:
        ledger.limit_set(self.key, self.concurrency, self.rate, self.per)

    def apply(self, model: ReferenceModel, result: Any, now: float) -> None:
        model.apply_set_limit(self.key, self.concurrency, self.rate, self.per)


@attrs.frozen
class AcquireLeader(Op):
    name: str
    holder: str
    ttl: float

    async def run(self, transport: Transport) -> Any:
        return await transport.acquire_leader(self.name, holder=self.holder, ttl=self.ttl)

    def record(self, ledger: Ledger, result: Any, now: float) -> None:
        ledger.leader_acquired(self.name, self.holder, result, now)

    def apply(self, model: ReferenceModel, result: Any, now: float) -> None:
        model.apply_acquire(self.name, self.holder, self.ttl, now, result)


@attrs.frozen
class ReleaseLeader(Op):
    name: str
    holder: str

    async def run(self, transport: Transport) -> Any:
        return await transport.release_leader(self.name, holder=self.holder)

    def record(self, ledger: Ledger, result: Any, now: float) -> None:
        ledger.leader_released(self.name, self.holder, result)

    def apply(self, model: ReferenceModel, result: Any, now: float) -> None:
        model.apply_release(self.name, self.holder, now, result)


@attrs.frozen
class GetCursor(Op):
    name: str

    async def run(self, transport: Transport) -> Any:
        return await transport.get_cursor(self.name)

    def apply(self, model: ReferenceModel, result: Any, now: float) -> None:
        model.apply_get_cursor(self.name, result)


@attrs.frozen
class AdvanceCursor(Op):
    name: str
    expected: float | None
    new: float

    async def run(self, transport: Transport) -> Any:
        return await transport.advance_cursor(self.name, expected=self.expected, new=self.new)

    def apply(self, model: ReferenceModel, result: Any, now: float) -> None:
        model.apply_advance_cursor(self.name, self.expected, self.new, result)


def _check_one(op: Op, result: Any, model: ReferenceModel, ledger: Ledger, now: float) -> None:
    # The ledger's invariants first: when both would object, the named invariant is the finding.
    op.record(ledger, result, now)
    op.apply(model, result, now)


def settle(
    done: Sequence[tuple[Op, Any]], model: ReferenceModel, ledger: Ledger, now: float
) -> tuple[ReferenceModel, Ledger]:
    """Check calls that ran at the same instant; return the model and ledger after them.

    A single call is checked as is. Calls that overlapped must be explained by some sequential
    order of the same calls: each order is tried on copies, and the first that accounts for every
    answer wins. Two claims that got the same job are refused before any order is tried.

    Raises:
        Violation: the property an order-independent check or every order broke, or
            ``LINEARIZABLE`` when the orders fail in different ways.
    """
    if len(done) == 1:
        op, result = done[0]
        _check_one(op, result, model, ledger, now)
        return model, ledger
    done = [
        (attrs.evolve(op, concurrent=True) if isinstance(op, Reap) else op, r) for op, r in done
    ]
    claim_race = all(isinstance(op, Claim) for op, _ in done) and (
        len({op.queue for op, _ in done if isinstance(op, Claim)}) == 1
    )
    if claim_race:
        done = [
            (attrs.evolve(op, concurrent=True) if isinstance(op, Claim) else op, r)
            for op, r in done
        ]
    claimed: dict[int, str] = {}
    for op, result in done:
        if isinstance(op, Claim):
            for lease in result:
                _claimed_once(claimed, lease, op.owner)
    failures: list[Violation] = []
    for order in itertools.permutations(done):
        trial_model, trial_ledger = model.clone(), ledger.clone()
        try:
            for op, result in order:
                _check_one(op, result, trial_model, trial_ledger, now)
        except Violation as violation:
            failures.append(violation)
            continue
        fair = claim_race and model.fair(done[0][0].queue)  # type: ignore[attr-defined]
        if claim_race and not (
            fair or model.limits or model.caps or model.rates or model.cooldowns
        ):
            # With limits each claim's candidates depend on the ones before it; the ledger
            # holds every key within its limit whatever the order.
            _took_the_first_due(done, model, now)
        return trial_model, trial_ledger
    props = {failure.prop for failure in failures}
    if len(props) == 1:
        raise failures[0]
    calls = "; ".join(f"{op!r} -> {result!r}" for op, result in done)
    reasons = " | ".join(sorted({str(failure) for failure in failures}))
    raise Violation(LINEARIZABLE, f"no order explains [{calls}]: {reasons}")


def _took_the_first_due(done: Sequence[tuple[Op, Any]], model: ReferenceModel, now: float) -> None:
    """Claims that raced each other took, together, exactly the first due jobs of their queue:
    as many as their limits allow, none skipped for a later one."""
    claims = [(op, result) for op, result in done if isinstance(op, Claim)]
    queue = claims[0][0].queue
    due = [job.id for job in model.due_in_order(queue, now)]
    wanted = sum(op.limit for op, _ in claims)
    took = sorted((lease.job_id for _, result in claims for lease in result), key=due.index)
    if took != due[:wanted]:
        raise Violation(
            MATCHES_MODEL,
            f"racing claims of {queue!r} (limits {[op.limit for op, _ in claims]}) took {took}, "
            f"expected the first due {due[:wanted]}",
        )


def _claimed_once(claimed: dict[int, str], lease: Lease, owner: str) -> None:
    if lease.job_id in claimed:
        raise Violation(
            ONE_CLAIMANT,
            f"concurrent claims handed job {lease.job_id} to both {claimed[lease.job_id]!r} and {owner!r}",
        )
    claimed[lease.job_id] = owner
