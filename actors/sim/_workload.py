"""The workload: the built-in App the simulator runs by default, hangs, and the producer.

The built-in App's handlers do what the seed says: sleep on the job's clock for a while (some
longer than a lease, so heartbeats must keep them), succeed, fail, ask for a retry, drop the
job or snooze it. Every choice comes from an RNG derived from the seed, the job's number, its
attempt and how often it ran before, so it does not depend on which node runs it.

With ``workflows`` the producer enqueues workflows instead: chains, and fan-out groups whose
fan-in callback waits (``after=``) for every member and reads their results; some of their jobs
are doomed to end dead, so the ``on_failure`` of the edges after them decides.

Any App (the user's too) gets the ``hang`` fault through :func:`with_hangs`.
"""

from __future__ import annotations

from collections.abc import Callable
from random import Random  # allowed: type of the injected, seeded RNG only
from typing import Any

import anyio
import attrs

from actors.core import VirtualClock
from actors.jobs import (
    App,
    CronSchedule,
    Drop,
    Exponential,
    HandlerOutcome,
    JobContext,
    RetryLater,
    SnoozeUntil,
    WaitTimedOut,
)
from transports import (
    After,
    EnqueueRequest,
    JobFilter,
    JobState,
    JsonValue,
    OnFailure,
    Transport,
)

from ._faults import WakeHub, due_jobs
from ._invariants import Checker
from ._rng import derive_rng
from ._trace import CancelRequested, HandlerHung, JobsEnqueued, OperatorActed, Signalled, Trace

__all__ = ["JobFactory", "SimWorkload", "Stage", "Work", "WorkflowFactory", "with_hangs"]

#: ``make_job(rng, n)`` builds the n-th job of the workload from its own seeded RNG.
JobFactory = Callable[[Random, int], EnqueueRequest]
#: ``make_workflow(rng, n)`` builds the n-th workflow: its requests, ``After(index=)`` counting
#: from its first.
WorkflowFactory = Callable[[Random, int], list[EnqueueRequest]]

#: The producer enqueues its jobs during this share of the faulty phase (the rest lets the
#: last of them run while faults still strike).
LOAD_SHARE = 0.8
#: Jobs due within this many seconds of each other go in one batch.
BATCH_WINDOW = 5.0
#: Probability that the producer cancels an earlier job with each batch.
CANCEL_RATE = 0.05

#: Probability that the operator (``operators``) acts with each batch, on at most this many jobs.
OPERATOR_RATE = 0.1
OPERATOR_LIMIT = 3

#: In ``steps`` runs: the share of jobs that wait for a signal, how long they wait at most,
#: and the share of those whose signal never comes (they time out).
WAIT_RATE = 0.3
WAIT_TIMEOUT = 300.0
NEVER_SIGNALLED = 0.1

#: In ``workflows`` runs: jobs per workflow, about (``jobs`` counts jobs, so about a quarter
#: as many workflows arrive); the share of chains (the others are fan-out groups with a fan-in
#: callback); the share of workflows whose edges run anyway after a failed parent
#: (``on_failure="run"``; the others cancel); the share of jobs doomed to end dead.
WORKFLOW_SIZE = 4
CHAIN_SHARE = 0.4
RUN_ANYWAY = 0.3
DOOMED = 0.1


@attrs.frozen(kw_only=True)
class Work:
    """The built-in job's payload."""

    n: int  # the job's number in the workload


@attrs.frozen(kw_only=True)
class Stage:
    """A workflow job's payload (``workflows`` runs)."""

    n: int  # the workflow's number in the workload
    i: int  # the job's place in it; a group's fan-in callback comes after its members


