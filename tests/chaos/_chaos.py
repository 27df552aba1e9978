"""The chaos run: real worker processes, real signals, a real server, and the checks after.

The driver enqueues a stream of ``chaos.work`` jobs while it SIGKILLs a random worker every
few seconds (starting a new one at once), SIGSTOPs a worker for longer than the lease TTL and
then continues it, terminates the server backends of a random worker and, when asked,
restarts the whole server. Then it waits for every job to finish, stops the survivors
gracefully, reads three tables and judges:

* ``jobs``: actorq's own rows;
* ``transitions``: every state or token change of a job, written by a trigger (the truth
  about which claims, reaps and finalizes the store accepted, and when);
* ``executions``: every run of a handler as the handler itself recorded it.
"""

from __future__ import annotations

import asyncio
import collections
import random
import time
import uuid
from collections.abc import Sequence
from pathlib import Path

import asyncpg
import attrs

from transports import ConnectionLost, EnqueueRequest, PostgresTransport

from . import _database as db
from ._processes import Fleet, WorkerProcess
from ._report import spread, table

# Expiry is judged by the workers' clocks and recorded by the database's: one host, one clock.
CLOCK_SLACK = 0.01
KILL_BACKENDS = """
    SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity
    WHERE application_name = $1 AND client_port = ANY($2::int[])
"""


@attrs.frozen(kw_only=True)
class ChaosPlan:
    """What one chaos run does."""

    name: str
    processes: int  # worker processes running at any time
    jobs: int
    enqueue_for: float  # seconds over which the jobs are enqueued; the faults last as long
    lease_ttl: float
    reaper_interval: float
    concurrency: int  # Workers per process
    pauses: int  # SIGSTOP ... SIGCONT episodes
    pause_for: float  # seconds each pause lasts (more than the lease TTL)
    restart: bool  # restart the server in the middle
    seed: int
    kill_every: tuple[float, float] = (1.0, 3.0)
    backend_kill_every: tuple[float, float] = (2.0, 4.0)
    job_ms: tuple[int, int] = (10, 200)
    long_jobs: float = 0.02  # this share of the jobs runs 1-6 s (their leases get renewed)
    drain_timeout: float = 60.0  # after the faults stop, how long the last jobs may take

    @property
    def claimable_within(self) -> float:
        """An orphaned job is claimable again this long after its holder failed."""
        return self.lease_ttl + self.reaper_interval + 1.0

    @property
    def rerun_within(self) -> float:
        """A SIGKILLed worker's in-flight job *runs* again this long after the kill: lease TTL
        + reaper interval + wake-up (the 1 s poll interval), and half a second for the test's
        own view of the processes."""
        return self.lease_ttl + self.reaper_interval + 1.0 + 0.5


@attrs.define
class ChaosRun:
    """What happened during a run: the plan, the faults, and the three tables."""

    plan: ChaosPlan
    schema: str
    fleet: Fleet
    started: float = 0.0
    faults_ended: float = 0.0
    finished: float = 0.0
    restarts: list[tuple[float, float]] = attrs.Factory(list)  # (stopping, accepting again)
    restart_skipped: str | None = None
    enqueued: int = 0
    enqueue_retries: int = 0
    peak_rss_kib: dict[str, int] = attrs.Factory(dict)
    jobs: list[asyncpg.Record] = attrs.Factory(list)
    transitions: list[asyncpg.Record] = attrs.Factory(list)
    executions: list[asyncpg.Record] = attrs.Factory(list)


