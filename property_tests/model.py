"""The transport contract as a small, obviously correct Python model, and the lease ledger.

Two independent oracles check every answer a real transport gives:

* :class:`ReferenceModel` knows what each call must return, step by step, from the contract in
  ``transports/_base.py``. It is plain dictionaries and sorted lists: no heaps, no indexes, no
  time travel. Each ``apply_*`` method checks the transport's answer and then moves the model.
* :class:`Ledger` knows only what the transport *said* (every lease it minted, renewed,
  finalized, reaped; every leader grant) and checks the invariants of issue 5 on that history and
  on the transport's own job table. It makes no prediction, so a mistake in the model cannot hide
  a broken lease.

Every failed check raises :class:`Violation`, naming the property it breaks.
"""

from __future__ import annotations

import copy
import dataclasses
from collections import Counter
from collections.abc import Iterable, Sequence

from transports import (
    AttemptError,
    CancelResult,
    Counts,
    EnqueueRequest,
    EnqueueResult,
    Job,
    JobState,
)
from transports.lowlevel import (
    MAX_ERROR_MESSAGE,
    MAX_ERRORS,
    Cancel,
    Complete,
    Discard,
    FinalizeRequest,
    FinalizeResult,
    LeaderLease,
    Lease,
    Outcome,
    Reclaimed,
    Release,
    RenewRequest,
    RenewResult,
    Retry,
    Snooze,
)

__all__ = [
    "ATTEMPTS_BOUNDED",
    "COOL_DOWN_HELD",
    "CURSOR_CAS",
    "DEDUPE_EXACT",
    "EXPIRED_RECLAIMABLE",
    "FRESH_TOKEN",
    "JOBS_CONSERVED",
    "KEY_LIMIT_HELD",
    "LINEARIZABLE",
    "MATCHES_MODEL",
    "ONE_CLAIMANT",
    "ONE_LEADER",
    "PROPERTIES",
    "RATE_HELD",
    "REAP_ONLY_EXPIRED",
    "SINGLE_LIVE_LEASE",
    "STALE_TOKEN_INERT",
    "Ledger",
    "ModelJob",
    "ReferenceModel",
    "Violation",
]

# --- the properties ----------------------------------------------------------------------

SINGLE_LIVE_LEASE = "at most one unexpired lease per job at any instant"
ONE_CLAIMANT = "a claim never hands one job to two claimants"
FRESH_TOKEN = "every claim mints a token never used before for that job"
JOBS_CONSERVED = "every enqueued job is in exactly one state and none disappears"
ATTEMPTS_BOUNDED = "attempts count the claims that count and never exceed max_attempts"
STALE_TOKEN_INERT = "a stale token never changes anything"
EXPIRED_RECLAIMABLE = "a lease past its expiry is reclaimable; its holder's renew is refused"
REAP_ONLY_EXPIRED = "the reaper takes back only expired leases"
DEDUPE_EXACT = "dedupe folds exactly while the first job is active"
ONE_LEADER = "at most one leader at a time, and the epoch grows on every hand-over"
CURSOR_CAS = "a cursor moves only from the value it holds"
MATCHES_MODEL = "every answer matches the reference model"
LINEARIZABLE = "concurrent calls act as the same calls in some sequential order"
KEY_LIMIT_HELD = "a claim never leaves a key (or a capped queue) more live leases than its limit"
RATE_HELD = "no window of a key's rate (per seconds) holds more starts of the key than its rate"
COOL_DOWN_HELD = "a key cooled down by an applied finalize starts nothing before its time"

PROPERTIES = (
    SINGLE_LIVE_LEASE,
    ONE_CLAIMANT,
    FRESH_TOKEN,
    JOBS_CONSERVED,
    ATTEMPTS_BOUNDED,
    STALE_TOKEN_INERT,
    EXPIRED_RECLAIMABLE,
    REAP_ONLY_EXPIRED,
    DEDUPE_EXACT,
    ONE_LEADER,
    CURSOR_CAS,
    MATCHES_MODEL,
    LINEARIZABLE,
    KEY_LIMIT_HELD,
    RATE_HELD,
    COOL_DOWN_HELD,
)


class Violation(AssertionError):
    """A transport broke a property; ``prop`` names which one.

    Args:
        prop: one of the property sentences above.
        detail: what was seen.
    """

    def __init__(self, prop: str, detail: str) -> None:
        super().__init__(f"{prop}: {detail}")
        self.prop = prop
        self.detail = detail


def _expect(condition: bool, prop: str, detail: str) -> None:
    if not condition:
        raise Violation(prop, detail)


# --- the reference model -----------------------------------------------------------------

_WAITING = (JobState.SCHEDULED, JobState.AVAILABLE)