class SimWorkload:
    """The built-in App (queue ``sim``) whose handlers act as the seed says.

    Args:
        seed: the run's seed.
        lease_ttl: the Workers' lease TTL; some runs last longer than that.
        cron: a cron expression for the ``sim.cron`` schedule, or None.
    """

    KIND = "sim.work"
    CRON_KIND = "sim.cron"
    STAGE_KIND = "sim.stage"  # a workflow's job: a chain's link or a group's member
    FAN_IN_KIND = "sim.fan_in"  # a group's fan-in callback
    QUEUE = "sim"
    #: Fan-in callbacks enqueued per group: one (a test sets two to see fan_in_once caught).
    FAN_IN_COPIES = 1

    #: The concurrency keys of the built-in jobs when the run limits keys (``key_limit``).
    KEYS = ("sim:a", "sim:b", "sim:c")
    #: The fair-share partitions (tenants) of the built-in jobs in ``partitions`` runs: the
    #: first has seven jobs in ten, the others one each.
    PARTITIONS = ("sim:big", "sim:t1", "sim:t2", "sim:t3")

    def __init__(
        self,
        seed: int,
        *,
        lease_ttl: float,
        cron: str | None,
        keyed: bool = False,
        steps: bool = False,
        workflows: bool = False,
        partitioned: bool = False,
    ) -> None:
        self.seed = seed
        self.lease_ttl = lease_ttl
        self.keyed = keyed
        self.partitioned = partitioned
        self.steps = steps
        self.workflows = workflows
        self._runs: dict[int, int] = {}
        self._snoozes: dict[int, int] = {}
        #: In ``steps`` runs, told of every step function run: ``ran(job_id, name, started_at)``
        #: (the Checker's, which knows what the store recorded).
        self.ran: Callable[[int, str, float], None] | None = None
        self.steps_run = 0
        self.steps_rerun = 0
        self.timed_out: set[int] = set()
        self._ran_steps: set[tuple[int, str]] = set()
        self._stage_runs: dict[tuple[int, int], int] = {}
        #: In ``workflows`` runs, told when a fan-in callback's handler completes, about to
        #: return: ``fan_in_done(workflow, job_id, token, started_at)``; and of the results it
        #: read: ``fan_in_read(workflow, job_id, n, results)`` (the Checker's).
        self.fan_in_done: Callable[[str, int, int, float], None] | None = None
        self.fan_in_read: Callable[[str, int, int, dict[int, JsonValue]], None] | None = None
        self.chains = 0
        self.groups = 0
        app = App()
        options: dict[str, Any] = {
            "queue": self.QUEUE,
            "max_attempts": 4,
            "backoff": Exponential(base=1.0, cap=30.0),
            "timeout": 3 * lease_ttl,
            "lease_ttl": lease_ttl,
        }
        app.register(self.KIND, self.work, payload_type=Work, **options)
        app.register(self.CRON_KIND, self.tick, **options)
        if workflows:
            app.register(self.STAGE_KIND, self.stage, payload_type=Stage, **options)
            app.register(self.FAN_IN_KIND, self.fan_in, payload_type=Stage, **options)
        self.app = app
        self.schedules: tuple[CronSchedule, ...] = ()
        if cron is not None:
            self.schedules = (
                CronSchedule(name="sim-cron", expression=cron, kind=self.CRON_KIND, jitter=2.0),
            )

    def make_job(self, rng: Random, n: int) -> EnqueueRequest:
        """The n-th job: some urgent, some delayed, a few sharing a dedupe key."""
        roll = rng.random()
        return self.app.request(
            self.KIND,
            Work(n=n),
            priority=rng.choice((0, 0, 0, 1, -1)),
            delay=rng.uniform(0.0, 120.0) if roll < 0.1 else 0.0,
            dedupe_key=f"dup-{n // 3}" if roll > 0.97 else None,
            # From n, not the RNG: a keyed run draws exactly what an unkeyed one does.
            concurrency_key=self.KEYS[n % len(self.KEYS)] if self.keyed else None,
            partition_key=self.partition_of(n) if self.partitioned else None,
        )

    def partition_of(self, n: int) -> str:
        """The tenant of job ``n`` in ``partitions`` runs (from n, so draws stay the same)."""
        return self.PARTITIONS[max(0, n % 10 - 6)]

    @staticmethod
    def event_key(n: int) -> str:
        """The event job ``n`` waits for in ``steps`` runs."""
        return f"sim:{n}"

    def signal_delay(self, n: int) -> float | None:
        """In ``steps`` runs: seconds after job ``n`` arrives that its event is signalled
        (sometimes before the job gets to its wait), or None (no wait, or never signalled)."""
        plan = derive_rng(self.seed, "steps", n)
        plan.randint(2, 4)
        if plan.random() >= WAIT_RATE:
            return None
        plan.random()  # where the wait is
        if plan.random() < NEVER_SIGNALLED:
            return None
        return plan.uniform(0.0, 150.0)

    async def work(self, ctx: JobContext, payload: Work) -> HandlerOutcome | None:
        """Run job ``payload.n`` as the seed says."""
        if self.steps:
            return await self._stepped(ctx, payload)
        n = payload.n
        runs = self._runs[n] = self._runs.get(n, 0) + 1
        rng = derive_rng(self.seed, "run", n, ctx.attempt, runs)
        ttl = self.lease_ttl
        roll = rng.random()
        if roll < 0.8:
            duration = min(rng.expovariate(1 / 1.5), 20.0)
        elif roll < 0.95:
            duration = rng.uniform(2.0, 10.0)
        else:
            duration = rng.uniform(0.5 * ttl, 2.5 * ttl)  # only heartbeats keep this lease
        if duration > ttl and rng.random() < 0.3:
            await ctx.clock.sleep(duration / 2)
            await ctx.extend_lease()
            await ctx.clock.sleep(duration / 2)
        else:
            await ctx.clock.sleep(duration)
        outcome = rng.random()
        if outcome < 0.07:
            raise RuntimeError(f"simulated failure of job {n}, attempt {ctx.attempt}")
        if outcome < 0.10:
            return RetryLater(delay=rng.uniform(0.0, 20.0), reason="simulated retry")
        if outcome < 0.11:
            return Drop(reason="simulated drop")
        if outcome < 0.13 and self._snoozes.get(n, 0) < 2:
            self._snoozes[n] = self._snoozes.get(n, 0) + 1
            # A keyed job's remote asks the whole key to back off ("429, retry after").
            return SnoozeUntil(at=ctx.clock.now() + rng.uniform(1.0, 15.0), cool_down=self.keyed)
        return None

    async def _stepped(self, ctx: JobContext, payload: Work) -> HandlerOutcome | None:
        """Job ``payload.n`` as durable steps: two to four, each after a while (some longer
        than a lease), one of them after a wait for its signal; then it may fail, so the next
        attempt goes through the recorded steps again."""
        n = payload.n
        plan = derive_rng(self.seed, "steps", n)  # the job's shape: the same every attempt
        count = plan.randint(2, 4)
        waits = plan.random() < WAIT_RATE
        wait_at = int(plan.random() * count)
        runs = self._runs[n] = self._runs.get(n, 0) + 1
        rng = derive_rng(self.seed, "step-run", n, ctx.attempt, runs)
        ttl = self.lease_ttl
        for i in range(count):
            if waits and i == wait_at:
                try:
                    await ctx.wait_for(self.event_key(n), timeout=WAIT_TIMEOUT)
                except WaitTimedOut:
                    self.timed_out.add(n)
            roll = rng.random()
            duration = (
                rng.uniform(0.5 * ttl, 1.5 * ttl) if roll < 0.03 else rng.expovariate(1 / 1.5)
            )
            await ctx.clock.sleep(duration)
            name = f"s{i}"
            started = ctx.job.started_at or 0.0
            await ctx.step(name, self._run_step, ctx.job_id, name, started)
        if rng.random() < 0.08:
            raise RuntimeError(f"simulated failure of job {n} after its steps")
        return None

    def _run_step(self, job_id: int, name: str, started_at: float) -> dict[str, Any]:
        """A step's work: counted, and reported to whoever checks that it had to run."""
        self.steps_run += 1
        key = (job_id, name)
        if key in self._ran_steps:
            self.steps_rerun += 1
        self._ran_steps.add(key)
        if self.ran is not None:
            self.ran(job_id, name, started_at)
        return {"job": job_id, "step": name}

    # --- workflows ----------------------------------------------------------------------------

    @staticmethod
    def workflow_of(n: int) -> str:
        """The workflow label of workflow ``n``."""
        return f"wf-{n}"

    def _shape(self, n: int) -> tuple[bool, int, OnFailure]:
        """Workflow ``n``: a chain or not, how many links or members, its edges' policy."""
        plan = derive_rng(self.seed, "workflow", n)
        chain = plan.random() < CHAIN_SHARE
        size = plan.randint(2, 4) if chain else plan.randint(2, 5)
        policy = OnFailure.RUN if plan.random() < RUN_ANYWAY else OnFailure.CANCEL
        return chain, size, policy

    def make_workflow(self, rng: Random, n: int) -> list[EnqueueRequest]:
        """The n-th workflow: a chain (each link after the one before it), or a group of
        members run in parallel and its fan-in callback after all of them, as ``app.chain``
        and ``app.group`` build them; every edge with the workflow's ``on_failure``."""
        chain, size, policy = self._shape(n)
        label = self.workflow_of(n)
        delay = rng.uniform(0.0, 60.0) if rng.random() < 0.1 else 0.0
        requests: list[EnqueueRequest] = []
        for i in range(size):
            requests.append(
                self.app.request(
                    self.STAGE_KIND,
                    Stage(n=n, i=i),
                    priority=rng.choice((0, 0, 1, -1)),
                    delay=delay if i == 0 else 0.0,
                    concurrency_key=self.KEYS[(n + i) % len(self.KEYS)] if self.keyed else None,
                    after=[After(index=i - 1, on_failure=policy)] if chain and i else [],
                    workflow=label,
                )
            )
        if chain:
            self.chains += 1
            return requests
        self.groups += 1
        members = [After(index=i, on_failure=policy) for i in range(size)]
        for _ in range(self.FAN_IN_COPIES):
            requests.append(
                self.app.request(
                    self.FAN_IN_KIND, Stage(n=n, i=size), after=members, workflow=label
                )
            )
        return requests

    async def _pause(self, ctx: JobContext, rng: Random) -> None:
        """A while of work: mostly short, a few longer than half a lease."""
        ttl = self.lease_ttl
        roll = rng.random()
        await ctx.clock.sleep(
            rng.uniform(0.5 * ttl, 1.5 * ttl) if roll < 0.03 else rng.expovariate(1 / 1.5)
        )

    async def stage(self, ctx: JobContext, payload: Stage) -> JsonValue | HandlerOutcome:
        """A workflow's job: a durable step or two after a while; then, if the seed doomed it,
        it drops the job (dead at once: its dependents' policy decides), or sometimes fails
        (retried); else its result names it."""
        n, i = payload.n, payload.i
        runs = self._stage_runs[n, i] = self._stage_runs.get((n, i), 0) + 1
        rng = derive_rng(self.seed, "stage-run", n, i, ctx.attempt, runs)
        doomed = derive_rng(self.seed, "stage-fate", n, i).random() < DOOMED
        started = ctx.job.started_at or 0.0
        for name in ("s0", "s1")[: 1 + (n + i) % 2]:
            await self._pause(ctx, rng)
            await ctx.step(name, self._run_step, ctx.job_id, name, started)
        if doomed:
            return Drop(reason=f"simulated doomed stage {i} of workflow {n}")
        if rng.random() < 0.08:
            raise RuntimeError(f"simulated failure of stage {i} of workflow {n}")
        return {"n": n, "i": i}

    async def fan_in(self, ctx: JobContext, payload: Stage) -> JsonValue:
        """A group's fan-in callback: reads its members' results, records a receipt step,
        and tells the checker it completes just before it returns."""
        n, size = payload.n, payload.i
        label = self.workflow_of(n)
        runs = self._stage_runs[n, size] = self._stage_runs.get((n, size), 0) + 1
        rng = derive_rng(self.seed, "fan-in-run", n, ctx.attempt, runs)
        results = await ctx.parent_results()
        if self.fan_in_read is not None:
            self.fan_in_read(label, ctx.job_id, n, results)
        await self._pause(ctx, rng)
        started = ctx.job.started_at or 0.0
        await ctx.step("receipt", self._run_step, ctx.job_id, "receipt", started)
        if rng.random() < 0.05:
            raise RuntimeError(f"simulated failure of the fan-in of workflow {n}")
        if self.fan_in_done is not None:
            self.fan_in_done(label, ctx.job_id, ctx.lease.token, ctx.job.started_at or 0.0)
        return {"n": n, "members": sum(1 for value in results.values() if value is not None)}

    async def tick(self, ctx: JobContext, payload: Any) -> None:
        """The cron job: short."""
        rng = derive_rng(self.seed, "cron-run", ctx.job_id, ctx.attempt)
        await ctx.clock.sleep(rng.uniform(0.0, 2.0))


