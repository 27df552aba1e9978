"""The in-process backend: deterministic, fast, and shareable between simulated nodes.

Time comes only from the injected clock and nothing sleeps, so a virtual clock drives it
exactly. Several :class:`MemoryTransport` objects may share one :class:`MemoryStore`, each
acting as one node of a simulated cluster. Every call does its work synchronously after a
single checkpoint, which makes each call atomic with respect to other tasks.

Indexes (all kept in step with the job table, stale entries skipped lazily):

* ``ready[queue]``: a heap of ``(priority, run_at, id, seq)`` for available jobs without a
  partition key; ``parts[queue][partition]``: one such heap per fair-share partition.
* ``scheduled``: a heap of ``(run_at, id, seq)`` for jobs waiting for their time.
* ``expiry``: a heap of ``(expires_at, id, seq)`` for running leases.
* ``keyed[key]``: the running jobs of each concurrency key (live or expired leases; the
  claim counts the live ones).
* ``suspended[key]``: the jobs suspended on each event key (a suspended job is in
  ``scheduled`` too, for its timeout).

A heap entry is live only while its ``seq`` equals the row's; every move between indexes
bumps the row's ``seq``, so nothing is ever searched for and removed.
"""

from __future__ import annotations

import collections
import dataclasses
import heapq
import json
import string
from collections.abc import Iterable, Iterator, Sequence
from typing import Any

import anyio
import anyio.lowlevel
import attrs

from ._base import Transport
from ._clock import WallClock
from ._errors import InvalidRequest, JobNotFound, TransportClosed
from ._observed import NodeInfo, QueueStats, minute_of
from ._plumbing import Waiters, external_parents, plan_parents
from ._records import (
    DEFAULT_MAX_PAYLOAD_BYTES,
    DEFAULT_MAX_RESULT_BYTES,
    MAX_ERROR_MESSAGE,
    MAX_ERRORS,
    MAX_PARTITION_COUNT,
    AttemptError,
    Cancel,
    CancelResult,
    Complete,
    Counts,
    Discard,
    Edge,
    EnqueueRequest,
    EnqueueResult,
    FinalizeRequest,
    FinalizeResult,
    Job,
    JobFilter,
    JobState,
    JsonValue,
    KeyLimit,
    LeaderLease,
    Lease,
    PartitionInfo,
    QueueConfig,
    Reclaimed,
    Release,
    RenewRequest,
    RenewResult,
    Retry,
    Signal,
    SignalResult,
    Snooze,
    Step,
    StepResult,
    Suspend,
    TimeSource,
    WorkflowSummary,
    check_action,
    check_listing,
    encode_payload,
    encode_result,
    encode_step,
    job_waiter_key,
    verdict,
)
from ._validate import (
    INT64_MAX,
    check_advance,
    check_claim,
    check_cleanup,
    check_cursor,
    check_duration,
    check_edges_query,
    check_event_key,
    check_id,
    check_items,
    check_job_ids,
    check_leader,
    check_limit,
    check_name,
    check_node_id,
    check_optional_name,
    check_partitions_query,
    check_queues,
    check_release,
    check_set_limit,
    check_stats_range,
    check_step_name,
    check_time,
    check_workflows_query,
    clean_text,
)

__all__ = ["MemoryStore", "MemoryTransport"]

_STATES = tuple(JobState)

_Entry = tuple[int, float, int, int]  # a ready heap's entry: (priority, run_at, id, seq)


@dataclasses.dataclass(slots=True, eq=False)
class _Row:
    id: int
    kind: str
    queue: str
    payload_text: str  # decoded afresh for every reader, so nobody can mutate the stored one
    state: JobState
    priority: int
    run_at: float
    attempt: int
    max_attempts: int
    dedupe_key: str | None
    created_at: float
    updated_at: float
    last_error: str | None = None
    finished_at: float | None = None
    lease_owner: str | None = None
    lease_expires_at: float | None = None
    cancel_requested: bool = False
    concurrency_key: str | None = None
    partition_key: str | None = None
    token: int | None = None
    seq: int = 0
    started_at: float | None = None
    errors: tuple[AttemptError, ...] = ()
    headers: dict[str, str] = dataclasses.field(default_factory=dict)
    result_text: str | None = None  # the Complete's result, compact JSON; None: none
    lost_at: float | None = None  # expiry of the lease reap took back, until a run ends
    workflow: str | None = None
    wait_key: str | None = None  # set exactly while suspended


@dataclasses.dataclass(slots=True, frozen=True)
class _Step:
    value_text: str  # decoded afresh for every reader
    attempt: int
    recorded_at: float


@dataclasses.dataclass(slots=True)
class _Leader:
    holder: str | None
    epoch: int
    expires_at: float


class MemoryStore:
    """The jobs, queues, leader leases and cursors of an in-process cluster.

    Create one and pass it to several :class:`MemoryTransport` objects to simulate several
    nodes over one shared store. Its contents are private to ``MemoryTransport``; one store
    belongs to one event loop.
    """

    def __init__(self) -> None:
        self.jobs: dict[int, _Row] = {}  # by id; insertion order is id order
        self.next_id = 1
        self.next_token = 1
        self.ready: dict[str, list[_Entry]] = {}  # queue -> its unpartitioned available jobs
        self.parts: dict[str, dict[str, list[_Entry]]] = {}  # queue -> partition -> likewise
        # (queue, partition or "" for the unpartitioned) -> (tick, position) of the claim that
        # last started one of its jobs: the fair-share rotation, least recently served first
        self.served: dict[tuple[str, str], tuple[int, int]] = {}
        self.next_tick = 1
        self.served_at: dict[tuple[str, str], float] = {}  # ... and that claim's time
        # queue -> its waiting (scheduled, available, suspended) partitioned jobs: claims of a
        # queue with any are fair
        self.partitioned: dict[str, int] = {}
        self.scheduled: list[tuple[float, int, int]] = []
        self.expiry: list[tuple[float, int, int]] = []
        self.running: dict[int, _Row] = {}
        self.dedupe: dict[tuple[str, str], int] = {}  # (queue, key) -> active job id
        self.final: dict[int, None] = {}  # final job ids, an ordered set for cleanup
        self.counts: dict[str, dict[JobState, int]] = {}  # every state, zeros included
        self.configs: dict[str, QueueConfig] = {}
        self.leaders: dict[str, _Leader] = {}
        self.cursors: dict[str, float] = {}
        self.limits: dict[str, int] = {}  # concurrency key -> most live leases at once
        self.keyed: dict[str, dict[int, _Row]] = {}  # concurrency key -> its running jobs
        self.rates: dict[str, tuple[int, float]] = {}  # concurrency key -> (rate, per)
        # concurrency key -> its start times in its rate window, oldest first
        self.starts: dict[str, collections.deque[float]] = {}
        self.cooldowns: dict[str, float] = {}  # concurrency key -> cooled down until then
        self.nodes: dict[str, NodeInfo] = {}
        self.stats: dict[tuple[str, float], dict[str, int]] = {}  # (queue, minute) -> cells
        self.steps: dict[int, dict[str, _Step]] = {}  # job id -> its steps by name
        self.signals: dict[str, tuple[str, float]] = {}  # event key -> (value text, set at)
        self.suspended: dict[str, dict[int, _Row]] = {}  # event key -> jobs suspended on it
        self.waiters = Waiters()
        # Dependencies: child -> {parent: [on_failure, the parent's final state or None]}, and
        # parent -> its children (kept after the parent is deleted: ids are never reused).
        self.edges: dict[int, dict[int, list[Any]]] = {}
        self.children: dict[int, set[int]] = {}
        self.workflows: dict[str, dict[int, None]] = {}  # workflow -> its job ids, in order


