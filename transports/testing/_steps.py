"""Durable steps, suspension and signals, on every backend.

A running job records named step results under its live lease (``record_step``), a finalize
with ``Suspend`` parks it on an event key, and ``signal`` sets the event and wakes it. These
tests pin the contract (see *Durable steps* and *Suspension and signals* in
:mod:`transports._base`): fenced writes, first value wins, nothing lost when the signal comes
first, timeouts due like a schedule, operator actions on suspended jobs, and steps living
exactly as long as their job.
"""

from __future__ import annotations

from typing import Any, ClassVar

import anyio
import anyio.lowlevel
import pytest

from .._base import Transport
from .._errors import InvalidStepName, PayloadNotSerializable, StepTooLarge
from .._records import (
    MAX_STEP_BYTES,
    CancelResult,
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
    StepResult,
    Suspend,
)
from ._clock import ManualClock
from ._waking import spend_wake_ups

__all__ = ["TransportSteps"]

_TTL = 30.0
_WAKE_TIMEOUT = 5.0  # real seconds; a safety net for the wake-up test, never a wait


async def _job(transport: Transport, **fields: Any) -> int:
    fields.setdefault("kind", "steps.job")
    fields.setdefault("queue", "q")
    (result,) = await transport.enqueue_many([EnqueueRequest(**fields)])
    return result.job_id


async def _claim(transport: Transport, owner: str = "w1", ttl: float = _TTL) -> Lease:
    (lease,) = await transport.claim("q", owner=owner, limit=1, ttl=ttl)
    return lease


async def _finalize(transport: Transport, lease: Lease, outcome: Outcome) -> FinalizeResult:
    (result,) = await transport.finalize(
        [FinalizeRequest(job_id=lease.job_id, token=lease.token, outcome=outcome)]
    )
    return result


async def _record(transport: Transport, lease: Lease, name: str, value: Any) -> StepResult:
    return await transport.record_step(lease.job_id, token=lease.token, name=name, value=value)


async def _suspended(transport: Transport, clock: ManualClock, key: str, timeout: float) -> Lease:
    """A job claimed once and suspended on ``key`` for ``timeout`` seconds; its lease."""
    await _job(transport)
    lease = await _claim(transport)
    outcome = Suspend(event_key=key, run_at=clock.now() + timeout)
    assert await _finalize(transport, lease, outcome) is FinalizeResult.APPLIED
    return lease