def with_hangs(app: App, seed: int, rate: float, trace: Trace) -> App:
    """A copy of ``app`` whose handler runs hang until cancelled with probability ``rate``.

    Only kinds with a timeout hang: without one, nothing but a crash could end the run, and
    a job stuck forever is the handler's bug, not the cluster's. The choice is drawn per claim
    (job, attempt and lease token), so it does not depend on which node runs the job.
    """
    hanging = App(app.transport)
    for kind, task in app.tasks.items():
        options = attrs.asdict(task.options, recurse=False)
        if rate <= 0 or task.options.timeout is None:
            hanging.register(kind, task.fn, payload_type=task.payload_type, **options)
            continue

        def wrap(fn: Any, kind: str = kind) -> Any:
            async def handler(ctx: JobContext, payload: Any) -> HandlerOutcome | None:
                rng = derive_rng(seed, "hang", kind, ctx.job_id, ctx.attempt, ctx.lease.token)
                if rng.random() < rate:
                    trace.add("sim", HandlerHung(job_id=ctx.job_id, attempt=ctx.attempt))
                    await anyio.Event().wait()  # until the timeout, a lost lease or a crash
                result: HandlerOutcome | None = await fn(ctx, payload)
                return result

            return handler

        hanging.register(kind, wrap(task.fn), payload_type=task.payload_type, **options)
    return hanging


