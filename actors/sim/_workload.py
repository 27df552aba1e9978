"""The workload: the built-in App the simulator runs by default, hangs, and the producer.

The built-in App's handlers do what the seed says: sleep on the job's clock for a while (some
longer than a lease, so heartbeats must keep them), succeed, fail, ask for a retry, drop the
job or snooze it. Every choice comes from an RNG derived from the seed, the job's number, its
attempt and how often it ran before, so it does not depend on which node runs it.

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
)
from transports import EnqueueRequest, JobFilter, JobState, Transport

from ._faults import WakeHub, due_jobs
from ._invariants import Checker
from ._rng import derive_rng
from ._trace import CancelRequested, HandlerHung, JobsEnqueued, OperatorActed, Trace

__all__ = ["JobFactory", "SimWorkload", "Work", "with_hangs"]

#: ``make_job(rng, n)`` builds the n-th job of the workload from its own seeded RNG.
JobFactory = Callable[[Random, int], EnqueueRequest]

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


@attrs.frozen(kw_only=True)
class Work:
    """The built-in job's payload."""

    n: int  # the job's number in the workload


class SimWorkload:
    """The built-in App (queue ``sim``) whose handlers act as the seed says.

    Args:
        seed: the run's seed.
        lease_ttl: the Workers' lease TTL; some runs last longer than that.
        cron: a cron expression for the ``sim.cron`` schedule, or None.
    """

    KIND = "sim.work"
    CRON_KIND = "sim.cron"
    QUEUE = "sim"

    #: The concurrency keys of the built-in jobs when the run limits keys (``key_limit``).
    KEYS = ("sim:a", "sim:b", "sim:c")

    def __init__(
        self, seed: int, *, lease_ttl: float, cron: str | None, keyed: bool = False
    ) -> None:
        self.seed = seed
        self.lease_ttl = lease_ttl
        self.keyed = keyed
        self._runs: dict[int, int] = {}
        self._snoozes: dict[int, int] = {}
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
        )

    async def work(self, ctx: JobContext, payload: Work) -> HandlerOutcome | None:
        """Run job ``payload.n`` as the seed says."""
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
    ) -> None:
        self._seed = seed
        self._operators = operators
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
        """Enqueue every batch at its time."""
        rng = derive_rng(self._seed, "operator")
        # A stream of its own: runs without the operator's actions draw as they always did.
        acting = derive_rng(self._seed, "operator-actions")
        known: list[int] = []
        for at, numbers in self.batches(start):
            await self._clock.sleep_until(at)
            requests = [self._make_job(derive_rng(self._seed, "job", n), n) for n in numbers]
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
