"""The invariants, checked on every storage call and runtime event while the run goes on.

The :class:`Checker` keeps its own model of every job's lease, fed by the faulty transports
with what the store really did (lost replies included), and by the trace with the runtime's
events. Any call that breaks the contract's fencing is a violation at the moment it happens;
the end of the run adds the checks that need the store itself (see ``_cluster``).

Invariants (their names appear in reports):

* ``no_job_lost``: every job ever enqueued is still in the store.
* ``single_owner``: a job is never claimed while an earlier lease on it is still held.
* ``fenced_finalize``: a finalize is applied only with the job's current token, and a finalize
  with the current token is never refused.
* ``fenced_renew``: a renewal succeeds only with the current token of an unexpired lease.
* ``reap_only_expired``: the reaper takes back only leases that have expired.
* ``attempts_within_bounds``: no claim runs attempt 0 or an attempt past ``max_attempts``.
* ``cron_once_per_tick``: no cron tick fires twice, cluster-wide.
* ``single_leader``: a leader lease has at most one live holder.
* ``recovery_bound``: an orphaned job is re-runnable within ``lease_ttl + reaper_interval`` of
  its holder's last renewal, whenever some node with a reaper was healthy meanwhile.
* ``running_again``: a job reaped back to available starts again within the claim gap (the
  poll interval, or the error backoff if longer) of its reap, plus ``RESTART_SLACK``, while a
  node with a free slot of its queue stayed healthy, its clock unstepped, and made no claim
  that filled both its request and its free slots (older jobs took them). With
  ``recovery_bound``, a holder's death to its job running again is then at most
  ``lease_ttl + reaper_interval`` + that gap. A job claimed meanwhile starts at once. Jobs
  under flow control (a concurrency key or a fair-share partition) and queues whose config was
  set are left out: they may wait by design.
* ``no_stale_start``: a handler starts (``JobClaimed``) only on its job's current claim, while
  that lease is live by the store's clock: a node that stalled between its claim and the
  hand-off gives the job back instead of running it.
* ``operators_spare_leases``: an operator's retry or discard (``--operators``) never changes
  a job that holds a lease; only a cancel reaches one, as a request its heartbeat sees.
* ``all_final_after_drain``: once faults stop, every job becomes final within the tail.
* ``key_limit_held``: no claim leaves a concurrency key more live (unexpired) leases than its
  limit (runs with ``key_limit``).
* ``key_rate_held``: no window of ``per`` seconds holds more than ``rate`` claims of a key
  (runs with ``key_rate``); and no key cooled down by an applied finalize starts before its
  time.
* ``fenced_step``: a step is recorded only under the job's current, live lease, and a record
  under the current live lease is never refused (runs with ``steps``).
* ``step_once``: no attempt claimed after a step's record committed runs that step again
  (only the attempt that had it in hand when its lease was lost may: a zombie, fenced off).
* ``none_left_suspended``: at the end, no job is suspended on an event that was signalled.
* ``parents_first``: a job that waits for others (``after=``) is claimed only once every
  parent succeeded, or, on an ``on_failure="run"`` edge, ended (runs with ``workflows``; a
  job whose parent an operator retried is not held back once started, so it is left out).
* ``workflows_final``: once faults stop, every workflow becomes final within the tail: no
  job of it is left pending behind a parent that ended.
* ``fan_in_once``: a fan-in callback's handler completes once per workflow run: no attempt
  claimed after a completion committed completes it again (an earlier attempt may, if its
  lease was lost meanwhile: a zombie, fenced off); an operator's retry of the callback
  starts a new run.
* ``fan_in_results``: a fan-in callback reads the result of every member that succeeded,
  and None for the others (``on_failure="run"``).
* ``fair_share_held``: while a fair-share partition waits with a job a claim could start, no
  other partition starts jobs in two claims before it starts one (runs with ``partitions``
  and no key limit: each claim serves the partitions that waited longest and sends them to
  the back of the rotation).
* ``node_error``: no node (or the simulator) fails with an unexpected exception.
"""

from __future__ import annotations

import heapq
import math
from collections.abc import Callable, Sequence

import attrs

from actors.jobs import CronFired, FinalizeRefused, JobClaimed, JobLeaseLost
from actors.jobs.lowlevel import SlotStatistics
from transports import EnqueueRequest, EnqueueResult, JobState, JsonValue, OnFailure
from transports.lowlevel import (
    Complete,
    FinalizeRequest,
    FinalizeResult,
    LeaderLease,
    Lease,
    Reclaimed,
    RenewRequest,
    RenewResult,
    Snooze,
    StepResult,
)

from ._trace import Trace, TraceEntry, ViolationFound