@dataclasses.dataclass
class ModelJob:
    """One job as the contract says it must be."""

    id: int
    kind: str
    queue: str
    payload: object
    priority: int
    run_at: float
    max_attempts: int
    dedupe_key: str | None
    created_at: float
    concurrency_key: str | None = None
    partition_key: str | None = None
    waiting: bool = True  # scheduled or available; which one is decided by run_at and now
    state: JobState = JobState.SCHEDULED  # meaningful only when not waiting
    attempt: int = 0
    token: int | None = None  # the token of the live claim while running
    lease_owner: str | None = None
    lease_expires_at: float | None = None
    cancel_requested: bool = False
    last_error: str | None = None
    finished_at: float | None = None
    tokens: set[int] = dataclasses.field(default_factory=set)  # every token ever minted
    started_at: float | None = None  # the latest claim's time
    errors: list[AttemptError] = dataclasses.field(default_factory=list)  # oldest first
    result: object = None  # the applied Complete's result

    def record(
        self, kind: str, message: str, traceback: str | None, owner: str | None, now: float
    ) -> None:
        """Append an error to the history, keeping the newest MAX_ERRORS."""
        self.errors.append(
            AttemptError(
                attempt=self.attempt,
                at=now,
                owner=owner,
                type=kind,
                message=message[:MAX_ERROR_MESSAGE],
                traceback=traceback,
            )
        )
        del self.errors[:-MAX_ERRORS]

    def shown(self, now: float) -> JobState:
        """The state a reader sees at ``now`` (a due scheduled job reads as available)."""
        if self.waiting:
            return JobState.SCHEDULED if self.run_at > now else JobState.AVAILABLE
        return self.state

    @property
    def active(self) -> bool:
        return self.waiting or self.state is JobState.RUNNING

    @property
    def running(self) -> bool:
        return not self.waiting and self.state is JobState.RUNNING

    def due(self, now: float) -> bool:
        return self.waiting and self.run_at <= now


@dataclasses.dataclass
class _ModelLeader:
    holder: str | None
    epoch: int
    expires_at: float


