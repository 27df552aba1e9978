"""Plumbing every backend shares: the waiter registry, batch dedupe folding, outcome encoding.

One implementation each, so the backends cannot drift apart on them.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

import anyio
import anyio.lowlevel

from ._errors import DependencyCycle, InvalidRequest, UnknownDependency
from ._records import (
    Cancel,
    Complete,
    Discard,
    EnqueueRequest,
    EnqueueResult,
    FinalizeRequest,
    JobState,
    OnFailure,
    Outcome,
    Release,
    RenewRequest,
    Retry,
    Snooze,
    Suspend,
    WorkflowSummary,
    verdict,
)

__all__ = [
    "ParentPlan",
    "Waiters",
    "distinct_pairs",
    "encode_outcome",
    "external_parents",
    "fold_batch",
    "plan_parents",
    "summaries_of",
    "unfold_results",
]


class Waiters:
    """Who waits in ``wait_for_work`` for which queue; wakes them on new work.

    One registry may be shared by several transports (the memory backend's nodes share their
    store's); each transport passes its own ``pending`` set, which :meth:`wake_pending` empties
    when that transport closes. Waiters are kept in arrival order.

    A queue's wake-up that finds nobody waiting is kept, and the next wait on that queue
    returns at once: a claimer between its claim and its next wait (claiming, finalizing)
    would otherwise sleep past work that arrived meanwhile, until the next wake-up or its poll.
    """

    def __init__(self) -> None:
        self._by_queue: dict[str, dict[anyio.Event, None]] = {}
        self._kept: set[str] = set()  # queues woken while nobody waited for them

    def queues(self) -> list[str]:
        """The queues somebody waits for, by name."""
        return sorted(self._by_queue)

    async def wait(self, queues: Sequence[str], pending: set[anyio.Event]) -> None:
        """Wait until one of ``queues`` is woken (or ``pending`` is, by a close)."""
        # Registered before the first yield, so a wake-up sent right after this call started
        # is never missed; ``Event.wait`` is the checkpoint.
        kept = self._kept
        if kept and not kept.isdisjoint(queues):
            kept.difference_update(queues)
            await anyio.lowlevel.checkpoint()
            return
        event = anyio.Event()
        by_queue = self._by_queue
        for queue in queues:
            by_queue.setdefault(queue, {})[event] = None
        pending.add(event)
        try:
            await event.wait()
        finally:
            pending.discard(event)
            for queue in queues:
                registered = by_queue.get(queue)
                if registered is not None:
                    registered.pop(event, None)
                    if not registered:
                        del by_queue[queue]

    def wake(self, queues: Iterable[str], *, keep: bool = False) -> None:
        """Wake every waiter of each of ``queues``; with ``keep``, a queue nobody waits for
        keeps its wake-up for the next wait (queues of new work, not job keys)."""
        for queue in queues:
            registered = self._by_queue.pop(queue, None)
            if registered:
                for event in registered:
                    event.set()
            elif keep:
                self._kept.add(queue)

    def wake_one(self, queues: Iterable[str]) -> None:
        """Wake the longest-waiting waiter of each of ``queues`` (one wake-up, one claimer); a
        queue nobody waits for keeps its wake-up for the next wait."""
        for queue in queues:
            registered = self._by_queue.get(queue)
            woken = False
            while registered:
                event = next(iter(registered))
                del registered[event]
                if not event.is_set():
                    event.set()
                    woken = True
                    break
            if not registered:
                self._by_queue.pop(queue, None)
            if not woken:
                self._kept.add(queue)

    def clear(self) -> None:
        """Forget every registration and kept wake-up (the events themselves are woken by
        ``wake_pending``)."""
        self._by_queue.clear()
        self._kept.clear()

    @staticmethod
    def wake_pending(pending: set[anyio.Event]) -> None:
        """Wake every event of one transport's ``pending`` set and empty it."""
        for event in pending:
            event.set()
        pending.clear()


def fold_batch(requests: Sequence[EnqueueRequest]) -> tuple[list[int], dict[int, int]]:
    """Fold requests of one batch that share a dedupe key into the first of them.

    Returns:
        The indexes of the requests to write, in order, and for each folded request the index
        of the one it folds into.
    """
    first_of_key: dict[tuple[str, str], int] = {}
    sent: list[int] = []
    folded: dict[int, int] = {}
    for index, request in enumerate(requests):
        if request.dedupe_key is not None:
            key = (request.queue, request.dedupe_key)
            if key in first_of_key:
                folded[index] = first_of_key[key]
                continue
            first_of_key[key] = index
        sent.append(index)
    return sent, folded


def unfold_results(
    count: int, sent: Sequence[int], written: Sequence[EnqueueResult], folded: dict[int, int]
) -> list[EnqueueResult]:
    """One result per request of a folded batch: the written ones, and each folded request
    deduplicated into the job of the request it folded into."""
    results: list[EnqueueResult | None] = [None] * count
    for index, result in zip(sent, written, strict=True):
        results[index] = result
    for index, into in folded.items():
        first = results[into]
        assert first is not None
        results[index] = EnqueueResult(job_id=first.job_id, deduplicated=True)
    return [result for result in results if result is not None]


def distinct_pairs(
    requests: Sequence[RenewRequest | FinalizeRequest],
) -> tuple[list[int], list[int]]:
    """The indexes of the first request of each (job, token) pair, in job id order, and each
    request's position among those firsts.

    A batch may name one lease twice (a retried flush, a heartbeat racing a finalize). The SQL
    backends send each pair once, so that one statement never updates one row twice (which
    SQL would resolve by picking an arbitrary duplicate): a repeated renewal gets the answer of
    its first occurrence, and a repeated finalize is stale once its first occurrence applied.
    They send them in job id order, so that every renewal and finalize locks its rows in one
    order: a node's renewal of many leases crossing its own finalize of some of them (two
    statements over the same rows) cannot deadlock on PostgreSQL.
    """
    firsts: dict[tuple[int, int], int] = {}
    for index, request in enumerate(requests):
        firsts.setdefault((request.job_id, request.token), index)
    sent = sorted(firsts.values(), key=lambda i: (requests[i].job_id, requests[i].token))
    position = {(requests[i].job_id, requests[i].token): n for n, i in enumerate(sent)}
    first = [position[(request.job_id, request.token)] for request in requests]
    return sent, first


def encode_outcome(outcome: Outcome) -> tuple[str, float | None, str | None]:
    """An outcome as the SQL backends store it: ``(action, run_at, error)`` (a suspend's
    event key goes where an error would)."""
    if isinstance(outcome, Complete):
        return ("complete", None, None)
    if isinstance(outcome, Retry):
        return ("retry", outcome.run_at, outcome.error)
    if isinstance(outcome, Snooze):
        return ("snooze", outcome.run_at, None)
    if isinstance(outcome, Discard):
        return ("discard", None, outcome.error)
    if isinstance(outcome, Cancel):
        return ("cancel", None, outcome.reason)
    if isinstance(outcome, Release):
        return ("release", None, None)
    if isinstance(outcome, Suspend):
        return ("suspend", outcome.run_at, outcome.event_key)
    raise InvalidRequest(f"unknown outcome {outcome!r}")


def external_parents(requests: Sequence[EnqueueRequest]) -> list[int]:
    """The existing jobs a batch's ``after`` names, sorted, after checking that every
    in-batch parent is an earlier request of the batch.

    Raises:
        DependencyCycle: a request names itself or a later request (by ``index``).
    """
    ids: set[int] = set()
    for position, request in enumerate(requests):
        for after in request.after:
            if after.index is not None:
                if after.index >= position:
                    what = "itself" if after.index == position else f"request {after.index}"
                    raise DependencyCycle(
                        f"request {position} of the batch waits for {what}: a job can only "
                        "wait for jobs enqueued before it"
                    )
            else:
                assert after.job_id is not None
                ids.add(after.job_id)
    return sorted(ids)


# One request's parents, resolved: (existing job id or None, batch index or None, on_failure,
# the parent's final state now or None while it may run), and the state the request starts in
# (PENDING, CANCELLED, or None for the usual scheduled/available).
ParentPlan = tuple[list[tuple[int | None, int | None, OnFailure, JobState | None]], JobState | None]


def plan_parents(
    requests: Sequence[EnqueueRequest], found: dict[int, JobState]
) -> list[ParentPlan]:
    """Each request's parents and starting state, given the states of the existing parents
    (``found``: id -> state as stored; a final state is the edge's, an active one none).

    Raises:
        UnknownDependency: a parent id is not in ``found``.
    """
    plans: list[ParentPlan] = []
    for request in requests:
        edges: list[tuple[int | None, int | None, OnFailure, JobState | None]] = []
        seen: set[tuple[str, int]] = set()
        for after in request.after:
            if after.job_id is not None:
                if ("id", after.job_id) in seen:
                    continue
                seen.add(("id", after.job_id))
                state = found.get(after.job_id)
                if state is None:
                    raise UnknownDependency(f"after names job {after.job_id}, which does not exist")
                edges.append(
                    (after.job_id, None, after.on_failure, state if state.is_final else None)
                )
            else:
                assert after.index is not None
                if ("index", after.index) in seen:
                    continue
                seen.add(("index", after.index))
                start = plans[after.index][1]
                state = start if start is JobState.CANCELLED else None
                edges.append((None, after.index, after.on_failure, state))
        if not edges:
            plans.append((edges, None))
            continue
        decided = verdict((on_failure, state) for _, _, on_failure, state in edges)
        start = (
            JobState.PENDING
            if decided is None
            else (JobState.CANCELLED if decided is JobState.CANCELLED else None)
        )
        plans.append((edges, start))
    return plans


def summaries_of(rows: Iterable[Sequence[Any]]) -> list[WorkflowSummary]:
    """Workflow summaries from SQL rows of (workflow, state, count, first created_at, last
    finished_at, jobs not finished), grouped by workflow then state, in workflow order."""
    found: list[WorkflowSummary] = []
    current: str | None = None
    by_state: dict[JobState, int] = {}
    created = 0.0
    finished: float | None = None
    open_jobs = 0
    for workflow, state, count, first, last, unfinished in [*rows, (None, None, 0, 0, 0, 0)]:
        if workflow is None and current is None:
            break  # no workflow at all
        if workflow != current:
            if current is not None:
                found.append(
                    WorkflowSummary(
                        workflow=current,
                        by_state=by_state,
                        created_at=created,
                        finished_at=None if open_jobs else finished,
                    )
                )
            if workflow is None:
                break
            current, by_state, created, finished, open_jobs = workflow, {}, float(first), None, 0
        by_state[JobState(state)] = by_state.get(JobState(state), 0) + int(count)
        created = min(created, float(first))
        if last is not None:
            finished = float(last) if finished is None else max(finished, float(last))
        open_jobs += int(unfinished)
    return found