__all__ = ["RESTART_SLACK", "Checker", "Health", "NodeSlots", "Violation"]

#: Slack for comparing virtual times that went through an offset and back.
EPSILON = 1e-6
#: Virtual seconds a reaped job may take beyond its node's claim gap to start (``running_again``):
#: a claim, its hand-out and the handler's first line take no virtual time on a healthy node.
RESTART_SLACK = 0.25

#: One live node's slots of one queue: (node slot, node id, the Claimer's statistics).
NodeSlots = tuple[int, str, SlotStatistics]


@attrs.frozen(kw_only=True)
class Violation:
    """A broken invariant: what broke, when, and how to see it again."""

    invariant: str  # one of the names in this module's docstring
    detail: str
    at: float  # seconds after the run's start
    seed: int
    command: str  # the shell command replaying the run
    trace_tail: tuple[str, ...]  # the last events before it, canonical text

    def render(self) -> str:
        """A report of the violation, ending with the replay command."""
        lines = [
            f"VIOLATION of {self.invariant} at t={self.at:.6f}s (seed {self.seed})",
            f"  {self.detail}",
            f"last {len(self.trace_tail)} events:",
            *(f"  {line}" for line in self.trace_tail),
            "replay:",
            f"  {self.command}",
        ]
        return "\n".join(lines)


class Health:
    """When each node slot could not have reaped: down, paused, cut off or with a bad store.

    Reasons nest (a pause during a partition); a node is unhealthy while any is active.
    """

    def __init__(self, nodes: int) -> None:
        self._depth = [0] * nodes
        self._since = [0.0] * nodes
        self._windows: list[list[tuple[float, float]]] = [[] for _ in range(nodes)]
        self._reaper = [False] * nodes
        self._steps: list[list[float]] = [[] for _ in range(nodes)]

    def stepped(self, node: int, now: float) -> None:
        """The node's clock was stepped (a timer it had set may fire that much later)."""
        self._steps[node].append(now)

    def down(self, node: int, now: float) -> None:
        """A reason to be unhealthy starts."""
        if self._depth[node] == 0:
            self._since[node] = now
        self._depth[node] += 1

    def up(self, node: int, now: float, *, grace: float = 0.0) -> None:
        """A reason to be unhealthy ends; its effects last ``grace`` seconds more (a storage
        call that started during a partition still waits for its timeout)."""
        if self._depth[node] == 0:
            return  # already healed by heal_all
        self._depth[node] -= 1
        if self._depth[node] == 0:
            self._windows[node].append((self._since[node], now + grace))
        else:
            self._lingering(node, now + grace)

    def heal_all(self, now: float, *, grace: float = 0.0) -> None:
        """Every reason ends now (faults stopped), its effects lasting ``grace`` seconds more."""
        for node, depth in enumerate(self._depth):
            if depth:
                self._depth[node] = 0
                self._windows[node].append((self._since[node], now + grace))

    def _lingering(self, node: int, until: float) -> None:
        # One reason ended while others go on: keep its after-effects on record.
        self._windows[node].append((self._since[node], until))

    def set_reaper(self, node: int, running: bool) -> None:
        """Whether the node's current incarnation runs a Reaper."""
        self._reaper[node] = running

    def healthy(self, node: int, start: float, end: float) -> bool:
        """True when ``node`` ran a reaper and was healthy during all of ``[start, end]``."""
        return self._reaper[node] and self._unhurt(node, start, end)

    def steady(self, node: int, start: float, end: float) -> bool:
        """True when ``node`` was healthy during all of ``[start, end]`` and its clock was not
        stepped then (its timers fired when they were due)."""
        return self._unhurt(node, start, end) and not any(
            start <= at <= end for at in self._steps[node]
        )

    def _unhurt(self, node: int, start: float, end: float) -> bool:
        if self._depth[node] and self._since[node] <= end:
            return False
        return not any(since <= end and until >= start for since, until in self._windows[node])

    def any_healthy(self, start: float, end: float) -> bool:
        """True when some node ran a healthy reaper during all of ``[start, end]``."""
        return any(self.healthy(node, start, end) for node in range(len(self._depth)))