class TransportSteps:
    """Steps recorded under the lease; jobs suspended until a signal or their timeout."""

    pytestmark: ClassVar[list[pytest.MarkDecorator]] = [pytest.mark.anyio]

    # --- steps ----------------------------------------------------------------------------

    async def test_a_step_is_recorded_under_the_live_lease(
        self, transport: Transport, clock: ManualClock
    ) -> None:
        """A live lease records steps, listed by time then name with the attempt and time;
        a second record of a name keeps the first value."""
        await _job(transport)
        lease = await _claim(transport)
        assert await transport.list_steps(lease.job_id) == []
        assert await _record(transport, lease, "charge", {"id": "ch_1", "cents": 990})
        clock.advance(1.0)
        assert await _record(transport, lease, "b", [1, "ü", None]) is StepResult.RECORDED
        assert await _record(transport, lease, "charge", "again") is StepResult.RECORDED
        steps = await transport.list_steps(lease.job_id)
        assert [(s.name, s.value, s.attempt) for s in steps] == [
            ("charge", {"id": "ch_1", "cents": 990}, 1),
            ("b", [1, "ü", None], 1),
        ]
        assert [s.recorded_at for s in steps] == [clock.now() - 1.0, clock.now()]
        assert await transport.list_steps(10**9) == []

    async def test_a_stale_or_expired_token_records_nothing(
        self, transport: Transport, clock: ManualClock
    ) -> None:
        """An expired lease (reaped or not), a re-claimed job's old token and a finished job
        record nothing; the next owner records its own value."""
        await _job(transport)
        first = await _claim(transport, ttl=5.0)
        clock.advance(5.0)  # expired, not reaped yet: already refused
        assert await _record(transport, first, "charge", 1) is StepResult.STALE
        await transport.reap()
        second = await _claim(transport, owner="w2")
        assert await _record(transport, first, "charge", 1) is StepResult.STALE
        assert await _record(transport, second, "charge", 2) is StepResult.RECORDED
        assert await _finalize(transport, second, Complete()) is FinalizeResult.APPLIED
        assert await _record(transport, second, "late", 3) is StepResult.STALE
        steps = await transport.list_steps(second.job_id)
        assert [(s.name, s.value, s.attempt) for s in steps] == [("charge", 2, 2)]

    async def test_steps_outlive_attempts_and_go_with_the_job(
        self, transport: Transport, clock: ManualClock
    ) -> None:
        """A retried job's next attempt finds its steps (retry_jobs of a dead one keeps them
        too); deleting
        the job, or cleaning it up, deletes them."""
        await _job(transport)
        lease = await _claim(transport)
        await _record(transport, lease, "a", 1)
        await _finalize(transport, lease, Retry(run_at=clock.now(), error="boom"))
        again = await _claim(transport)
        assert [s.name for s in await transport.list_steps(again.job_id)] == ["a"]
        await _finalize(transport, again, Discard(error="give up"))
        assert await transport.retry_jobs(JobFilter.one(again.job_id)) == [again.job_id]
        assert [s.name for s in await transport.list_steps(again.job_id)] == ["a"]
        assert await transport.delete_jobs(JobFilter.one(again.job_id)) == [again.job_id]
        assert await transport.list_steps(again.job_id) == []

        other = await _job(transport)
        lease = await _claim(transport)
        await _record(transport, lease, "b", 2)
        await _finalize(transport, lease, Complete())
        clock.advance(10.0)
        assert await transport.cleanup(finished_before=clock.now()) == 1
        assert await transport.list_steps(other) == []

    async def test_a_bad_step_name_is_refused(self, transport: Transport) -> None:
        """A step name that is not a label is InvalidStepName; nothing is stored."""
        await _job(transport)
        lease = await _claim(transport)
        names: list[Any] = ["", "x" * 256, "tab\there", "nul\x00", 7, None]
        for name in names:
            with pytest.raises(InvalidStepName):
                await _record(transport, lease, name, 1)
        assert await transport.list_steps(lease.job_id) == []

    async def test_a_bad_step_value_is_refused(self, transport: Transport) -> None:
        """A value over MAX_STEP_BYTES is StepTooLarge, one that is not JSON
        PayloadNotSerializable; the limit itself fits. Nothing is stored."""
        await _job(transport)
        lease = await _claim(transport)
        with pytest.raises(StepTooLarge):
            await _record(transport, lease, "big", "x" * MAX_STEP_BYTES)
        with pytest.raises(PayloadNotSerializable):
            await _record(transport, lease, "set", {1, 2})
        assert await transport.list_steps(lease.job_id) == []
        fits = "x" * (MAX_STEP_BYTES - 2)  # the two quotes make it exactly the limit
        assert await _record(transport, lease, "fits", fits) is StepResult.RECORDED

    # --- suspension and signals -----------------------------------------------------------

    async def test_a_signal_wakes_the_suspended_job(
        self, transport: Transport, clock: ManualClock
    ) -> None:
        """Suspend parks the job with its attempt given back; signal stores the event, makes
        it available now and says so; the first value wins."""
        lease = await _suspended(transport, clock, "order:1:paid", 3600.0)
        job = await transport.get(lease.job_id)
        assert job.state is JobState.SUSPENDED
        assert (job.attempt, job.wait_key, job.run_at) == (0, "order:1:paid", clock.now() + 3600)
        (counts,) = await transport.counts()
        assert counts[JobState.SUSPENDED] == 1
        listed = await transport.list_jobs(JobFilter(states=[JobState.SUSPENDED]))
        assert [j.id for j in listed] == [lease.job_id]
        assert await transport.claim("q", owner="w1", limit=1, ttl=_TTL) == []
        assert await transport.get_signal("order:1:paid") is None

        clock.advance(2.0)
        result = await transport.signal("order:1:paid", {"amount": 990})
        assert (result.stored, result.woken) == (True, (lease.job_id,))
        job = await transport.get(lease.job_id)
        assert (job.state, job.wait_key, job.run_at) == (JobState.AVAILABLE, None, clock.now())
        again = await transport.signal("order:1:paid", "later")
        assert (again.stored, again.woken) == (False, ())
        event = await transport.get_signal("order:1:paid")
        assert event is not None
        assert (event.key, event.value, event.signalled_at) == (
            "order:1:paid",
            {"amount": 990},
            clock.now(),
        )
        resumed = await _claim(transport)
        assert resumed.job.attempt == 1

    async def test_a_signal_before_the_wait_is_not_lost(
        self, transport: Transport, clock: ManualClock
    ) -> None:
        """A Suspend finalized after its event was set makes the job available at once."""
        assert (await transport.signal("k", 1)).stored
        lease = await _suspended(transport, clock, "k", 60.0)
        job = await transport.get(lease.job_id)
        assert (job.state, job.attempt, job.wait_key) == (JobState.AVAILABLE, 0, None)
        assert job.run_at == clock.now()
        assert (await _claim(transport)).job_id == lease.job_id

    async def test_prune_signals_deletes_the_oldest_events_before_a_time(
        self, transport: Transport, clock: ManualClock
    ) -> None:
        """prune_signals deletes events set before ``before``, oldest first, at most
        ``limit``; a later wait on a pruned key suspends again until a new signal."""
        for key in ["a", "b", "c"]:
            assert (await transport.signal(key, key)).stored
            clock.advance(10.0)
        newest = clock.now() - 10.0  # when "c" was set
        assert await transport.prune_signals(before=newest, limit=1) == 1
        assert await transport.get_signal("a") is None  # the oldest went first
        assert await transport.get_signal("b") is not None
        assert await transport.prune_signals(before=newest) == 1
        assert await transport.prune_signals(before=newest) == 0
        signal = await transport.get_signal("c")  # set at ``newest``: not before it
        assert signal is not None
        assert signal.value == "c"
        lease = await _suspended(transport, clock, "a", 60.0)
        assert (await transport.get(lease.job_id)).state is JobState.SUSPENDED
        assert (await transport.signal("a", 2)).woken == (lease.job_id,)

    async def test_a_suspension_times_out_like_a_schedule(
        self, transport: Transport, clock: ManualClock
    ) -> None:
        """Once its timeout passed, a suspended job reads available and is claimed; a signal
        then wakes nobody."""
        lease = await _suspended(transport, clock, "never", 10.0)
        clock.advance(10.0)
        assert (await transport.get(lease.job_id)).state is JobState.AVAILABLE
        claimed = await _claim(transport)
        assert (claimed.job_id, claimed.job.wait_key) == (lease.job_id, None)
        assert (await transport.signal("never")).woken == ()
        assert (await transport.get(lease.job_id)).state is JobState.RUNNING

    async def test_operators_act_on_suspended_jobs(
        self, transport: Transport, clock: ManualClock
    ) -> None:
        """cancel and cancel_jobs cancel a suspended job, discard_jobs ends it dead,
        retry_jobs makes it available now; a later signal wakes none of them."""
        cancelled = await _suspended(transport, clock, "k", 60.0)
        assert await transport.cancel(cancelled.job_id) is CancelResult.CANCELLED
        by_filter = await _suspended(transport, clock, "k", 60.0)
        assert await transport.cancel_jobs(JobFilter.one(by_filter.job_id)) == [by_filter.job_id]
        discarded = await _suspended(transport, clock, "k", 60.0)
        assert await transport.discard_jobs(JobFilter.one(discarded.job_id), reason="no") == [
            discarded.job_id
        ]
        retried = await _suspended(transport, clock, "k", 60.0)
        assert await transport.retry_jobs(JobFilter.one(retried.job_id)) == [retried.job_id]
        states = [
            (await transport.get(lease.job_id)).state
            for lease in (cancelled, by_filter, discarded, retried)
        ]
        assert states == [
            JobState.CANCELLED,
            JobState.CANCELLED,
            JobState.DEAD,
            JobState.AVAILABLE,
        ]
        assert (await transport.get(retried.job_id)).wait_key is None
        assert (await transport.signal("k")).woken == ()

    async def test_cancel_wins_over_suspend(self, transport: Transport, clock: ManualClock) -> None:
        """A job whose cancel was requested while it ran ends cancelled when it suspends."""
        await _job(transport)
        lease = await _claim(transport)
        assert await transport.cancel(lease.job_id) is CancelResult.REQUESTED
        outcome = Suspend(event_key="k", run_at=clock.now() + 60)
        assert await _finalize(transport, lease, outcome) is FinalizeResult.APPLIED
        assert (await transport.get(lease.job_id)).state is JobState.CANCELLED

    async def test_a_suspended_job_keeps_its_dedupe_key(
        self, transport: Transport, clock: ManualClock
    ) -> None:
        """A suspended job is active: an enqueue with its dedupe key folds into it."""
        first = await _job(transport, dedupe_key="order-1")
        lease = await _claim(transport)
        await _finalize(transport, lease, Suspend(event_key="k", run_at=clock.now() + 60))
        (folded,) = await transport.enqueue_many(
            [EnqueueRequest(kind="steps.job", queue="q", dedupe_key="order-1")]
        )
        assert (folded.job_id, folded.deduplicated) == (first, True)

    async def test_a_bad_event_key_is_refused(self, transport: Transport) -> None:
        """An event key that is not an identifier is InvalidStepName for signal and
        get_signal; a value over MAX_STEP_BYTES is StepTooLarge. Nothing is stored."""
        keys: list[Any] = ["", "has space", "k" * 129, 3]
        for key in keys:
            with pytest.raises(InvalidStepName):
                await transport.signal(key, 1)
            with pytest.raises(InvalidStepName):
                await transport.get_signal(key)
        with pytest.raises(StepTooLarge):
            await transport.signal("ok", "x" * MAX_STEP_BYTES)
        assert await transport.get_signal("ok") is None

    async def test_a_signal_wakes_the_queue_waiters(
        self, transport: Transport, clock: ManualClock
    ) -> None:
        """A waiter of the suspended job's queue returns once a signal wakes the job."""
        await _suspended(transport, clock, "k", 60.0)
        await spend_wake_ups(transport, ["q"])
        started = anyio.Event()

        async def waiter() -> None:
            started.set()
            await transport.wait_for_work(["q"])

        with anyio.fail_after(_WAKE_TIMEOUT):
            async with anyio.create_task_group() as tg:
                tg.start_soon(waiter)
                await started.wait()
                for _ in range(20):
                    await anyio.lowlevel.checkpoint()
                await transport.signal("k")
