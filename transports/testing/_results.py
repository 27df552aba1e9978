"""Results: what a handler returned, stored by the fenced finalize, and waiting for a job to end.

These tests pin *Results* in :mod:`transports._base`: only an applied ``Complete`` stores its
result (a stale token never does, so a worker that lost its lease cannot overwrite a newer
attempt's result), a batch with a result that cannot be stored writes nothing, results have a
retention of their own (``prune_results``) that spares those an active dependent may read, and
``wait_for_jobs`` returns when a job it names ends, on this node or another.
"""

from __future__ import annotations

from typing import Any, ClassVar

import anyio
import anyio.lowlevel
import pytest

from .._base import Transport
from .._errors import ResultNotSerializable, ResultTooLarge
from .._records import (
    Complete,
    Discard,
    EnqueueRequest,
    FinalizeRequest,
    FinalizeResult,
    JobFilter,
    JobState,
    Lease,
    Outcome,
    Retry,
)
from ._clock import ManualClock

__all__ = ["TransportResults"]

_TTL = 30.0
_WAKE_TIMEOUT = 5.0  # real seconds; a safety net for wake-up tests, never a wait


async def _running(transport: Transport, n: int = 1, owner: str = "w1") -> list[Lease]:
    await transport.enqueue_many([EnqueueRequest(kind="r.job", queue="q") for _ in range(n)])
    leases = await transport.claim("q", owner=owner, limit=n, ttl=_TTL)
    assert len(leases) == n
    return leases


async def _finish(transport: Transport, lease: Lease, outcome: Outcome) -> FinalizeResult:
    (result,) = await transport.finalize(
        [FinalizeRequest(job_id=lease.job_id, token=lease.token, outcome=outcome)]
    )
    return result


async def _woken_by(waiting: Transport, job_ids: list[int], action: Any) -> None:
    """Assert a ``wait_for_jobs(job_ids)`` started before ``action()`` returns after it."""
    started = anyio.Event()
    returned = anyio.Event()

    async def waiter() -> None:
        started.set()
        await waiting.wait_for_jobs(job_ids)
        returned.set()

    with anyio.fail_after(_WAKE_TIMEOUT):
        async with anyio.create_task_group() as tg:
            tg.start_soon(waiter)
            await started.wait()
            for _ in range(20):  # let the waiter get well into its wait
                await anyio.lowlevel.checkpoint()
            await action()
            await returned.wait()