class _Job:
    """The checker's model of one job's lease."""

    __slots__ = (
        "claimed_at",
        "claimed_by",
        "claims",
        "expires_at",
        "extended_at",
        "flow",
        "id",
        "key",
        "lost_at",
        "max_attempts",
        "orphaned_at",
        "owner",
        "parents",
        "queue",
        "restart_from",
        "token",
    )

    def __init__(self, job_id: int, queue: str, max_attempts: int) -> None:
        self.id = job_id
        self.queue = queue
        self.max_attempts = max_attempts
        self.key: str | None = None  # its concurrency key, as its claims showed it
        self.token: int | None = None  # the live claim's token, None when nobody holds it
        self.owner = ""
        self.expires_at = -math.inf
        self.extended_at = -math.inf  # when the holder last claimed or renewed
        self.orphaned_at: float | None = None  # the expiry of a reaped lease, until re-claimed
        # The last renewal of a reaped lease, until the job's handler starts again.
        self.restart_from: float | None = None
        # The expiry of the newest reaped lease, until the job's handler starts again.
        self.lost_at: float | None = None
        self.parents: tuple[tuple[int, OnFailure], ...] = ()  # its edges, as enqueued
        self.claims = 0
        self.flow = False  # under flow control (a concurrency key or a partition): may wait
        self.claimed_by = ""  # the node of its last claim, and when
        self.claimed_at = -math.inf


@attrs.define
class _Rerun:
    """A reaped job that must start again soon (``running_again``)."""

    job_id: int
    queue: str
    reaped_at: float
    deadline: float
    #: Nodes that had a free slot of the queue at the reap, by id -> (slot, claim gap); a
    #: node leaves it when a claim of its filled its request (all its slots found work).
    free: dict[str, tuple[int, float]]


