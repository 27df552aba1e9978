"""The storage contract every actorq backend implements, documented once, here.

A job's whole life is decided by these calls. Backends (memory, SQLite, PostgreSQL) implement
them identically; ``transports.testing`` holds the conformance suite that proves it.

Rules that hold for every method:

* **Time.** "now" is ``self.clock.now()`` when a clock was given. PostgreSQL without a clock uses
  the database clock; the others fall back to the wall clock. Lease expiry is decided in that one
  clock domain. A lease (of a job or a leader) is expired once ``now >= expires_at``; a job is
  due once ``now >= run_at``.
* **Atomicity.** Each call is all-or-nothing, batches included: a call that raises wrote nothing
  (or, for ``ConnectionLost``, wrote everything or nothing).
* **Fencing.** Every claim mints a fresh lease token. ``renew`` and ``finalize`` act only when the
  token still owns the running job; otherwise they change nothing and report it (``LOST`` /
  ``STALE``). A worker that stalled past its lease can never clobber the next owner.
* **Attempts.** A claim increments ``attempt``. A lease lost to expiry keeps its attempt, so a
  job that keeps killing its workers ends dead after ``max_attempts``. ``Snooze`` and ``Release``
  give the attempt back. The runtime keeps attempts counting runs: it claims only for Workers
  that start the job at once, and releases every claim it does not start (shutdown, a Worker
  gone, a lease its clock says is about to expire), so an attempt is spent by a run, or by a
  claim lost in the instant of its hand-off.
* **Cancel wins over retry.** A job whose cancel was requested ends ``cancelled`` if its holder
  retries, snoozes or releases it, or if its lease expires; ``Complete`` still succeeds.
* **Errors.** Only subclasses of :class:`~transports.TransportError`. Only
  :class:`~transports.ConnectionLost` is transient (worth retrying);
  :class:`~transports.InvalidRequest` and its subclasses mean the request is malformed.
* **Validation** is one policy for every backend, applied before anything is written
  (:mod:`transports._validate`; the request records check their fields when built, the
  backends their plain arguments first thing), so a value one backend refuses, all refuse,
  with the same error class:

  - *identifiers* (queue, kind, leader and cursor names): 1-128 characters of
    ``[A-Za-z0-9_.:-]``, ASCII only, else :class:`~transports.InvalidQueueName`;
  - *labels* (dedupe keys, lease owners, leader holders): 1-255 characters of any script, no
    control character (NUL included) and no lone surrogate, else ``InvalidRequest``;
  - *integers* are ``int`` (never ``bool``): job ids and tokens fit 64 signed bits (beyond:
    ``InvalidRequest``; in range but unknown: :class:`~transports.JobNotFound` from ``get``
    and ``cancel``, ``LOST`` / ``STALE`` from ``renew`` / ``finalize``); priorities,
    ``max_attempts`` (>= 1) and limits (>= 1) fit 32 signed bits;
  - *times and durations* are finite numbers: delays, ``run_at`` and retention >= 0, TTLs > 0,
    cursor values and ``finished_before`` any finite number;
  - *payloads* are JSON with no NUL and no lone surrogate in any string
    (:class:`~transports.PayloadNotSerializable`) and at most ``max_payload_bytes`` encoded
    (:class:`~transports.PayloadTooLarge`);
  - *queue configs* (:class:`~transports.QueueConfig`, checked when built): ``concurrency``
    None or 0-10,000, ``global_concurrency`` None or 0 to 2**31 - 1, ``retention`` None or
    finite >= 0; a stored value out of range (written
    by another tool) reads back as None, the node default, so no stored value crashes a node;
  - *error texts* (``Retry.error``, ``Discard.error``, ``Cancel.reason``, tracebacks, an
    operator's discard reason) are stored as given, with NUL and lone surrogates replaced by
    U+FFFD; an error type (``Retry.error_type``, ``Discard.error_type``) is a label;
  - *headers* (``EnqueueRequest.headers``): a mapping of at most ``MAX_HEADERS`` labels to
    labels; *filters* (:class:`~transports.JobFilter`, checked when built): names as above,
    states job states, at most ``MAX_FILTER_IDS`` ids, finite time bounds, a label of error text.
* **Error history.** Each job keeps the errors of its failed attempts (``Job.errors``, oldest
  first, the newest ``MAX_ERRORS``; an entry's message is cut to ``MAX_ERROR_MESSAGE``
  characters and its traceback to its last ``MAX_TRACEBACK``). ``finalize`` appends one for an
  applied Retry carrying an error and for every applied Discard (a ``STALE`` finalize records
  nothing); ``reap`` appends one of type ``LeaseExpired`` for every lease it takes back;
  ``discard_jobs`` one of type ``Discarded``. ``last_error`` stays the newest error text.
* **Operator actions** (``retry_jobs``, ``discard_jobs``, ``delete_jobs``, ``cancel_jobs``)
  act on the jobs a :class:`~transports.JobFilter` matches, at most ``limit`` per call, lowest
  id first, in one atomic step, and return the ids they changed; a job they may not change
  (see each) is skipped, so calling again until ``[]`` comes back exhausts a filter. A
  ``running`` job is never changed except by ``cancel_jobs``, through the cancel request its
  heartbeat sees: a live lease is never overridden.
* **Flow control.** A job may name a *concurrency key* at enqueue (``EnqueueRequest.
  concurrency_key``); ``set_limit(key, concurrency=n)`` caps the key cluster-wide: at most
  ``n`` jobs with that key hold a *live* lease (running, ``now < lease_expires_at``) at any
  moment. The claim enforces it inside its own atomic step (the claim's transaction on the SQL
  backends, serialized per key on PostgreSQL by locking the key's ``limits`` row), so no
  interleaving of claimers on any number of nodes exceeds it. A job whose key is at its limit
  is skipped by the claim: it stays waiting with its attempt unspent, and the jobs behind it
  of other keys are claimed. A lease that expired no longer counts, reaped or not (an expired
  lease can never be renewed, so its holder can only finalize, never run on as a holder). A
  key with no limit is not limited. A limit binds every claim that starts after
  ``set_limit`` returned; lowering it below the current use stops nothing, the key just
  starts nothing until it is under. ``list_limits`` reports each limited key's use.

  *Rates.* ``set_limit(key, rate=n, per=w)`` also caps the key's *starts*: in any window of
  ``w`` seconds, at most ``n`` claims start a job of the key, cluster-wide. It is an exact
  sliding-window log, not a token bucket: the store keeps the key's latest start times and
  a claim at ``now`` may start a job only while fewer than ``n`` starts fall in
  ``(now - w, now]``; so every half-open interval of length ``w`` holds at most ``n`` starts,
  the promise an API's quota makes. (A token bucket or GCRA of the same ``n`` and ``w``
  admits a full bucket at the end of one window and a refill at the start of the next: up
  to ``2n`` starts in one window's length. The log costs ``n`` stored times per key, written
  in the claim's atomic step, under the same per-key serialization as the concurrency
  count.) A start counts whatever becomes of its job (a released, failed or expired run
  spent its slot of the window); a start at ``t`` leaves the window at ``t + w``. Jobs held
  by a rate stay waiting, attempt unspent, like jobs of a full key. Changing a key's rate
  keeps its log: the starts already logged count against the new rate and window.
  :meth:`reopens_in` tells a claimer when the first held key reopens, so it can wait for
  exactly that long: the runtime's Claimer bounds its wait for work by it.

  *Cool-downs.* A finalize with ``Snooze(run_at, cool_down=True)`` (the runtime's answer to
  a handler returning ``SnoozeUntil(at, cool_down=True)`` on a remote's "retry after") snoozes the job, attempt given
  back, and cools the job's key down until ``run_at``: no claim on any node that starts
  after the finalize returned starts a job of the key before ``run_at`` (a later cool-down
  of the key only ever extends it). It is fenced like the rest of the finalize: a ``STALE``
  finalize cools nothing; an applied one cools the key even when a cancel ends the job. A
  key needs no limit to be cooled; ``list_limits`` shows a live cool-down.
* **Fair share.** A job may name a *partition* at enqueue (``EnqueueRequest.partition_key``,
  say the tenant); a queue's jobs without one form one partition together. While a queue has
  a due job with a partition key, its claims share it among partitions instead of taking its
  jobs in one order. A partition is *eligible* when it has a due job whose key was not full
  when the claim began. The claim chooses the ``n = min(limit, eligible)`` eligible
  partitions served least recently (never served first, then by partition key, the
  unpartitioned first) and takes their eligible jobs round by round until it has ``limit``:
  every chosen partition's first in served order, then every second, and so on, each
  partition's in claim order (priority, run_at, id: priorities order the jobs of one
  partition, never one partition over another). Limits then apply as above. Each partition
  the claim started a job of goes to the back of the rotation, in the order the
  claim served it. *Bound:* a claim that no limit holds back serves the ``min(limit, P)``
  eligible partitions that waited longest, ``P`` the eligible partitions; so a partition with
  a due job starts one within ``ceil(P / limit)`` claims of its queue, whatever the backlogs
  of the others (a partition of 10 jobs beside one of a million waits as long as beside one
  of 10). Claims that run at the same moment (several nodes on PostgreSQL) may read the same
  rotation: each still takes only jobs no other took, so the bound counts rounds of such
  claims. Cost: a fair claim probes each partition with waiting jobs once (one index seek
  each on the SQL backends, the unpartitioned jobs included), whatever the backlog.
* **Results.** A ``Complete`` may carry the handler's return value (``Complete.result``: JSON,
  at most ``max_result_bytes`` encoded, else :class:`~transports.ResultNotSerializable` /
  :class:`~transports.ResultTooLarge` for the whole batch, nothing written). Only the
  *applied* finalize stores it, in the same atomic write that ends the job ``succeeded``: a
  ``STALE`` finalize stores nothing, so a worker that lost its lease can never overwrite the
  result of a newer attempt. ``Job.result`` reads it back (None until then, or when there was
  none). A result lives at most as long as its job: it goes when the job is cleaned up or
  deleted. It also has a retention of its own: ``prune_results`` clears the results of
  succeeded jobs finished before a time, oldest finish first, keeping the job itself (state,
  errors, steps); a job with a dependent still active keeps its result, which the dependent
  may yet read (``ctx.parent_results``). The maintenance leader's Cleanup clears results
  older than a day by default.
  ``wait_for_jobs`` waits for jobs to finish through the backend's own wake-up (memory events;
  SQLite's own writes at once and other processes' through its ``data_version`` watcher;
  PostgreSQL ``NOTIFY`` on ``<schema>_done``), so a caller waiting for a result reads the job
  once per wake-up instead of polling it.
* **Recovery.** When ``reap`` takes back an expired lease and the job is ``available`` again,
  the store keeps that lease's expiry (``lease_expires_at``, the instant its holder lost it) as
  the job's *lost time*. Every claim reports it as :attr:`~transports.lowlevel.Lease.lost_at`
  until a run of the job ends: an applied ``finalize`` clears it, except a ``Release`` (a claim
  given back unstarted hands the recovery on to the next claim); a later ``reap`` replaces it;
  a reap that ends the job (``dead``, ``cancelled``) and ``retry_jobs`` (an operator's retry is
  no recovery) clear it. A claim never takes a running job, so an expired lease nobody reaped
  yet is recovered through ``reap`` like any other. The runtime measures *recovery time* as
  its handler's start minus ``lost_at`` (the ``recovery`` histogram of the history).
* **Durable steps.** A running job may record *steps*: named JSON results kept with the job
  (``record_step``, ``list_steps``), so a later attempt finds what an earlier one did instead
  of doing it again (``ctx.step`` in the runtime). A step is written only under a live lease:
  the token must own the running job and ``now < lease_expires_at`` (stricter than
  ``finalize``, which also accepts an expired lease nobody reaped: a step records work about
  to be built on, and a lease that expired may already be someone else's in the next
  instant). Otherwise ``record_step`` is ``STALE`` and stores nothing, so a worker that lost
  its lease can never record a step, and the next owner runs it again. A name is recorded
  once per job: recording it again (a retried call whose reply was lost) keeps the first
  value. Step names are labels, values JSON of at most ``MAX_STEP_BYTES`` encoded
  (:class:`~transports.InvalidStepName`, :class:`~transports.StepTooLarge`). Steps live as
  long as their job: deleted with it (``cleanup``, ``delete_jobs``), never otherwise, and a
  retry of the job (``retry_jobs``) keeps them.
* **Suspension and signals.** A finalize with :class:`~transports.lowlevel.Suspend` ends the
  attempt without spending it and parks the job ``suspended`` on an *event key* (an
  identifier) until ``signal(key, value)`` sets that event, or until the suspension's
  ``run_at`` (its timeout): then it is due, as a scheduled job is (and reads ``available``).
  ``signal`` stores the event and makes every job suspended on it ``available`` now, in one
  atomic step; it needs no lease (anyone may signal). Events are kept: a signal that comes
  before the wait is not lost, since a ``Suspend`` finalized after its event was set makes
  the job ``available`` at once. The *first value wins*: a second signal of a key stores
  nothing and wakes nobody (no job can be suspended on a key already set). ``get_signal``
  reads an event. A suspended job is waiting: ``cancel`` and ``cancel_jobs`` cancel it,
  ``discard_jobs`` and ``delete_jobs`` take it, ``retry_jobs`` makes it available now.
  Events have a retention: ``prune_signals`` deletes those set before a time (the
  maintenance leader's Cleanup prunes events older than a week by default). Pruning strands
  no job (none can be suspended on a key already set); a wait that begins after its event
  was pruned waits for a new signal, or its timeout.
* **Dependencies.** A job may wait for others (``EnqueueRequest.after``: existing job ids,
  or ``After(index=i)`` for an earlier request of the same batch). It starts ``pending``
  (active, never claimed) and becomes due (``available``, or ``scheduled`` until its
  ``run_at``) in the same atomic write that ends its last parent ``succeeded``. A parent that
  ends ``dead`` or ``cancelled`` decides by the edge's :class:`~transports.OnFailure`:
  ``CANCEL`` (the default) ends the dependent ``cancelled`` in that same write (its
  ``last_error`` names the parent; its own dependents follow, as if it had been cancelled),
  ``RUN`` lets it run once every parent ended. The rule is :func:`~transports.lowlevel.verdict`,
  one for every backend. Only a final state decides: a reaped job that is available again
  releases nothing. Enqueue refuses, before writing anything of the batch, a parent id no job
  has (:class:`~transports.UnknownDependency`) and an ``index`` naming the request itself or a
  later one (:class:`~transports.DependencyCycle`): a job can only wait for jobs that exist
  before it, so no cycle can be built. A job with parents cannot have a dedupe key. A job
  whose parents already decided starts as they say (due, or cancelled at once). Operators:
  ``cancel``/``cancel_jobs`` of a ``pending`` job end it (and settle its dependents), and
  ``discard_jobs`` does not take one (it never ran to fail); ``retry_jobs`` of a final parent
  opens its edges again (its dependents that have not started yet, pending or due, wait for
  it again; one that already started is not held back, its own retries run as usual;
  dependents already cancelled stay so until retried themselves), a retried
  dependent waits (``pending``) for its parents still active, and ``retry_jobs`` skips a
  dependent a failed parent cancels (retry the parent first: calling again until ``[]``
  takes the chain in order) and never takes a ``pending`` job; ``delete_jobs`` of an active
  parent counts as its cancellation for its dependents (a deleted final parent's state stays
  on its edges). ``list_edges`` reads the graph.
* **Workflows.** ``EnqueueRequest.workflow`` (a label) groups jobs: ``JobFilter(workflow=)``
  lists and acts on them (a whole workflow is cancelled with ``cancel_jobs``), and
  ``list_workflows`` counts each one's jobs by state. ``cleanup`` deletes a workflow's jobs
  only once every one of them is final and finished before its cutoff, all in the same call
  as far as ``limit`` allows.
* **Checkpoints.** Every method is a checkpoint (it yields to the event loop at least once).

What operators watch (the "observing" operations, at the end of the class):

* **Nodes.** Each running node registers a :class:`~transports.NodeInfo` (id, host, pid,
  queues, slots, version, start, heartbeat interval) and heartbeats; the store stamps
  ``last_seen`` with its own now at each. A node is *alive* while fewer than three heartbeats
  are overdue (:meth:`~transports.NodeInfo.is_alive`) and *gone* after; a clean shutdown
  forgets it, and the maintenance leader prunes nodes not seen for a day.
* **Leaders.** ``list_leaders`` shows who holds each leader lease (``cron``, ``maintenance``).
* **History.** One :class:`~transports.QueueStats` row per queue and minute: counters
  (succeeded, failed, dead, cancelled, stale finalizes refused, leases lost mid-run, jobs
  reclaimed, dedupe folds) and the wait, run-time and recovery-time histograms. Every figure is a sum:
  each node adds its own increments (``add_stats``, an additive upsert), the store itself adds
  the dedupe folds of each enqueue, and percentiles come from the merged fixed-bucket
  histograms (so no leader has to compute them, and no increment is lost when nodes come and
  go). The maintenance leader prunes rows past their retention (``prune_stats``).
"""