class ReferenceModel:
    """The contract of ``transports/_base.py`` over dictionaries.

    Each ``apply_*`` method takes the call's arguments, ``now`` and the transport's answer,
    raises :class:`Violation` (``MATCHES_MODEL``) when the answer is not the one the contract
    demands, and otherwise moves the model as the call moved the store.
    """

    def __init__(self) -> None:
        self.jobs: dict[int, ModelJob] = {}
        self.leaders: dict[str, _ModelLeader] = {}
        self.cursors: dict[str, float] = {}
        self.paused: set[str] = set()
        self.limits: dict[str, int] = {}  # concurrency key -> its limit
        self.caps: dict[str, int] = {}  # queue -> its cluster-wide cap (global_concurrency)
        self.rates: dict[str, tuple[int, float]] = {}  # concurrency key -> (rate, per)
        self.starts: dict[str, list[float]] = {}  # rate-limited key -> its logged starts
        self.cooldowns: dict[str, float] = {}  # concurrency key -> cooled down until then
        # fair share: (queue, partition or "") -> (tick, position) of its last turn, and the
        # queues whose rotation a race made unknown (racing claims commit in an order the
        # model cannot see): their claims are checked without the rotation
        self.served: dict[tuple[str, str], tuple[int, int]] = {}
        self.tick = 0
        self.fuzzy: set[str] = set()

    def clone(self) -> ReferenceModel:
        """An independent copy (to try one order of concurrent calls)."""
        return copy.deepcopy(self)

    # --- producing ----------------------------------------------------------------------

    def _active_with_key(self, queue: str, key: str) -> ModelJob | None:
        for job in self.jobs.values():
            if job.active and job.queue == queue and job.dedupe_key == key:
                return job
        return None

    def apply_enqueue(
        self, requests: Sequence[EnqueueRequest], now: float, results: Sequence[EnqueueResult]
    ) -> None:
        _expect(
            len(results) == len(requests),
            MATCHES_MODEL,
            f"{len(results)} results for {len(requests)} requests",
        )
        for request, result in zip(requests, results, strict=True):
            if request.dedupe_key is not None:
                existing = self._active_with_key(request.queue, request.dedupe_key)
                if existing is not None:
                    _expect(
                        result.deduplicated and result.job_id == existing.id,
                        MATCHES_MODEL,
                        f"enqueue of key {request.dedupe_key!r} gave {result}; job {existing.id} "
                        "is active with that key",
                    )
                    continue
            _expect(
                not result.deduplicated,
                MATCHES_MODEL,
                f"enqueue gave {result}, but no active job has key {request.dedupe_key!r}",
            )
            _expect(
                result.job_id not in self.jobs,
                MATCHES_MODEL,
                f"enqueue reused job id {result.job_id}",
            )
            run_at = request.run_at if request.run_at is not None else now + request.delay
            self.jobs[result.job_id] = ModelJob(
                id=result.job_id,
                kind=request.kind,
                queue=request.queue,
                payload=request.payload,
                priority=request.priority,
                run_at=run_at,
                max_attempts=request.max_attempts,
                dedupe_key=request.dedupe_key,
                created_at=now,
                concurrency_key=request.concurrency_key,
                partition_key=request.partition_key,
            )

    # --- working ------------------------------------------------------------------------

    def due_in_order(self, queue: str, now: float) -> list[ModelJob]:
        """The jobs a claim of ``queue`` may take at ``now``, in claim order."""
        if queue in self.paused:
            return []
        due = [job for job in self.jobs.values() if job.queue == queue and job.due(now)]
        return sorted(due, key=lambda job: (job.priority, job.run_at, job.id))

    def live(self, key: str, now: float) -> int:
        """Jobs of concurrency key ``key`` holding an unexpired lease at ``now``."""
        return sum(
            1
            for job in self.jobs.values()
            if job.running
            and job.concurrency_key == key
            and job.lease_expires_at is not None
            and job.lease_expires_at > now
        )

    def fair(self, queue: str) -> bool:
        """Whether claims of ``queue`` share it among partitions: a partitioned job waits."""
        return any(
            job.queue == queue and job.waiting and job.partition_key is not None
            for job in self.jobs.values()
        )

    def _free(self, now: float) -> dict[str, int]:
        """The starts each held key may make at ``now`` (<= 0: full)."""
        free = {key: n - self.live(key, now) for key, n in self.limits.items()}
        for key, (rate, _per) in self.rates.items():
            free[key] = min(free.get(key, rate), rate - self.started(key, now))
        for key, until in self.cooldowns.items():
            if until > now:
                free[key] = 0
        return free

    def eligible_in_order(self, queue: str, now: float) -> list[ModelJob]:
        """The due jobs of ``queue`` whose key is not full at ``now``, in claim order."""
        free = self._free(now)
        return [
            job
            for job in self.due_in_order(queue, now)
            if job.concurrency_key not in free or free[job.concurrency_key] > 0
        ]

    def claimable_in_order(self, queue: str, limit: int, now: float) -> list[ModelJob]:
        """What a claim of ``limit`` jobs of ``queue`` takes at ``now`` (see Transport.claim):
        the first ``limit`` due jobs of keys with room (in fair-share order when partitioned
        jobs wait), each key within its free slots."""
        free = self._free(now)
        eligible = self.eligible_in_order(queue, now)
        if self.fair(queue):
            candidates = self._fair_order(queue, eligible, limit)
        else:
            candidates = eligible[:limit]
        taken = []
        for job in candidates:
            key = job.concurrency_key
            if key in free:
                if free[key] <= 0:
                    continue
                free[key] -= 1
            taken.append(job)
        if queue in self.caps:
            taken = taken[: max(0, self.caps[queue] - self.live_in(queue, now))]
        return taken

    def _fair_order(self, queue: str, eligible: list[ModelJob], limit: int) -> list[ModelJob]:
        """The fair-share candidates: the ``limit`` partitions served least recently, their
        jobs round by round, the first ``limit``."""
        parts: dict[str, list[ModelJob]] = {}
        for job in eligible:
            parts.setdefault(job.partition_key or "", []).append(job)
        turns = sorted(parts, key=lambda name: (self.served.get((queue, name), (0, -1)), name))
        rounds = [
            (rank, turn, job)
            for turn, name in enumerate(turns[:limit])
            for rank, job in enumerate(parts[name])
        ]
        rounds.sort(key=lambda item: (item[0], item[1]))
        return [job for _rank, _turn, job in rounds[:limit]]

    def started(self, key: str, now: float) -> int:
        """Logged starts of rate-limited ``key`` in its window ``(now - per, now]``."""
        if key not in self.rates:
            return 0
        per = self.rates[key][1]
        return sum(1 for at in self.starts.get(key, ()) if at > now - per)

    def live_in(self, queue: str, now: float) -> int:
        """Jobs of ``queue`` holding an unexpired lease at ``now``."""
        return sum(
            1
            for job in self.jobs.values()
            if job.running
            and job.queue == queue
            and job.lease_expires_at is not None
            and job.lease_expires_at > now
        )

    def apply_queue_config(self, queue: str, paused: bool, cap: int | None) -> None:
        self.apply_pause(queue, paused)
        if cap is None:
            self.caps.pop(queue, None)
        else:
            self.caps[queue] = cap

    def apply_set_limit(
        self, key: str, concurrency: int | None, rate: int | None = None, per: float | None = None
    ) -> None:
        if concurrency is None:
            self.limits.pop(key, None)
        else:
            self.limits[key] = concurrency
        if rate is None or per is None:
            self.rates.pop(key, None)
            self.starts.pop(key, None)  # a key without a rate keeps no log
        else:
            self.rates[key] = (rate, per)

    def apply_claim(
        self,
        queue: str,
        owner: str,
        limit: int,
        ttl: float,
        now: float,
        leases: Sequence[Lease],
        *,
        subset: bool = False,
    ) -> None:
        """``subset``: the claim raced others of its queue, so it may have skipped due jobs
        they held locked; it must still take only due jobs, in claim order, within its limit."""
        due = [job.id for job in self.due_in_order(queue, now)]
        got = [lease.job_id for lease in leases]
        fair = self.fair(queue)
        if subset and fair:
            # Racing fair claims read one rotation and commit in an order the model cannot
            # see: each took due jobs only, and the rotation is unknown from here on.
            self.fuzzy.add(queue)
        if fair and queue in self.fuzzy:
            eligible = {job.id for job in self.eligible_in_order(queue, now)}
            _expect(
                set(got) <= eligible and len(got) == len(set(got)) <= limit,
                MATCHES_MODEL,
                f"fair claim({queue!r}, limit={limit}) gave jobs {got}; eligible: {sorted(eligible)}",
            )
        elif subset:
            in_order = [job_id for job_id in due if job_id in set(got)]
            _expect(
                got == in_order and len(got) == len(set(got)) <= limit,
                MATCHES_MODEL,
                f"racing claim({queue!r}, limit={limit}) gave jobs {got}; due: {due}",
            )
        else:
            expected = [job.id for job in self.claimable_in_order(queue, limit, now)]
            _expect(
                got == expected,
                MATCHES_MODEL,
                f"claim({queue!r}, limit={limit}) gave jobs {got}, expected {expected}",
            )
        for lease in leases:
            job = self.jobs[lease.job_id]
            _expect(
                lease.token not in job.tokens,
                MATCHES_MODEL,
                f"claim of job {job.id} reused token {lease.token}",
            )
            job.waiting = False
            job.state = JobState.RUNNING
            job.attempt += 1
            job.token = lease.token
            job.tokens.add(lease.token)
            job.lease_owner = owner
            job.lease_expires_at = now + ttl
            job.started_at = now
            if job.concurrency_key in self.rates:
                self.starts.setdefault(job.concurrency_key, []).append(now)
            _expect(
                lease.job.partition_key == job.partition_key,
                MATCHES_MODEL,
                f"lease of job {job.id} in partition {lease.job.partition_key!r}, "
                f"expected {job.partition_key!r}",
            )
            _expect(
                lease.owner == owner and lease.expires_at == now + ttl,
                MATCHES_MODEL,
                f"lease {lease.owner!r} until {lease.expires_at}, expected {owner!r} until {now + ttl}",
            )
            self.check_job(lease.job, now, "the claimed job")
        if fair and leases:  # to the back of the rotation, in the order the claim served them
            self.tick += 1
            served = dict.fromkeys(lease.job.partition_key or "" for lease in leases)
            for pos, name in enumerate(served):
                self.served[(queue, name)] = (self.tick, pos)

    def apply_renew(
        self,
        requests: Sequence[RenewRequest],
        ttl: float,
        now: float,
        results: Sequence[RenewResult],
    ) -> None:
        _expect(
            len(results) == len(requests),
            MATCHES_MODEL,
            f"{len(results)} results for {len(requests)} renewals",
        )
        for request, result in zip(requests, results, strict=True):
            job = self.jobs.get(request.job_id)
            live = (
                job is not None
                and job.running
                and job.token == request.token
                and job.lease_expires_at is not None
                and job.lease_expires_at > now
            )
            if not live:
                expected = RenewResult.LOST
            else:
                assert job is not None
                job.lease_expires_at = now + ttl
                expected = (
                    RenewResult.CANCEL_REQUESTED if job.cancel_requested else RenewResult.RENEWED
                )
            _expect(
                result is expected,
                MATCHES_MODEL,
                f"renew of {request} gave {result}, expected {expected}",
            )

    def apply_finalize(
        self, requests: Sequence[FinalizeRequest], now: float, results: Sequence[FinalizeResult]
    ) -> None:
        _expect(
            len(results) == len(requests),
            MATCHES_MODEL,
            f"{len(results)} results for {len(requests)} finalizes",
        )
        for request, result in zip(requests, results, strict=True):
            job = self.jobs.get(request.job_id)
            owns = job is not None and job.running and job.token == request.token
            expected = FinalizeResult.APPLIED if owns else FinalizeResult.STALE
            _expect(
                result is expected,
                MATCHES_MODEL,
                f"finalize of {request} gave {result}, expected {expected}",
            )
            if owns:
                assert job is not None
                self._finalize(job, request.outcome, now)

    def _finalize(self, job: ModelJob, outcome: Outcome, now: float) -> None:
        if isinstance(outcome, Retry | Discard) and outcome.error is not None:
            kind = outcome.error_type or "Error"
            job.record(kind, outcome.error, outcome.traceback, job.lease_owner, now)
        job.token = None
        job.lease_expires_at = None
        if isinstance(outcome, Snooze) and outcome.cool_down and job.concurrency_key is not None:
            # Applied, so the key cools down, even when a cancel ends the job.
            key = job.concurrency_key
            self.cooldowns[key] = max(outcome.run_at, self.cooldowns.get(key, outcome.run_at))
        if isinstance(outcome, Complete):
            job.result = outcome.result  # only an applied finalize gets here
            self._finish(job, JobState.SUCCEEDED, now)
        elif isinstance(outcome, Discard):
            job.last_error = outcome.error
            self._finish(job, JobState.DEAD, now)
        elif isinstance(outcome, Cancel):
            if outcome.reason is not None:
                job.last_error = outcome.reason
            self._finish(job, JobState.CANCELLED, now)
        elif job.cancel_requested:
            # Cancel wins over retry, snooze and release.
            if isinstance(outcome, Retry) and outcome.error is not None:
                job.last_error = outcome.error
            self._finish(job, JobState.CANCELLED, now)
        elif isinstance(outcome, Retry):
            job.last_error = outcome.error
            if job.attempt >= job.max_attempts:
                self._finish(job, JobState.DEAD, now)
            else:
                job.waiting, job.run_at = True, outcome.run_at
        elif isinstance(outcome, Snooze):
            job.attempt -= 1
            job.waiting, job.run_at = True, outcome.run_at
        else:
            assert isinstance(outcome, Release)
            job.attempt -= 1
            job.waiting = True  # run_at is unchanged, and already past

    @staticmethod
    def _finish(job: ModelJob, state: JobState, now: float) -> None:
        job.waiting = False
        job.state = state
        job.finished_at = now

    def apply_reap(
        self, limit: int, now: float, reclaimed: Sequence[Reclaimed], *, subset: bool = False
    ) -> None:
        """``subset``: the reap overlapped other calls and may skip the rows they held."""
        taken = {item.job_id for item in reclaimed}
        expired = sorted(
            (
                job
                for job in self.jobs.values()
                if job.running
                and job.lease_expires_at is not None
                and job.lease_expires_at <= now
                and (not subset or job.id in taken)
            ),
            key=lambda job: (job.lease_expires_at, job.id),
        )[:limit]
        expected: list[Reclaimed] = []
        for job in expired:
            lost_by = job.lease_owner or ""
            expired_at = job.lease_expires_at
            assert expired_at is not None
            job.token = None
            job.lease_expires_at = None
            last = not job.cancel_requested and job.attempt >= job.max_attempts
            message = f"lease lost by {lost_by}" + (" on the last attempt" if last else "")
            job.record("LeaseExpired", message, None, job.lease_owner, now)
            if job.cancel_requested:
                self._finish(job, JobState.CANCELLED, now)
            elif last:
                job.last_error = message
                self._finish(job, JobState.DEAD, now)
            else:
                job.waiting = True
            expected.append(
                Reclaimed(
                    job_id=job.id,
                    kind=job.kind,
                    queue=job.queue,
                    attempt=job.attempt,
                    lost_by=lost_by,
                    expired_at=expired_at,
                    state=job.shown(now),
                )
            )
        _expect(
            list(reclaimed) == expected,
            MATCHES_MODEL,
            f"reap({limit}) gave {list(reclaimed)}, expected {expected}",
        )

    def apply_cancel(self, job_id: int, now: float, result: CancelResult | None) -> None:
        """``result`` None means the call raised ``JobNotFound``."""
        job = self.jobs.get(job_id)
        if job is None:
            expected = None
        elif not job.active:
            expected = CancelResult.ALREADY_FINAL
        elif job.running:
            job.cancel_requested = True
            expected = CancelResult.REQUESTED
        else:
            job.cancel_requested = True
            self._finish(job, JobState.CANCELLED, now)
            expected = CancelResult.CANCELLED
        _expect(
            result is expected,
            MATCHES_MODEL,
            f"cancel({job_id}) gave {result}, expected {expected}",
        )

    def apply_operator(
        self,
        action: str,
        ids: Sequence[int],
        limit: int,
        reason: str,
        now: float,
        result: Sequence[int],
    ) -> None:
        """An operator's retry, discard or cancel of the jobs ``ids`` (see Transport)."""

        def takes(job: ModelJob) -> bool:
            state = job.shown(now)
            if action == "retry":
                return state in (JobState.DEAD, JobState.CANCELLED, JobState.SCHEDULED)
            if action == "discard":
                return job.waiting
            return job.active and not job.cancel_requested  # cancel

        chosen = [
            self.jobs[job_id]
            for job_id in sorted(set(ids))
            if job_id in self.jobs and takes(self.jobs[job_id])
        ][:limit]
        expected = [job.id for job in chosen]
        _expect(
            list(result) == expected,
            MATCHES_MODEL,
            f"{action}_jobs(ids={list(ids)}, limit={limit}) gave {list(result)}, expected {expected}",
        )
        for job in chosen:
            if action == "retry":
                if not job.waiting:
                    job.dedupe_key = None  # a final job gives up its key
                job.waiting, job.run_at = True, now
                job.attempt = 0
                job.cancel_requested = False
                job.finished_at = None
            elif action == "discard":
                job.record("Discarded", reason, None, None, now)
                job.last_error = reason
                self._finish(job, JobState.DEAD, now)
            else:
                job.cancel_requested = True
                if not job.running:
                    self._finish(job, JobState.CANCELLED, now)

    def apply_pause(self, queue: str, paused: bool) -> None:
        """A config of the queue with only ``paused`` set: it also clears the queue's cap."""
        if paused:
            self.paused.add(queue)
        else:
            self.paused.discard(queue)
        self.caps.pop(queue, None)

    # --- leadership and cursors ---------------------------------------------------------

    def apply_acquire(
        self, name: str, holder: str, ttl: float, now: float, result: LeaderLease | None
    ) -> None:
        current = self.leaders.get(name)
        live = current is not None and current.holder is not None and current.expires_at > now
        expected: LeaderLease | None
        if live and current is not None and current.holder != holder:
            expected = None
        else:
            if current is None:
                current = self.leaders[name] = _ModelLeader(holder=None, epoch=0, expires_at=now)
            if not live:
                current.holder = holder
                current.epoch += 1
            current.expires_at = now + ttl
            expected = LeaderLease(
                name=name, holder=holder, epoch=current.epoch, expires_at=current.expires_at
            )
        _expect(
            result == expected,
            MATCHES_MODEL,
            f"acquire_leader({name!r}, {holder!r}) gave {result}, expected {expected}",
        )

    def apply_release(self, name: str, holder: str, now: float, result: bool) -> None:
        current = self.leaders.get(name)
        expected = current is not None and current.holder == holder and current.expires_at > now
        if expected:
            assert current is not None
            current.holder = None
        _expect(
            result == expected,
            MATCHES_MODEL,
            f"release_leader({name!r}, {holder!r}) gave {result}, expected {expected}",
        )

    def apply_get_cursor(self, name: str, result: float | None) -> None:
        expected = self.cursors.get(name)
        _expect(
            result == expected, CURSOR_CAS, f"cursor {name!r} reads {result}, expected {expected}"
        )

    def apply_advance_cursor(
        self, name: str, expected: float | None, new: float, result: bool
    ) -> None:
        wins = self.cursors.get(name) == expected
        if wins:
            self.cursors[name] = new
        _expect(
            result == wins,
            CURSOR_CAS,
            f"advance_cursor({name!r}, expected={expected}, new={new}) gave {result}; it held {self.cursors.get(name)}",
        )

    # --- reading back -------------------------------------------------------------------

    def check_job(self, seen: Job, now: float, what: str = "job") -> None:
        """Compare a job as the transport shows it with the model's."""
        job = self.jobs.get(seen.id)
        _expect(job is not None, MATCHES_MODEL, f"{what} {seen.id} is unknown to the model")
        assert job is not None
        wanted = {
            "state": job.shown(now),
            "queue": job.queue,
            "kind": job.kind,
            "priority": job.priority,
            "run_at": job.run_at,
            "attempt": job.attempt,
            "max_attempts": job.max_attempts,
            "dedupe_key": job.dedupe_key,
            "concurrency_key": job.concurrency_key,
            "partition_key": job.partition_key,
            "lease_owner": job.lease_owner,
            "lease_expires_at": job.lease_expires_at,
            "cancel_requested": job.cancel_requested,
            "last_error": job.last_error,
            "finished_at": job.finished_at,
            "created_at": job.created_at,
            "started_at": job.started_at,
            "errors": tuple(job.errors),
            "result": job.result,
        }
        got = {name: getattr(seen, name) for name in wanted}
        diff = {name: (got[name], wanted[name]) for name in wanted if got[name] != wanted[name]}
        _expect(not diff, MATCHES_MODEL, f"{what} {seen.id} differs (seen, expected): {diff}")

    def check_table(self, jobs: Sequence[Job], now: float) -> None:
        """Compare the transport's whole job table with the model's."""
        for seen in jobs:
            self.check_job(seen, now)


