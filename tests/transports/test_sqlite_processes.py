"""Many OS processes claiming from one SQLite file: one winner per claim, nothing lost.

Sixteen claimant processes share one database over the wall clock (the clock every process
agrees on). They claim in small batches and finalize each job at random — complete, retry at
once, or discard — and a few leases are abandoned with a tiny TTL, to be reaped by whoever
polls next and finalized late by their first owner. Nothing sleeps: abandoned leases expire
while the others keep working. Each process records what it claimed and what its finalizes
returned; the parent then checks the whole history.
"""

from __future__ import annotations

import asyncio
import collections
import multiprocessing
import random
from pathlib import Path
from typing import Any

import pytest

from transports import EnqueueRequest, JobFilter, JobState, SQLiteTransport
from transports.lowlevel import (
    Complete,
    Discard,
    FinalizeRequest,
    FinalizeResult,
    Lease,
    Outcome,
    Retry,
)

JOBS = 5_000
CLAIMANTS = 16
MAX_ATTEMPTS = 3
TTL = 120.0  # long: only abandoned leases ever expire
ABANDON_TTL = 0.02

# (job_id, attempt, token, owner)
Claim = tuple[int, int, int, str]
# (job_id, token, outcome name, result, late)
Finalized = tuple[int, int, str, str, bool]


def _outcome(rng: random.Random, now: float) -> tuple[str, Outcome]:
    roll = rng.random()
    if roll < 0.6:
        return "complete", Complete()
    if roll < 0.85:
        return "retry", Retry(run_at=now, error="try again")
    return "discard", Discard(error="no")


async def _claimant(path: str, index: int, seed: int) -> tuple[list[Claim], list[Finalized]]:
    rng = random.Random(seed)
    owner = f"claimant-{index}"
    claims: list[Claim] = []
    finalized: list[Finalized] = []
    abandoned: list[Lease] = []
    async with SQLiteTransport(path, busy_timeout=60.0) as transport:
        while True:
            ttl = ABANDON_TTL if rng.random() < 0.03 else TTL
            leases = await transport.claim("q", owner=owner, limit=rng.randint(1, 8), ttl=ttl)
            if not leases:
                await transport.reap()
                active = sum(
                    count[state]
                    for count in await transport.counts("q")
                    for state in (JobState.SCHEDULED, JobState.AVAILABLE, JobState.RUNNING)
                )
                if not active and not abandoned:
                    break
            requests: list[FinalizeRequest] = []
            names: list[str] = []
            for lease in leases:
                claims.append((lease.job_id, lease.job.attempt, lease.token, owner))
                if ttl == ABANDON_TTL:
                    abandoned.append(lease)
                    continue
                name, outcome = _outcome(rng, lease.job.run_at)
                requests.append(
                    FinalizeRequest(job_id=lease.job_id, token=lease.token, outcome=outcome)
                )
                names.append(name)
            late = len(requests)
            # Abandoned leases come back a round later, usually after someone reaped them.
            if not leases or rng.random() < 0.5:
                for lease in abandoned:
                    name, outcome = _outcome(rng, lease.job.run_at)
                    requests.append(
                        FinalizeRequest(job_id=lease.job_id, token=lease.token, outcome=outcome)
                    )
                    names.append(name)
                abandoned.clear()
            if requests:
                results = await transport.finalize(requests)
                for i, (request, name, result) in enumerate(
                    zip(requests, names, results, strict=True)
                ):
                    finalized.append((request.job_id, request.token, name, str(result), i >= late))
    return claims, finalized


def _run_claimant(args: tuple[str, int, int]) -> tuple[list[Claim], list[Finalized]]:
    return asyncio.run(_claimant(*args))


async def _prepare(path: str) -> None:
    async with SQLiteTransport(path) as transport:
        await transport.enqueue_many(
            [
                EnqueueRequest(kind="work", queue="q", payload=i, max_attempts=MAX_ATTEMPTS)
                for i in range(JOBS)
            ]
        )


async def _final_jobs(path: str) -> dict[int, Any]:
    async with SQLiteTransport(path) as transport:
        jobs = {}
        after = 0
        while page := await transport.list_jobs(JobFilter(queue="q"), after_id=after, limit=1000):
            jobs.update({job.id: job for job in page})
            after = page[-1].id
        return jobs


@pytest.mark.slow
def test_sixteen_processes_share_one_file(tmp_path: Path) -> None:
    path = str(tmp_path / "jobs.db")
    asyncio.run(_prepare(path))
    context = multiprocessing.get_context("spawn")
    with context.Pool(CLAIMANTS) as pool:
        outputs = pool.map(_run_claimant, [(path, i, 1000 + i) for i in range(CLAIMANTS)])
    claims = [claim for claimed, _ in outputs for claim in claimed]
    finalized = [entry for _, done in outputs for entry in done]
    jobs = asyncio.run(_final_jobs(path))

    # Exactly one claimant per job per attempt, and every claim minted a fresh token.
    per_attempt = collections.Counter((job_id, attempt) for job_id, attempt, _, _ in claims)
    assert max(per_attempt.values()) == 1
    assert len({(job_id, token) for job_id, _, token, _ in claims}) == len(claims)

    # Nothing lost: every job is final, and its attempts are exactly the claims made of it.
    assert len(jobs) == JOBS
    assert all(job.state.is_final for job in jobs.values())
    attempts = collections.Counter(job_id for job_id, _, _, _ in claims)
    assert {job_id: job.attempt for job_id, job in jobs.items()} == {
        job_id: attempts[job_id] for job_id in jobs
    }

    # Fencing: at most one applied finalize per claim; every on-time finalize applied; a
    # finalize applied to an old claim left the job claimable (a retry), never final.
    applied = [f for f in finalized if f[3] == FinalizeResult.APPLIED]
    assert len({(job_id, token) for job_id, token, *_ in applied}) == len(applied)
    assert all(f[3] == FinalizeResult.APPLIED for f in finalized if not f[4])
    last_token = dict.fromkeys(jobs, 0)
    for job_id, _, token, _ in claims:
        last_token[job_id] = max(last_token[job_id], token)
    for job_id, token, name, _, _ in applied:
        if token < last_token[job_id]:
            assert name == "retry", f"job {job_id} was claimed again after a final {name}"

    # Each job ended as its last applied outcome says (reaped jobs aside).
    final_outcome = {
        job_id: name for job_id, token, name, _, _ in applied if token == last_token[job_id]
    }
    for job_id, job in jobs.items():
        name = final_outcome.get(job_id)
        if name == "complete":
            assert job.state is JobState.SUCCEEDED
        elif name is not None:
            assert job.state is JobState.DEAD
    assert any(f[4] for f in finalized), "no lease was abandoned and finalized late"