from __future__ import annotations

import abc
from collections.abc import Sequence
from types import TracebackType
from typing import Self

import anyio.lowlevel

from ._observed import NodeInfo, QueueStats
from ._records import (
    DEFAULT_MAX_PAYLOAD_BYTES,
    DEFAULT_MAX_RESULT_BYTES,
    CancelResult,
    Counts,
    Edge,
    EnqueueRequest,
    EnqueueResult,
    FinalizeRequest,
    FinalizeResult,
    Job,
    JobFilter,
    JsonValue,
    KeyLimit,
    LeaderLease,
    Lease,
    PartitionInfo,
    QueueConfig,
    Reclaimed,
    RenewRequest,
    RenewResult,
    Signal,
    SignalResult,
    Step,
    StepResult,
    TimeSource,
    WorkflowSummary,
)

__all__ = ["Transport"]


class Transport(abc.ABC):
    """Job storage: enqueue, claim, renew, finalize, reap, cancel, leader leases, wake-ups.

    A transport is an async resource: ``async with transport:`` opens it (connecting and, for
    SQL backends, migrating the schema when allowed) and closes it; ``aclose()`` is idempotent.
    One transport object may be shared by any number of tasks of one event loop.

    Attributes:
        clock: where "now" comes from, or None for the backend's own clock.
        max_payload_bytes: longest accepted JSON payload, in bytes.
        max_result_bytes: longest accepted JSON result (``Complete.result``), in bytes.
    """

    clock: TimeSource | None
    max_payload_bytes: int = DEFAULT_MAX_PAYLOAD_BYTES
    max_result_bytes: int = DEFAULT_MAX_RESULT_BYTES

    # --- lifecycle ------------------------------------------------------------------------

    async def open(self) -> None:
        """Connect and prepare the store. Called by ``__aenter__``; a second call is harmless.

        Raises:
            ConnectionLost: the store cannot be reached.
            SchemaVersionMismatch: the schema is not this code's and may not be migrated.
            StoreNotFound: the transport was built with ``create=False`` and there is no store
                (SQLite file, PostgreSQL schema) to open; nothing was created.
        """
        await anyio.lowlevel.checkpoint()

    @abc.abstractmethod
    async def aclose(self) -> None:
        """Release connections and wake every ``wait_for_work`` caller. Idempotent."""

    async def __aenter__(self) -> Self:
        await self.open()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()

    # --- producing ------------------------------------------------------------------------

    async def enqueue(self, request: EnqueueRequest) -> EnqueueResult:
        """Add one job. See :meth:`enqueue_many`."""
        (result,) = await self.enqueue_many([request])
        return result

    @abc.abstractmethod
    async def enqueue_many(self, requests: Sequence[EnqueueRequest]) -> list[EnqueueResult]:
        """Add jobs, all or none, returning one result per request in order.

        A job with ``run_at`` (or ``delay``) in the future starts ``scheduled``, else
        ``available``. A request whose ``dedupe_key`` matches an *active* job (scheduled,
        available or running) of the same queue adds nothing and returns that job's id with
        ``deduplicated=True``; once that job is final the key is free again. Two requests of one
        batch with the same key fold into the first. Wakes ``wait_for_work`` callers of the
        queues that got an available job. Each fold adds one to the ``deduplicated`` figure of
        its queue's history row for the current minute, in the same atomic write.

        Raises:
            PayloadNotSerializable: a payload is not JSON.
            PayloadTooLarge: a payload is over ``max_payload_bytes``.
            InvalidQueueName: (from ``EnqueueRequest``) a bad queue or kind name.
            InvalidRequest: (from ``EnqueueRequest``) a bad priority, delay, ``run_at``,
                ``max_attempts`` or dedupe key; or ``requests`` is not a sequence of them.
        """

    # --- working --------------------------------------------------------------------------

    @abc.abstractmethod
    async def claim(self, queue: str, *, owner: str, limit: int, ttl: float) -> list[Lease]:
        """Lease up to ``limit`` due jobs of ``queue`` to ``owner`` for ``ttl`` seconds.

        Due jobs are ``available`` ones and ``scheduled`` ones whose ``run_at`` has passed (a
        ``pending`` job is never due),
        taken by ``priority`` (lower first), then ``run_at``, then id. Each job goes to exactly
        one claimant per attempt, however many claim at once. Claimed jobs become ``running``
        with ``attempt + 1``, ``lease_owner = owner``, expiry ``now + ttl`` and a fresh token.
        A paused queue yields nothing. Does not wait for work: returns ``[]`` when none is due.

        With limits (see *Flow control* above), the candidates are the first ``limit`` due
        jobs whose key was not full when the claim began (at its concurrency limit, its rate
        window full, or cooling down), and of those each key starts at most its free slots
        (the fewer of its free concurrency slots and the starts left in its window); every job passed over stays due, its attempt unspent.
        So a claim may return fewer than ``limit`` leases while other due jobs remain (the
        next claim, which no longer sees the full key's jobs as candidates, takes those).

        A queue with due partitioned jobs is claimed in fair-share order (see *Fair share*
        above), and its leases come back in that order; otherwise in claim order.

        Each lease carries ``lost_at``: the expiry of the previous holder's lease when reap
        took it back and no run has ended since, else None (see *Recovery* above).
        A queue whose config sets ``global_concurrency`` starts, of those, only as many as
        its free cluster-wide slots (``global_concurrency`` minus the queue's live leases),
        first in claim order; it is enforced as atomically as a key's limit (the claim
        locks the queue's config row on PostgreSQL).

        Raises:
            InvalidQueueName: ``queue`` is not a valid name.
            InvalidRequest: a bad ``owner`` label, ``limit`` or ``ttl``.
        """

    @abc.abstractmethod
    async def renew(self, requests: Sequence[RenewRequest], *, ttl: float) -> list[RenewResult]:
        """Extend leases to ``now + ttl``, one result per request in order.

        ``RENEWED`` when the token still owns the running job and its lease has not expired;
        ``CANCEL_REQUESTED`` likewise, when a cancel was asked for (the lease is renewed so the
        worker can finalize it); ``LOST`` otherwise (expired, reclaimed, finished, unknown job).
        An expired lease is never revived, even if nobody reaped it yet. A lease named twice
        gets the answer of its first occurrence.

        Raises:
            InvalidRequest: a bad ``ttl``, or ``requests`` is not a sequence of
                :class:`~transports.lowlevel.RenewRequest`.
        """

    @abc.abstractmethod
    async def finalize(self, requests: Sequence[FinalizeRequest]) -> list[FinalizeResult]:
        """End claims, one result per request in order; each is fenced by its token.

        ``APPLIED`` when the token still owns the running job (even a lease that expired but
        was not yet reaped: nobody else holds it); the job then becomes ``succeeded``
        (Complete), ``scheduled``/``available`` at ``run_at`` (Retry, or ``dead`` when
        ``attempt >= max_attempts``), the same without spending an attempt (Snooze),
        ``dead`` (Discard), ``cancelled`` (Cancel), ``available`` now with the attempt given
        back (Release), or ``suspended`` on its event key with the attempt given back
        (Suspend; ``available`` now when the event is set already, due at ``run_at`` when
        that has passed). ``STALE`` when the token no longer owns it: nothing changes. A lease
        named twice is applied once, with its first occurrence's outcome; the later ones are
        ``STALE``. An applied ``Complete`` stores its ``result`` with the job (see *Results*
        above); every finalize that ends a job (whatever its state) wakes the
        ``wait_for_jobs`` callers of that job.

        Raises:
            ResultNotSerializable: a ``Complete.result`` is not JSON (nothing is written).
            ResultTooLarge: a ``Complete.result`` is over ``max_result_bytes`` (nothing is
                written).
            InvalidRequest: ``requests`` is not a sequence of
                :class:`~transports.lowlevel.FinalizeRequest`.
        """

    @abc.abstractmethod
    async def reap(self, *, limit: int = 1000) -> list[Reclaimed]:
        """Take back up to ``limit`` running jobs whose lease expired, oldest expiry first.

        Each becomes ``available`` again while attempts remain (keeping the lease's expiry as
        its lost time, see *Recovery* above), ``dead`` when they are exhausted, or
        ``cancelled`` when its cancel was requested. Its old token is stale from then on. Returns what was reclaimed and who lost it. Wakes waiters of those queues.
        """

    @abc.abstractmethod
    async def cancel(self, job_id: int) -> CancelResult:
        """Cancel a job: a waiting one ends ``cancelled`` now; a running one gets a request.

        Raises:
            JobNotFound: no job has that id.
        """

    # --- steps and signals ----------------------------------------------------------------

    @abc.abstractmethod
    async def record_step(
        self, job_id: int, *, token: int, name: str, value: JsonValue
    ) -> StepResult:
        """Record step ``name`` of a running job with result ``value``, fenced by ``token``.

        ``RECORDED`` when the token owns the running job and its lease is live
        (``now < lease_expires_at``): the step is stored with the job's attempt and now, or,
        when the job already has a step of that name, the stored one is kept (first value
        wins; a call repeated after a lost reply is harmless). ``STALE`` otherwise (expired,
        reaped, finished, re-claimed, unknown job): nothing is stored.

        Raises:
            InvalidRequest: a bad ``job_id`` or ``token``.
            InvalidStepName: ``name`` is not a label.
            PayloadNotSerializable: ``value`` is not JSON.
            StepTooLarge: ``value`` encodes to more than ``MAX_STEP_BYTES`` bytes.
        """

    @abc.abstractmethod
    async def list_steps(self, job_id: int) -> list[Step]:
        """The recorded steps of a job, by ``recorded_at`` then name; ``[]`` when it has none
        or does not exist.

        Raises:
            InvalidRequest: a bad ``job_id``.
        """

    @abc.abstractmethod
    async def signal(self, key: str, value: JsonValue = None) -> SignalResult:
        """Set the event ``key`` to ``value`` and wake the jobs suspended on it, atomically.

        When the event is not set yet it is stored (``stored=True``) and every job
        ``suspended`` on ``key`` becomes ``available`` now (``woken``, their ids) and their
        queues' waiters are woken. When it is set already nothing changes (``stored=False``,
        nobody woken): the first value wins.

        Raises:
            InvalidStepName: ``key`` is not an identifier.
            PayloadNotSerializable: ``value`` is not JSON.
            StepTooLarge: ``value`` encodes to more than ``MAX_STEP_BYTES`` bytes.
        """

    @abc.abstractmethod
    async def get_signal(self, key: str) -> Signal | None:
        """The event ``key`` as set by its first ``signal``, or None while it is not set.

        Raises:
            InvalidStepName: ``key`` is not an identifier.
        """

    @abc.abstractmethod
    async def prune_signals(self, *, before: float, limit: int = 10_000) -> int:
        """Delete up to ``limit`` events set before ``before``, oldest first; how many went.

        Raises:
            InvalidRequest: ``before`` is not a finite number, or ``limit`` is not an int >= 1.
        """

    # --- results --------------------------------------------------------------------------

    @abc.abstractmethod
    async def prune_results(self, *, finished_before: float, limit: int = 10_000) -> int:
        """Clear the result of up to ``limit`` succeeded jobs finished before
        ``finished_before``, oldest finish first; how many were cleared.

        The jobs stay as they are but for their result (``Job.result`` reads None after);
        a job already without one is not counted. A job that some job still active waits for
        (``after=``) keeps its result (see *Results*).

        Raises:
            InvalidRequest: ``finished_before`` is not a finite number, or ``limit`` is not an
                int >= 1.
        """

    # --- leadership -----------------------------------------------------------------------

    @abc.abstractmethod
    async def acquire_leader(self, name: str, *, holder: str, ttl: float) -> LeaderLease | None:
        """Take or keep leadership of ``name`` for ``ttl`` seconds.

        Succeeds when nobody holds it, the lease expired, or ``holder`` already holds it (then
        it is renewed and keeps its epoch). A change of holder increments the epoch. Returns
        None when another holder's lease is still live. At most one holder is live at a time.

        Raises:
            InvalidQueueName: ``name`` is not a valid name.
        """

    @abc.abstractmethod
    async def release_leader(self, name: str, *, holder: str) -> bool:
        """Give up leadership of ``name`` if ``holder`` holds it; True when it did."""

    @abc.abstractmethod
    async def get_cursor(self, name: str) -> float | None:
        """The value of the named cursor (e.g. a cron schedule's last fired tick), or None."""

    @abc.abstractmethod
    async def advance_cursor(self, name: str, *, expected: float | None, new: float) -> bool:
        """Compare-and-set the named cursor from ``expected`` (None: unset) to ``new``.

        True when the cursor held ``expected`` and now holds ``new``; False (nothing changed)
        otherwise. Of several callers racing from the same ``expected``, exactly one wins:
        the cron leader uses this so a tick fires at most once even with two leaders.

        Raises:
            InvalidQueueName: ``name`` is not a valid name.
        """

    # --- waiting --------------------------------------------------------------------------

    @abc.abstractmethod
    async def wait_for_work(self, queues: Sequence[str]) -> None:
        """Wait until a job of one of ``queues`` may have become claimable.

        Returns on a wake-up from this process's enqueue/finalize/reap or, on PostgreSQL,
        from any process (LISTEN/NOTIFY). A queue's wake-up that came while nobody waited on
        it is kept: the next wait on that queue returns at once (a claimer busy claiming when
        work arrived does not sleep past it). Wake-ups can still be missed (another process on
        SQLite, a dropped connection), so callers bound the wait with their own clock and poll
        on timeout. Spurious returns are allowed. Returns at once after ``aclose()``.
        """

    @abc.abstractmethod
    async def wait_for_jobs(self, job_ids: Sequence[int]) -> None:
        """Wait until one of ``job_ids`` may have ended (become succeeded, cancelled or dead).

        Returns on a wake-up from this process's finalize, reap, cancel or operator action
        that ended one of them or, on PostgreSQL, from any process (``NOTIFY``; on SQLite
        other processes' commits are seen by the watcher). As with :meth:`wait_for_work`,
        wake-ups can be missed and spurious returns are allowed: callers read the job after
        each return and bound the wait with their own clock. Returns at once after
        ``aclose()``.

        Raises:
            InvalidRequest: ``job_ids`` is not a sequence of job ids.
        """

    # --- operating ------------------------------------------------------------------------

    @abc.abstractmethod
    async def get_queue_config(self, queue: str) -> QueueConfig:
        """The queue's settings (defaults when never set)."""

    @abc.abstractmethod
    async def set_queue_config(self, config: QueueConfig) -> None:
        """Store a queue's settings; un-pausing wakes its waiters.

        ``QueueConfig`` refuses, when built, a value no node could honour.

        Raises:
            InvalidRequest: ``config`` is not a :class:`~transports.QueueConfig`.
        """

    @abc.abstractmethod
    async def list_queue_configs(self) -> list[QueueConfig]:
        """Every queue that has stored settings, by name."""

    @abc.abstractmethod
    async def set_limit(
        self,
        key: str,
        *,
        concurrency: int | None = None,
        rate: int | None = None,
        per: float | None = None,
    ) -> None:
        """Set the limits of concurrency key ``key``, cluster-wide, replacing its old ones.

        ``concurrency`` is the most jobs with that key holding a live lease at any moment
        (0 holds them all); ``rate`` the most starts of its jobs in any window of ``per``
        seconds (see *Flow control* above). A limit left None is none; with both None the
        key is no longer limited (a live cool-down stays). Takes effect for every claim that
        starts after this returns. Removing or raising a limit wakes the waiters of every
        queue.

        Raises:
            InvalidRequest: ``key`` is not a label; ``concurrency`` is not None or an
                integer from 0 to 2**31 - 1; ``rate`` is not None or an integer from 1 to
                2**31 - 1; ``per`` is not a number of seconds above 0 and at most
                ``MAX_RATE_WINDOW``; or only one of ``rate`` and ``per`` is given.
        """

    @abc.abstractmethod
    async def list_limits(self) -> list[KeyLimit]:
        """Every key that has a limit or a live cool-down, by key, with its live running
        jobs, its waiting jobs and its starts in the current window."""

    @abc.abstractmethod
    async def list_partitions(
        self, queue: str, *, after: str | None = None, limit: int = 100
    ) -> list[PartitionInfo]:
        """Up to ``limit`` fair-share partitions of ``queue`` that have waiting jobs (the
        named ones: a queue's unpartitioned jobs are not listed), by key, those after
        ``after`` when given: a keyset over every partition. Each counts its waiting jobs up
        to ``MAX_PARTITION_COUNT`` and its running ones, and tells its last turn.

        Raises:
            InvalidQueueName: ``queue`` is not a valid name.
            InvalidRequest: a bad cursor or limit.
        """

    @abc.abstractmethod
    async def reopens_in(self, queue: str) -> float | None:
        """Seconds from now until a key held by its rate or a cool-down reopens, or None.

        The least wait, over every key whose rate window is full now or that is cooling
        down, until a claim could start one more of its jobs (the window slides past a
        start, the cool-down ends). None when no key is so held: a key held by its
        concurrency reopens by a finalize or an expiry, which the claimers learn from
        ``wait_for_work`` and their own lease clock. Keys of any queue may count (a
        shorter answer is allowed, never a longer one), so a claimer of ``queue`` that
        waits at most this long for work never sleeps past a start it could have made.

        Raises:
            InvalidQueueName: ``queue`` is not a valid name.
        """

    @abc.abstractmethod
    async def cleanup(
        self, *, finished_before: float, queue: str | None = None, limit: int = 10_000
    ) -> int:
        """Delete up to ``limit`` final jobs (succeeded, cancelled, dead) finished before the time.

        Returns how many were deleted. Active jobs are never touched.
        """

    @abc.abstractmethod
    async def counts(self, queue: str | None = None) -> list[Counts]:
        """Jobs per state for each queue that has any (or just ``queue``), by queue name."""

    @abc.abstractmethod
    async def get(self, job_id: int) -> Job:
        """One job.

        Raises:
            JobNotFound: no job has that id.
        """

    @abc.abstractmethod
    async def list_jobs(
        self,
        where: JobFilter | None = None,
        *,
        after_id: int | None = None,
        before_id: int | None = None,
        newest_first: bool = False,
        limit: int = 100,
    ) -> list[Job]:
        """Up to ``limit`` jobs matching ``where`` (None: every job), by id.

        Keyset pagination: only ids ``> after_id`` and ``< before_id`` (each None: no bound).
        Oldest first, or newest first with ``newest_first``; the next page of a newest-first
        listing is ``before_id=`` the last id seen, of an oldest-first one ``after_id=``.

        Raises:
            InvalidRequest: ``where`` is not a :class:`~transports.JobFilter`, or a bad cursor,
                ``newest_first`` or ``limit``.
        """

    @abc.abstractmethod
    async def retry_jobs(self, where: JobFilter, *, limit: int = 1000) -> list[int]:
        """Run matching ``dead``, ``cancelled`` and ``scheduled`` jobs again, now.

        Each becomes ``available`` at once with a fresh budget: ``attempt`` back to 0 (so it
        gets ``max_attempts`` more runs), its cancel request, ``finished_at`` and its dedupe
        key cleared (the key may belong to a newer job by now), its error history and
        ``last_error`` kept. Other states (available, running, succeeded) are skipped. Wakes
        the waiters of the queues that got jobs. Returns the ids retried, lowest first.

        Raises:
            InvalidRequest: ``where`` is not a :class:`~transports.JobFilter`, or a bad
                ``limit``.
        """

    @abc.abstractmethod
    async def discard_jobs(self, where: JobFilter, *, reason: str, limit: int = 1000) -> list[int]:
        """End matching waiting (``scheduled`` or ``available``) jobs as ``dead``.

        Each gets ``finished_at`` now, ``last_error = reason`` and an
        :class:`~transports.AttemptError` of type ``Discarded`` (owner None) with that reason.
        Other states are skipped. Returns the ids discarded, lowest first.

        Raises:
            InvalidRequest: ``where`` is not a :class:`~transports.JobFilter`, ``reason`` is
                not a string, or a bad ``limit``.
        """

    @abc.abstractmethod
    async def delete_jobs(self, where: JobFilter, *, limit: int = 1000) -> list[int]:
        """Delete matching jobs that are final or waiting; ``running`` ones are skipped.

        A deleted job is gone (``get`` raises ``JobNotFound``); its dedupe key is free.
        Returns the ids deleted, lowest first.

        Raises:
            InvalidRequest: ``where`` is not a :class:`~transports.JobFilter`, or a bad
                ``limit``.
        """

    @abc.abstractmethod
    async def cancel_jobs(self, where: JobFilter, *, limit: int = 1000) -> list[int]:
        """Cancel matching active jobs, as :meth:`cancel` does each one.

        A waiting job ends ``cancelled`` now; a running one gets its cancel request (its
        heartbeat sees it and the worker ends it). A running job already asked to cancel, and
        every final job, is skipped. Returns the ids changed, lowest first.

        Raises:
            InvalidRequest: ``where`` is not a :class:`~transports.JobFilter`, or a bad
                ``limit``.
        """

    @abc.abstractmethod
    async def list_edges(
        self, job_ids: Sequence[int] | None = None, *, workflow: str | None = None
    ) -> list[Edge]:
        """The dependencies of ``job_ids`` (as children or parents) and/or of the jobs of
        ``workflow`` (as children), by child then parent (see *Dependencies* above).

        Raises:
            InvalidRequest: neither is given, more than 10,000 ids, a bad id or workflow.
        """

    @abc.abstractmethod
    async def list_workflows(
        self, *, workflow: str | None = None, after: str | None = None, limit: int = 100
    ) -> list[WorkflowSummary]:
        """Up to ``limit`` workflows that have jobs (just ``workflow``, or every one whose
        name sorts after ``after``), by name, each with its jobs counted by state (as jobs
        read: a due scheduled job is available).

        Raises:
            InvalidRequest: a bad workflow, cursor or limit.
        """

    # --- observing ------------------------------------------------------------------------

    @abc.abstractmethod
    async def register_node(self, info: NodeInfo) -> NodeInfo:
        """Store (insert or replace) a node's registration; returns it as stored.

        Every field is replaced by ``info``'s except ``last_seen``, which becomes now.

        Raises:
            InvalidRequest: ``info`` is not a :class:`~transports.NodeInfo` (whose fields
                were checked when it was built).
        """

    @abc.abstractmethod
    async def node_heartbeat(self, node_id: str) -> bool:
        """Set the node's ``last_seen`` to now; False (nothing changed) when it is not
        registered (forgotten or pruned: the node registers again).

        Raises:
            InvalidRequest: ``node_id`` is not a label.
        """

    @abc.abstractmethod
    async def forget_node(self, node_id: str) -> bool:
        """Remove a node's registration (its clean shutdown); True when there was one.

        Raises:
            InvalidRequest: ``node_id`` is not a label.
        """

    @abc.abstractmethod
    async def list_nodes(self) -> list[NodeInfo]:
        """Every registered node, alive or gone, by id. A stored row no
        :class:`~transports.NodeInfo` can hold (written by another tool) is skipped."""

    @abc.abstractmethod
    async def prune_nodes(self, *, seen_before: float) -> int:
        """Forget every node whose ``last_seen`` is before ``seen_before``; how many.

        Raises:
            InvalidRequest: ``seen_before`` is not a finite number.
        """

    @abc.abstractmethod
    async def list_leaders(self) -> list[LeaderLease]:
        """Every leader lease that is live now (held and not expired), by name."""

    @abc.abstractmethod
    async def add_stats(self, rows: Sequence[QueueStats]) -> None:
        """Add each row's figures to the stored row of its ``(queue, minute)``, all or none.

        Additive: a row that does not exist yet starts at zero; rows of one batch naming the
        same queue and minute add up; a row of zeros writes nothing. Figures only ever grow
        (until pruned), whatever the order of the calls that add them.

        Raises:
            InvalidRequest: ``rows`` is not a sequence of :class:`~transports.QueueStats`.
        """

    @abc.abstractmethod
    async def list_stats(
        self,
        *,
        queue: str | None = None,
        since: float | None = None,
        until: float | None = None,
    ) -> list[QueueStats]:
        """Stored history rows with ``since <= minute < until`` (a bound left None is open),
        of every queue or just ``queue``, by minute then queue. A stored metric this code
        does not know, or a value out of range, is skipped.

        Raises:
            InvalidQueueName: ``queue`` is not a valid name.
            InvalidRequest: ``since`` or ``until`` is not a finite number.
        """

    @abc.abstractmethod
    async def prune_stats(self, *, before: float) -> int:
        """Delete every history row whose minute is before ``before``; how many
        ``(queue, minute)`` rows went.

        Raises:
            InvalidRequest: ``before`` is not a finite number.
        """