async def run_chaos(plan: ChaosPlan, dsn: str, logs: Path) -> ChaosRun:
    """Run ``plan`` against the server at ``dsn``; the schema is dropped afterwards."""
    schema = f"chaos_{uuid.uuid4().hex[:10]}"
    url = f"{dsn}?schema={schema}&pool_size=4"
    options = [
        "--concurrency",
        str(plan.concurrency),
        "--lease-ttl",
        str(plan.lease_ttl),
        "--reaper-interval",
        str(plan.reaper_interval),
        "--drain-timeout",
        "5",
    ]
    env = {"CHAOS_DSN": dsn, "CHAOS_SCHEMA": schema}
    fleet = Fleet(
        app="tests.chaos.chaos_app:make_app", url=url, options=options, logs=logs, env=env
    )
    run = ChaosRun(plan=plan, schema=schema, fleet=fleet)
    if plan.restart:
        run.restart_skipped = db.may_restart_server()
    await db.create_schema(dsn, schema, audit=True)
    admin = db.Admin(dsn)
    try:
        with fleet:
            await _drive(run, dsn, admin)
        await _collect(run, admin)
    finally:
        await admin.close()
        if plan.restart and run.restart_skipped is None:
            db.ensure_server_started()
        await db.drop_schema(dsn, schema)
    return run