class MemoryTransport(Transport):
    """A :class:`~transports.Transport` held in process memory.

    Args:
        clock: where "now" comes from; None for the wall clock.
        store: the store to use, shared with other transports (simulated nodes); None for a
            private one.
        max_payload_bytes: longest accepted JSON payload, in bytes.
        max_result_bytes: longest accepted JSON result, in bytes.
    """

    def __init__(
        self,
        *,
        clock: TimeSource | None = None,
        store: MemoryStore | None = None,
        max_payload_bytes: int = DEFAULT_MAX_PAYLOAD_BYTES,
        max_result_bytes: int = DEFAULT_MAX_RESULT_BYTES,
    ) -> None:
        self.clock = clock
        self.max_payload_bytes = max_payload_bytes
        self.max_result_bytes = max_result_bytes
        self._time: TimeSource = clock if clock is not None else WallClock()
        self._store = store if store is not None else MemoryStore()
        self._closed = False
        self._pending: set[anyio.Event] = set()  # this transport's waiters, woken by aclose

    @property
    def store(self) -> MemoryStore:
        """The store this transport reads and writes; pass it to another to share it."""
        return self._store

    # --- lifecycle ------------------------------------------------------------------------

    async def aclose(self) -> None:
        if not self._closed:
            self._closed = True
            Waiters.wake_pending(self._pending)
        await anyio.lowlevel.cancel_shielded_checkpoint()

    async def _enter(self) -> float:
        """The one checkpoint of a call, then the open check; returns now."""
        await anyio.lowlevel.checkpoint()
        if self._closed:
            raise TransportClosed("the memory transport is closed")
        return self._time.now()

    # --- producing ------------------------------------------------------------------------

    async def enqueue_many(self, requests: Sequence[EnqueueRequest]) -> list[EnqueueResult]:
        now = await self._enter()
        # Validate the whole batch before the first write: it is all or nothing.
        check_items(requests, EnqueueRequest, "requests")
        texts = [encode_payload(request.payload, self.max_payload_bytes) for request in requests]
        store = self._store
        plans = None
        if any(request.after for request in requests):
            external = external_parents(requests)
            found = {i: store.jobs[i].state for i in external if i in store.jobs}
            plans = plan_parents(requests, found)
        results: list[EnqueueResult] = []
        woken: set[str] = set()
        folds: dict[str, int] = {}
        for position, (request, text) in enumerate(zip(requests, texts, strict=True)):
            if request.dedupe_key is not None:
                existing = store.dedupe.get((request.queue, request.dedupe_key))
                if existing is not None:
                    results.append(EnqueueResult(job_id=existing, deduplicated=True))
                    folds[request.queue] = folds.get(request.queue, 0) + 1
                    continue
                store.dedupe[(request.queue, request.dedupe_key)] = store.next_id
            run_at = request.run_at if request.run_at is not None else now + request.delay
            row = _Row(
                id=store.next_id,
                kind=request.kind,
                queue=request.queue,
                payload_text=text,
                state=JobState.SCHEDULED,
                priority=request.priority,
                run_at=run_at,
                attempt=0,
                max_attempts=request.max_attempts,
                dedupe_key=request.dedupe_key,
                created_at=now,
                updated_at=now,
                headers=dict(request.headers),
                concurrency_key=request.concurrency_key,
                partition_key=request.partition_key,
                workflow=request.workflow,
            )
            store.next_id += 1
            store.jobs[row.id] = row
            if row.workflow is not None:
                store.workflows.setdefault(row.workflow, {})[row.id] = None
            by_state = store.counts.get(row.queue)
            if by_state is None:
                by_state = store.counts[row.queue] = dict.fromkeys(_STATES, 0)
            by_state[JobState.SCHEDULED] += 1
            if row.partition_key is not None:
                store.partitioned[row.queue] = store.partitioned.get(row.queue, 0) + 1
            start = None
            if plans is not None and plans[position][0]:
                start = self._add_edges(row, plans[position], results)
            if start is JobState.PENDING:
                self._set_state(row, JobState.PENDING)
                row.seq += 1
            elif start is JobState.CANCELLED:
                self._finish(row, JobState.CANCELLED, now)
            elif run_at > now:
                self._push_scheduled(row)
            else:
                self._make_available(row)
                woken.add(row.queue)
            results.append(EnqueueResult(job_id=row.id, deduplicated=False))
        minute = minute_of(now)
        for queue, folded in folds.items():
            cells = store.stats.setdefault((queue, minute), {})
            cells["deduplicated"] = cells.get("deduplicated", 0) + folded
        for queue in woken:
            self._wake(queue)
        return results

    # --- working --------------------------------------------------------------------------

    async def claim(self, queue: str, *, owner: str, limit: int, ttl: float) -> list[Lease]:
        now = await self._enter()
        check_claim(queue, owner, limit, ttl)
        store = self._store
        self._promote(now)
        config = store.configs.get(queue)
        if config is not None and config.paused:
            return []
        heap = store.ready.get(queue)
        leases: list[Lease] = []
        jobs = store.jobs
        # As on the SQL backends: the candidates are the first `limit` due jobs whose key was
        # not at its limit when the claim began (in fair-share order when the queue has
        # partitioned jobs); of those, each key starts at most its free slots. Every job
        # passed over keeps its place, its attempt unspent.
        free: dict[str, int] = {}  # free slots left of each limited key met so far
        full: set[str] = set()  # the keys at their limit when the claim began
        passed: list[tuple[list[_Entry], _Entry]] = []
        candidates = 0
        room = limit  # the queue's free cluster-wide slots, when it has a global cap
        if config is not None and config.global_concurrency is not None:
            room = config.global_concurrency - self._live_in(queue, now)
        fair = None
        if store.partitioned.get(queue):  # partitioned jobs wait: share the queue
            parts = store.parts.setdefault(queue, {})
            fair = self._fair_order(queue, heap, parts, limit, now, free, full)
        served: dict[str, None] = {}  # the partitions this claim starts, in claim order
        while candidates < limit and len(leases) < room:
            if fair is not None:
                if not fair:
                    break
                source, entry = fair.pop()
            elif heap:
                source, entry = heap, heapq.heappop(heap)
            else:
                break
            job_id, seq = entry[2], entry[3]
            row = jobs.get(job_id)
            if row is None or row.seq != seq:
                continue
            key = row.concurrency_key
            if key is not None and self._held(key):
                if self._key_full(key, now, free, full):
                    passed.append((source, entry))
                    continue
                candidates += 1
                if free[key] <= 0:
                    passed.append((source, entry))
                    continue
                free[key] -= 1
            else:
                candidates += 1
            if key is not None:  # counted whether limited now or later
                store.keyed.setdefault(key, {})[job_id] = row
                if key in store.rates:
                    self._log_start(key, now)
            if fair is not None:
                served[row.partition_key or ""] = None
            self._set_state(row, JobState.RUNNING)
            row.attempt += 1
            row.lease_owner = owner
            row.lease_expires_at = expires_at = now + ttl
            row.token = token = store.next_token
            store.next_token += 1
            row.updated_at = row.started_at = now
            row.seq += 1
            store.running[job_id] = row
            heapq.heappush(store.expiry, (expires_at, job_id, row.seq))
            leases.append(
                Lease(
                    job=_job(row),
                    token=token,
                    owner=owner,
                    expires_at=expires_at,
                    lost_at=row.lost_at,
                )
            )
        # Still due, attempt unspent: back in their partition as they were.
        for source, entry in passed:
            heapq.heappush(source, entry)
        for source, entry in fair or ():
            heapq.heappush(source, entry)
        if served:  # to the back of the rotation, in the order this claim served them
            tick = store.next_tick
            store.next_tick += 1
            for pos, name in enumerate(served):
                store.served[(queue, name)] = (tick, pos)
                store.served_at[(queue, name)] = now
        return leases

    def _eligible(
        self, queue: str, active: list[tuple[str, list[_Entry]]]
    ) -> list[tuple[str, list[_Entry]]]:
        """The eligible partitions of a fair claim of ``queue``, as found (a hook for the
        simulator, which checks the rotation against them)."""
        return active

    def _key_full(self, key: str, now: float, free: dict[str, int], full: set[str]) -> bool:
        """Whether limited ``key`` was full when the claim began (first met: counted now)."""
        if key not in free:
            free[key] = self._free(key, now)
            if free[key] <= 0:
                full.add(key)
        return key in full

    def _fair_order(
        self,
        queue: str,
        heap: list[_Entry] | None,
        parts: dict[str, list[_Entry]],
        limit: int,
        now: float,
        free: dict[str, int],
        full: set[str],
    ) -> list[tuple[list[_Entry], _Entry]]:
        """The fair-share candidates of a claim, popped off their heaps, last first (see
        *Fair share* in transports._base): of the partitions with a due job of a key with
        room, the ``limit`` least recently served give their jobs round by round, in served
        order, until there are ``limit`` (n partitions chosen, each has at least one, so none
        gives more than ``limit - n + 1``)."""
        jobs = self._store.jobs
        served = self._store.served
        held: list[tuple[list[_Entry], _Entry]] = []  # jobs of full keys, put back after

        def usable(source: list[_Entry]) -> bool:
            """Drop stale entries and set aside full keys' jobs: is a candidate on top?"""
            while source:
                entry = source[0]
                row = jobs.get(entry[2])
                if row is None or row.seq != entry[3]:
                    heapq.heappop(source)
                    continue
                key = row.concurrency_key
                if key is not None and self._held(key) and self._key_full(key, now, free, full):
                    held.append((source, heapq.heappop(source)))
                    continue
                return True
            return False

        named: list[tuple[str, list[_Entry]]] = [("", heap)] if heap is not None else []
        for name in list(parts):
            if parts[name]:
                named.append((name, parts[name]))
            else:
                del parts[name]  # emptied: forgotten until it has a job again
        active = self._eligible(queue, [(name, source) for name, source in named if usable(source)])
        active.sort(key=lambda item: (served.get((queue, item[0]), (0, -1)), item[0]))
        chosen = active[:limit]
        each = limit - len(chosen) + 1
        rounds: list[tuple[int, int, list[_Entry], _Entry]] = []
        for index, (_name, source) in enumerate(chosen):
            for rank in range(each):
                if not usable(source):
                    break
                rounds.append((rank, index, source, heapq.heappop(source)))
        rounds.sort(key=lambda item: (item[0], item[1]))
        for _rank, _index, source, entry in rounds[limit:]:
            heapq.heappush(source, entry)
        for source, entry in held:
            heapq.heappush(source, entry)
        return [(source, entry) for _rank, _index, source, entry in reversed(rounds[:limit])]

    async def renew(self, requests: Sequence[RenewRequest], *, ttl: float) -> list[RenewResult]:
        now = await self._enter()
        check_duration(ttl)
        check_items(requests, RenewRequest, "requests")
        store = self._store
        results: list[RenewResult] = []
        for request in requests:
            row = store.running.get(request.job_id)
            if (
                row is None
                or row.token != request.token
                or row.lease_expires_at is None
                or row.lease_expires_at <= now
            ):
                results.append(RenewResult.LOST)
                continue
            row.lease_expires_at = now + ttl
            row.updated_at = now
            row.seq += 1
            heapq.heappush(store.expiry, (row.lease_expires_at, row.id, row.seq))
            results.append(
                RenewResult.CANCEL_REQUESTED if row.cancel_requested else RenewResult.RENEWED
            )
        # Renewals leave their old expiry entries behind; rebuild before they pile up.
        if len(store.expiry) > 4 * len(store.running) + 1024:
            store.expiry = [
                (row.lease_expires_at, row.id, row.seq)
                for row in store.running.values()
                if row.lease_expires_at is not None
            ]
            heapq.heapify(store.expiry)
        return results

    async def finalize(self, requests: Sequence[FinalizeRequest]) -> list[FinalizeResult]:
        now = await self._enter()
        check_items(requests, FinalizeRequest, "requests")
        # Encode every result before the first write: a batch is all or nothing.
        texts = [
            encode_result(request.outcome.result, self.max_result_bytes)
            if isinstance(request.outcome, Complete)
            else None
            for request in requests
        ]
        store = self._store
        results: list[FinalizeResult] = []
        woken: set[str] = set()
        for request, text in zip(requests, texts, strict=True):
            row = store.running.get(request.job_id)
            if row is None or row.token != request.token:
                results.append(FinalizeResult.STALE)
                continue
            outcome = request.outcome
            if isinstance(outcome, Discard | Retry) and outcome.error is not None:
                _record(
                    row,
                    outcome.error_type or "Error",
                    outcome.error,
                    outcome.traceback,
                    now,
                    row.lease_owner,
                )
            self._end_lease(row, now)
            if not isinstance(outcome, Release):
                row.lost_at = None  # the run that recovered the job has ended
            if row.concurrency_key in store.limits or self._capped(row.queue):
                woken.add(row.queue)  # a slot of its key (or its queue) came free
            if isinstance(outcome, Complete):
                row.result_text = text
                self._finish(row, JobState.SUCCEEDED, now)
            elif isinstance(outcome, Discard):
                row.last_error = outcome.error
                self._finish(row, JobState.DEAD, now)
            elif isinstance(outcome, Cancel):
                if outcome.reason is not None:
                    row.last_error = outcome.reason
                self._finish(row, JobState.CANCELLED, now)
            elif row.cancel_requested:
                # Cancel wins over retry, snooze and release; a cool-down still applies.
                if isinstance(outcome, Snooze) and outcome.cool_down:
                    self._cool(row.concurrency_key, outcome.run_at)
                if isinstance(outcome, Retry) and outcome.error is not None:
                    row.last_error = outcome.error
                self._finish(row, JobState.CANCELLED, now)
            elif isinstance(outcome, Retry):
                row.last_error = outcome.error
                if row.attempt >= row.max_attempts:
                    self._finish(row, JobState.DEAD, now)
                elif self._wait_until(row, outcome.run_at, now):
                    woken.add(row.queue)
            elif isinstance(outcome, Snooze):
                row.attempt -= 1
                if outcome.cool_down:
                    self._cool(row.concurrency_key, outcome.run_at)
                if self._wait_until(row, outcome.run_at, now):
                    woken.add(row.queue)
            elif isinstance(outcome, Suspend):
                row.attempt -= 1
                if self._suspend(row, outcome, now):
                    woken.add(row.queue)
            else:  # Release
                row.attempt -= 1
                self._make_available(row)
                woken.add(row.queue)
            results.append(FinalizeResult.APPLIED)
        for queue in woken:
            self._wake(queue)
        return results

    async def reap(self, *, limit: int = 1000) -> list[Reclaimed]:
        now = await self._enter()
        check_limit(limit)
        store = self._store
        expiry = store.expiry
        reclaimed: list[Reclaimed] = []
        woken: set[str] = set()
        while expiry and len(reclaimed) < limit and expiry[0][0] <= now:
            expired_at, job_id, seq = heapq.heappop(expiry)
            row = store.running.get(job_id)
            if row is None or row.seq != seq:
                continue
            lost_by = row.lease_owner or ""
            last = not row.cancel_requested and row.attempt >= row.max_attempts
            message = f"lease lost by {lost_by}" + (" on the last attempt" if last else "")
            _record(row, "LeaseExpired", message, None, now, row.lease_owner)
            self._end_lease(row, now)
            if row.concurrency_key in store.limits or self._capped(row.queue):
                woken.add(row.queue)  # a slot of its key (or its queue) came free
            if row.cancel_requested:
                self._finish(row, JobState.CANCELLED, now)
            elif last:
                row.last_error = message
                self._finish(row, JobState.DEAD, now)
            else:
                self._make_available(row)
                row.lost_at = expired_at
                woken.add(row.queue)
            if row.state is not JobState.AVAILABLE:
                row.lost_at = None
            reclaimed.append(
                Reclaimed(
                    job_id=job_id,
                    kind=row.kind,
                    queue=row.queue,
                    attempt=row.attempt,
                    lost_by=lost_by,
                    expired_at=expired_at,
                    state=row.state,
                )
            )
        for queue in woken:
            self._wake(queue)
        return reclaimed

    async def cancel(self, job_id: int) -> CancelResult:
        now = await self._enter()
        row = self._row(job_id)
        if row.state.is_final:
            return CancelResult.ALREADY_FINAL
        if row.state is JobState.RUNNING:
            row.cancel_requested = True
            row.updated_at = now
            return CancelResult.REQUESTED
        row.cancel_requested = True
        self._finish(row, JobState.CANCELLED, now)
        return CancelResult.CANCELLED

    # --- steps and signals ----------------------------------------------------------------

    async def record_step(
        self, job_id: int, *, token: int, name: str, value: JsonValue
    ) -> StepResult:
        now = await self._enter()
        check_id(job_id)
        check_id(token, "token")
        check_step_name(name)
        text = encode_step(value)
        store = self._store
        row = store.running.get(job_id)
        if (
            row is None
            or row.token != token
            or row.lease_expires_at is None
            or row.lease_expires_at <= now
        ):
            return StepResult.STALE
        steps = store.steps.setdefault(job_id, {})
        if name not in steps:
            steps[name] = _Step(value_text=text, attempt=row.attempt, recorded_at=now)
        return StepResult.RECORDED

    async def list_steps(self, job_id: int) -> list[Step]:
        await self._enter()
        check_id(job_id)
        steps = self._store.steps.get(job_id, {})
        return [
            Step(
                name=name,
                value=json.loads(step.value_text),
                attempt=step.attempt,
                recorded_at=step.recorded_at,
            )
            for name, step in sorted(steps.items(), key=lambda item: (item[1].recorded_at, item[0]))
        ]

    async def signal(self, key: str, value: JsonValue = None) -> SignalResult:
        now = await self._enter()
        check_event_key(key)
        text = encode_step(value)
        store = self._store
        if key in store.signals:
            return SignalResult(stored=False)
        store.signals[key] = (text, now)
        rows = sorted(store.suspended.get(key, {}).values(), key=lambda row: row.id)
        for row in rows:
            row.run_at = row.updated_at = now
            self._make_available(row)
        for queue in {row.queue for row in rows}:
            self._wake(queue)
        return SignalResult(stored=True, woken=tuple(row.id for row in rows))

    async def prune_results(self, *, finished_before: float, limit: int = 10_000) -> int:
        await self._enter()
        check_time(finished_before, "finished_before", minimum=None)
        check_limit(limit)
        store = self._store
        jobs = store.jobs
        found = sorted(
            (row.finished_at, row.id)
            for row in (jobs[job_id] for job_id in store.final)
            if row.result_text is not None
            and row.state is JobState.SUCCEEDED
            and row.finished_at is not None
            and row.finished_at < finished_before
            and not any(
                (child := jobs.get(cid)) is not None and child.state.is_active
                for cid in store.children.get(row.id, ())
            )
        )[:limit]
        for _, job_id in found:
            jobs[job_id].result_text = None
        return len(found)

    async def prune_signals(self, *, before: float, limit: int = 10_000) -> int:
        await self._enter()
        check_time(before, "before", minimum=None)
        check_limit(limit)
        signals = self._store.signals
        doomed = sorted((at, key) for key, (_, at) in signals.items() if at < before)[:limit]
        for _, key in doomed:
            del signals[key]
        return len(doomed)

    async def get_signal(self, key: str) -> Signal | None:
        await self._enter()
        check_event_key(key)
        found = self._store.signals.get(key)
        if found is None:
            return None
        return Signal(key=key, value=json.loads(found[0]), signalled_at=found[1])

    # --- leadership -----------------------------------------------------------------------

    async def acquire_leader(self, name: str, *, holder: str, ttl: float) -> LeaderLease | None:
        now = await self._enter()
        check_leader(name, holder, ttl)
        current = self._store.leaders.get(name)
        if current is None:
            current = self._store.leaders[name] = _Leader(holder=None, epoch=0, expires_at=now)
        live = current.holder is not None and current.expires_at > now
        if live and current.holder != holder:
            return None
        if not live:
            current.holder = holder
            current.epoch += 1
        current.expires_at = now + ttl
        return LeaderLease(
            name=name, holder=holder, epoch=current.epoch, expires_at=current.expires_at
        )

    async def release_leader(self, name: str, *, holder: str) -> bool:
        now = await self._enter()
        check_release(name, holder)
        current = self._store.leaders.get(name)
        if current is None or current.holder != holder:
            return False
        current.holder = None
        return current.expires_at > now

    async def get_cursor(self, name: str) -> float | None:
        await self._enter()
        check_cursor(name)
        return self._store.cursors.get(name)

    async def advance_cursor(self, name: str, *, expected: float | None, new: float) -> bool:
        await self._enter()
        check_advance(name, expected, new)
        if self._store.cursors.get(name) != expected:
            return False
        self._store.cursors[name] = new
        return True

    # --- waiting --------------------------------------------------------------------------

    async def wait_for_work(self, queues: Sequence[str]) -> None:
        if self._closed:
            await anyio.lowlevel.checkpoint()
            return
        check_queues(queues)
        await self._store.waiters.wait(queues, self._pending)

    async def wait_for_jobs(self, job_ids: Sequence[int]) -> None:
        if self._closed:
            await anyio.lowlevel.checkpoint()
            return
        ids = check_job_ids(job_ids)
        await self._store.waiters.wait([job_waiter_key(job_id) for job_id in ids], self._pending)

    # --- operating ------------------------------------------------------------------------

    async def get_queue_config(self, queue: str) -> QueueConfig:
        await self._enter()
        check_name(queue)
        config = self._store.configs.get(queue)
        return config if config is not None else QueueConfig(name=queue)

    async def set_queue_config(self, config: QueueConfig) -> None:
        await self._enter()
        check_items([config], QueueConfig, "config")
        self._store.configs[config.name] = config
        if not config.paused:
            self._wake(config.name)

    async def list_queue_configs(self) -> list[QueueConfig]:
        await self._enter()
        return [self._store.configs[name] for name in sorted(self._store.configs)]

    async def set_limit(
        self,
        key: str,
        *,
        concurrency: int | None = None,
        rate: int | None = None,
        per: float | None = None,
    ) -> None:
        await self._enter()
        check_set_limit(key, concurrency, rate, per)
        store = self._store
        before = store.limits.get(key)
        rate_before = store.rates.get(key)
        if concurrency is None:
            store.limits.pop(key, None)
        else:
            store.limits[key] = concurrency
        if rate is None or per is None:
            store.rates.pop(key, None)
            store.starts.pop(key, None)
        else:
            store.rates[key] = (rate, per)
        raised = before is not None and (concurrency is None or concurrency > before)
        if raised or (rate_before is not None and store.rates.get(key) != rate_before):
            store.waiters.wake(store.waiters.queues())

    async def list_limits(self) -> list[KeyLimit]:
        now = await self._enter()
        store = self._store
        self._promote(now)
        cooled = {key for key, until in store.cooldowns.items() if until > now}
        waiting = dict.fromkeys({*store.limits, *store.rates, *cooled}, 0)
        for row in store.jobs.values():
            key = row.concurrency_key
            if key in waiting and row.state in (JobState.SCHEDULED, JobState.AVAILABLE):
                waiting[key] += 1
        found = []
        for key in sorted(waiting):
            rate, per = store.rates.get(key, (None, None))
            found.append(
                KeyLimit(
                    key=key,
                    concurrency=store.limits.get(key),
                    running=self._live(key, now),
                    waiting=waiting[key],
                    rate=rate,
                    per=per,
                    started=self._started(key, now),
                    cooldown_until=store.cooldowns[key] if key in cooled else None,
                )
            )
        return found

    async def list_partitions(
        self, queue: str, *, after: str | None = None, limit: int = 100
    ) -> list[PartitionInfo]:
        now = await self._enter()
        check_partitions_query(queue, after, limit)
        store = self._store
        self._promote(now)
        waiting: dict[str, int] = {}
        running: dict[str, int] = {}
        for row in store.jobs.values():
            key = row.partition_key
            if key is None or row.queue != queue:
                continue
            if row.state in _WAITING:
                waiting[key] = waiting.get(key, 0) + 1
            elif row.state is JobState.RUNNING:
                running[key] = running.get(key, 0) + 1
        keys = sorted(key for key in waiting if after is None or key > after)[:limit]
        return [
            PartitionInfo(
                queue=queue,
                key=key,
                waiting=min(waiting[key], MAX_PARTITION_COUNT),
                running=running.get(key, 0),
                served_at=store.served_at.get((queue, key)),
            )
            for key in keys
        ]

    async def reopens_in(self, queue: str) -> float | None:
        now = await self._enter()
        check_name(queue)
        store = self._store
        soonest: float | None = None
        for key, (rate, per) in store.rates.items():
            if self._started(key, now) >= rate:
                soonest = _sooner(soonest, store.starts[key][-rate] + per - now)
        for until in store.cooldowns.values():
            if until > now:
                soonest = _sooner(soonest, until - now)
        return soonest

    async def cleanup(
        self, *, finished_before: float, queue: str | None = None, limit: int = 10_000
    ) -> int:
        await self._enter()
        check_cleanup(finished_before, queue, limit)
        store = self._store
        doomed: list[_Row] = []
        kept: dict[str, bool] = {}  # workflow -> whether it may go (all final, all old enough)
        for job_id in store.final:
            row = store.jobs[job_id]
            if (
                row.finished_at is not None
                and row.finished_at < finished_before
                and (queue is None or row.queue == queue)
            ):
                if row.workflow is not None:
                    if row.workflow not in kept:
                        kept[row.workflow] = all(
                            (member := store.jobs[i]).finished_at is not None
                            and member.finished_at < finished_before
                            for i in store.workflows.get(row.workflow, {})
                        )
                    if not kept[row.workflow]:
                        continue
                doomed.append(row)
                if len(doomed) >= limit:
                    break
        for row in doomed:
            del store.jobs[row.id]
            del store.final[row.id]
            store.steps.pop(row.id, None)
            store.counts[row.queue][row.state] -= 1
            self._forget(row, finished_before)
        return len(doomed)

    async def counts(self, queue: str | None = None) -> list[Counts]:
        now = await self._enter()
        check_optional_name(queue)
        self._promote(now)
        by_queue = self._store.counts
        names = sorted(by_queue) if queue is None else [queue] if queue in by_queue else []
        found = []
        for name in names:
            by_state = {state: n for state, n in by_queue[name].items() if n}
            if by_state:
                found.append(Counts(queue=name, by_state=by_state))
        return found

    async def get(self, job_id: int) -> Job:
        now = await self._enter()
        self._promote(now)
        return _job(self._row(job_id))

    async def list_jobs(
        self,
        where: JobFilter | None = None,
        *,
        after_id: int | None = None,
        before_id: int | None = None,
        newest_first: bool = False,
        limit: int = 100,
    ) -> list[Job]:
        now = await self._enter()
        where = check_listing(where, after_id, before_id, newest_first, limit)
        self._promote(now)
        rows = self._matching(where, after_id, before_id, newest_first=newest_first)
        found: list[Job] = []
        for row in rows:
            found.append(_job(row))
            if len(found) >= limit:
                break
        return found

    async def retry_jobs(self, where: JobFilter, *, limit: int = 1000) -> list[int]:
        now = await self._enter()
        where = check_action(where, limit)
        self._promote(now)
        chosen = self._choose(where, _RETRYABLE, limit, undoomed=True)
        store = self._store
        for row in chosen:
            if row.state.is_final:
                del store.final[row.id]
                row.dedupe_key = None
                self._reopen(row)
            row.attempt = 0
            row.cancel_requested = False
            row.finished_at = None
            row.lost_at = None  # an operator's retry is no recovery
            row.run_at = row.updated_at = now
            edges = store.edges.get(row.id)
            if edges and verdict((e[0], e[1]) for e in edges.values()) is not JobState.AVAILABLE:
                self._set_state(row, JobState.PENDING)  # it waits for its parents again
                row.seq += 1
            else:
                self._make_available(row)
        for queue in {row.queue for row in chosen}:
            self._wake(queue)
        return [row.id for row in chosen]

    async def discard_jobs(self, where: JobFilter, *, reason: str, limit: int = 1000) -> list[int]:
        now = await self._enter()
        where = check_action(where, limit)
        text = clean_text(reason)
        if text is None:
            raise InvalidRequest("reason must be a string, got None")
        self._promote(now)
        chosen = self._choose(where, _WAITING, limit)
        for row in chosen:
            _record(row, "Discarded", text, None, now, None)
            row.last_error = text
            self._finish(row, JobState.DEAD, now)
        return [row.id for row in chosen]

    async def delete_jobs(self, where: JobFilter, *, limit: int = 1000) -> list[int]:
        now = await self._enter()
        where = check_action(where, limit)
        self._promote(now)
        chosen = self._choose(where, _DELETABLE, limit)
        store = self._store
        for row in chosen:
            del store.jobs[row.id]
            store.final.pop(row.id, None)
            store.steps.pop(row.id, None)
            self._unsuspend(row)
            store.counts[row.queue][row.state] -= 1
            if row.partition_key is not None and row.state in _WAITING:
                store.partitioned[row.queue] -= 1
            if row.dedupe_key is not None:
                key = (row.queue, row.dedupe_key)
                if store.dedupe.get(key) == row.id:
                    del store.dedupe[key]
            row.seq += 1  # any heap entry of it is stale
            self._forget(row, now)
        return [row.id for row in chosen]

    async def cancel_jobs(self, where: JobFilter, *, limit: int = 1000) -> list[int]:
        now = await self._enter()
        where = check_action(where, limit)
        self._promote(now)
        chosen: list[_Row] = []
        for row in self._matching(where, None, None, newest_first=False):
            if row.state.is_active and not row.cancel_requested:
                chosen.append(row)
                if len(chosen) >= limit:
                    break
        for row in chosen:
            row.cancel_requested = True
            row.updated_at = now
            if row.state is not JobState.RUNNING:
                self._finish(row, JobState.CANCELLED, now)
        return [row.id for row in chosen]

    async def list_edges(
        self, job_ids: Sequence[int] | None = None, *, workflow: str | None = None
    ) -> list[Edge]:
        await self._enter()
        ids, workflow = check_edges_query(job_ids, workflow)
        store = self._store
        pairs: set[tuple[int, int]] = set()
        if ids is not None:
            for job_id in ids:
                pairs.update((job_id, parent) for parent in store.edges.get(job_id, {}))
                pairs.update((child, job_id) for child in store.children.get(job_id, ()))
        if workflow is not None:
            for child in store.workflows.get(workflow, {}):
                pairs.update((child, parent) for parent in store.edges.get(child, {}))
        found = []
        for child, parent in sorted(pairs):
            edge = store.edges.get(child, {}).get(parent)
            if edge is not None:
                found.append(
                    Edge(parent=parent, child=child, on_failure=edge[0], parent_state=edge[1])
                )
        return found

    async def list_workflows(
        self, *, workflow: str | None = None, after: str | None = None, limit: int = 100
    ) -> list[WorkflowSummary]:
        now = await self._enter()
        check_workflows_query(workflow, after, limit)
        self._promote(now)
        store = self._store
        names = sorted(store.workflows) if workflow is None else [workflow]
        found: list[WorkflowSummary] = []
        for name in names:
            if after is not None and name <= after:
                continue
            members = [store.jobs[i] for i in store.workflows.get(name, {})]
            if not members:
                continue
            by_state: dict[JobState, int] = {}
            for row in members:
                by_state[row.state] = by_state.get(row.state, 0) + 1
            finished = [row.finished_at for row in members]
            found.append(
                WorkflowSummary(
                    workflow=name,
                    by_state=by_state,
                    created_at=min(row.created_at for row in members),
                    finished_at=None if None in finished else max(finished),  # type: ignore[type-var]
                )
            )
            if len(found) >= limit:
                break
        return found

    # --- observing ------------------------------------------------------------------------

    async def register_node(self, info: NodeInfo) -> NodeInfo:
        now = await self._enter()
        check_items([info], NodeInfo, "info")
        stored = self._store.nodes[info.id] = attrs.evolve(info, last_seen=now)
        return stored

    async def node_heartbeat(self, node_id: str) -> bool:
        now = await self._enter()
        check_node_id(node_id)
        info = self._store.nodes.get(node_id)
        if info is None:
            return False
        self._store.nodes[node_id] = attrs.evolve(info, last_seen=now)
        return True

    async def forget_node(self, node_id: str) -> bool:
        await self._enter()
        check_node_id(node_id)
        return self._store.nodes.pop(node_id, None) is not None

    async def list_nodes(self) -> list[NodeInfo]:
        await self._enter()
        nodes = self._store.nodes
        return [nodes[node_id] for node_id in sorted(nodes)]

    async def prune_nodes(self, *, seen_before: float) -> int:
        await self._enter()
        check_time(seen_before, "seen_before", minimum=None)
        nodes = self._store.nodes
        doomed = [node_id for node_id, info in nodes.items() if info.last_seen < seen_before]
        for node_id in doomed:
            del nodes[node_id]
        return len(doomed)

    async def list_leaders(self) -> list[LeaderLease]:
        now = await self._enter()
        leaders = self._store.leaders
        return [
            LeaderLease(name=name, holder=lead.holder, epoch=lead.epoch, expires_at=lead.expires_at)
            for name, lead in sorted(leaders.items())
            if lead.holder is not None and lead.expires_at > now
        ]

    async def add_stats(self, rows: Sequence[QueueStats]) -> None:
        await self._enter()
        check_items(rows, QueueStats, "rows")
        stats = self._store.stats
        for row in rows:
            increments = row.cells()
            if not increments:
                continue
            cells = stats.setdefault((row.queue, row.minute), {})
            for metric, value in increments.items():
                cells[metric] = cells.get(metric, 0) + value

    async def list_stats(
        self,
        *,
        queue: str | None = None,
        since: float | None = None,
        until: float | None = None,
    ) -> list[QueueStats]:
        await self._enter()
        check_stats_range(queue, since, until)
        found = []
        for (name, minute), cells in sorted(self._store.stats.items(), key=lambda i: i[0][::-1]):
            if (
                (queue is None or name == queue)
                and (since is None or minute >= since)
                and (until is None or minute < until)
            ):
                row = QueueStats.from_cells(name, minute, cells)
                if row is not None:
                    found.append(row)
        return found

    async def prune_stats(self, *, before: float) -> int:
        await self._enter()
        check_time(before, "before", minimum=None)
        stats = self._store.stats
        doomed = [key for key in stats if key[1] < before]
        for key in doomed:
            del stats[key]
        return len(doomed)

    # --- internals ------------------------------------------------------------------------

    def _row(self, job_id: int) -> _Row:
        row = self._store.jobs.get(check_id(job_id))
        if row is None:
            raise JobNotFound(f"no job has id {job_id}")
        return row

    def _matching(
        self,
        where: JobFilter,
        after_id: int | None,
        before_id: int | None,
        *,
        newest_first: bool,
    ) -> Iterator[_Row]:
        """The rows ``where`` matches within the id bounds, in id order (or reversed)."""
        jobs = self._store.jobs
        if where.ids is not None:
            ordered = sorted(where.ids, reverse=newest_first)
            candidates: Iterable[_Row] = (jobs[i] for i in ordered if i in jobs)
        else:
            candidates = reversed(jobs.values()) if newest_first else jobs.values()
        needle = None if where.error is None else where.error.translate(_ASCII_LOWER)
        for row in candidates:
            if (
                (after_id is None or row.id > after_id)
                and (before_id is None or row.id < before_id)
                and (where.queue is None or row.queue == where.queue)
                and (where.kind is None or row.kind == where.kind)
                and (where.workflow is None or row.workflow == where.workflow)
                and (not where.states or row.state in where.states)
                and (where.created_after is None or row.created_at >= where.created_after)
                and (where.created_before is None or row.created_at < where.created_before)
                and (
                    where.finished_after is None
                    or (row.finished_at is not None and row.finished_at >= where.finished_after)
                )
                and (
                    where.finished_before is None
                    or (row.finished_at is not None and row.finished_at < where.finished_before)
                )
                and (
                    needle is None
                    or (
                        row.last_error is not None
                        and needle in row.last_error.translate(_ASCII_LOWER)
                    )
                )
            ):
                yield row

    def _choose(
        self, where: JobFilter, states: frozenset[JobState], limit: int, *, undoomed: bool = False
    ) -> list[_Row]:
        """Up to ``limit`` rows ``where`` matches that are in one of ``states``, by id; with
        ``undoomed``, none whose failed parent cancels it (it would be cancelled at once)."""
        chosen: list[_Row] = []
        edges = self._store.edges
        for row in self._matching(where, None, None, newest_first=False):
            if undoomed and row.id in edges:
                mine = edges[row.id].values()
                if verdict((e[0], e[1]) for e in mine) is JobState.CANCELLED:
                    continue
            if row.state in states:
                chosen.append(row)
                if len(chosen) >= limit:
                    break
        return chosen

    def _set_state(self, row: _Row, state: JobState) -> None:
        if row.wait_key is not None:
            self._unsuspend(row)
        by_state = self._store.counts[row.queue]
        by_state[row.state] -= 1
        by_state[state] += 1
        if row.partition_key is not None and (row.state in _WAITING) != (state in _WAITING):
            partitioned = self._store.partitioned
            partitioned[row.queue] += 1 if state in _WAITING else -1
        row.state = state

    def _promote(self, now: float) -> None:
        """Move scheduled jobs whose time has come to their queue's ready heap."""
        scheduled = self._store.scheduled
        jobs = self._store.jobs
        while scheduled and scheduled[0][0] <= now:
            _, job_id, seq = heapq.heappop(scheduled)
            row = jobs.get(job_id)
            if row is not None and row.seq == seq:
                self._make_available(row)

    def _make_available(self, row: _Row) -> None:
        self._set_state(row, JobState.AVAILABLE)
        row.seq += 1
        store = self._store
        if row.partition_key is None:
            heap = store.ready.get(row.queue)
            if heap is None:
                heap = store.ready[row.queue] = []
        else:
            heap = store.parts.setdefault(row.queue, {}).setdefault(row.partition_key, [])
        heapq.heappush(heap, (row.priority, row.run_at, row.id, row.seq))

    def _push_scheduled(self, row: _Row) -> None:
        self._set_state(row, JobState.SCHEDULED)
        row.seq += 1
        heapq.heappush(self._store.scheduled, (row.run_at, row.id, row.seq))

    def _wait_until(self, row: _Row, run_at: float, now: float) -> bool:
        """Schedule ``row`` for ``run_at``; True when it is available at once."""
        row.run_at = run_at
        if run_at > now:
            self._push_scheduled(row)
            return False
        self._make_available(row)
        return True

    def _suspend(self, row: _Row, outcome: Suspend, now: float) -> bool:
        """Suspend ``row`` on its event until its timeout; True when it is available at once
        (the event is set already, or the timeout has passed)."""
        if outcome.event_key in self._store.signals:
            row.run_at = min(outcome.run_at, now)
            self._make_available(row)
            return True
        if self._wait_until(row, outcome.run_at, now):
            return True
        self._set_state(row, JobState.SUSPENDED)  # in `scheduled` until its timeout
        row.wait_key = outcome.event_key
        self._store.suspended.setdefault(outcome.event_key, {})[row.id] = row
        return False

    def _unsuspend(self, row: _Row) -> None:
        """Take ``row`` out of the index of its event key (it stops being suspended)."""
        key = row.wait_key
        if key is None:
            return
        row.wait_key = None
        waiting = self._store.suspended.get(key)
        if waiting is not None:
            waiting.pop(row.id, None)
            if not waiting:
                del self._store.suspended[key]

    def _live(self, key: str, now: float) -> int:
        """How many jobs with concurrency key ``key`` hold a live lease at ``now``."""
        running = self._store.keyed.get(key)
        if not running:
            return 0
        return sum(
            1
            for row in running.values()
            if row.lease_expires_at is not None and row.lease_expires_at > now
        )

    def _held(self, key: str) -> bool:
        """Whether ``key`` has a limit, a rate or a cool-down (live or not) to check."""
        store = self._store
        return key in store.limits or key in store.rates or key in store.cooldowns

    def _free(self, key: str, now: float) -> int:
        """How many jobs of ``key`` a claim at ``now`` may start (<= 0: none)."""
        store = self._store
        until = store.cooldowns.get(key)
        if until is not None:
            if until > now:
                return 0
            del store.cooldowns[key]  # over: forgotten
        free = INT64_MAX
        if key in store.limits:
            free = store.limits[key] - self._live(key, now)
        if key in store.rates:
            free = min(free, store.rates[key][0] - self._started(key, now))
        return free

    def _started(self, key: str, now: float) -> int:
        """How many starts of ``key`` fall in its rate window ``(now - per, now]``; the
        log forgets the older ones."""
        rate_per = self._store.rates.get(key)
        log = self._store.starts.get(key)
        if rate_per is None or not log:
            return 0
        since = now - rate_per[1]
        while log and log[0] <= since:
            log.popleft()
        return len(log)

    def _log_start(self, key: str, now: float) -> None:
        self._store.starts.setdefault(key, collections.deque()).append(now)

    def _cool(self, key: str | None, until: float) -> None:
        """Cool ``key`` down until ``until`` (never shortening a longer cool-down)."""
        if key is None:
            return
        cooldowns = self._store.cooldowns
        cooldowns[key] = max(until, cooldowns.get(key, until))
        # Claimers learn the end of the cool-down from reopens_in; nothing to wake now.

    def _capped(self, queue: str) -> bool:
        config = self._store.configs.get(queue)
        return config is not None and config.global_concurrency is not None

    def _live_in(self, queue: str, now: float) -> int:
        """How many jobs of ``queue`` hold a live lease at ``now``."""
        return sum(
            1
            for row in self._store.running.values()
            if row.queue == queue
            and row.lease_expires_at is not None
            and row.lease_expires_at > now
        )

    def _end_lease(self, row: _Row, now: float) -> None:
        del self._store.running[row.id]
        if row.concurrency_key is not None:
            keyed = self._store.keyed.get(row.concurrency_key)
            if keyed is not None:
                keyed.pop(row.id, None)
                if not keyed:
                    del self._store.keyed[row.concurrency_key]
        row.token = None
        row.lease_expires_at = None
        row.updated_at = now

    def _finish(self, row: _Row, state: JobState, now: float) -> None:
        self._end(row, state, now)
        if row.id in self._store.children:
            self._settle(row.id, state, now)

    def _add_edges(self, row: _Row, plan: Any, results: list[EnqueueResult]) -> JobState | None:
        """Store a new job's edges (``plan``: see ``plan_parents``); returns its start."""
        store = self._store
        edges, start = plan
        mine = store.edges[row.id] = {}
        for job_id, index, on_failure, state in edges:
            parent = job_id if job_id is not None else results[index].job_id
            mine[parent] = [on_failure, state]
            store.children.setdefault(parent, set()).add(row.id)
            if (
                state is not None
                and state is not JobState.SUCCEEDED
                and start is JobState.CANCELLED
                and row.last_error is None
            ):
                row.last_error = f"parent {parent} ended {state.value}"
        return start  # type: ignore[no-any-return]

    def _settle(self, parent_id: int, state: JobState, now: float) -> None:
        """A parent ended (or an active one was deleted, as cancelled): record its state on
        its edges and cancel or release each pending child it decides, in turn settling the
        children cancelled (iteratively: a chain may be long)."""
        store = self._store
        todo = [(parent_id, state)]
        while todo:
            pid, pstate = todo.pop()
            for cid in sorted(store.children.get(pid, ())):
                edges = store.edges.get(cid)
                if edges is None:
                    continue
                if pid in edges:
                    edges[pid][1] = pstate
                child = store.jobs.get(cid)
                if child is None or child.state is not JobState.PENDING:
                    continue
                decided = verdict((e[0], e[1]) for e in edges.values())
                if decided is JobState.CANCELLED:
                    child.last_error = f"parent {pid} ended {pstate.value}"
                    self._end(child, JobState.CANCELLED, now)
                    if cid in store.children:
                        todo.append((cid, JobState.CANCELLED))
                elif decided is JobState.AVAILABLE:
                    child.updated_at = now
                    if self._wait_until(child, child.run_at, now):
                        self._wake(child.queue)

    def _reopen(self, row: _Row) -> None:
        """A final job runs again (retry_jobs): its edges as a parent are open again, and its
        dependents that have not started yet wait for it again."""
        store = self._store
        for cid in store.children.get(row.id, ()):
            edges = store.edges.get(cid)
            if edges is not None and row.id in edges:
                edges[row.id][1] = None
            child = store.jobs.get(cid)
            if child is not None and child.state in _UNSTARTED:
                self._set_state(child, JobState.PENDING)  # not started yet: it waits again
                child.seq += 1

    def _forget(self, row: _Row, now: float) -> None:
        """A job is deleted: drop its edges as a child; as an active parent it counts as
        cancelled for its dependents."""
        store = self._store
        edges = store.edges.pop(row.id, None)
        if edges is not None:
            for pid in edges:
                siblings = store.children.get(pid)
                if siblings is not None:
                    siblings.discard(row.id)
        if row.workflow is not None:
            members = store.workflows.get(row.workflow)
            if members is not None:
                members.pop(row.id, None)
                if not members:
                    del store.workflows[row.workflow]
        if row.state.is_active and row.id in store.children:
            self._settle(row.id, JobState.CANCELLED, now)

    def _end(self, row: _Row, state: JobState, now: float) -> None:
        self._set_state(row, state)
        row.seq += 1
        row.finished_at = now
        row.updated_at = now
        store = self._store
        if row.dedupe_key is not None:
            key = (row.queue, row.dedupe_key)
            if store.dedupe.get(key) == row.id:
                del store.dedupe[key]
        store.final[row.id] = None
        store.waiters.wake((job_waiter_key(row.id),))

    def _wake(self, queue: str) -> None:
        self._store.waiters.wake((queue,), keep=True)