class Producer:
    """Enqueues the workload's jobs over the load phase, in batches, and cancels a few.

    The producer is a client outside the cluster: it talks to the store directly, without
    faults.
    """

    def __init__(
        self,
        *,
        seed: int,
        jobs: int,
        span: float,
        make_job: JobFactory,
        client: Transport,
        clock: VirtualClock,
        checker: Checker,
        hub: WakeHub,
        trace: Trace,
        operators: bool = False,
        signal_delay: Callable[[int], float | None] | None = None,
        event_key: Callable[[int], str] | None = None,
        make_workflow: WorkflowFactory | None = None,
    ) -> None:
        self._seed = seed
        self._make_workflow = make_workflow
        self._operators = operators
        self._signal_delay = signal_delay
        self._event_key = event_key
        self.signals = 0
        self._jobs = jobs
        self._span = span
        self._make_job = make_job
        self._client = client
        self._clock = clock
        self._checker = checker
        self._hub = hub
        self._trace = trace
        self.enqueued = 0

    def batches(self, start: float) -> list[tuple[float, list[int]]]:
        """When each job arrives, grouped in batches: ``[(time, [n, ...]), ...]``."""
        rng = derive_rng(self._seed, "arrivals")
        arrivals = sorted((rng.uniform(0.0, self._span), n) for n in range(self._jobs))
        batches: list[tuple[float, list[int]]] = []
        for t, n in arrivals:
            if batches and t - batches[-1][0] < BATCH_WINDOW:
                batches[-1][1].append(n)
            else:
                batches.append((t, [n]))
        return [(start + t, ns) for t, ns in batches]

    async def run(self, start: float) -> None:
        """Enqueue every batch at its time (and, in ``steps`` runs, signal the events)."""
        if self._signal_delay is None:
            await self._enqueue_all(start)
            return
        async with anyio.create_task_group() as tg:
            tg.start_soon(self._signal_all, start)
            await self._enqueue_all(start)

    async def _signal_all(self, start: float) -> None:
        """Signal each job's event at its time, relative to the job's arrival."""
        assert self._signal_delay is not None
        assert self._event_key is not None
        times: list[tuple[float, int]] = []
        for at, numbers in self.batches(start):
            for n in numbers:
                delay = self._signal_delay(n)
                if delay is not None:
                    times.append((at + delay, n))
        for at, n in sorted(times):
            await self._clock.sleep_until(at)
            key = self._event_key(n)
            result = await self._client.signal(key, n)
            self.signals += 1
            self._trace.add("client", Signalled(key=key, woken=result.woken))
            if result.woken:
                self._hub.notify({SimWorkload.QUEUE: len(result.woken)})

    async def _enqueue_all(self, start: float) -> None:
        rng = derive_rng(self._seed, "operator")
        # A stream of its own: runs without the operator's actions draw as they always did.
        acting = derive_rng(self._seed, "operator-actions")
        known: list[int] = []
        for at, numbers in self.batches(start):
            await self._clock.sleep_until(at)
            requests = self._requests(numbers)
            results = await self._client.enqueue_many(requests)
            now = self._clock.now()
            self._checker.enqueued("client", requests, results, now)
            self._hub.notify(due_jobs(requests, results, now))
            fresh = tuple(r.job_id for r in results if not r.deduplicated)
            known.extend(fresh)
            self.enqueued += len(fresh)
            self._trace.add(
                "client", JobsEnqueued(job_ids=fresh, deduplicated=len(results) - len(fresh))
            )
            if known and rng.random() < CANCEL_RATE:
                job_id = rng.choice(known)
                result = await self._client.cancel(job_id)
                self._trace.add("client", CancelRequested(job_id=job_id, result=result.value))
            if self._operators and acting.random() < OPERATOR_RATE:
                await self._act(acting)

    def _requests(self, numbers: list[int]) -> list[EnqueueRequest]:
        """One batch: a job per number, or (``workflows``) a workflow per number, each one's
        ``After(index=)`` moved to where it starts in the batch."""
        if self._make_workflow is None:
            return [self._make_job(derive_rng(self._seed, "job", n), n) for n in numbers]
        batch: list[EnqueueRequest] = []
        for n in numbers:
            start = len(batch)
            for request in self._make_workflow(derive_rng(self._seed, "job", n), n):
                after = tuple(
                    a if a.index is None else attrs.evolve(a, index=a.index + start)
                    for a in request.after
                )
                batch.append(attrs.evolve(request, after=after))
        return batch

    async def _act(self, rng: Random) -> None:
        """Retry dead jobs, discard scheduled ones or cancel available ones, by filter."""
        action, state = rng.choice(_ACTIONS)
        # Half the time by state, half over every job (as ``actorq jobs discard --all``):
        # then the store itself must pass over the running ones.
        where = JobFilter(states=frozenset({state})) if rng.random() < 0.5 else JobFilter()
        limit = rng.randint(1, OPERATOR_LIMIT)
        client = self._client
        if action == "retry":
            job_ids = await client.retry_jobs(where, limit=limit)
        elif action == "discard":
            job_ids = await client.discard_jobs(
                where, reason="discarded by the operator", limit=limit
            )
        else:
            job_ids = await client.cancel_jobs(where, limit=limit)
        self._checker.operated("client", action, job_ids, self._clock.now())
        self._trace.add("client", OperatorActed(action=action, job_ids=tuple(job_ids)))


_ACTIONS = (
    ("retry", JobState.DEAD),
    ("discard", JobState.SCHEDULED),
    ("cancel", JobState.AVAILABLE),
)
