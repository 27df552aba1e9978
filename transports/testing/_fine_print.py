"""The fine print of the contract: what a job's row says after each step.

The main suite proves who may act on a job; these tests pin what the row records when they do
(``updated_at`` on every change, ``finished_at`` only at the end, the error or reason an
outcome carries, who lost a lease on its last attempt) and the boundaries of ``limit`` and of
leader expiry. Operators read exactly these fields, so every backend must write them alike.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, ClassVar

import pytest

from .._base import Transport
from .._records import (
    Cancel,
    Complete,
    Discard,
    EnqueueRequest,
    FinalizeRequest,
    FinalizeResult,
    JobState,
    Outcome,
    Release,
    RenewRequest,
    RenewResult,
    Retry,
    Snooze,
)
from ._clock import ManualClock

__all__ = ["TransportFinePrint"]

_TTL = 30.0
_LATER = 100.0  # seconds ahead of now for the outcomes that schedule a next run

#: outcome (built from "now"), the state it leads to, whether that ends the job, the error it
#: records, and whether it gives the attempt back.
_OUTCOMES: list[tuple[Callable[[float], Outcome], JobState, bool, str | None, bool]] = [
    (lambda now: Complete(), JobState.SUCCEEDED, True, None, False),
    (lambda now: Discard(error="bad input"), JobState.DEAD, True, "bad input", False),
    (lambda now: Cancel(reason="by operator"), JobState.CANCELLED, True, "by operator", False),
    (
        lambda now: Retry(run_at=now + _LATER, error="flaky"),
        JobState.SCHEDULED,
        False,
        "flaky",
        False,
    ),
    (lambda now: Snooze(run_at=now + _LATER), JobState.SCHEDULED, False, None, True),
    (lambda now: Release(), JobState.AVAILABLE, False, None, True),
]


async def _claim(transport: Transport, *, owner: str = "w1", ttl: float = _TTL) -> Any:
    leases = await transport.claim("q", owner=owner, limit=1, ttl=ttl)
    assert len(leases) == 1, leases
    return leases[0]


class TransportFinePrint:
    """Row-level details every backend records identically (mixed into the conformance suite)."""

    pytestmark: ClassVar[list[pytest.MarkDecorator]] = [pytest.mark.anyio]

    async def test_claim_stamps_updated_at(self, transport: Transport, clock: ManualClock) -> None:
        """A claim changes the row, so its ``updated_at`` becomes the claim's time."""
        await transport.enqueue(EnqueueRequest(kind="k", queue="q"))
        clock.advance(7)
        lease = await _claim(transport)
        assert lease.job.updated_at == clock.now()
        assert (await transport.get(lease.job_id)).updated_at == clock.now()

    async def test_renew_stamps_updated_at(self, transport: Transport, clock: ManualClock) -> None:
        """A renewal changes the row's expiry, and ``updated_at`` with it."""
        await transport.enqueue(EnqueueRequest(kind="k", queue="q"))
        lease = await _claim(transport)
        clock.advance(5)
        request = RenewRequest(job_id=lease.job_id, token=lease.token)
        assert await transport.renew([request], ttl=_TTL) == [RenewResult.RENEWED]
        job = await transport.get(lease.job_id)
        assert job.updated_at == clock.now()
        assert job.lease_expires_at == clock.now() + _TTL

    @pytest.mark.parametrize(
        ("make", "state", "ends", "error", "refunds"),
        _OUTCOMES,
        ids=["Complete", "Discard", "Cancel", "Retry", "Snooze", "Release"],
    )
    async def test_finalize_records_the_outcome_on_the_row(
        self,
        transport: Transport,
        clock: ManualClock,
        make: Callable[[float], Outcome],
        state: JobState,
        ends: bool,
        error: str | None,
        refunds: bool,
    ) -> None:
        """Each outcome leaves its state, ``updated_at`` = now, ``finished_at`` = now only when
        it ends the job, the error or reason it carries, no lease, and the attempt (given back
        by a snooze or a release)."""
        await transport.enqueue(EnqueueRequest(kind="k", queue="q", max_attempts=3))
        lease = await _claim(transport)
        clock.advance(4)
        outcome = make(clock.now())
        (result,) = await transport.finalize(
            [FinalizeRequest(job_id=lease.job_id, token=lease.token, outcome=outcome)]
        )
        assert result is FinalizeResult.APPLIED
        job = await transport.get(lease.job_id)
        assert job.state is state
        assert job.updated_at == clock.now()
        assert job.finished_at == (clock.now() if ends else None)
        assert job.last_error == error
        assert job.lease_expires_at is None
        assert job.attempt == (0 if refunds else 1)
        if isinstance(outcome, Retry | Snooze):
            assert job.run_at == clock.now() + _LATER

    async def test_a_lease_lost_on_the_last_attempt_says_who_lost_it(
        self, transport: Transport, clock: ManualClock
    ) -> None:
        """The dead job's error names the holder that lost the lease, and the row is stamped
        with the reap's time."""
        await transport.enqueue(EnqueueRequest(kind="k", queue="q", max_attempts=1))
        lease = await _claim(transport, owner="node-2/q/1", ttl=10)
        clock.advance(12)
        (reclaimed,) = await transport.reap(limit=1)
        assert reclaimed.state is JobState.DEAD
        assert reclaimed.lost_by == "node-2/q/1"
        job = await transport.get(lease.job_id)
        assert job.last_error == "lease lost by node-2/q/1 on the last attempt"
        assert job.finished_at == clock.now()
        assert job.updated_at == clock.now()
        assert job.lease_expires_at is None

    async def test_a_reap_that_gives_the_job_back_keeps_its_last_error(
        self, transport: Transport, clock: ManualClock
    ) -> None:
        """A reap before the last attempt makes the job available again; the error of an
        earlier attempt stays on the row, and nothing is finished."""
        await transport.enqueue(EnqueueRequest(kind="k", queue="q", max_attempts=3))
        first = await _claim(transport)
        retry = Retry(run_at=clock.now(), error="first try failed")
        await transport.finalize(
            [FinalizeRequest(job_id=first.job_id, token=first.token, outcome=retry)]
        )
        await _claim(transport, ttl=10)
        clock.advance(11)
        (reclaimed,) = await transport.reap()
        assert reclaimed.state is JobState.AVAILABLE
        job = await transport.get(first.job_id)
        assert job.last_error == "first try failed"
        assert job.finished_at is None
        assert job.updated_at == clock.now()

    async def test_a_new_job_reads_back_as_enqueued(
        self, transport: Transport, clock: ManualClock
    ) -> None:
        """Every field of a fresh job is what the request said, stamped with the enqueue's
        time, and nothing of a run yet."""
        clock.advance(3)
        request = EnqueueRequest(
            kind="k", queue="q", payload={"a": [1]}, priority=-2, max_attempts=4, dedupe_key="d"
        )
        (result,) = await transport.enqueue_many([request])
        job = await transport.get(result.job_id)
        assert (job.kind, job.queue, job.payload, job.priority) == ("k", "q", {"a": [1]}, -2)
        assert (job.state, job.attempt, job.max_attempts) == (JobState.AVAILABLE, 0, 4)
        assert job.dedupe_key == "d"
        assert job.created_at == job.updated_at == job.run_at == clock.now()
        assert job.finished_at is None
        assert (job.lease_owner, job.lease_expires_at, job.last_error) == (None, None, None)
        assert job.cancel_requested is False

    async def test_a_folded_request_does_not_stop_the_rest_of_its_batch(
        self, transport: Transport
    ) -> None:
        """Requests after one that folded into an active job are still added."""
        (first,) = await transport.enqueue_many(
            [EnqueueRequest(kind="k", queue="q", dedupe_key="d")]
        )
        again, other = await transport.enqueue_many(
            [
                EnqueueRequest(kind="k", queue="q", dedupe_key="d"),
                EnqueueRequest(kind="k", queue="q"),
            ]
        )
        assert (again.job_id, again.deduplicated) == (first.job_id, True)
        assert not other.deduplicated
        assert (await transport.get(other.job_id)).state is JobState.AVAILABLE

    async def test_reap_ignores_the_expiry_of_an_earlier_claim(
        self, transport: Transport, clock: ManualClock
    ) -> None:
        """Once a job was retried and claimed again, only the new lease's expiry counts: the
        first claim's expiry passing takes nothing back."""
        await transport.enqueue(EnqueueRequest(kind="k", queue="q"))
        first = await _claim(transport, ttl=10)
        await transport.finalize(
            [FinalizeRequest(job_id=first.job_id, token=first.token, outcome=Retry(run_at=0.0))]
        )
        second = await _claim(transport, ttl=30)
        clock.advance(15)
        assert await transport.reap() == []
        job = await transport.get(second.job_id)
        assert (job.state, job.lease_expires_at) == (JobState.RUNNING, second.expires_at)

    async def test_reap_ignores_an_expiry_a_renewal_replaced_and_takes_the_next(
        self, transport: Transport, clock: ManualClock
    ) -> None:
        """A renewed lease is not reaped at its old expiry, and a lease renewed twice not at
        either earlier one; a reap passing over those still takes a lease that did expire."""
        await transport.enqueue_many([EnqueueRequest(kind="k", queue="q") for _ in range(2)])
        renewed = await _claim(transport, ttl=5)
        clock.advance(1)
        lapsing = await _claim(transport, ttl=10)
        for ttl in (5, 20):  # expiring at 7, then at 23
            clock.advance(1)
            request = RenewRequest(job_id=renewed.job_id, token=renewed.token)
            assert await transport.renew([request], ttl=ttl) == [RenewResult.RENEWED]
        clock.advance(10)  # past the renewed lease's first two expiries and the other's
        (reclaimed,) = await transport.reap()
        assert reclaimed.job_id == lapsing.job_id
        assert (await transport.get(renewed.job_id)).state is JobState.RUNNING

    async def test_cancel_wins_and_the_job_is_stamped_finished(
        self, transport: Transport, clock: ManualClock
    ) -> None:
        """A job whose cancel was requested ends cancelled at the time its holder retried it
        or its lease was reaped, and a cancel request stamps the running row."""
        await transport.enqueue_many([EnqueueRequest(kind="k", queue="q") for _ in range(2)])
        retried = await _claim(transport, ttl=10)
        lapsed = await _claim(transport, ttl=10)
        clock.advance(1)
        for lease in (retried, lapsed):
            await transport.cancel(lease.job_id)
            assert (await transport.get(lease.job_id)).updated_at == clock.now()
        clock.advance(1)
        retry = Retry(run_at=clock.now(), error="flaky")
        await transport.finalize(
            [FinalizeRequest(job_id=retried.job_id, token=retried.token, outcome=retry)]
        )
        job = await transport.get(retried.job_id)
        assert (job.state, job.finished_at) == (JobState.CANCELLED, clock.now())
        clock.advance(10)
        (reclaimed,) = await transport.reap()
        assert reclaimed.state is JobState.CANCELLED
        job = await transport.get(lapsed.job_id)
        assert (job.state, job.finished_at) == (JobState.CANCELLED, clock.now())

    async def test_reap_and_claim_take_a_limit_of_one(
        self, transport: Transport, clock: ManualClock
    ) -> None:
        """``limit=1`` is the smallest limit, and it is honoured exactly."""
        await transport.enqueue_many([EnqueueRequest(kind="k", queue="q") for _ in range(3)])
        leases = [await _claim(transport, ttl=10) for _ in range(3)]
        assert len({lease.job_id for lease in leases}) == 3
        clock.advance(11)
        assert len(await transport.reap(limit=1)) == 1
        assert len(await transport.reap(limit=1)) == 1
        assert len(await transport.reap(limit=5)) == 1
        assert len(await transport.claim("q", owner="w", limit=1, ttl=_TTL)) == 1

    async def test_a_leader_lease_cannot_be_released_once_it_expired(
        self, transport: Transport, clock: ManualClock
    ) -> None:
        """At its expiry (inclusive) a leader lease is no longer held: releasing it is False,
        and a moment before, it is True."""
        assert await transport.acquire_leader("cron", holder="a", ttl=10) is not None
        clock.advance(10)
        assert await transport.release_leader("cron", holder="a") is False
        assert await transport.acquire_leader("cron", holder="b", ttl=10) is not None
        clock.advance(9.5)
        assert await transport.release_leader("cron", holder="b") is True