# --- the ledger of what the transport said ------------------------------------------------


@dataclasses.dataclass
class _LeaseRecord:
    job_id: int
    token: int
    owner: str
    expires_at: float
    open: bool = True  # neither finalized nor reclaimed


@dataclasses.dataclass
class _Grant:
    holder: str
    epoch: int
    expires_at: float
    released: bool = False


_GIVE_BACK = (Snooze, Release)


class Ledger:
    """Every lease and leader grant the transport handed out, and the invariants over them.

    The ledger is fed the transport's answers in the order they took effect; it predicts
    nothing. Its checks are the invariants of issue 5.
    """

    def __init__(self) -> None:
        self.leases: dict[tuple[int, int], _LeaseRecord] = {}
        self.latest: dict[int, _LeaseRecord] = {}  # job id -> its most recent lease
        self.counted: Counter[int] = Counter()  # job id -> claims minus applied give-backs
        self.enqueued: set[int] = set()
        self.cancelling: set[int] = set()  # jobs whose cancel the transport said it requested
        self.grants: dict[str, list[_Grant]] = {}
        self.limits: dict[str, int] = {}  # concurrency key -> its limit, as last set
        self.keys: dict[int, str] = {}  # job id -> its concurrency key, as claims showed it
        self.caps: dict[str, int] = {}  # queue -> its cluster-wide cap, as last set
        self.queues: dict[int, str] = {}  # job id -> its queue, as claims showed it
        self.rates: dict[str, tuple[int, float]] = {}  # key -> (rate, per), as last set
        self.starts: dict[str, list[float]] = {}  # rate-limited key -> every start granted
        self.cooled: dict[str, float] = {}  # key -> the latest end of an applied cool-down

    def clone(self) -> Ledger:
        """An independent copy (to try one order of concurrent calls)."""
        return copy.deepcopy(self)

    def is_live_holder(self, job_id: int, token: int) -> bool:
        """Whether ``token`` is the open, most recent lease of the job (not necessarily unexpired)."""
        record = self.latest.get(job_id)
        return record is not None and record.token == token and record.open

    # --- feeding ------------------------------------------------------------------------

    def enqueued_jobs(self, results: Iterable[EnqueueResult]) -> None:
        for result in results:
            self.enqueued.add(result.job_id)

    def claimed(self, leases: Sequence[Lease], now: float) -> None:
        ids = [lease.job_id for lease in leases]
        _expect(len(set(ids)) == len(ids), ONE_CLAIMANT, f"one claim returned job ids {ids}")
        for lease in leases:
            key = (lease.job_id, lease.token)
            _expect(
                key not in self.leases,
                FRESH_TOKEN,
                f"job {lease.job_id} was claimed again with token {lease.token}",
            )
            _expect(
                lease.job.attempt == self.counted[lease.job_id] + 1
                and lease.job.attempt <= lease.job.max_attempts,
                ATTEMPTS_BOUNDED,
                f"job {lease.job_id} was claimed for attempt {lease.job.attempt} of "
                f"{lease.job.max_attempts} after {self.counted[lease.job_id]} counted claims",
            )
            previous = self.latest.get(lease.job_id)
            if previous is not None and previous.open:
                _expect(
                    previous.expires_at <= now,
                    ONE_CLAIMANT,
                    f"job {lease.job_id} was handed to {lease.owner!r} while {previous.owner!r} "
                    f"held it until {previous.expires_at} (now {now})",
                )
                previous.open = False  # superseded; its holder's calls must now be refused
            record = _LeaseRecord(lease.job_id, lease.token, lease.owner, lease.expires_at)
            self.leases[key] = record
            self.latest[lease.job_id] = record
            self.counted[lease.job_id] += 1
            if lease.job.concurrency_key is not None:
                self.keys[lease.job_id] = lease.job.concurrency_key
            self.queues[lease.job_id] = lease.job.queue
        for queue in sorted({lease.job.queue for lease in leases} & set(self.caps)):
            live = sum(
                1
                for record in self.latest.values()
                if record.open
                and record.expires_at > now
                and self.queues.get(record.job_id) == queue
            )
            _expect(
                live <= self.caps[queue],
                KEY_LIMIT_HELD,
                f"a claim left queue {queue!r} {live} live leases; its cap is {self.caps[queue]}",
            )
        for lease in leases:
            key = lease.job.concurrency_key
            if key is None:
                continue
            _expect(
                self.cooled.get(key, now) <= now,
                COOL_DOWN_HELD,
                f"job {lease.job_id} of key {key!r} started at {now}; the key cools down "
                f"until {self.cooled.get(key)}",
            )
            if key in self.rates:
                self.starts.setdefault(key, []).append(now)
        # Every start of this claim is at now, so checking the window that ends now checks
        # every window: one holding more than the rate would end at one of its starts.
        for key in sorted({lease.job.concurrency_key for lease in leases} & set(self.rates)):
            assert key is not None
            rate, per = self.rates[key]
            window = [at for at in self.starts[key] if at > now - per]
            _expect(
                len(window) <= rate,
                RATE_HELD,
                f"key {key!r} started {len(window)} jobs in ({now - per}, {now}]: "
                f"its rate is {rate} per {per}s",
            )
        started = {lease.job.concurrency_key for lease in leases} & set(self.limits)
        for limited in sorted(k for k in started if k is not None):
            live = self.live(limited, now)
            _expect(
                live <= self.limits[limited],
                KEY_LIMIT_HELD,
                f"a claim left key {limited!r} {live} live leases; "
                f"its limit is {self.limits[limited]}",
            )

    def live(self, key: str, now: float) -> int:
        """The open, unexpired leases the transport granted for jobs of ``key``."""
        return sum(
            1
            for record in self.latest.values()
            if record.open and record.expires_at > now and self.keys.get(record.job_id) == key
        )

    def queue_configured(self, queue: str, cap: int | None) -> None:
        if cap is None:
            self.caps.pop(queue, None)
        else:
            self.caps[queue] = cap

    def limit_set(
        self, key: str, concurrency: int | None, rate: int | None = None, per: float | None = None
    ) -> None:
        if concurrency is None:
            self.limits.pop(key, None)
        else:
            self.limits[key] = concurrency
        if rate is None or per is None:
            self.rates.pop(key, None)
            self.starts.pop(key, None)  # the store forgets the log of a key without a rate
        else:
            self.rates[key] = (rate, per)

    def renewed(self, request: RenewRequest, result: RenewResult, ttl: float, now: float) -> None:
        if result is RenewResult.LOST:
            return
        record = self.leases.get((request.job_id, request.token))
        _expect(
            record is not None and record.open and self.latest[request.job_id] is record,
            STALE_TOKEN_INERT,
            f"renew with the stale token {request.token} of job {request.job_id} gave {result}",
        )
        assert record is not None
        _expect(
            record.expires_at > now,
            EXPIRED_RECLAIMABLE,
            f"renew revived the lease of job {request.job_id} that expired at {record.expires_at} (now {now})",
        )
        record.expires_at = now + ttl

    def finalized(self, request: FinalizeRequest, result: FinalizeResult) -> None:
        if result is FinalizeResult.STALE:
            return
        record = self.leases.get((request.job_id, request.token))
        _expect(
            record is not None and record.open and self.latest[request.job_id] is record,
            STALE_TOKEN_INERT,
            f"finalize with the stale token {request.token} of job {request.job_id} was applied",
        )
        assert record is not None
        record.open = False
        outcome = request.outcome
        key = self.keys.get(request.job_id)
        if isinstance(outcome, Snooze) and outcome.cool_down and key is not None:
            self.cooled[key] = max(outcome.run_at, self.cooled.get(key, outcome.run_at))
        if isinstance(request.outcome, _GIVE_BACK) and request.job_id not in self.cancelling:
            self.counted[request.job_id] -= 1  # a cancel request turns a give-back into cancel

    def cancel_requested(self, job_id: int, result: CancelResult | None) -> None:
        if result is CancelResult.REQUESTED:
            self.cancelling.add(job_id)

    def operated(self, action: str, changed: Sequence[int]) -> None:
        """An operator's action changed these jobs; none of them may be under a live lease
        except for a cancel, which only asks."""
        for job_id in changed:
            record = self.latest.get(job_id)
            running = record is not None and record.open
            if action == "cancel":
                if running:
                    self.cancelling.add(job_id)
                continue
            _expect(
                not running,
                SINGLE_LIVE_LEASE,
                f"{action}_jobs changed job {job_id}, held by {record.owner!r}" if record else "",
            )
            if action == "retry":
                self.counted[job_id] = 0  # a fresh budget
                self.cancelling.discard(job_id)

    def reaped(
        self, reclaimed: Sequence[Reclaimed], limit: int, now: float, *, complete: bool = True
    ) -> None:
        """``complete``: the reap ran alone, so it must leave no expired lease behind."""
        for item in reclaimed:
            record = self.latest.get(item.job_id)
            _expect(
                record is not None and record.open,
                REAP_ONLY_EXPIRED,
                f"reap returned job {item.job_id}, which had no open lease",
            )
            assert record is not None
            _expect(
                record.expires_at <= now,
                REAP_ONLY_EXPIRED,
                f"reap took job {item.job_id} from {record.owner!r} whose lease runs until "
                f"{record.expires_at} (now {now})",
            )
            record.open = False
        if complete and len(reclaimed) < limit:
            left = sorted(r.job_id for r in self.latest.values() if r.open and r.expires_at <= now)
            _expect(not left, EXPIRED_RECLAIMABLE, f"reap left the expired leases of jobs {left}")

    def leader_acquired(
        self, name: str, holder: str, result: LeaderLease | None, now: float
    ) -> None:
        if result is None:
            return
        grants = self.grants.setdefault(name, [])
        rivals = [g for g in grants if g.holder != holder and not g.released and g.expires_at > now]
        _expect(
            not rivals,
            ONE_LEADER,
            f"{holder!r} became leader of {name!r} while {rivals[0].holder!r} held it until "
            f"{rivals[0].expires_at} (now {now})"
            if rivals
            else "",
        )
        mine = [g for g in grants if g.holder == holder and not g.released and g.expires_at > now]
        if mine:
            _expect(
                result.epoch == mine[-1].epoch,
                ONE_LEADER,
                f"{holder!r} renewed {name!r} but the epoch moved {mine[-1].epoch} -> {result.epoch}",
            )
        elif grants:
            top = max(g.epoch for g in grants)
            _expect(
                result.epoch > top,
                ONE_LEADER,
                f"{name!r} changed hands without a new epoch ({top} -> {result.epoch})",
            )
        for grant in grants:
            if grant.holder == holder:
                grant.released = True  # superseded by this grant
        grants.append(_Grant(holder=holder, epoch=result.epoch, expires_at=result.expires_at))

    def leader_released(self, name: str, holder: str, result: bool) -> None:
        if result:
            for grant in self.grants.get(name, []):
                if grant.holder == holder:
                    grant.released = True

    # --- invariants over the transport's table -------------------------------------------

    def check_table(self, jobs: Sequence[Job], counts: Sequence[Counts], now: float) -> None:
        """The invariants that hold at every instant, on what the transport shows."""
        ids = [job.id for job in jobs]
        _expect(len(set(ids)) == len(ids), JOBS_CONSERVED, f"a job is listed twice: {ids}")
        missing = sorted(self.enqueued - set(ids))
        extra = sorted(set(ids) - self.enqueued)
        _expect(
            not missing and not extra,
            JOBS_CONSERVED,
            f"jobs missing {missing}, never enqueued {extra}",
        )
        tally: dict[str, Counter[JobState]] = {}
        active_keys: Counter[tuple[str, str]] = Counter()
        for job in jobs:
            tally.setdefault(job.queue, Counter())[JobState(job.state)] += 1
            _expect(
                0 <= job.attempt <= job.max_attempts and job.attempt == self.counted[job.id],
                ATTEMPTS_BOUNDED,
                f"job {job.id} shows attempt {job.attempt} of {job.max_attempts}; "
                f"{self.counted[job.id]} claims counted",
            )
            running = job.state is JobState.RUNNING
            record = self.latest.get(job.id)
            holds = record is not None and record.open
            _expect(
                running == holds,
                SINGLE_LIVE_LEASE,
                f"job {job.id} is {job.state} but its latest lease is {'open' if holds else 'closed'}",
            )
            if running and record is not None:
                _expect(
                    job.lease_expires_at == record.expires_at and job.lease_owner == record.owner,
                    SINGLE_LIVE_LEASE,
                    f"job {job.id} is leased to {job.lease_owner!r} until {job.lease_expires_at}, "
                    f"but the transport granted {record.owner!r} until {record.expires_at}",
                )
            if job.state.is_active and job.dedupe_key is not None:
                active_keys[(job.queue, job.dedupe_key)] += 1
        doubled = sorted(key for key, n in active_keys.items() if n > 1)
        _expect(not doubled, DEDUPE_EXACT, f"several active jobs share a dedupe key: {doubled}")
        shown = {
            c.queue: Counter({JobState(s): n for s, n in c.by_state.items() if n}) for c in counts
        }
        _expect(
            shown == tally,
            JOBS_CONSERVED,
            f"counts() says {dict(shown)} but the jobs are {dict(tally)}",
        )
        live: Counter[int] = Counter(
            r.job_id for r in self.leases.values() if r.open and r.expires_at > now
        )
        doubled_jobs = sorted(job_id for job_id, n in live.items() if n > 1)
        _expect(
            not doubled_jobs, SINGLE_LIVE_LEASE, f"jobs {doubled_jobs} have two unexpired leases"
        )

    def check_dedupe(
        self,
        requests: Sequence[EnqueueRequest],
        results: Sequence[EnqueueResult],
        before: Sequence[Job],
    ) -> None:
        """An enqueue folded exactly the requests whose key had an active job (``before``)."""
        active = {
            (job.queue, job.dedupe_key): job.id
            for job in before
            if job.state.is_active and job.dedupe_key is not None
        }
        for request, result in zip(requests, results, strict=True):
            if request.dedupe_key is None:
                _expect(
                    not result.deduplicated,
                    DEDUPE_EXACT,
                    f"a request without a key was folded: {result}",
                )
                continue
            key = (request.queue, request.dedupe_key)
            if key in active:
                _expect(
                    result.deduplicated and result.job_id == active[key],
                    DEDUPE_EXACT,
                    f"key {key} belongs to active job {active[key]}, yet enqueue gave {result}",
                )
            else:
                _expect(
                    not result.deduplicated,
                    DEDUPE_EXACT,
                    f"key {key} had no active job, yet enqueue folded it: {result}",
                )
                active[key] = result.job_id
