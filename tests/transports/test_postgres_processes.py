"""Many OS processes claim from one PostgreSQL queue: each job goes to one claimant per attempt.

Sixteen worker processes (spawned, so nothing is shared but the database) drain 5,000 jobs,
finishing each claim with a random outcome. Every process also replays an old token after
each retry. The parent then checks the claim log of all processes against the store.
"""

from __future__ import annotations

import asyncio
import json
import multiprocessing
import random
from pathlib import Path

import pytest

from transports import EnqueueRequest, JobState, PostgresTransport
from transports.lowlevel import Complete, Discard, FinalizeRequest, FinalizeResult, Retry

PROCESSES = 16
JOBS = 5_000
MAX_ATTEMPTS = 3
TTL = 600.0  # no lease expires during the test: every claim is a fresh attempt


def _worker(dsn: str, schema: str, seed: int, log: str) -> None:
    """One worker process: claim, finalize at random, log every claim and every result."""
    report = asyncio.run(_work(dsn, schema, seed))
    Path(log).write_text(json.dumps(report))


async def _work(dsn: str, schema: str, seed: int) -> dict[str, object]:
    rng = random.Random(seed)
    claims: list[tuple[int, int, int]] = []  # (job id, attempt, token)
    applied: list[tuple[int, str]] = []  # (job id, outcome) that took effect
    stale_accepted = 0
    async with PostgresTransport(
        dsn, schema=schema, pool_size=1, notify=False, auto_migrate=False
    ) as transport:
        while True:
            leases = await transport.claim(
                "default", owner=f"p{seed}", limit=rng.randint(1, 20), ttl=TTL
            )
            if not leases:
                (counts,) = await transport.counts()
                if not any(counts[s] for s in JobState if s.is_active):
                    break
                continue
            requests = []
            for lease in leases:
                claims.append((lease.job_id, lease.job.attempt, lease.token))
                roll = rng.random()
                outcome: Complete | Retry | Discard
                if roll < 0.6:
                    outcome = Complete()
                elif roll < 0.9:
                    outcome = Retry(run_at=0.0, error="flaky")
                else:
                    outcome = Discard(error="bad")
                requests.append(
                    FinalizeRequest(job_id=lease.job_id, token=lease.token, outcome=outcome)
                )
            results = await transport.finalize(requests)
            for request, result in zip(requests, results, strict=True):
                assert result is FinalizeResult.APPLIED  # we hold these leases
                applied.append((request.job_id, type(request.outcome).__name__))
            # A stalled worker coming back with its old tokens must be refused.
            replay = [
                FinalizeRequest(job_id=r.job_id, token=r.token, outcome=Complete())
                for r in requests
            ]
            stale_accepted += sum(
                result is FinalizeResult.APPLIED for result in await transport.finalize(replay)
            )
    return {"claims": claims, "applied": applied, "stale_accepted": stale_accepted}


async def _enqueue(dsn: str, schema: str) -> None:
    async with PostgresTransport(dsn, schema=schema) as transport:
        for start in range(0, JOBS, 1000):
            await transport.enqueue_many(
                [
                    EnqueueRequest(kind="k", payload=i, max_attempts=MAX_ATTEMPTS)
                    for i in range(start, start + 1000)
                ]
            )


async def _final_states(dsn: str, schema: str) -> dict[int, tuple[JobState, int]]:
    async with PostgresTransport(dsn, schema=schema, auto_migrate=False) as transport:
        states: dict[int, tuple[JobState, int]] = {}
        after = 0
        while batch := await transport.list_jobs(after_id=after, limit=1000):
            states.update((job.id, (job.state, job.attempt)) for job in batch)
            after = batch[-1].id
        return states


@pytest.mark.timeout(90)
def test_sixteen_processes_claim_each_attempt_once(
    postgres_dsn: str, postgres_schema: str, tmp_path: Path
) -> None:
    """16 processes over 5,000 jobs: one claimant per attempt, none lost, no stale write."""
    asyncio.run(_enqueue(postgres_dsn, postgres_schema))
    context = multiprocessing.get_context("spawn")
    logs = [tmp_path / f"worker{i}.json" for i in range(PROCESSES)]
    processes = [
        context.Process(target=_worker, args=(postgres_dsn, postgres_schema, i, str(log)))
        for i, log in enumerate(logs)
    ]
    for process in processes:
        process.start()
    for process in processes:
        process.join(80)
        assert process.exitcode == 0
    reports = [json.loads(log.read_text()) for log in logs]

    claims = [tuple(c) for r in reports for c in r["claims"]]
    tokens = [token for _, _, token in claims]
    assert len(set(tokens)) == len(tokens), "a fencing token was minted twice"
    attempts = [(job_id, attempt) for job_id, attempt, _ in claims]
    assert len(set(attempts)) == len(attempts), "an attempt was claimed twice"
    assert sum(r["stale_accepted"] for r in reports) == 0

    states = asyncio.run(_final_states(postgres_dsn, postgres_schema))
    assert len(states) == JOBS
    # A job ends with its one Complete or Discard, or with a Retry on its last attempt.
    last_outcome: dict[int, str] = {}
    for r in reports:
        for job_id, outcome in r["applied"]:
            if outcome != "Retry" or job_id not in last_outcome:
                last_outcome[job_id] = outcome
    claimed_attempts: dict[int, set[int]] = {}
    for job_id, attempt in attempts:
        claimed_attempts.setdefault(job_id, set()).add(attempt)
    for job_id, (state, attempt) in states.items():
        # Every attempt from 1 to the last was claimed exactly once: none lost.
        assert claimed_attempts[job_id] == set(range(1, attempt + 1)), job_id
        expected = {
            "Complete": JobState.SUCCEEDED,
            "Discard": JobState.DEAD,
            "Retry": JobState.DEAD,  # retried on its last attempt
        }[last_outcome[job_id]]
        assert state is expected, (job_id, state, last_outcome[job_id])
        if last_outcome[job_id] == "Retry":
            assert attempt == MAX_ATTEMPTS
