"""Many claimants on one memory transport, with random outcomes, stalls and clock jumps.

A model kept beside the transport knows which token owns each job; every answer the
transport gives is checked against it as it arrives (memory calls are atomic after their
single checkpoint, so the model is updated in the same step as the store).
"""

from __future__ import annotations

import random

import anyio
import pytest

from transports import EnqueueRequest, JobState, MemoryTransport
from transports.lowlevel import (
    Cancel,
    Complete,
    Discard,
    FinalizeRequest,
    FinalizeResult,
    Lease,
    Outcome,
    Release,
    RenewRequest,
    RenewResult,
    Retry,
    Snooze,
)
from transports.testing import ManualClock

pytestmark = pytest.mark.anyio

JOBS = 5_000
CLAIMANTS = 16
TTL = 30.0


class _Model:
    """What the transport must agree with: the owning token of every running job."""

    def __init__(self) -> None:
        self.owner: dict[int, int] = {}  # job id -> token of its one live claim
        self.expires: dict[int, float] = {}  # job id -> lease expiry of that claim
        self.attempts: dict[int, int] = {}  # job id -> attempts spent so far
        self.claims = 0
        self.stale_refused = 0

    def claimed(self, lease: Lease) -> None:
        assert lease.job_id not in self.owner, f"job {lease.job_id} claimed while owned"
        spent = self.attempts.get(lease.job_id, 0)
        assert lease.job.attempt == spent + 1, f"job {lease.job_id}: attempt {lease.job.attempt}"
        self.attempts[lease.job_id] = spent + 1
        self.owner[lease.job_id] = lease.token
        self.expires[lease.job_id] = lease.expires_at
        self.claims += 1

    def finalized(self, lease: Lease, outcome: Outcome, result: FinalizeResult) -> None:
        owns = self.owner.get(lease.job_id) == lease.token
        assert (result is FinalizeResult.APPLIED) == owns, (lease, result)
        if owns:
            if isinstance(outcome, Snooze | Release):
                self.attempts[lease.job_id] -= 1
            del self.owner[lease.job_id]
            del self.expires[lease.job_id]
        else:
            self.stale_refused += 1

    def renewed(self, lease: Lease, result: RenewResult, now: float, ttl: float) -> None:
        live = self.owner.get(lease.job_id) == lease.token and self.expires[lease.job_id] > now
        assert (result is not RenewResult.LOST) == live, (lease, result)
        if live:
            self.expires[lease.job_id] = now + ttl

    def reaped(self, job_id: int, now: float) -> None:
        assert job_id in self.owner, f"reaped job {job_id} that nobody owned"
        assert self.expires[job_id] <= now, f"reaped job {job_id} whose lease was live"
        del self.owner[job_id]
        del self.expires[job_id]


def _outcome(rng: random.Random, now: float) -> Outcome:
    roll = rng.random()
    if roll < 0.55:
        return Complete()
    if roll < 0.75:
        return Retry(run_at=now + rng.choice([0.0, 1.0, 20.0]), error="flaky")
    if roll < 0.83:
        return Snooze(run_at=now + rng.choice([0.0, 5.0]))
    if roll < 0.90:
        return Release()
    if roll < 0.95:
        return Discard(error="bad input")
    return Cancel()


@pytest.mark.parametrize("seed", [1, 2])
async def test_concurrent_claimants_keep_one_owner_per_job(seed: int) -> None:
    """16 claimants over 5,000 jobs never share a job, never lose one, never apply a stale token."""
    rng = random.Random(seed)
    clock = ManualClock()
    model = _Model()
    stalled: list[Lease] = []
    async with MemoryTransport(clock=clock) as transport:
        results = await transport.enqueue_many(
            [
                EnqueueRequest(kind="work", payload=i, priority=rng.randint(0, 3), max_attempts=4)
                for i in range(JOBS)
            ]
        )
        job_ids = {result.job_id for result in results}

        async def claimant(n: int) -> None:
            idle = 0
            while idle < 3:
                leases = await transport.claim(
                    "default", owner=f"w{n}", limit=rng.randint(1, 8), ttl=TTL
                )
                for lease in leases:
                    model.claimed(lease)
                if not leases:
                    idle += 1
                    clock.advance(rng.choice([1.0, 25.0]))
                    continue
                idle = 0
                for lease in leases:
                    if rng.random() < 0.05:
                        stalled.append(lease)  # a worker that froze; it finalizes much later
                        continue
                    if rng.random() < 0.2:
                        (renewal,) = await transport.renew(
                            [RenewRequest(job_id=lease.job_id, token=lease.token)], ttl=TTL
                        )
                        model.renewed(lease, renewal, clock.now(), TTL)
                    outcome = _outcome(rng, clock.now())
                    (result,) = await transport.finalize(
                        [FinalizeRequest(job_id=lease.job_id, token=lease.token, outcome=outcome)]
                    )
                    model.finalized(lease, outcome, result)
                if rng.random() < 0.1:
                    clock.advance(rng.choice([0.5, 10.0, 31.0]))
                if rng.random() < 0.1:
                    for reclaimed in await transport.reap():
                        model.reaped(reclaimed.job_id, clock.now())
                if rng.random() < 0.05 and stalled:
                    late = stalled.pop(rng.randrange(len(stalled)))
                    (result,) = await transport.finalize(
                        [FinalizeRequest(job_id=late.job_id, token=late.token, outcome=Complete())]
                    )
                    model.finalized(late, Complete(), result)

        for _ in range(50):
            async with anyio.create_task_group() as tg:
                for n in range(CLAIMANTS):
                    tg.start_soon(claimant, n)
            for late in stalled:
                (result,) = await transport.finalize(
                    [FinalizeRequest(job_id=late.job_id, token=late.token, outcome=Complete())]
                )
                model.finalized(late, Complete(), result)
            stalled.clear()
            clock.advance(2 * TTL)
            for reclaimed in await transport.reap(limit=JOBS):
                model.reaped(reclaimed.job_id, clock.now())
            per_queue = await transport.counts()
            if all(state.is_final for c in per_queue for state in c.by_state):
                break

        (counts,) = await transport.counts()
        assert counts.total == JOBS
        assert counts[JobState.SCHEDULED] == counts[JobState.AVAILABLE] == 0
        assert counts[JobState.RUNNING] == 0
        assert model.owner == {}
        final = await transport.list_jobs(limit=JOBS + 1)
        assert {job.id for job in final} == job_ids
        assert all(job.state.is_final for job in final)
        assert all(job.attempt <= job.max_attempts for job in final)
        assert model.claims > JOBS
        assert model.stale_refused > 0