class Checker:
    """Checks the invariants against what the store did and what the nodes said.

    Args:
        trace: the run's trace; violations are appended to it, runtime events followed.
        seed: the run's seed, for reports.
        command: the replay command, for reports.
        lease_ttl: the Workers' lease TTL (for the recovery bound).
        reaper_interval: the Reapers' interval (for the recovery bound).
        health: the nodes' health history.
        trace_tail: how many trace lines a violation report carries.
    """

    def __init__(
        self,
        trace: Trace,
        *,
        seed: int,
        command: str,
        lease_ttl: float,
        reaper_interval: float,
        health: Health,
        trace_tail: int = 30,
    ) -> None:
        self._trace = trace
        self._seed = seed
        self._command = command
        self.lease_ttl = lease_ttl
        self.reaper_interval = reaper_interval
        self.health = health
        self._trace_tail = trace_tail
        self.jobs: dict[int, _Job] = {}
        self._leaders: dict[str, tuple[str, float]] = {}
        self._cron_ticks: dict[tuple[str, float], str] = {}
        self._longest_ttl = 0.0  # tasks may hold leases longer than the Workers' default
        #: The concurrency limits of the run, by key (set before the first claim).
        self.limits: dict[str, int] = {}
        #: The rates of the run, by key: (rate, per), set before the first claim.
        self.rates: dict[str, tuple[int, float]] = {}
        self._rate_log: dict[str, list[float]] = {}  # rate-limited key -> its claim times
        #: Cool-downs applied by finalizes, by key: the time the key may start again.
        self.cooled: dict[str, float] = {}
        #: The first violation, once one happened.
        self.violation: Violation | None = None
        #: Called once, at the first violation (the run stops).
        self.on_violation: Callable[[], None] = lambda: None
        # statistics for the report
        self.claims = 0
        self.renewals = 0
        self.finalizes_applied = 0
        self.finalizes_refused = 0  # stale tokens refused by the store
        self.refused_events = 0  # FinalizeRefused events the workers published
        self.leases_lost = 0  # JobLeaseLost events the workers published
        self.reclaims = 0
        self.cron_fires = 0
        self.cleaned = 0  # finished jobs deleted by cleanup (then lost jobs are counted, not named)
        #: Seconds from an orphaned lease's last renewal to its reclaim, one per orphan.
        self.recovery: list[float] = []
        #: Orphans recovered past the bound, each while no node had a healthy reaper.
        self.recovery_late = 0
        #: Seconds from an orphaned lease's expiry to the job's next claim.
        self.rerun: list[float] = []
        #: Seconds from an orphaned lease's last renewal to the job's next handler start.
        self.restart: list[float] = []
        #: Seconds from a reaped lease's expiry to the job's next handler start: what the
        #: nodes' history records as recovery time (from ``Lease.lost_at``).
        self.recovered: list[float] = []
        self.starts = 0  # handlers started (JobClaimed events)
        #: When each (job, step) record first committed (the store's now).
        self.step_records: dict[tuple[int, str], float] = {}
        self.steps_recorded = 0
        self.steps_refused = 0
        #: A job's state in the store now, or None once it is gone (set by the run, which
        #: reads its in-process store without yielding; needed by ``parents_first``).
        self.state_of: Callable[[int], JobState | None] = lambda job_id: None
        self._retried: set[int] = set()  # jobs an operator retried
        # fan-in completions not committed yet, (job, token) -> workflow; committed, by
        # workflow -> the callback job
        self._fan_in_pending: dict[tuple[int, int], str] = {}
        self._fan_in_committed: dict[str, tuple[int, float]] = {}
        self._fan_in_seen: set[str] = set()
        self.dependents_started = 0  # first claims of jobs with parents
        self.ran_after_failure = 0  # of which with a parent that did not succeed (run edges)
        self.fan_ins_completed = 0
        self.fan_ins_again = 0  # completions of a workflow's fan-in after its first
        #: Runs with fair-share partitions and no key limit check ``fair_share_held``.
        self.fair = False
        # (queue, waiting partition) -> the partitions that started jobs since its wait began
        self._bypassed: dict[tuple[str, str], set[str]] = {}
        #: The most partitions that started jobs while one partition waited its turn.
        self.most_bypassed = 0
        self._due_at: dict[int, tuple[str, float]] = {}  # new job -> (partition, due time)
        #: Seconds from a job's due time to its first start, by partition ("": none).
        self.partition_waits: dict[str, list[float]] = {}
        #: The live nodes' slots now, per queue (set by the run; read without yielding).
        self.slots: Callable[[], Sequence[NodeSlots]] = lambda: ()
        self._reruns: dict[int, _Rerun] = {}  # reaped job -> its pending start
        self._rerun_due: list[tuple[float, int]] = []  # (deadline, job) heap
        self._configured: set[str] = set()  # queues whose config was set: may be held
        #: Reaped jobs checked by ``running_again`` (a node had a free slot at the reap).
        self.reruns_checked = 0
        trace.listeners.append(self._follow)

    # --- violations -----------------------------------------------------------------------

    def violate(self, invariant: str, detail: str) -> None:
        """Record a violation (only the first counts) and stop the run."""
        if self.violation is not None:
            return
        self._trace.add("sim", ViolationFound(invariant=invariant, detail=detail))
        self.violation = Violation(
            invariant=invariant,
            detail=detail,
            at=self._trace.entries[-1].at - self._trace.start,
            seed=self._seed,
            command=self._command,
            trace_tail=tuple(self._trace.tail(self._trace_tail)),
        )
        self._trace.close()
        self.on_violation()

    @property
    def recovery_bound(self) -> float:
        """The promised bound on ``recovery``: the longest lease TTL used plus the reaper
        interval."""
        return max(self.lease_ttl, self._longest_ttl) + self.reaper_interval

    def queue_of(self, job_id: int) -> str:
        """The queue of a known job."""
        return self.jobs[job_id].queue

    # --- what the store did -----------------------------------------------------------------

    def enqueued(
        self,
        source: str,
        requests: Sequence[EnqueueRequest],
        results: Sequence[EnqueueResult],
        now: float,
    ) -> None:
        """Jobs were added (deduplicated requests add nothing)."""
        if self._trace.closed:
            return  # the run is over
        jobs = self.jobs
        for request, result in zip(requests, results, strict=True):
            if not result.deduplicated and result.job_id not in jobs:
                job = jobs[result.job_id] = _Job(result.job_id, request.queue, request.max_attempts)
                job.flow = request.concurrency_key is not None or request.partition_key is not None
                job.parents = tuple(
                    (
                        a.job_id if a.job_id is not None else results[a.index or 0].job_id,
                        a.on_failure,
                    )
                    for a in request.after
                )
                if request.partition_key is not None and not request.after:
                    due = request.run_at if request.run_at is not None else now + request.delay
                    self._due_at[result.job_id] = (request.partition_key, due)

    def claim_made(self, source: str, queue: str, limit: int, got: int, now: float) -> None:
        """A claim of ``queue`` by node ``source`` asked for ``limit`` jobs and got ``got``:
        one that filled its request, and every free slot of the node, excuses the node from
        ``running_again`` (its slots found older work; the reaped jobs wait behind it)."""
        self.check_reruns(now)
        if not self._reruns:
            return
        free = max(
            (s.free for _, node_id, s in self.slots() if node_id == source and s.queue == queue),
            default=0,
        )
        if got < max(limit, free):
            return
        for rerun in self._reruns.values():
            if rerun.queue == queue and rerun.reaped_at <= now + EPSILON:
                rerun.free.pop(source, None)

    def configured(self, queue: str) -> None:
        """A queue's config was set (it may be paused, or capped): its jobs may wait."""
        self._configured.add(queue)

    def check_reruns(self, now: float) -> None:
        """``running_again``: every reaped job whose time is up has started, or is excused."""
        due = self._rerun_due
        while due and due[0][0] < now - EPSILON and not self._trace.closed:
            _, job_id = heapq.heappop(due)
            rerun = self._reruns.pop(job_id, None)
            if rerun is not None:
                self._judge_rerun(rerun, now)

    def _judge_rerun(self, rerun: _Rerun, now: float) -> None:
        job = self.jobs[rerun.job_id]
        waited = f"{now - rerun.reaped_at:.6f}s"
        if job.token is not None:
            # Claimed since the reap: its handler should have started on the spot.
            if job.claimed_at >= rerun.reaped_at and self._steady(
                job.claimed_by, job.claimed_at, min(now, rerun.deadline)
            ):
                self.violate(
                    "running_again",
                    f"job {job.id} was claimed by {job.claimed_by} "
                    f"{job.claimed_at - rerun.reaped_at:.6f}s after its reap, but its handler "
                    f"had not started {waited} after the reap",
                )
            return
        state = self.state_of(job.id)
        if rerun.queue in self._configured or state is None or state.is_final:
            return  # held by its queue's config, or ended unclaimed (an operator's cancel)
        for node_id, (index, gap) in sorted(rerun.free.items()):
            if self.health.steady(index, rerun.reaped_at - gap, rerun.deadline):
                self.violate(
                    "running_again",
                    f"job {job.id} waited {waited} unstarted after its reap (bound "
                    f"{gap + RESTART_SLACK:g}s) while {node_id} had a free slot of queue "
                    f"{rerun.queue!r} and no claim of its filled its request",
                )
                return

    def _steady(self, node_id: str, start: float, end: float) -> bool:
        for index, live_id, _ in self.slots():
            if live_id == node_id:
                return self.health.steady(index, start, end)
        return False  # that incarnation is gone

    def fair_claimed(
        self, queue: str, eligible: Sequence[str] | None, leases: Sequence[Lease], now: float
    ) -> None:
        """A claim of ``queue`` found the partitions ``eligible`` (None: it was no fair-share
        claim) and started ``leases``: no partition may pass a waiting one twice."""
        for lease in leases:
            waited = self._due_at.pop(lease.job_id, None)
            if waited is not None:
                self.partition_waits.setdefault(waited[0], []).append(max(0.0, now - waited[1]))
        if not self.fair or self._trace.closed:
            return
        waiting = set(eligible or ())
        for key in [key for key in self._bypassed if key[0] == queue and key[1] not in waiting]:
            del self._bypassed[key]  # it has nothing to start: its wait is over
        served = {lease.job.partition_key or "" for lease in leases}
        for name in sorted(waiting):
            if name in served:
                self._bypassed[(queue, name)] = set()
                continue
            passed = self._bypassed.setdefault((queue, name), set())
            for other in sorted(served):
                if other in passed:
                    self.violate(
                        "fair_share_held",
                        f"partition {other!r} of queue {queue!r} started jobs in two claims "
                        f"while partition {name!r} waited through both with a job to start",
                    )
                    return
                passed.add(other)
            self.most_bypassed = max(self.most_bypassed, len(passed))

    def operated(self, source: str, action: str, job_ids: Sequence[int], now: float) -> None:
        """An operator changed jobs by filter: a retry or discard touched no leased job."""
        if self._trace.closed or action == "cancel":
            return
        if action == "retry":
            self._retried.update(job_ids)
            for workflow, (callback, _) in list(self._fan_in_committed.items()):
                if callback in job_ids:  # the callback runs again: a new run of its workflow
                    del self._fan_in_committed[workflow]
        for job_id in job_ids:
            job = self.jobs.get(job_id)
            if job is not None and job.token is not None:
                self.violate(
                    "operators_spare_leases",
                    f"job {job_id}: an operator's {action} changed it while {job.owner} held "
                    f"its lease (token {job.token})",
                )
                return

    def claimed(self, source: str, leases: Sequence[Lease], now: float) -> None:
        """Jobs were leased: none may still be held, and the attempt must be in bounds."""
        if self._trace.closed:
            return  # the run is over
        for lease in leases:
            self.claims += 1
            job = self.jobs.get(lease.job_id)
            if job is None:
                self.violate("no_job_lost", f"job {lease.job_id} was claimed but never enqueued")
                return
            if job.token is not None:
                held = "still live" if job.expires_at > now else "expired but never reaped"
                self.violate(
                    "single_owner",
                    f"job {job.id} claimed by {lease.owner} (token {lease.token}) while "
                    f"{job.owner} holds token {job.token}, {held} "
                    f"(expires at +{job.expires_at - self._trace.start:.6f}s)",
                )
                return
            attempt = lease.job.attempt
            if not 1 <= attempt <= lease.job.max_attempts:
                self.violate(
                    "attempts_within_bounds",
                    f"job {job.id} claimed for attempt {attempt} of {lease.job.max_attempts}",
                )
                return
            if job.parents and not self._parents_decided(job, lease.owner):
                return
            job.claims += 1
            if job.orphaned_at is not None:
                self.rerun.append(now - job.orphaned_at)
                job.orphaned_at = None
            job.token = lease.token
            job.owner = lease.owner
            job.expires_at = lease.expires_at
            job.extended_at = now
            job.key = lease.job.concurrency_key
            job.claimed_by = source
            job.claimed_at = now
            self._longest_ttl = max(self._longest_ttl, lease.expires_at - now)
        for lease in leases:
            key = lease.job.concurrency_key
            if key is not None and now < self.cooled.get(key, now):
                self.violate(
                    "key_rate_held",
                    f"a claim by {lease.owner} started job {lease.job_id} of key {key!r}, "
                    f"cooled down for another {self.cooled[key] - now:.6f}s",
                )
                return
            if key in self.rates:
                self._rate_log.setdefault(key, []).append(now)
        for key in sorted(
            {k for k in (lease.job.concurrency_key for lease in leases) if k} & set(self.rates)
        ):
            rate, per = self.rates[key]
            log = [at for at in self._rate_log[key] if at > now - per]
            self._rate_log[key] = log  # older starts can never count again
            if len(log) > rate:
                self.violate(
                    "key_rate_held",
                    f"a claim by {leases[0].owner} made {len(log)} starts of key {key!r} in "
                    f"the {per:g}s ending now; its rate is {rate} per {per:g}s",
                )
                return
        started = {lease.job.concurrency_key for lease in leases}
        for key in sorted(k for k in started if k is not None and k in self.limits):
            live = sum(
                1
                for job in self.jobs.values()
                if job.key == key and job.token is not None and job.expires_at > now
            )
            if live > self.limits[key]:
                self.violate(
                    "key_limit_held",
                    f"a claim by {leases[0].owner} left key {key!r} {live} live leases; "
                    f"its limit is {self.limits[key]}",
                )
                return

    def _parents_decided(self, job: _Job, owner: str) -> bool:
        """``parents_first`` for a claim of ``job``: every parent succeeded, or ended on a
        ``run`` edge (unless an operator retried one: a started job is not held back)."""
        if any(parent in self._retried for parent, _ in job.parents):
            return True
        failed = False
        for parent, on_failure in job.parents:
            state = self.state_of(parent)
            if state is None or state is JobState.SUCCEEDED:
                continue
            if on_failure is OnFailure.RUN and state.is_final:
                failed = True
                continue
            self.violate(
                "parents_first",
                f"job {job.id} claimed by {owner} while its parent {parent} is {state.value} "
                f"(edge on_failure={on_failure.value})",
            )
            return False
        if not job.claims:
            self.dependents_started += 1
            self.ran_after_failure += failed
        return True

    def fan_in_done(self, workflow: str, job_id: int, token: int, started_at: float) -> None:
        """A fan-in callback's handler completes (about to return) under ``token``, in an
        attempt claimed at ``started_at``: never one claimed after a completion of its
        workflow's run had committed (a zombie claimed before may: its finalize is fenced)."""
        if self._trace.closed:
            return
        committed = self._fan_in_committed.get(workflow)
        if committed is not None and committed[1] < started_at:
            self.violate(
                "fan_in_once",
                f"the fan-in of {workflow!r} completed again (job {job_id}, token {token}) in "
                f"an attempt claimed {started_at - committed[1]:.6f}s after the completion of "
                f"job {committed[0]} had committed",
            )
            return
        self.fan_ins_completed += 1
        if workflow in self._fan_in_seen:
            self.fan_ins_again += 1
        self._fan_in_seen.add(workflow)
        self._fan_in_pending[job_id, token] = workflow

    def fan_in_read(
        self, workflow: str, job_id: int, n: int, results: dict[int, JsonValue]
    ) -> None:
        """A fan-in callback read its members' results: one per parent, each succeeded
        member's own (naming workflow ``n`` and a distinct place), None for the others."""
        if self._trace.closed:
            return
        job = self.jobs.get(job_id)
        if job is None or any(parent in self._retried for parent, _ in job.parents):
            return
        seen: set[object] = set()
        for parent, _ in job.parents:
            value = results.get(parent)
            succeeded = self.state_of(parent) is JobState.SUCCEEDED
            place = value.get("i") if isinstance(value, dict) else None
            good = (
                isinstance(value, dict) and value.get("n") == n and place not in seen
                if succeeded
                else value is None and parent in results
            )
            if not good:
                self.violate(
                    "fan_in_results",
                    f"the fan-in of {workflow!r} (job {job_id}) read {value!r} for its "
                    f"{'succeeded' if succeeded else 'failed'} member {parent}",
                )
                return
            seen.add(place)

    def renewed(
        self,
        source: str,
        requests: Sequence[RenewRequest],
        results: Sequence[RenewResult],
        ttl: float,
        now: float,
    ) -> None:
        """Leases were renewed, or found lost: each answer must match the lease's state."""
        if self._trace.closed:
            return  # the run is over
        for request, result in zip(requests, results, strict=True):
            job = self.jobs.get(request.job_id)
            current = job is not None and job.token == request.token
            live = current and job is not None and job.expires_at > now
            if result is RenewResult.LOST:
                if live:
                    self.violate(
                        "fenced_renew",
                        f"job {request.job_id}: renewal of the live token {request.token} "
                        f"was reported lost",
                    )
                    return
                continue
            if not live or job is None:
                why = "an expired lease" if current else "a stale token"
                self.violate(
                    "fenced_renew",
                    f"job {request.job_id}: {source} renewed {why} (token {request.token}, "
                    f"current {None if job is None else job.token})",
                )
                return
            self.renewals += 1
            self._longest_ttl = max(self._longest_ttl, ttl)
            job.expires_at = now + ttl
            job.extended_at = now

    def stepped(
        self, source: str, job_id: int, token: int, name: str, result: StepResult, now: float
    ) -> None:
        """A step record was asked for: taken exactly when its token holds a live lease."""
        if self._trace.closed:
            return  # the run is over
        job = self.jobs.get(job_id)
        live = job is not None and job.token == token and job.expires_at > now
        if result is StepResult.STALE:
            self.steps_refused += 1
            if live:
                self.violate(
                    "fenced_step",
                    f"job {job_id}: step {name!r} under the live token {token} was refused",
                )
            return
        if not live:
            current = None if job is None else job.token
            self.violate(
                "fenced_step",
                f"job {job_id}: {source} recorded step {name!r} with token {token}, which holds "
                f"no live lease (current token {current})",
            )
            return
        self.steps_recorded += 1
        self.step_records.setdefault((job_id, name), now)

    def step_ran(self, job_id: int, name: str, started_at: float) -> None:
        """A step's function ran in an attempt claimed at ``started_at``: never after its
        record had committed."""
        if self._trace.closed:
            return
        committed = self.step_records.get((job_id, name))
        if committed is not None and committed < started_at:
            self.violate(
                "step_once",
                f"job {job_id}: step {name!r} ran again in an attempt claimed "
                f"{started_at - committed:.6f}s after its record committed",
            )

    def finalized(
        self,
        source: str,
        requests: Sequence[FinalizeRequest],
        results: Sequence[FinalizeResult],
        now: float,
    ) -> None:
        """Claims were ended: applied only with the current token, refused only without it."""
        if self._trace.closed:
            return  # the run is over
        for request, result in zip(requests, results, strict=True):
            job = self.jobs.get(request.job_id)
            current = job is not None and job.token == request.token
            if result is FinalizeResult.STALE:
                self.finalizes_refused += 1
                if current:
                    self.violate(
                        "fenced_finalize",
                        f"job {request.job_id}: finalize with the current token "
                        f"{request.token} was refused",
                    )
                    return
                continue
            if not current or job is None:
                holder = (
                    "nobody holds it"
                    if job is None or job.token is None
                    else (f"its current lease is token {job.token} held by {job.owner}")
                )
                self.violate(
                    "fenced_finalize",
                    f"job {request.job_id}: {source} finalized it ({type(request.outcome).__name__}) "
                    f"with stale token {request.token} and the store applied it; {holder}",
                )
                return
            self.finalizes_applied += 1
            if isinstance(request.outcome, Complete):
                workflow = self._fan_in_pending.pop((request.job_id, request.token), None)
                if workflow is not None:
                    self._fan_in_committed.setdefault(workflow, (request.job_id, now))
            job.token = None
            job.expires_at = -math.inf
            outcome = request.outcome
            if isinstance(outcome, Snooze) and outcome.cool_down and job.key is not None:
                self.cooled[job.key] = max(outcome.run_at, self.cooled.get(job.key, -math.inf))

    def reaped(self, source: str, reclaimed: Sequence[Reclaimed], now: float) -> None:
        """Expired leases were taken back: only expired ones, and in time."""
        if self._trace.closed:
            return  # the run is over
        self.check_reruns(now)
        for r in reclaimed:
            self.reclaims += 1
            job = self.jobs.get(r.job_id)
            if job is None or job.token is None:
                self.violate("reap_only_expired", f"job {r.job_id} was reaped but held no lease")
                return
            if job.expires_at > now:
                self.violate(
                    "reap_only_expired",
                    f"job {job.id}: {source} reaped the lease of {job.owner} (token {job.token}) "
                    f"{job.expires_at - now:.6f}s before it expires",
                )
                return
            delay = now - job.extended_at
            self.recovery.append(delay)
            late = now - job.expires_at
            if late > self.reaper_interval + EPSILON:
                self.recovery_late += 1
            if late > self.reaper_interval + EPSILON and self.health.any_healthy(
                job.expires_at, job.expires_at + self.reaper_interval + EPSILON
            ):
                self.violate(
                    "recovery_bound",
                    f"job {job.id} was re-runnable {delay:.6f}s after its holder's last renewal "
                    f"(bound {self.recovery_bound:g}s) although a node with a reaper was healthy",
                )
                return
            job.token = None
            job.orphaned_at = job.expires_at if r.state is JobState.AVAILABLE else None
            if r.state is JobState.AVAILABLE and job.restart_from is None:
                job.restart_from = job.extended_at  # measured from the first holder's death
            job.lost_at = job.expires_at if r.state is JobState.AVAILABLE else None
            job.expires_at = -math.inf
            if r.state is JobState.AVAILABLE and not job.flow:
                self._expect_rerun(job, now)

    def _expect_rerun(self, job: _Job, now: float) -> None:
        free = {
            node_id: (index, stats.claim_gap)
            for index, node_id, stats in self.slots()
            if stats.queue == job.queue and stats.free > 0
        }
        if not free:
            return  # every slot of its queue is busy: it waits its turn
        self.reruns_checked += 1
        deadline = now + max(gap for _, gap in free.values()) + RESTART_SLACK
        self._reruns[job.id] = _Rerun(
            job_id=job.id, queue=job.queue, reaped_at=now, deadline=deadline, free=free
        )
        heapq.heappush(self._rerun_due, (deadline, job.id))

    def leader(
        self, source: str, name: str, holder: str, lease: LeaderLease | None, now: float
    ) -> None:
        """A leader lease was asked for: granted only when no other holder is live."""
        if self._trace.closed:
            return  # the run is over
        if lease is None:
            return
        current = self._leaders.get(name)
        if current is not None and current[0] != holder and current[1] > now:
            self.violate(
                "single_leader",
                f"leader lease {name!r} granted to {holder} while {current[0]} holds it until "
                f"+{current[1] - self._trace.start:.6f}s",
            )
            return
        self._leaders[name] = (holder, lease.expires_at)

    def leader_released(self, name: str, holder: str) -> None:
        """A holder gave its leader lease back."""
        current = self._leaders.get(name)
        if current is not None and current[0] == holder:
            self._leaders[name] = (holder, -math.inf)

    # --- what the nodes said ----------------------------------------------------------------

    def _started(self, entry: TraceEntry, event: JobClaimed) -> None:
        """A handler is starting: on the current claim of its job, while its lease is live."""
        if self._trace.closed:
            return
        self.starts += 1
        job = self.jobs.get(event.job_id)
        if job is None:
            return  # the no_job_lost check reports a job nobody enqueued
        now = entry.at
        if job.token != event.token or job.expires_at <= now:
            why = (
                f"its lease expired {now - job.expires_at:.6f}s before"
                if job.token == event.token
                else f"the job's current claim is token {job.token}"
            )
            self.violate(
                "no_stale_start",
                f"job {job.id}: {entry.source} started its handler on token {event.token}, but "
                f"{why}",
            )
            return
        self._reruns.pop(job.id, None)
        if job.restart_from is not None:
            self.restart.append(now - job.restart_from)
            job.restart_from = None
        if job.lost_at is not None:
            self.recovered.append(now - job.lost_at)
            job.lost_at = None

    def _follow(self, entry: TraceEntry) -> None:
        self.check_reruns(entry.at)
        event = entry.event
        kind = type(event)
        if kind is JobClaimed:
            self._started(entry, event)
        elif kind is CronFired:
            self.cron_fires += 1
            key = (event.schedule, event.tick)
            first = self._cron_ticks.get(key)
            if first is not None:
                self.violate(
                    "cron_once_per_tick",
                    f"cron {event.schedule!r} fired tick +{event.tick - self._trace.start:.3f}s "
                    f"on {entry.source} after {first} had fired it",
                )
                return
            self._cron_ticks[key] = entry.source
        elif kind is FinalizeRefused:
            self.refused_events += 1
        elif kind is JobLeaseLost:
            self.leases_lost += 1