def _sooner(soonest: float | None, wait: float) -> float:
    return wait if soonest is None else min(soonest, wait)


_RETRYABLE = frozenset({JobState.DEAD, JobState.CANCELLED, JobState.SCHEDULED, JobState.SUSPENDED})
_UNSTARTED = frozenset({JobState.SCHEDULED, JobState.AVAILABLE})
_WAITING = frozenset({JobState.SCHEDULED, JobState.AVAILABLE, JobState.SUSPENDED})
_DELETABLE = frozenset(JobState) - {JobState.RUNNING}
_ASCII_LOWER = str.maketrans(string.ascii_uppercase, string.ascii_lowercase)


def _record(
    row: _Row,
    kind: str,
    message: str,
    traceback: str | None,
    now: float,
    owner: str | None,
) -> None:
    """Append an error to the row's history, keeping the newest MAX_ERRORS."""
    error = AttemptError(
        attempt=row.attempt,
        at=now,
        owner=owner,
        type=kind,
        message=message[:MAX_ERROR_MESSAGE],
        traceback=traceback,
    )
    row.errors = (*row.errors, error)[-MAX_ERRORS:]


def _job(row: _Row) -> Job:
    return Job(
        id=row.id,
        kind=row.kind,
        queue=row.queue,
        payload=json.loads(row.payload_text),
        state=row.state,
        priority=row.priority,
        run_at=row.run_at,
        attempt=row.attempt,
        max_attempts=row.max_attempts,
        last_error=row.last_error,
        dedupe_key=row.dedupe_key,
        created_at=row.created_at,
        updated_at=row.updated_at,
        finished_at=row.finished_at,
        lease_owner=row.lease_owner,
        lease_expires_at=row.lease_expires_at,
        cancel_requested=row.cancel_requested,
        started_at=row.started_at,
        errors=row.errors,
        headers=dict(row.headers),
        concurrency_key=row.concurrency_key,
        result=None if row.result_text is None else json.loads(row.result_text),
        workflow=row.workflow,
        wait_key=row.wait_key,
        partition_key=row.partition_key,
    )
