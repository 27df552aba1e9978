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