async def _drive(run: ChaosRun, dsn: str, admin: db.Admin) -> None:
    plan, fleet = run.plan, run.fleet
    rng = random.Random(plan.seed)
    first = [fleet.start() for _ in range(plan.processes)]
    fleet.wait_ready(first)
    run.started = time.time()
    faults_end = run.started + plan.enqueue_for
    stop = asyncio.Event()

    async def every(bounds: tuple[float, float], action: object) -> None:
        while True:
            try:
                await asyncio.wait_for(stop.wait(), rng.uniform(*bounds))
                return
            except TimeoutError:
                pass
            if time.time() >= faults_end:
                return
            await action()  # type: ignore[operator]

    async def kill_one() -> None:
        targets = fleet.usable()
        if targets:
            fleet.kill(rng.choice(targets))
            fleet.start()

    async def kill_backends() -> None:
        targets = fleet.usable()
        if not targets:
            return
        target = rng.choice(targets)
        ports = sorted(target.socket_ports())
        if not ports:
            return
        at = time.time()
        killed = await admin.fetchval(KILL_BACKENDS, f"actorq {run.schema}", ports)
        if killed:
            target.backend_kills.append((at, int(killed)))

    async def pauses() -> None:
        if plan.pauses == 0:
            return
        slot = (plan.enqueue_for - 2.0) / plan.pauses
        for i in range(plan.pauses):
            begin = run.started + 2.0 + i * slot
            await asyncio.sleep(max(0.0, begin - time.time()))
            targets = fleet.usable()
            if not targets:
                continue
            target = rng.choice(targets)
            fleet.pause(target)
            await asyncio.sleep(plan.pause_for)
            if target.killed_at is None:
                fleet.resume(target)

    async def restart() -> None:
        if not plan.restart or run.restart_skipped is not None:
            return
        await asyncio.sleep(plan.enqueue_for / 2)
        stopping = time.time()
        await asyncio.to_thread(db.pg_ctlcluster, "restart")
        await admin.fetch("SELECT 1")
        run.restarts.append((stopping, time.time()))

    async def enqueue() -> None:
        batches = max(1, int(plan.enqueue_for / 0.25))
        per_batch = -(-plan.jobs // batches)
        async with PostgresTransport(dsn, schema=run.schema, pool_size=2, notify=False) as t:
            n = 0
            while n < plan.jobs:
                due = run.started + (n // per_batch) * 0.25
                await asyncio.sleep(max(0.0, due - time.time()))
                count = min(per_batch, plan.jobs - n)
                requests = [
                    EnqueueRequest(
                        kind="chaos.work",
                        payload={"ms": _duration(rng, plan), "n": n + i},
                        max_attempts=100,
                    )
                    for i in range(count)
                ]
                await _enqueue_once(run, t, admin, requests, n)
                n += count
                run.enqueued = n

    async def watch() -> None:
        while not stop.is_set():
            for process in fleet.live():
                rss = process.rss_kib()
                if rss is not None:
                    best = run.peak_rss_kib.get(process.node_id, 0)
                    run.peak_rss_kib[process.node_id] = max(best, rss)
            try:
                await asyncio.wait_for(stop.wait(), 1.0)
            except TimeoutError:
                pass

    watcher = asyncio.create_task(watch())
    try:
        await asyncio.gather(
            enqueue(),
            every(plan.kill_every, kill_one),
            every(plan.backend_kill_every, kill_backends),
            pauses(),
            restart(),
        )
        run.faults_ended = time.time()
        await _wait_done(run, admin)
    finally:
        stop.set()
        await watcher
    run.finished = time.time()
    fleet.terminate(fleet.live(), grace=20.0)


def _duration(rng: random.Random, plan: ChaosPlan) -> int:
    if rng.random() < plan.long_jobs:
        return rng.randint(1_000, 6_000)
    return rng.randint(*plan.job_ms)


async def _enqueue_once(
    run: ChaosRun,
    transport: PostgresTransport,
    admin: db.Admin,
    requests: Sequence[EnqueueRequest],
    first: int,
) -> None:
    """Enqueue one batch exactly once, across a server restart.

    A batch is one statement, so it landed whole or not at all; after a lost connection the
    first job's number tells which.
    """
    while True:
        try:
            await transport.enqueue_many(requests)
            return
        except ConnectionLost:
            run.enqueue_retries += 1
            landed = await admin.fetchval(
                f"SELECT count(*) FROM {db.quoted(run.schema)}.jobs "
                "WHERE (payload->>'n')::int = $1",
                first,
            )
            if landed:
                return
            await asyncio.sleep(0.2)


async def _wait_done(run: ChaosRun, admin: db.Admin) -> None:
    deadline = time.time() + run.plan.drain_timeout
    sql = f"SELECT count(*) FROM {db.quoted(run.schema)}.jobs WHERE state = 'succeeded'"
    while time.time() < deadline:
        if await admin.fetchval(sql) >= run.plan.jobs:
            return
        await asyncio.sleep(0.25)


async def _collect(run: ChaosRun, admin: db.Admin) -> None:
    s = db.quoted(run.schema)
    run.jobs = await admin.fetch(
        f"SELECT id, state, attempt, (payload->>'n')::int AS n FROM {s}.jobs ORDER BY id"
    )
    run.transitions = await admin.fetch(f"SELECT * FROM {s}.transitions ORDER BY seq")
    run.executions = await admin.fetch(f"SELECT * FROM {s}.executions ORDER BY started_at")


# --- judging ----------------------------------------------------------------------------------


@attrs.define
class Verdict:
    """The checks' findings and the measurements for the report."""

    violations: list[str] = attrs.Factory(list)
    causes: collections.Counter[str] = attrs.Factory(collections.Counter)
    extra_by_cause: collections.Counter[str] = attrs.Factory(collections.Counter)
    reaps: int = 0
    claims: int = 0
    unstarted_claims: int = 0
    zombies_finished: int = 0  # handlers that completed after their lease was reaped
    zombies_started: int = 0  # runs started after their lease had been reaped
    claimable_after: list[float] = attrs.Factory(list)  # holder failure -> job available again
    reaped_after_expiry: list[float] = attrs.Factory(list)
    claimed_after_kill: list[float] = attrs.Factory(list)  # SIGKILL -> in-flight job claimed
    ran_after_kill: list[float] = attrs.Factory(list)  # SIGKILL -> in-flight job running
    late_runs: collections.Counter[str] = attrs.Factory(collections.Counter)  # why, when late
    restart_reaps: list[float] = attrs.Factory(list)

    rerun_within: float = 15.0

    def fail(self, message: str) -> None:
        self.violations.append(message)


def _classify(t: asyncpg.Record) -> str:
    if t["old_state"] in ("available", "scheduled") and t["new_state"] == "running":
        return "claim"
    if t["old_state"] == "running" and t["new_state"] == "succeeded":
        return "complete"
    if (
        t["old_state"] == "running"
        and t["new_state"] == "available"
        and t["new_attempt"] == t["old_attempt"]
        and not t["error_changed"]
    ):
        return "reap"
    return "other"


def judge(run: ChaosRun) -> Verdict:
    """Check the run against every claim of the chaos test (see the test's docstring)."""
    plan = run.plan
    v = Verdict(rerun_within=plan.rerun_within)
    by_node = {p.node_id: p for p in run.fleet.processes}

    # Every job is there and succeeded.
    if len(run.jobs) != plan.jobs or sorted(j["n"] for j in run.jobs) != list(range(plan.jobs)):
        v.fail(f"{len(run.jobs)} job rows for {plan.jobs} jobs enqueued")
    unfinished = [j["id"] for j in run.jobs if j["state"] != "succeeded"]
    if unfinished:
        v.fail(f"{len(unfinished)} job(s) not succeeded, e.g. {unfinished[:5]}")

    per_job: dict[int, list[asyncpg.Record]] = collections.defaultdict(list)
    for t in run.transitions:
        per_job[t["job_id"]].append(t)
    claim_at: dict[int, float] = {}
    claims_of: dict[int, list[asyncpg.Record]] = collections.defaultdict(list)
    reap_of: dict[int, asyncpg.Record] = {}
    completed_by: dict[int, asyncpg.Record] = {}
    for job_id, ts in per_job.items():
        for t in ts:
            kind = _classify(t)
            if kind == "claim":
                v.claims += 1
                claim_at[t["new_token"]] = t["at"]
                claims_of[job_id].append(t)
            elif kind == "reap":
                reap_of[t["old_token"]] = t
            elif kind == "complete":
                if job_id in completed_by:
                    v.fail(
                        f"job {job_id} succeeded twice (tokens {completed_by[job_id]['old_token']} and {t['old_token']})"
                    )
                completed_by[job_id] = t
            else:
                v.fail(
                    f"job {job_id}: unexpected write {t['old_state']} -> {t['new_state']} "
                    f"(token {t['old_token']} -> {t['new_token']}, attempt "
                    f"{t['old_attempt']} -> {t['new_attempt']}, error {t['new_error']!r})"
                )
    v.reaps = len(reap_of)

    runs: dict[int, list[asyncpg.Record]] = collections.defaultdict(list)
    by_token = {e["token"]: e for e in run.executions}
    for e in run.executions:
        runs[e["job_id"]].append(e)

    # The run whose finalize succeeded really ran to the end, and finished before it.
    for job_id, done in completed_by.items():
        e = by_token.get(done["old_token"])
        if e is None:
            v.fail(f"job {job_id} succeeded under token {done['old_token']}, which never ran")
        elif e["status"] != "ok" or e["ended_at"] is None or e["ended_at"] > done["at"]:
            v.fail(
                f"job {job_id} succeeded under token {e['token']} but that run "
                f"{'ended ' + str(e['status']) if e['ended_at'] else 'never ended'} "
                f"(ended {e['ended_at']}, succeeded at {done['at']})"
            )

    # Every lease that was taken back expired because of a fault the test caused.
    for token, reap in reap_of.items():
        cause, orphaned = _cause(reap, claim_at.get(token, reap["at"]), by_node, run)
        v.causes[cause] += 1
        if token not in by_token:
            v.unstarted_claims += 1
        if cause == "unexplained":
            v.fail(
                f"job {reap['job_id']}: lease {token} of {reap['old_owner']} expired at "
                f"{reap['old_expires']:.3f} with no fault to explain it"
            )
            continue
        if reap["at"] < reap["old_expires"] - CLOCK_SLACK:
            v.fail(
                f"job {reap['job_id']}: lease {token} reaped {reap['old_expires'] - reap['at']:.2f}s "
                "before it expired"
            )
        if cause == "restart":
            v.restart_reaps.append(reap["at"] - reap["old_expires"])
            continue
        v.reaped_after_expiry.append(reap["at"] - reap["old_expires"])
        assert orphaned is not None
        v.claimable_after.append(reap["at"] - orphaned)

    # Every run other than the successful one lost its lease to a reap, and nothing else:
    # its finalize (if it came) changed nothing.
    for job_id, es in runs.items():
        winner = completed_by.get(job_id)
        for e in es:
            if winner is not None and e["token"] == winner["old_token"]:
                continue
            reap = reap_of.get(e["token"])
            if reap is None:
                v.fail(
                    f"job {job_id}: extra run under token {e['token']} whose lease was never reaped"
                )
                continue
            cause, _ = _cause(reap, claim_at.get(e["token"], reap["at"]), by_node, run)
            v.extra_by_cause[cause] += 1
            if e["started_at"] > reap["at"]:
                v.zombies_started += 1
            elif e["status"] == "ok" and e["ended_at"] is not None and e["ended_at"] > reap["at"]:
                v.zombies_finished += 1
            if cause == "killed":
                holder = by_node[_node_of(reap["old_owner"])]
                assert holder.killed_at is not None
                _rerun(v, holder.killed_at, reap, claims_of[job_id], es, by_token, by_node)

    for delay in v.claimable_after:
        if delay > plan.claimable_within:
            v.fail(
                f"an orphaned job became claimable {delay:.2f}s after its holder failed (> {plan.claimable_within:.2f}s)"
            )
            break
    if v.claimed_after_kill and max(v.claimed_after_kill) > plan.rerun_within:
        v.fail(
            f"a SIGKILLed worker's job was claimed again only after "
            f"{max(v.claimed_after_kill):.2f}s (> {plan.rerun_within}s)"
        )
    late = v.late_runs["no fault"] + v.late_runs["waited in its claimer's batch"]
    if late:
        v.fail(
            f"{late} SIGKILLed worker's job(s) ran again later than {plan.rerun_within}s for "
            "no reason the test caused (a claimed job must start at once)"
        )
    if v.zombies_started:
        v.fail(
            f"{v.zombies_started} handler(s) started after their lease had been reaped (a "
            "resumed worker must give back what it claimed before its pause)"
        )

    for process in run.fleet.processes:
        v.violations.extend(process.problems())
    return v


def _rerun(
    v: Verdict,
    killed_at: float,
    reap: asyncpg.Record,
    claims: list[asyncpg.Record],
    runs: list[asyncpg.Record],
    by_token: dict[int, asyncpg.Record],
    by_node: dict[str, WorkerProcess],
) -> None:
    """How soon the in-flight job of a SIGKILLed worker was claimed, and ran, again.

    A run later than the bound is explained only when the next claimer failed before starting
    it (the job waited out another lease) or was paused; a claimed job that waited to start is
    not (a node claims only for free Workers, which start their job at once).
    """
    later_claims = [c for c in claims if c["at"] > reap["at"]]
    later_runs = [e for e in runs if e["started_at"] > reap["at"]]
    if not later_claims or not later_runs:
        return
    v.claimed_after_kill.append(later_claims[0]["at"] - killed_at)
    ran = min(e["started_at"] for e in later_runs)
    v.ran_after_kill.append(ran - killed_at)
    if ran - killed_at <= v.rerun_within:
        return
    first = later_claims[0]
    holder = by_node.get(_node_of(first["new_owner"]))
    if first["new_token"] not in by_token:
        v.late_runs["next claimer failed first"] += 1
    elif holder is not None and any(b <= ran for b, _ in holder.pauses):
        v.late_runs["next claimer paused"] += 1
    elif by_token[first["new_token"]]["started_at"] - first["at"] > 0.5:
        v.late_runs["waited in its claimer's batch"] += 1
    else:
        v.late_runs["no fault"] += 1


def _node_of(owner: str | None) -> str:
    return (owner or "").split("/", 1)[0]


def _cause(
    reap: asyncpg.Record, claimed: float, by_node: dict[str, WorkerProcess], run: ChaosRun
) -> tuple[str, float | None]:
    """Which fault made this lease expire, and when its holder stopped renewing it."""
    holder = by_node.get(_node_of(reap["old_owner"]))
    expires = reap["old_expires"]
    if holder is not None:
        if holder.killed_at is not None and holder.killed_at <= reap["at"]:
            return "killed", holder.killed_at
        for begin, end in holder.pauses:
            if begin <= expires <= end + 1.0:
                return "paused", begin
        for at, _count in holder.backend_kills:
            if claimed - 1.0 <= at <= expires:
                return "backend", at
    for begin, end in run.restarts:
        if begin <= expires and end >= claimed - 1.0:
            return "restart", None
    return "unexplained", None


def render(run: ChaosRun, v: Verdict) -> str:
    """The run as a Markdown table."""
    plan, fleet = run.plan, run.fleet
    processes = fleet.processes
    kills = sum(1 for p in processes if p.killed_at is not None)
    pauses = [end - begin for p in processes for begin, end in p.pauses]
    backend = [n for p in processes for _, n in p.backend_kills]
    succeeded = sum(1 for j in run.jobs if j["state"] == "succeeded")
    if run.restarts:
        restart = ", ".join(f"down {end - begin:.1f}s" for begin, end in run.restarts)
    elif plan.restart:
        restart = f"skipped ({run.restart_skipped}); backend kills only"
    else:
        restart = "none (long run only)"
    extra = sum(v.extra_by_cause.values())
    rss = max(run.peak_rss_kib.values(), default=0) / 1024
    rows = [
        (
            "worker processes",
            f"{plan.processes} at a time, {len(processes)} started in all, concurrency {plan.concurrency} each",
        ),
        (
            "settings",
            f"--lease-ttl {plan.lease_ttl:g} --reaper-interval {plan.reaper_interval:g} (seed {plan.seed})",
        ),
        (
            "duration",
            f"{run.faults_ended - run.started:.1f}s of faults, all done after {run.finished - run.started:.1f}s",
        ),
        ("SIGKILL (then a new process)", kills),
        (
            "SIGSTOP > lease TTL, then SIGCONT",
            f"{len(pauses)} ({', '.join(f'{p:.1f}s' for p in pauses) or '-'})",
        ),
        ("server backends terminated", f"{sum(backend)} in {len(backend)} strikes"),
        ("server restart", restart),
        (
            "jobs succeeded exactly once",
            f"{succeeded}/{plan.jobs}"
            + (f" ({run.enqueue_retries} enqueue retries)" if run.enqueue_retries else ""),
        ),
        ("claims / handler runs", f"{v.claims} / {len(run.executions)}"),
        ("extra runs, by cause of the lost lease", f"{extra} ({_counts(v.extra_by_cause)})"),
        (
            "leases reaped, by cause",
            f"{v.reaps} ({_counts(v.causes)}); {v.unstarted_claims} never started",
        ),
        (
            "zombie runs (lease reaped before they ended)",
            f"{v.zombies_finished} finished, {v.zombies_started} started late; finalizes accepted: 0"
            if not v.violations
            else f"{v.zombies_finished} finished, {v.zombies_started} started late",
        ),
        (
            f"holder failed -> claimable again (bound {plan.claimable_within:g}s)",
            spread(v.claimable_after),
        ),
        ("lease expiry -> reaped", spread(v.reaped_after_expiry)),
        (
            f"SIGKILL -> in-flight job claimed again (bound {plan.rerun_within:g}s)",
            spread(v.claimed_after_kill),
        ),
        ("SIGKILL -> in-flight job running again", spread(v.ran_after_kill)),
        (
            f"  ... later than {plan.rerun_within:g}s, and why",
            f"{sum(v.late_runs.values())} ({_counts(v.late_runs)})",
        ),
        (
            "processes ending otherwise than by our signals",
            sum(1 for p in processes if p.problems()),
        ),
        ("peak worker RSS", f"{rss:.1f} MiB"),
        ("violations", len(v.violations)),
    ]
    if v.restart_reaps:
        rows.insert(14, ("lease expiry -> reaped, across the restart", spread(v.restart_reaps)))
    return table(f"chaos: {plan.name}", ("", ""), rows)


def _counts(counter: collections.Counter[str]) -> str:
    return ", ".join(f"{k} {n}" for k, n in sorted(counter.items())) or "-"