class TransportResults:
    """A job's result, stored under the fence, and the wake-up of those waiting for it."""

    pytestmark: ClassVar[list[pytest.MarkDecorator]] = [pytest.mark.anyio]

    async def test_an_applied_complete_stores_its_result(self, transport: Transport) -> None:
        """Every kind of JSON value comes back equal from get and list_jobs; None is none."""
        values: list[Any] = [{"total": 12.5, "items": [1, "ü", None]}, 0, "text", [], False]
        leases = await _running(transport, len(values) + 1)
        for lease, value in zip(leases, [*values, None], strict=True):
            assert await _finish(transport, lease, Complete(result=value)) is FinalizeResult.APPLIED
        for lease, value in zip(leases, [*values, None], strict=True):
            job = await transport.get(lease.job_id)
            assert job.state is JobState.SUCCEEDED
            assert job.result == value
        listed = await transport.list_jobs(JobFilter(ids=[lease.job_id for lease in leases]))
        assert [job.result for job in listed] == [*values, None]

    async def test_a_job_has_no_result_until_it_succeeds(self, transport: Transport) -> None:
        """Waiting, running, retried and dead jobs read ``result`` None."""
        (lease,) = await _running(transport)
        assert lease.job.result is None
        assert (await transport.get(lease.job_id)).result is None
        await _finish(transport, lease, Retry(run_at=0.0, error="again"))
        (again,) = await transport.claim("q", owner="w1", limit=1, ttl=_TTL)
        assert again.job.result is None
        await _finish(transport, again, Discard(error="no"))
        assert (await transport.get(lease.job_id)).result is None

    async def test_a_stale_finalize_stores_no_result(
        self, transport: Transport, clock: ManualClock
    ) -> None:
        """A worker whose lease expired and was taken over cannot write a result: neither
        before the new owner finishes (its Complete is STALE and changes nothing) nor after
        (the new owner's result stays)."""
        (old,) = await _running(transport)
        clock.advance(_TTL + 1)
        await transport.reap()
        (new,) = await transport.claim("q", owner="w2", limit=1, ttl=_TTL)
        assert await _finish(transport, old, Complete(result="old")) is FinalizeResult.STALE
        job = await transport.get(old.job_id)
        assert job.state is JobState.RUNNING
        assert job.result is None
        assert await _finish(transport, new, Complete(result="new")) is FinalizeResult.APPLIED
        assert await _finish(transport, old, Complete(result="old")) is FinalizeResult.STALE
        assert (await transport.get(old.job_id)).result == "new"

    async def test_a_lease_named_twice_stores_its_first_result(self, transport: Transport) -> None:
        """The first occurrence applies, with its result; the repeat is STALE."""
        (lease,) = await _running(transport)
        first = FinalizeRequest(job_id=lease.job_id, token=lease.token, outcome=Complete(result=1))
        again = FinalizeRequest(job_id=lease.job_id, token=lease.token, outcome=Complete(result=2))
        assert await transport.finalize([first, again]) == [
            FinalizeResult.APPLIED,
            FinalizeResult.STALE,
        ]
        assert (await transport.get(lease.job_id)).result == 1

    async def test_a_result_that_cannot_be_stored_fails_the_whole_batch(
        self, transport: Transport
    ) -> None:
        """A result over ``max_result_bytes`` or not JSON raises its typed error, and no
        finalize of the batch is applied; a result of exactly the limit is stored."""
        good, bad = await _running(transport, 2)
        limit = transport.max_result_bytes
        for outcome, error in [
            (Complete(result="x" * (limit - 1)), ResultTooLarge),
            (Complete(result={"k": {1, 2}}), ResultNotSerializable),
        ]:
            with pytest.raises(error):
                await transport.finalize(
                    [
                        FinalizeRequest(job_id=good.job_id, token=good.token, outcome=Complete()),
                        FinalizeRequest(job_id=bad.job_id, token=bad.token, outcome=outcome),
                    ]
                )
            for lease in (good, bad):
                assert (await transport.get(lease.job_id)).state is JobState.RUNNING
        exact = "x" * (limit - 2)  # its JSON has two quotes more: exactly the limit
        assert await _finish(transport, bad, Complete(result=exact)) is FinalizeResult.APPLIED
        assert (await transport.get(bad.job_id)).result == exact

    async def test_a_result_goes_with_its_job(
        self, transport: Transport, clock: ManualClock
    ) -> None:
        """Cleanup and delete take the result with the job (a result lives as long as it)."""
        kept, gone = await _running(transport, 2)
        await _finish(transport, gone, Complete(result="bye"))
        clock.advance(10)
        await _finish(transport, kept, Complete(result="hi"))
        assert await transport.cleanup(finished_before=clock.now() - 5) == 1
        assert [job.result for job in await transport.list_jobs()] == ["hi"]

    async def test_prune_results_clears_the_oldest_results_before_a_time(
        self, transport: Transport, clock: ManualClock
    ) -> None:
        """prune_results clears the results of succeeded jobs finished before the time,
        oldest finish first, at most ``limit``, and keeps the jobs; a job without a result
        or that did not succeed is not counted."""
        first, second, last, empty, dead = await _running(transport, 5)
        await _finish(transport, second, Complete(result={"n": 2}))
        clock.advance(1)
        await _finish(transport, first, Complete(result="one"))
        clock.advance(1)
        await _finish(transport, empty, Complete())
        await _finish(transport, dead, Discard(error="gone"))
        clock.advance(1)
        await _finish(transport, last, Complete(result=[3]))
        cutoff = clock.now()  # when ``last`` finished: not before it
        assert await transport.prune_results(finished_before=cutoff, limit=1) == 1
        assert (await transport.get(second.job_id)).result is None  # the oldest went first
        assert (await transport.get(first.job_id)).result == "one"
        assert await transport.prune_results(finished_before=cutoff) == 1
        assert await transport.prune_results(finished_before=cutoff) == 0
        jobs = {job.id: job for job in await transport.list_jobs()}
        assert len(jobs) == 5  # the jobs stay
        assert jobs[first.job_id].state is JobState.SUCCEEDED
        assert jobs[first.job_id].result is None
        assert jobs[last.job_id].result == [3]
        assert jobs[dead.job_id].state is JobState.DEAD
        clock.advance(1)
        assert await transport.prune_results(finished_before=clock.now()) == 1
        assert (await transport.get(last.job_id)).result is None

    async def test_a_result_an_active_dependent_waits_for_is_kept(
        self, transport: Transport, clock: ManualClock
    ) -> None:
        """prune_results keeps the result of a job while a job that waits for it is active
        (pending, due or running: it may yet read it), and clears it once that one ended."""
        (parent,) = await _running(transport)
        (child,) = await transport.enqueue_many(
            [EnqueueRequest(kind="r.job", queue="later", after=[parent.job_id])]
        )
        assert (await transport.get(child.job_id)).state is JobState.PENDING
        await _finish(transport, parent, Complete(result="for the child"))
        clock.advance(10)
        assert await transport.prune_results(finished_before=clock.now()) == 0
        (lease,) = await transport.claim("later", owner="w1", limit=1, ttl=_TTL)
        assert lease.job_id == child.job_id
        assert await transport.prune_results(finished_before=clock.now()) == 0
        assert (await transport.get(parent.job_id)).result == "for the child"
        await _finish(transport, lease, Complete(result="done"))
        assert await transport.prune_results(finished_before=clock.now()) == 1
        clock.advance(1)
        assert await transport.prune_results(finished_before=clock.now()) == 1
        assert [job.result for job in await transport.list_jobs()] == [None, None]

    async def test_wait_for_jobs_wakes_when_the_job_succeeds(self, transport: Transport) -> None:
        """A waiter of a running job returns once its Complete is applied."""
        (lease,) = await _running(transport)
        await _woken_by(
            transport, [lease.job_id], lambda: _finish(transport, lease, Complete(result=3))
        )

    async def test_wait_for_jobs_wakes_for_the_applied_finalizes_of_a_batch(
        self, transport: Transport
    ) -> None:
        """A finalize batch whose first request is stale wakes the waiters of the jobs whose
        outcome it applied (not those of the stale one)."""
        stale, applied = await _running(transport, 2)
        batch = [
            FinalizeRequest(job_id=stale.job_id, token=stale.token + 1000, outcome=Complete()),
            FinalizeRequest(job_id=applied.job_id, token=applied.token, outcome=Complete()),
        ]

        async def finalize() -> None:
            assert await transport.finalize(batch) == [
                FinalizeResult.STALE,
                FinalizeResult.APPLIED,
            ]

        await _woken_by(transport, [applied.job_id], finalize)

    async def test_wait_for_jobs_wakes_when_the_job_is_cancelled_or_dies(
        self, transport: Transport, clock: ManualClock
    ) -> None:
        """A cancel of a waiting job, an operator's discard and a reap to dead wake waiters."""
        waiting = (await transport.enqueue(EnqueueRequest(kind="r.job", queue="other"))).job_id
        await _woken_by(transport, [waiting], lambda: transport.cancel(waiting))
        other = (await transport.enqueue(EnqueueRequest(kind="r.job", queue="other"))).job_id
        await _woken_by(
            transport,
            [other],
            lambda: transport.discard_jobs(JobFilter.one(other), reason="operator"),
        )
        await transport.enqueue(EnqueueRequest(kind="r.job", queue="q", max_attempts=1))
        (lease,) = await transport.claim("q", owner="w1", limit=1, ttl=_TTL)

        async def expire_and_reap() -> None:
            clock.advance(_TTL + 1)
            await transport.reap()

        await _woken_by(transport, [lease.job_id], expire_and_reap)
        assert (await transport.get(lease.job_id)).state is JobState.DEAD

    async def test_wait_for_jobs_wakes_for_any_of_its_jobs(self, transport: Transport) -> None:
        """A waiter of several jobs returns when one of them ends."""
        first, second = await _running(transport, 2)
        await _woken_by(
            transport,
            [first.job_id, second.job_id],
            lambda: _finish(transport, second, Complete()),
        )

    async def test_wait_for_jobs_wakes_on_another_node(
        self, transport: Transport, second_transport: Transport
    ) -> None:
        """A job finished through one transport wakes a waiter on another over one store."""
        (lease,) = await _running(transport)
        await _woken_by(
            second_transport,
            [lease.job_id],
            lambda: _finish(transport, lease, Complete(result="done")),
        )
        assert (await second_transport.get(lease.job_id)).result == "done"

    async def test_wait_for_jobs_returns_after_aclose(self, transport: Transport) -> None:
        """Closing the transport wakes its waiters; a wait after the close returns at once."""
        (lease,) = await _running(transport)
        with anyio.fail_after(_WAKE_TIMEOUT):
            async with anyio.create_task_group() as tg:
                tg.start_soon(transport.wait_for_jobs, [lease.job_id])
                for _ in range(20):
                    await anyio.lowlevel.checkpoint()
                await transport.aclose()
            await transport.wait_for_jobs([lease.job_id])
