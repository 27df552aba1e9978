"""The conformance suite every transport must pass, as a pytest class to subclass.

Usage, in a backend's test module::

    import pytest
    from transports.testing import TransportConformance

    pytestmark = pytest.mark.anyio

    class TestMyConformance(TransportConformance):
        supports_second_instance = True  # two instances can share one store

        @pytest.fixture
        def transport_factory(self, tmp_path):
            return lambda clock: MyTransport(tmp_path / "jobs.db", clock=clock)

``transport_factory`` returns ``make(clock) -> Transport``: an *unopened* transport on the
test's store, driven by ``clock``. The suite opens and closes it. When
``supports_second_instance`` is true, calling ``make`` twice gives two transports over one
store (two nodes), and the suite checks that they agree with each other too.

Time moves only through the :class:`ManualClock`; the few tests that wait for a wake-up
bound the wait with a short real timeout as a safety net only.
"""

from __future__ import annotations

import math
from collections.abc import AsyncIterator, Callable
from typing import Any, ClassVar

import anyio
import anyio.lowlevel
import attrs
import pytest

from .._base import Transport
from .._errors import (
    InvalidQueueName,
    InvalidRequest,
    JobNotFound,
    PayloadNotSerializable,
    PayloadTooLarge,
    TransportClosed,
)
from .._records import (
    After,
    Cancel,
    CancelResult,
    Complete,
    Discard,
    EnqueueRequest,
    FinalizeRequest,
    FinalizeResult,
    Job,
    JobFilter,
    JobState,
    Lease,
    OnFailure,
    Outcome,
    QueueConfig,
    Release,
    RenewRequest,
    RenewResult,
    Retry,
    Snooze,
)
from ._clock import ManualClock
from ._dependencies import TransportDependencies
from ._edges import TransportEdges
from ._fair import TransportFairShare
from ._fine_print import TransportFinePrint
from ._flow import TransportFlowControl, TransportRateLimits
from ._observing import TransportObserving
from ._operators import TransportOperators
from ._results import TransportResults
from ._steps import TransportSteps
from ._waking import spend_wake_ups

__all__ = ["TransportConformance", "TransportFactory"]

TransportFactory = Callable[[ManualClock], Transport]
"""Builds an unopened transport on the test's store, reading time from the given clock."""

TTL = 30.0
WAKE_TIMEOUT = 5.0  # real seconds; a safety net for wake-up tests, never a wait

BAD_NAMES = ["x'; DROP TABLE jobs;--", "has space", "", "q" * 200, 'quo"te', "semi;colon"]
NOT_JSON: list[Any] = [{1, 2}, b"bytes", math.nan, {"inf": math.inf}, object(), {"k": {1}}]


def _request(**fields: Any) -> EnqueueRequest:
    fields.setdefault("kind", "test.job")
    fields.setdefault("queue", "q")
    return EnqueueRequest(**fields)


async def _enqueue(transport: Transport, **fields: Any) -> int:
    result = await transport.enqueue(_request(**fields))
    return result.job_id


async def _claim_one(
    transport: Transport, queue: str = "q", *, owner: str = "w1", ttl: float = TTL
) -> Lease:
    leases = await transport.claim(queue, owner=owner, limit=1, ttl=ttl)
    assert len(leases) == 1, f"expected one claimable job in {queue!r}, got {leases}"
    return leases[0]


async def _finalize(transport: Transport, lease: Lease, outcome: Outcome) -> FinalizeResult:
    (result,) = await transport.finalize(
        [FinalizeRequest(job_id=lease.job_id, token=lease.token, outcome=outcome)]
    )
    return result


async def _renew(transport: Transport, lease: Lease, ttl: float = TTL) -> RenewResult:
    (result,) = await transport.renew(
        [RenewRequest(job_id=lease.job_id, token=lease.token)], ttl=ttl
    )
    return result


async def _total(transport: Transport) -> int:
    return sum(c.total for c in await transport.counts())


async def _wakes(transport: Transport, queues: list[str], action: Any) -> None:
    """Assert a ``wait_for_work(queues)`` started before ``action()`` returns after it (and
    not on a wake-up kept from before: those are spent first)."""
    await spend_wake_ups(transport, queues)
    started = anyio.Event()
    returned = anyio.Event()

    async def waiter() -> None:
        started.set()
        await transport.wait_for_work(queues)
        returned.set()

    with anyio.fail_after(WAKE_TIMEOUT):
        async with anyio.create_task_group() as tg:
            tg.start_soon(waiter)
            await started.wait()
            # Let the waiter get well into its wait (a backend may need a few round trips).
            # Spurious returns are allowed, so an early return is not checked here.
            for _ in range(20):
                await anyio.lowlevel.checkpoint()
            await action()
            await returned.wait()


class TransportConformance(
    TransportOperators,
    TransportFinePrint,
    TransportEdges,
    TransportObserving,
    TransportFlowControl,
    TransportRateLimits,
    TransportFairShare,
    TransportResults,
    TransportDependencies,
    TransportSteps,
):
    """The behaviour every :class:`~transports.Transport` must show; subclass to run it.

    Subclasses provide the ``transport_factory`` fixture (see the module docstring) and may set
    ``supports_second_instance``.
    """

    pytestmark: ClassVar[list[pytest.MarkDecorator]] = [pytest.mark.anyio]

    supports_second_instance: ClassVar[bool] = False
    """True when two transports from one ``transport_factory`` share one store."""

    @pytest.fixture
    def transport_factory(self) -> TransportFactory:
        """Overridden by the backend's test class: ``make(clock) -> unopened Transport``."""
        raise NotImplementedError("subclasses of TransportConformance provide transport_factory")

    @pytest.fixture
    def clock(self) -> ManualClock:
        """The test's time, shared by every transport it opens."""
        return ManualClock()

    @pytest.fixture
    async def transport(
        self, transport_factory: TransportFactory, clock: ManualClock
    ) -> AsyncIterator[Transport]:
        """An open transport on a fresh, empty store."""
        async with transport_factory(clock) as transport:
            yield transport

    @pytest.fixture
    async def second_transport(
        self, transport_factory: TransportFactory, clock: ManualClock, transport: Transport
    ) -> AsyncIterator[Transport]:
        """A second open transport (another node) on the same store as ``transport``."""
        if not self.supports_second_instance:
            pytest.skip("this backend has no second instance over one store")
        async with transport_factory(clock) as second:
            yield second

    # --- enqueue ---------------------------------------------------------------------------

    async def test_enqueue_one_stores_an_available_job(
        self, transport: Transport, clock: ManualClock
    ) -> None:
        """An enqueued job is stored available, at now, with every field as requested."""
        payload = {"to": "ada@example.com", "n": [1, 2.5, None, True], "ü": "ß"}
        result = await transport.enqueue(
            _request(kind="email.send", payload=payload, priority=3, max_attempts=7)
        )
        assert not result.deduplicated
        job = await transport.get(result.job_id)
        assert job.id == result.job_id
        assert job.kind == "email.send"
        assert job.queue == "q"
        assert job.payload == payload
        assert job.state is JobState.AVAILABLE
        assert job.priority == 3
        assert job.run_at == clock.now()
        assert job.attempt == 0
        assert job.max_attempts == 7
        assert job.last_error is None
        assert job.dedupe_key is None
        assert job.created_at == clock.now()
        assert job.finished_at is None
        assert job.lease_owner is None
        assert job.lease_expires_at is None
        assert not job.cancel_requested

    async def test_enqueue_scalar_payloads_round_trip(self, transport: Transport) -> None:
        """Every kind of JSON value comes back equal, None included."""
        payloads: list[Any] = [None, 0, -3, 1.5, "text", True, [], {}, [{"a": [1]}]]
        for payload in payloads:
            job_id = await _enqueue(transport, payload=payload)
            assert (await transport.get(job_id)).payload == payload

    async def test_stored_payload_is_a_copy(self, transport: Transport) -> None:
        """Mutating the enqueued or the returned payload never changes the stored one."""
        payload: dict[str, Any] = {"items": [1, 2]}
        job_id = await _enqueue(transport, payload=payload)
        payload["items"].append(3)
        fetched = await transport.get(job_id)
        assert fetched.payload == {"items": [1, 2]}
        fetched.payload["items"].append(4)
        assert (await transport.get(job_id)).payload == {"items": [1, 2]}

    async def test_enqueue_many_returns_results_in_order(self, transport: Transport) -> None:
        """A batch adds every job and answers in request order, with ascending ids."""
        results = await transport.enqueue_many(
            [_request(kind=f"k{i}", payload=i) for i in range(5)]
        )
        ids = [r.job_id for r in results]
        assert len(set(ids)) == 5
        assert ids == sorted(ids)
        for i, job_id in enumerate(ids):
            job = await transport.get(job_id)
            assert (job.kind, job.payload) == (f"k{i}", i)
        assert await transport.enqueue_many([]) == []

    async def test_enqueue_many_with_one_bad_payload_writes_nothing(
        self, transport: Transport
    ) -> None:
        """A batch with one unserialisable payload raises and adds no job at all."""
        batch = [_request(payload=1), _request(payload={1, 2}), _request(payload=3)]
        with pytest.raises(PayloadNotSerializable):
            await transport.enqueue_many(batch)
        assert await transport.counts() == []
        assert await transport.list_jobs() == []

    async def test_enqueue_many_with_one_oversized_payload_writes_nothing(
        self, transport: Transport
    ) -> None:
        """A batch with one payload over the size limit raises and adds no job at all."""
        big = "x" * (transport.max_payload_bytes + 1)
        with pytest.raises(PayloadTooLarge):
            await transport.enqueue_many([_request(payload=1), _request(payload=big)])
        assert await transport.counts() == []

    # --- dedupe ----------------------------------------------------------------------------

    async def test_dedupe_folds_into_active_job(self, transport: Transport) -> None:
        """A request whose dedupe key matches an active job adds nothing and returns its id."""
        first = await transport.enqueue(_request(dedupe_key="k", payload=1))
        again = await transport.enqueue(_request(dedupe_key="k", payload=2))
        assert not first.deduplicated
        assert again.deduplicated
        assert again.job_id == first.job_id
        assert (await transport.get(first.job_id)).payload == 1
        assert await _total(transport) == 1

    async def test_dedupe_folds_into_running_and_scheduled_jobs(self, transport: Transport) -> None:
        """Scheduled and running jobs are active: their dedupe keys still fold."""
        scheduled = await _enqueue(transport, dedupe_key="later", delay=60)
        running = await _enqueue(transport, dedupe_key="now")
        await _claim_one(transport)
        for key, job_id in [("later", scheduled), ("now", running)]:
            result = await transport.enqueue(_request(dedupe_key=key))
            assert result.deduplicated
            assert result.job_id == job_id
        assert await _total(transport) == 2

    async def test_a_claimed_job_carries_its_workflow(self, transport: Transport) -> None:
        """The job of a lease is the stored job: its workflow too."""
        job_id = await _enqueue(transport, workflow="order-7")
        lease = await _claim_one(transport)
        assert (lease.job.id, lease.job.workflow) == (job_id, "order-7")

    async def test_a_batch_without_dedupe_keys_folds_nothing(self, transport: Transport) -> None:
        """Each result of a plain batch says ``deduplicated=False``, not just something falsy."""
        results = await transport.enqueue_many([_request(), _request()])
        assert [r.deduplicated for r in results] == [False, False]
        assert all(r.deduplicated is False for r in results)

    async def test_dedupe_within_one_batch(self, transport: Transport) -> None:
        """Two requests of one batch with the same key fold into the first."""
        results = await transport.enqueue_many(
            [_request(dedupe_key="k"), _request(dedupe_key="other"), _request(dedupe_key="k")]
        )
        assert [r.deduplicated for r in results] == [False, False, True]
        assert results[2].job_id == results[0].job_id
        assert await _total(transport) == 2

    async def test_dedupe_key_is_free_once_the_job_is_final(self, transport: Transport) -> None:
        """After the job with a key finishes (or is cancelled), the key makes a new job."""
        first = await _enqueue(transport, dedupe_key="k")
        lease = await _claim_one(transport)
        assert await _finalize(transport, lease, Complete()) is FinalizeResult.APPLIED
        second = await transport.enqueue(_request(dedupe_key="k"))
        assert not second.deduplicated
        assert second.job_id != first
        assert await transport.cancel(second.job_id) is CancelResult.CANCELLED
        third = await transport.enqueue(_request(dedupe_key="k"))
        assert not third.deduplicated
        assert third.job_id not in (first, second.job_id)

    async def test_dedupe_is_per_queue(self, transport: Transport) -> None:
        """The same dedupe key in two queues makes two jobs."""
        a = await transport.enqueue(_request(queue="a", dedupe_key="k"))
        b = await transport.enqueue(_request(queue="b", dedupe_key="k"))
        assert not b.deduplicated
        assert a.job_id != b.job_id

    # --- claim -----------------------------------------------------------------------------

    async def test_claim_leases_the_job(self, transport: Transport, clock: ManualClock) -> None:
        """A claim makes the job running, owned, with attempt 1 and an expiry of now + ttl."""
        job_id = await _enqueue(transport, payload={"a": 1})
        lease = await _claim_one(transport, owner="worker-7", ttl=12.5)
        assert lease.job_id == job_id
        assert lease.owner == "worker-7"
        assert lease.expires_at == clock.now() + 12.5
        assert lease.job.state is JobState.RUNNING
        assert lease.job.attempt == 1
        assert lease.job.payload == {"a": 1}
        assert lease.job.lease_owner == "worker-7"
        stored = await transport.get(job_id)
        assert stored.state is JobState.RUNNING
        assert stored.attempt == 1
        assert stored.lease_owner == "worker-7"
        assert stored.lease_expires_at == clock.now() + 12.5

    async def test_claim_respects_limit_and_empties(self, transport: Transport) -> None:
        """A claim returns at most ``limit`` jobs and ``[]`` once none is due."""
        await transport.enqueue_many([_request() for _ in range(5)])
        first = await transport.claim("q", owner="w", limit=3, ttl=TTL)
        second = await transport.claim("q", owner="w", limit=3, ttl=TTL)
        assert (len(first), len(second)) == (3, 2)
        assert len({lease.job_id for lease in first + second}) == 5
        assert await transport.claim("q", owner="w", limit=3, ttl=TTL) == []

    async def test_claim_takes_only_its_queue(self, transport: Transport) -> None:
        """A claim never returns a job of another queue."""
        await _enqueue(transport, queue="other")
        assert await transport.claim("q", owner="w", limit=10, ttl=TTL) == []
        assert len(await transport.claim("other", owner="w", limit=10, ttl=TTL)) == 1

    async def test_claim_order_is_priority_then_run_at_then_id(
        self, transport: Transport, clock: ManualClock
    ) -> None:
        """Due jobs are claimed by priority (lower first), then run_at, then id, one claim at
        a time or together (one claim's leases come back in that order)."""
        now = clock.now()
        jobs = [
            ("late_normal", 0, now - 1),
            ("urgent", -5, now),
            ("early_normal_b", 0, now - 10),
            ("low", 9, now - 100),
            ("early_normal_a", 0, now - 10),
        ]
        expected = ["urgent", "early_normal_b", "early_normal_a", "late_normal", "low"]
        for name, priority, run_at in jobs:
            await _enqueue(transport, kind=name, priority=priority, run_at=run_at)
        order = [(await _claim_one(transport)).job.kind for _ in jobs]
        assert order == expected
        for name, priority, run_at in jobs:
            await _enqueue(transport, kind=name, priority=priority, run_at=run_at)
        leases = await transport.claim("q", owner="w", limit=10, ttl=TTL)
        assert [lease.job.kind for lease in leases] == expected

    async def test_delayed_job_is_scheduled_until_due(
        self, transport: Transport, clock: ManualClock
    ) -> None:
        """A job with a delay or a future run_at is scheduled, then claimable once due."""
        delayed = await _enqueue(transport, delay=60)
        absolute = await _enqueue(transport, run_at=clock.now() + 120)
        job = await transport.get(delayed)
        assert job.state is JobState.SCHEDULED
        assert job.run_at == clock.now() + 60
        assert (await transport.get(absolute)).state is JobState.SCHEDULED
        assert await transport.claim("q", owner="w", limit=10, ttl=TTL) == []
        clock.advance(61)
        assert [
            lease.job_id for lease in await transport.claim("q", owner="w", limit=10, ttl=TTL)
        ] == [delayed]
        clock.advance(60)
        assert [
            lease.job_id for lease in await transport.claim("q", owner="w", limit=10, ttl=TTL)
        ] == [absolute]

    async def test_due_scheduled_job_competes_by_priority(
        self, transport: Transport, clock: ManualClock
    ) -> None:
        """A scheduled job that became due is claimed before a less urgent available one."""
        await _enqueue(transport, kind="plain", priority=5)
        await _enqueue(transport, kind="scheduled", priority=0, delay=10)
        clock.advance(11)
        assert (await _claim_one(transport)).job.kind == "scheduled"

    async def test_paused_queue_yields_nothing(self, transport: Transport) -> None:
        """A paused queue's jobs are not claimed until it is resumed."""
        await _enqueue(transport)
        await transport.set_queue_config(QueueConfig(name="q", paused=True))
        assert await transport.claim("q", owner="w", limit=10, ttl=TTL) == []
        await transport.set_queue_config(QueueConfig(name="q", paused=False))
        assert len(await transport.claim("q", owner="w", limit=10, ttl=TTL)) == 1

    async def test_each_claim_mints_a_fresh_token(
        self, transport: Transport, clock: ManualClock
    ) -> None:
        """Re-claiming a job gives it a new token and the next attempt."""
        await _enqueue(transport)
        first = await _claim_one(transport, ttl=10)
        clock.advance(11)
        assert len(await transport.reap()) == 1
        second = await _claim_one(transport, ttl=10)
        assert second.job_id == first.job_id
        assert second.token != first.token
        assert second.job.attempt == 2

    async def test_claim_rejects_bad_arguments(self, transport: Transport) -> None:
        """A claim with limit < 1 or ttl <= 0 raises InvalidRequest and leases nothing."""
        await _enqueue(transport)
        with pytest.raises(InvalidRequest):
            await transport.claim("q", owner="w", limit=0, ttl=TTL)
        with pytest.raises(InvalidRequest):
            await transport.claim("q", owner="w", limit=1, ttl=0)
        (counts,) = await transport.counts()
        assert counts[JobState.AVAILABLE] == 1

    async def test_concurrent_claims_have_one_winner_per_job(self, transport: Transport) -> None:
        """Many tasks claiming at once on one transport never get the same job twice."""
        await transport.enqueue_many([_request() for _ in range(60)])
        claimed: list[int] = []

        async def claimant(n: int) -> None:
            while leases := await transport.claim("q", owner=f"w{n}", limit=2, ttl=TTL):
                claimed.extend(lease.job_id for lease in leases)

        async with anyio.create_task_group() as tg:
            for n in range(12):
                tg.start_soon(claimant, n)
        assert len(claimed) == 60
        assert len(set(claimed)) == 60

    async def test_concurrent_claims_across_instances_have_one_winner(
        self, transport: Transport, second_transport: Transport
    ) -> None:
        """Claimants on two nodes over one store never get the same job twice."""
        await transport.enqueue_many([_request() for _ in range(60)])
        claimed: list[int] = []

        async def claimant(node: Transport, n: int) -> None:
            while leases := await node.claim("q", owner=f"w{n}", limit=2, ttl=TTL):
                claimed.extend(lease.job_id for lease in leases)

        async with anyio.create_task_group() as tg:
            for n in range(12):
                tg.start_soon(claimant, transport if n % 2 else second_transport, n)
        assert len(claimed) == 60
        assert len(set(claimed)) == 60

    async def test_second_instance_sees_the_same_jobs(
        self, transport: Transport, second_transport: Transport
    ) -> None:
        """A job enqueued on one node is read, claimed and finalized from another."""
        job_id = await _enqueue(transport, payload={"x": 1})
        assert (await second_transport.get(job_id)).payload == {"x": 1}
        lease = await _claim_one(second_transport)
        assert await _renew(transport, lease) is RenewResult.RENEWED
        assert await _finalize(transport, lease, Complete()) is FinalizeResult.APPLIED
        assert (await second_transport.get(job_id)).state is JobState.SUCCEEDED

    # --- renew -----------------------------------------------------------------------------

    async def test_renew_moves_the_expiry(self, transport: Transport, clock: ManualClock) -> None:
        """Renewing a live lease reports RENEWED and sets its expiry to now + ttl."""
        await _enqueue(transport)
        lease = await _claim_one(transport, ttl=10)
        clock.advance(8)
        assert await _renew(transport, lease, ttl=10) is RenewResult.RENEWED
        assert (await transport.get(lease.job_id)).lease_expires_at == clock.now() + 10
        clock.advance(8)  # past the first expiry, within the renewed one
        assert await transport.reap() == []
        assert await _renew(transport, lease, ttl=10) is RenewResult.RENEWED

    async def test_renew_reports_lost(self, transport: Transport, clock: ManualClock) -> None:
        """Renew is LOST for a wrong token, a finished job and an unknown id."""
        await transport.enqueue_many([_request(), _request()])
        live = await _claim_one(transport)
        done = await _claim_one(transport)
        assert await _finalize(transport, done, Complete()) is FinalizeResult.APPLIED
        results = await transport.renew(
            [
                RenewRequest(job_id=live.job_id, token=live.token + 1000),
                RenewRequest(job_id=done.job_id, token=done.token),
                RenewRequest(job_id=987_654_321, token=live.token),
                RenewRequest(job_id=live.job_id, token=live.token),
            ],
            ttl=TTL,
        )
        assert results == [
            RenewResult.LOST,
            RenewResult.LOST,
            RenewResult.LOST,
            RenewResult.RENEWED,
        ]
        assert await transport.renew([], ttl=TTL) == []

    async def test_renew_with_nothing_running_reports_lost(self, transport: Transport) -> None:
        """A renewal that arrives after the store's last lease ended is LOST, not an error."""
        await _enqueue(transport)
        done = await _claim_one(transport)
        assert await _finalize(transport, done, Complete()) is FinalizeResult.APPLIED
        assert await _renew(transport, done) is RenewResult.LOST

    async def test_renewals_of_an_earlier_lease_never_cut_a_later_one_short(
        self, transport: Transport, clock: ManualClock
    ) -> None:
        """A job renewed a few times, retried and claimed again is not reaped when its earlier
        lease's expiries pass: only the live lease's expiry counts."""
        await _enqueue(transport, max_attempts=5)
        first = await _claim_one(transport, ttl=10)
        for _ in range(4):
            clock.advance(1)
            assert await _renew(transport, first, ttl=10) is RenewResult.RENEWED
        retry = Retry(run_at=clock.now())
        assert await _finalize(transport, first, retry) is FinalizeResult.APPLIED
        second = await _claim_one(transport, ttl=100)
        assert second.job_id == first.job_id
        clock.advance(30)  # past every expiry of the first lease, well within the second
        assert await transport.reap() == []
        assert await _renew(transport, second, ttl=100) is RenewResult.RENEWED

    async def test_a_rescheduled_job_waits_for_its_new_time_not_its_first(
        self, transport: Transport, clock: ManualClock
    ) -> None:
        """A scheduled job run early by retry_jobs, then snoozed, waits for the snooze: the
        time it was first scheduled for no longer makes it claimable."""
        job_id = await _enqueue(transport, delay=100)
        assert await transport.retry_jobs(JobFilter(ids=(job_id,))) == [job_id]
        lease = await _claim_one(transport)
        snooze = Snooze(run_at=clock.now() + 200)
        assert await _finalize(transport, lease, snooze) is FinalizeResult.APPLIED
        clock.advance(150)
        assert await transport.claim("q", owner="w", limit=1, ttl=TTL) == []
        clock.advance(51)
        assert (await _claim_one(transport)).job_id == job_id

    async def test_a_finished_job_is_not_revived_by_the_schedule_it_once_had(
        self, transport: Transport, clock: ManualClock
    ) -> None:
        """A scheduled job cancelled, run again by retry_jobs and completed stays succeeded
        when the time it was first scheduled for comes."""
        job_id = await _enqueue(transport, delay=100)
        assert await transport.cancel(job_id) is CancelResult.CANCELLED
        assert await transport.retry_jobs(JobFilter(ids=(job_id,))) == [job_id]
        lease = await _claim_one(transport)
        assert await _finalize(transport, lease, Complete()) is FinalizeResult.APPLIED
        clock.advance(101)
        assert await transport.claim("q", owner="w", limit=1, ttl=TTL) == []
        assert (await transport.get(job_id)).state is JobState.SUCCEEDED

    async def test_a_retry_with_an_error_of_a_job_asked_to_cancel_keeps_the_error(
        self, transport: Transport
    ) -> None:
        """Cancel wins over a retry, and the retry's error becomes the job's last error."""
        await _enqueue(transport, max_attempts=5)
        lease = await _claim_one(transport)
        assert await transport.cancel(lease.job_id) is CancelResult.REQUESTED
        retry = Retry(run_at=0.0, error="boom")
        assert await _finalize(transport, lease, retry) is FinalizeResult.APPLIED
        job = await transport.get(lease.job_id)
        assert (job.state, job.last_error) == (JobState.CANCELLED, "boom")

    async def test_every_fold_is_counted_in_the_queues_stats(
        self, transport: Transport, clock: ManualClock
    ) -> None:
        """Each enqueue folded by its dedupe key counts once in the minute's ``deduplicated``,
        however many one batch holds."""
        clock.advance(120.0 - clock.now() % 60.0)  # at the start of a minute
        await _enqueue(transport, dedupe_key="k")
        await transport.enqueue_many([_request(dedupe_key="k") for _ in range(3)])
        await transport.enqueue(_request(queue="other", dedupe_key="k"))
        await transport.enqueue(_request(queue="other", dedupe_key="k"))
        stats = {s.queue: s.deduplicated for s in await transport.list_stats()}
        assert stats == {"q": 3, "other": 1}

    async def test_renew_never_revives_an_expired_lease(
        self, transport: Transport, clock: ManualClock
    ) -> None:
        """An expired lease is LOST on renew even before a reap, and the reap still takes it."""
        await _enqueue(transport)
        lease = await _claim_one(transport, ttl=10)
        clock.advance(11)
        assert await _renew(transport, lease) is RenewResult.LOST
        reclaimed = await transport.reap()
        assert [r.job_id for r in reclaimed] == [lease.job_id]

    async def test_renew_after_reap_and_reclaim_is_lost(
        self, transport: Transport, clock: ManualClock
    ) -> None:
        """The old token of a job re-claimed by another worker is LOST; the new one renews."""
        await _enqueue(transport)
        old = await _claim_one(transport, owner="w1", ttl=10)
        clock.advance(11)
        await transport.reap()
        new = await _claim_one(transport, owner="w2", ttl=10)
        assert await _renew(transport, old) is RenewResult.LOST
        assert await _renew(transport, new) is RenewResult.RENEWED

    async def test_renew_reports_cancel_requested_and_renews(
        self, transport: Transport, clock: ManualClock
    ) -> None:
        """A running job with a cancel request renews as CANCEL_REQUESTED, expiry moved."""
        await _enqueue(transport)
        lease = await _claim_one(transport, ttl=10)
        assert await transport.cancel(lease.job_id) is CancelResult.REQUESTED
        clock.advance(5)
        assert await _renew(transport, lease, ttl=10) is RenewResult.CANCEL_REQUESTED
        assert (await transport.get(lease.job_id)).lease_expires_at == clock.now() + 10

    async def test_batches_of_the_wrong_records_are_refused_by_name(
        self, transport: Transport
    ) -> None:
        """enqueue_many, renew and finalize refuse a batch that is not a sequence of their own
        request records with InvalidRequest naming ``requests`` and the record class."""
        calls: list[tuple[str, Any]] = [
            ("EnqueueRequest", lambda items: transport.enqueue_many(items)),
            ("RenewRequest", lambda items: transport.renew(items, ttl=TTL)),
            ("FinalizeRequest", lambda items: transport.finalize(items)),
        ]
        for record, call in calls:
            with pytest.raises(InvalidRequest, match=rf"^requests must hold {record} records"):
                await call([object()])
            with pytest.raises(
                InvalidRequest, match=rf"^requests must be a sequence of {record}, got"
            ):
                await call("not a batch")
        assert await _total(transport) == 0

    async def test_renew_rejects_bad_ttl(self, transport: Transport) -> None:
        """Renew with ttl <= 0 raises InvalidRequest."""
        await _enqueue(transport)
        lease = await _claim_one(transport)
        with pytest.raises(InvalidRequest):
            await _renew(transport, lease, ttl=0)

    # --- finalize --------------------------------------------------------------------------

    async def test_finalize_complete(self, transport: Transport, clock: ManualClock) -> None:
        """Complete makes the job succeeded with finished_at = now."""
        await _enqueue(transport)
        lease = await _claim_one(transport)
        clock.advance(3)
        assert await _finalize(transport, lease, Complete()) is FinalizeResult.APPLIED
        job = await transport.get(lease.job_id)
        assert job.state is JobState.SUCCEEDED
        assert job.finished_at == clock.now()
        assert job.attempt == 1

    async def test_finalize_retry_later_schedules_the_next_attempt(
        self, transport: Transport, clock: ManualClock
    ) -> None:
        """Retry with attempts left schedules the job at run_at, keeping the attempt and error."""
        await _enqueue(transport, max_attempts=3)
        lease = await _claim_one(transport)
        retry_at = clock.now() + 30
        assert (
            await _finalize(transport, lease, Retry(run_at=retry_at, error="boom"))
            is FinalizeResult.APPLIED
        )
        job = await transport.get(lease.job_id)
        assert job.state is JobState.SCHEDULED
        assert job.run_at == retry_at
        assert job.attempt == 1
        assert job.last_error == "boom"
        assert job.finished_at is None
        assert await transport.claim("q", owner="w", limit=1, ttl=TTL) == []
        clock.advance(31)
        assert (await _claim_one(transport)).job.attempt == 2

    async def test_finalize_retry_now_is_available_at_once(
        self, transport: Transport, clock: ManualClock
    ) -> None:
        """Retry with run_at <= now makes the job available again immediately."""
        await _enqueue(transport, max_attempts=3)
        lease = await _claim_one(transport)
        await _finalize(transport, lease, Retry(run_at=clock.now()))
        assert (await transport.get(lease.job_id)).state is JobState.AVAILABLE
        assert (await _claim_one(transport)).job.attempt == 2

    async def test_finalize_retry_on_last_attempt_is_dead(
        self, transport: Transport, clock: ManualClock
    ) -> None:
        """Retry when attempt >= max_attempts ends the job dead, with the error kept."""
        await _enqueue(transport, max_attempts=2)
        for attempt in (1, 2):
            lease = await _claim_one(transport)
            assert lease.job.attempt == attempt
            await _finalize(transport, lease, Retry(run_at=clock.now(), error=f"e{attempt}"))
        job = await transport.get(lease.job_id)
        assert job.state is JobState.DEAD
        assert job.last_error == "e2"
        assert job.finished_at == clock.now()
        assert await transport.claim("q", owner="w", limit=1, ttl=TTL) == []

    async def test_finalize_snooze_gives_the_attempt_back(
        self, transport: Transport, clock: ManualClock
    ) -> None:
        """Snooze schedules the job at run_at without spending an attempt."""
        await _enqueue(transport, max_attempts=1)
        lease = await _claim_one(transport)
        await _finalize(transport, lease, Snooze(run_at=clock.now() + 10))
        job = await transport.get(lease.job_id)
        assert job.state is JobState.SCHEDULED
        assert job.attempt == 0
        assert job.run_at == clock.now() + 10
        clock.advance(10)
        again = await _claim_one(transport)
        assert again.job.attempt == 1

    async def test_finalize_discard_is_dead(self, transport: Transport, clock: ManualClock) -> None:
        """Discard ends the job dead at once, whatever attempts remain."""
        await _enqueue(transport, max_attempts=10)
        lease = await _claim_one(transport)
        await _finalize(transport, lease, Discard(error="not retryable"))
        job = await transport.get(lease.job_id)
        assert job.state is JobState.DEAD
        assert job.last_error == "not retryable"
        assert job.finished_at == clock.now()

    async def test_finalize_cancel_is_cancelled(
        self, transport: Transport, clock: ManualClock
    ) -> None:
        """Cancel ends the job cancelled."""
        await _enqueue(transport)
        lease = await _claim_one(transport)
        await _finalize(transport, lease, Cancel(reason="asked"))
        job = await transport.get(lease.job_id)
        assert job.state is JobState.CANCELLED
        assert job.finished_at == clock.now()

    async def test_finalize_release_is_available_at_once_with_attempt_back(
        self, transport: Transport
    ) -> None:
        """Release makes the job available now and gives the attempt back."""
        await _enqueue(transport, max_attempts=1)
        lease = await _claim_one(transport)
        await _finalize(transport, lease, Release())
        job = await transport.get(lease.job_id)
        assert job.state is JobState.AVAILABLE
        assert job.attempt == 0
        again = await _claim_one(transport)
        assert again.job_id == lease.job_id
        assert again.job.attempt == 1

    async def test_finalize_batch_answers_in_order(self, transport: Transport) -> None:
        """A finalize batch applies each request on its own and answers in order."""
        await transport.enqueue_many([_request(), _request()])
        a = await _claim_one(transport)
        b = await _claim_one(transport)
        results = await transport.finalize(
            [
                FinalizeRequest(job_id=a.job_id, token=a.token, outcome=Complete()),
                FinalizeRequest(job_id=b.job_id, token=b.token + 1000, outcome=Complete()),
                FinalizeRequest(job_id=b.job_id, token=b.token, outcome=Discard(error="x")),
                FinalizeRequest(job_id=a.job_id, token=a.token, outcome=Complete()),
            ]
        )
        assert results == [
            FinalizeResult.APPLIED,
            FinalizeResult.STALE,
            FinalizeResult.APPLIED,
            FinalizeResult.STALE,
        ]
        assert (await transport.get(a.job_id)).state is JobState.SUCCEEDED
        assert (await transport.get(b.job_id)).state is JobState.DEAD
        assert await transport.finalize([]) == []

    @pytest.mark.parametrize("size", [2, 3, 600], ids=lambda n: f"{n}-requests")
    async def test_finalize_of_one_lease_twice_applies_the_first_outcome(
        self, transport: Transport, size: int
    ) -> None:
        """The same lease named again in one batch (with other outcomes) is stale: the first
        occurrence's outcome is the one applied, whatever the batch's size."""
        await transport.enqueue(_request())
        lease = await _claim_one(transport)
        outcomes: list[Outcome] = [Discard(error="first"), Complete(), Retry(run_at=0.0)]
        results = await transport.finalize(
            [
                FinalizeRequest(
                    job_id=lease.job_id, token=lease.token, outcome=outcomes[i % len(outcomes)]
                )
                for i in range(size)
            ]
        )
        assert results == [FinalizeResult.APPLIED] + [FinalizeResult.STALE] * (size - 1)
        job = await transport.get(lease.job_id)
        assert job.state is JobState.DEAD
        assert job.last_error == "first"

    async def test_renew_batch_with_repeats_and_stale_tokens_answers_each_position(
        self, transport: Transport, clock: ManualClock
    ) -> None:
        """A renew batch answers every position: a repeated lease as its first occurrence, a
        stale token of a job LOST even when that job's live token comes right after."""
        await transport.enqueue(_request())
        b = await _claim_one(transport)
        clock.advance(TTL)
        await transport.reap()
        b2 = await _claim_one(transport)  # b's job again, with a new token
        assert b2.job_id == b.job_id
        await transport.enqueue(_request())
        a = await _claim_one(transport)
        live_a = RenewRequest(job_id=a.job_id, token=a.token)
        stale_b = RenewRequest(job_id=b.job_id, token=b.token)
        live_b = RenewRequest(job_id=b2.job_id, token=b2.token)
        results = await transport.renew([stale_b, live_b, live_b, stale_b, live_a, live_b], ttl=TTL)
        assert results == [
            RenewResult.LOST,
            RenewResult.RENEWED,
            RenewResult.RENEWED,
            RenewResult.LOST,
            RenewResult.RENEWED,
            RenewResult.RENEWED,
        ]
        assert (await transport.get(b2.job_id)).lease_expires_at == clock.now() + TTL

    @pytest.mark.parametrize(
        "outcome",
        [
            Complete(),
            Retry(run_at=0.0, error="late"),
            Snooze(run_at=0.0),
            Discard(error="late"),
            Cancel(reason="late"),
            Release(),
        ],
        ids=lambda outcome: type(outcome).__name__,
    )
    async def test_stale_token_changes_nothing(
        self, transport: Transport, clock: ManualClock, outcome: Outcome
    ) -> None:
        """A finalize or renew with the token of a reaped, re-claimed lease is refused."""
        await _enqueue(transport)
        old = await _claim_one(transport, owner="w1", ttl=10)
        clock.advance(11)
        await transport.reap()
        new = await _claim_one(transport, owner="w2", ttl=10)
        before = await transport.get(new.job_id)
        assert await _finalize(transport, old, outcome) is FinalizeResult.STALE
        assert await _renew(transport, old) is RenewResult.LOST
        assert await transport.get(new.job_id) == before
        wrong = Lease(job=new.job, token=new.token + 1000, owner="w2", expires_at=new.expires_at)
        assert await _finalize(transport, wrong, outcome) is FinalizeResult.STALE
        assert await transport.get(new.job_id) == before
        assert await _finalize(transport, new, Complete()) is FinalizeResult.APPLIED

    async def test_finalize_after_reap_is_stale(
        self, transport: Transport, clock: ManualClock
    ) -> None:
        """Once a reap took the job back, the old holder's finalize is stale."""
        await _enqueue(transport)
        lease = await _claim_one(transport, ttl=10)
        clock.advance(11)
        await transport.reap()
        assert await _finalize(transport, lease, Complete()) is FinalizeResult.STALE
        assert (await transport.get(lease.job_id)).state is JobState.AVAILABLE

    async def test_finalize_after_expiry_before_reap_is_applied(
        self, transport: Transport, clock: ManualClock
    ) -> None:
        """A finalize after the lease expired but before any reap still applies."""
        await _enqueue(transport)
        lease = await _claim_one(transport, ttl=10)
        clock.advance(11)
        assert await _finalize(transport, lease, Complete()) is FinalizeResult.APPLIED
        assert (await transport.get(lease.job_id)).state is JobState.SUCCEEDED
        assert await transport.reap() == []

    async def test_expiry_and_due_times_are_inclusive(
        self, transport: Transport, clock: ManualClock
    ) -> None:
        """At exactly expires_at a lease is expired, and at exactly run_at a job is due."""
        await _enqueue(transport, kind="due", delay=10)
        await _enqueue(transport, kind="leased", queue="l")
        lease = await _claim_one(transport, "l", ttl=10)
        leader = await transport.acquire_leader("cron", holder="a", ttl=10)
        assert leader is not None
        clock.advance(10)
        assert (await _claim_one(transport)).job.kind == "due"
        assert await _renew(transport, lease) is RenewResult.LOST
        assert [r.job_id for r in await transport.reap()] == [lease.job_id]
        assert await transport.acquire_leader("cron", holder="b", ttl=10) is not None

    # --- reap ------------------------------------------------------------------------------

    async def test_reap_returns_expired_jobs_and_keeps_the_attempt(
        self, transport: Transport, clock: ManualClock
    ) -> None:
        """Reap makes an expired job available, keeps its attempt, and reports who lost it."""
        await _enqueue(transport, kind="k.a", max_attempts=5)
        claimed_at = clock.now()
        lease = await _claim_one(transport, owner="node-1/w3", ttl=10)
        clock.advance(15)
        (reclaimed,) = await transport.reap()
        assert reclaimed.job_id == lease.job_id
        assert reclaimed.kind == "k.a"
        assert reclaimed.queue == "q"
        assert reclaimed.attempt == 1
        assert reclaimed.lost_by == "node-1/w3"
        assert reclaimed.expired_at == claimed_at + 10
        assert reclaimed.state is JobState.AVAILABLE
        job = await transport.get(lease.job_id)
        assert job.state is JobState.AVAILABLE
        assert job.attempt == 1
        assert await transport.reap() == []

    async def test_reap_leaves_live_leases_alone(
        self, transport: Transport, clock: ManualClock
    ) -> None:
        """Reap takes only expired leases, oldest expiry first, at most ``limit``."""
        await transport.enqueue_many([_request() for _ in range(4)])
        short_a = await _claim_one(transport, ttl=10)
        short_b = await _claim_one(transport, ttl=5)
        short_c = await _claim_one(transport, ttl=8)
        long = await _claim_one(transport, ttl=100)
        clock.advance(20)
        first = await transport.reap(limit=2)
        assert [r.job_id for r in first] == [short_b.job_id, short_c.job_id]
        second = await transport.reap(limit=2)
        assert [r.job_id for r in second] == [short_a.job_id]
        job = await transport.get(long.job_id)
        assert job.state is JobState.RUNNING
        assert await _renew(transport, long) is RenewResult.RENEWED

    async def test_reap_on_last_attempt_is_dead(
        self, transport: Transport, clock: ManualClock
    ) -> None:
        """A lease lost on the last attempt ends the job dead."""
        await _enqueue(transport, max_attempts=1)
        lease = await _claim_one(transport, ttl=10)
        clock.advance(11)
        (reclaimed,) = await transport.reap()
        assert reclaimed.state is JobState.DEAD
        job = await transport.get(lease.job_id)
        assert job.state is JobState.DEAD
        assert job.finished_at == clock.now()

    async def test_expired_leases_end_dead_after_max_attempts(
        self, transport: Transport, clock: ManualClock
    ) -> None:
        """A job that keeps losing its lease is retried max_attempts times, then dead."""
        job_id = await _enqueue(transport, max_attempts=3)
        states = []
        for attempt in (1, 2, 3):
            lease = await _claim_one(transport, ttl=10)
            assert lease.job.attempt == attempt
            clock.advance(11)
            (reclaimed,) = await transport.reap()
            assert reclaimed.attempt == attempt
            states.append(reclaimed.state)
        assert states == [JobState.AVAILABLE, JobState.AVAILABLE, JobState.DEAD]
        job = await transport.get(job_id)
        assert job.state is JobState.DEAD
        assert [(e.attempt, e.type, e.message) for e in job.errors] == [
            (1, "LeaseExpired", "lease lost by w1"),
            (2, "LeaseExpired", "lease lost by w1"),
            (3, "LeaseExpired", "lease lost by w1 on the last attempt"),
        ]
        assert await transport.claim("q", owner="w", limit=1, ttl=TTL) == []

    async def test_reap_of_cancel_requested_job_is_cancelled(
        self, transport: Transport, clock: ManualClock
    ) -> None:
        """An expired lease whose job was asked to cancel ends cancelled, not available."""
        await _enqueue(transport, max_attempts=5)
        lease = await _claim_one(transport, ttl=10)
        await transport.cancel(lease.job_id)
        clock.advance(11)
        (reclaimed,) = await transport.reap()
        assert reclaimed.state is JobState.CANCELLED
        assert (await transport.get(lease.job_id)).state is JobState.CANCELLED

    # --- cancel ----------------------------------------------------------------------------

    async def test_cancel_waiting_jobs_ends_them(
        self, transport: Transport, clock: ManualClock
    ) -> None:
        """Cancelling an available or scheduled job ends it cancelled; it is never claimed."""
        available = await _enqueue(transport)
        scheduled = await _enqueue(transport, delay=10)
        assert await transport.cancel(available) is CancelResult.CANCELLED
        assert await transport.cancel(scheduled) is CancelResult.CANCELLED
        for job_id in (available, scheduled):
            job = await transport.get(job_id)
            assert job.state is JobState.CANCELLED
            assert job.finished_at == clock.now()
        clock.advance(11)
        assert await transport.claim("q", owner="w", limit=10, ttl=TTL) == []

    async def test_cancel_running_job_requests_it(self, transport: Transport) -> None:
        """Cancelling a running job flags it and leaves it running for its holder."""
        await _enqueue(transport)
        lease = await _claim_one(transport)
        assert await transport.cancel(lease.job_id) is CancelResult.REQUESTED
        job = await transport.get(lease.job_id)
        assert job.state is JobState.RUNNING
        assert job.cancel_requested
        assert await transport.cancel(lease.job_id) is CancelResult.REQUESTED

    async def test_cancel_final_job_changes_nothing(self, transport: Transport) -> None:
        """Cancelling a finished job reports ALREADY_FINAL and leaves it as it was."""
        await _enqueue(transport)
        lease = await _claim_one(transport)
        await _finalize(transport, lease, Complete())
        before = await transport.get(lease.job_id)
        assert await transport.cancel(lease.job_id) is CancelResult.ALREADY_FINAL
        assert await transport.get(lease.job_id) == before

    async def test_cancel_unknown_job_raises(self, transport: Transport) -> None:
        """Cancelling an id nobody has raises JobNotFound."""
        with pytest.raises(JobNotFound):
            await transport.cancel(987_654_321)

    @pytest.mark.parametrize(
        "outcome",
        [Retry(run_at=0.0, error="boom"), Snooze(run_at=0.0), Release()],
        ids=lambda outcome: type(outcome).__name__,
    )
    async def test_cancel_wins_over_retry(self, transport: Transport, outcome: Outcome) -> None:
        """A cancel-requested job that its holder retries, snoozes or releases ends cancelled."""
        await _enqueue(transport, max_attempts=5)
        lease = await _claim_one(transport)
        await transport.cancel(lease.job_id)
        assert await _finalize(transport, lease, outcome) is FinalizeResult.APPLIED
        assert (await transport.get(lease.job_id)).state is JobState.CANCELLED
        assert await transport.claim("q", owner="w", limit=1, ttl=TTL) == []

    async def test_cancel_requested_job_may_still_complete(self, transport: Transport) -> None:
        """A cancel-requested job whose holder completes it succeeds."""
        await _enqueue(transport)
        lease = await _claim_one(transport)
        await transport.cancel(lease.job_id)
        assert await _finalize(transport, lease, Complete()) is FinalizeResult.APPLIED
        assert (await transport.get(lease.job_id)).state is JobState.SUCCEEDED

    async def test_a_success_is_stored_alike_alone_or_among_other_outcomes(
        self, transport: Transport, clock: ManualClock
    ) -> None:
        """A batch of successes only may take a shorter path than a mixed one (the SQL
        backends do): the job a success leaves behind is the same either way, for a job with
        an error history and a cancel request (the success wins), and the other outcomes of
        the mixed batch are applied beside it."""

        async def retried_then_cancel_requested(queue: str) -> Lease:
            await _enqueue(transport, queue=queue, max_attempts=5)
            first = await _claim_one(transport, queue)
            await _finalize(transport, first, Retry(run_at=clock.now(), error="boom"))
            lease = await _claim_one(transport, queue)
            assert await transport.cancel(lease.job_id) is CancelResult.REQUESTED
            return lease

        alone = await retried_then_cancel_requested("a")
        mixed = await retried_then_cancel_requested("b")
        await _enqueue(transport, queue="c")
        other = await _claim_one(transport, "c")
        clock.advance(1)
        assert await transport.finalize(
            [FinalizeRequest(job_id=alone.job_id, token=alone.token, outcome=Complete(result=[1]))]
        ) == [FinalizeResult.APPLIED]
        assert await transport.finalize(
            [
                FinalizeRequest(
                    job_id=mixed.job_id, token=mixed.token, outcome=Complete(result=[1])
                ),
                FinalizeRequest(
                    job_id=other.job_id, token=other.token, outcome=Retry(run_at=0.0, error="x")
                ),
            ]
        ) == [FinalizeResult.APPLIED, FinalizeResult.APPLIED]

        def stored(job: Job) -> dict[str, Any]:
            fields = attrs.asdict(job, recurse=False)
            del fields["id"], fields["queue"]
            return fields

        done = await transport.get(alone.job_id)
        assert done.state is JobState.SUCCEEDED
        assert done.result == [1]
        assert [error.message for error in done.errors] == ["boom"]
        assert stored(done) == stored(await transport.get(mixed.job_id))
        assert (await transport.get(other.job_id)).last_error == "x"

    # --- leadership and cursors ------------------------------------------------------------

    async def test_leader_lease_is_exclusive(
        self, transport: Transport, clock: ManualClock
    ) -> None:
        """While one holder's lease is live, nobody else gets it; renewing keeps the epoch."""
        first = await transport.acquire_leader("cron", holder="a", ttl=10)
        assert first is not None
        assert (first.name, first.holder, first.expires_at) == ("cron", "a", clock.now() + 10)
        assert first.epoch == 1  # the first holder of a name
        assert await transport.acquire_leader("cron", holder="b", ttl=10) is None
        clock.advance(5)
        renewed = await transport.acquire_leader("cron", holder="a", ttl=10)
        assert renewed is not None
        assert renewed.epoch == first.epoch
        assert renewed.expires_at == clock.now() + 10
        clock.advance(9)  # past the first expiry, within the renewal
        assert await transport.acquire_leader("cron", holder="b", ttl=10) is None
        other = await transport.acquire_leader("cleanup", holder="b", ttl=10)
        assert other is not None

    async def test_leader_lease_expiry_hands_over_with_a_new_epoch(
        self, transport: Transport, clock: ManualClock
    ) -> None:
        """After the holder's lease expires another takes over with a higher epoch."""
        first = await transport.acquire_leader("cron", holder="a", ttl=10)
        assert first is not None
        clock.advance(11)
        second = await transport.acquire_leader("cron", holder="b", ttl=10)
        assert second is not None
        assert second.holder == "b"
        assert second.epoch == first.epoch + 1
        assert await transport.acquire_leader("cron", holder="a", ttl=10) is None

    async def test_leader_release(self, transport: Transport) -> None:
        """Only the holder can release; afterwards anyone acquires with a higher epoch."""
        first = await transport.acquire_leader("cron", holder="a", ttl=10)
        assert first is not None
        assert await transport.release_leader("cron", holder="b") is False
        assert await transport.release_leader("never-held", holder="a") is False
        assert await transport.release_leader("cron", holder="a") is True
        second = await transport.acquire_leader("cron", holder="b", ttl=10)
        assert second is not None
        assert second.epoch > first.epoch

    async def test_leader_lease_is_exclusive_across_instances(
        self, transport: Transport, second_transport: Transport
    ) -> None:
        """Two nodes racing for one leader lease get exactly one winner."""
        results = []

        async def contend(node: Transport, holder: str) -> None:
            results.append(await node.acquire_leader("cron", holder=holder, ttl=10))

        async with anyio.create_task_group() as tg:
            for n in range(6):
                tg.start_soon(contend, transport if n % 2 else second_transport, f"h{n}")
        winners = [r for r in results if r is not None]
        assert len(winners) == 1

    async def test_leader_rejects_bad_names(self, transport: Transport) -> None:
        """A leader name with forbidden characters raises InvalidQueueName."""
        for name in BAD_NAMES:
            with pytest.raises(InvalidQueueName):
                await transport.acquire_leader(name, holder="a", ttl=10)

    async def test_cursor_compare_and_set(self, transport: Transport) -> None:
        """A cursor starts unset and moves only from the value the caller expected."""
        assert await transport.get_cursor("cron:tick") is None
        assert await transport.advance_cursor("cron:tick", expected=5.0, new=6.0) is False
        assert await transport.advance_cursor("cron:tick", expected=None, new=100.0) is True
        assert await transport.advance_cursor("cron:tick", expected=None, new=200.0) is False
        assert await transport.get_cursor("cron:tick") == 100.0
        assert await transport.advance_cursor("cron:tick", expected=100.0, new=160.0) is True
        assert await transport.get_cursor("cron:tick") == 160.0
        assert await transport.get_cursor("other") is None

    async def test_cursor_race_has_one_winner(
        self, transport: Transport, second_transport: Transport
    ) -> None:
        """Of several nodes advancing a cursor from the same value, exactly one wins."""
        wins = []

        async def advance(node: Transport, new: float) -> None:
            wins.append(await node.advance_cursor("tick", expected=None, new=new))

        async with anyio.create_task_group() as tg:
            for n in range(6):
                tg.start_soon(advance, transport if n % 2 else second_transport, float(n))
        assert wins.count(True) == 1

    async def test_cursor_rejects_bad_names(self, transport: Transport) -> None:
        """A cursor name with forbidden characters raises InvalidQueueName."""
        with pytest.raises(InvalidQueueName):
            await transport.advance_cursor("x'; DROP TABLE jobs;--", expected=None, new=1.0)
        with pytest.raises(InvalidQueueName):
            await transport.get_cursor("has space")

    # --- wait for work ---------------------------------------------------------------------

    async def test_wait_for_work_wakes_on_enqueue(self, transport: Transport) -> None:
        """A waiter on a queue returns after a job is enqueued there."""

        async def enqueue() -> None:
            await _enqueue(transport, queue="b")

        await _wakes(transport, ["a", "b"], enqueue)

    async def test_a_wake_up_nobody_waited_for_is_kept_for_the_next_wait(
        self, transport: Transport
    ) -> None:
        """Work that arrives while nobody waits (a claimer busy claiming or finalizing) makes
        the next wait on its queue return at once, instead of sleeping until the next
        wake-up or the caller's poll."""
        await _enqueue(transport, queue="kept")
        with anyio.fail_after(WAKE_TIMEOUT):
            await transport.wait_for_work(["kept"])

    async def test_wait_for_work_wakes_on_release(self, transport: Transport) -> None:
        """A waiter returns after a running job is released back to its queue."""
        await _enqueue(transport)
        lease = await _claim_one(transport)

        async def release() -> None:
            await _finalize(transport, lease, Release())

        await _wakes(transport, ["q"], release)

    async def test_wait_for_work_wakes_on_a_retry_due_now(
        self, transport: Transport, clock: ManualClock
    ) -> None:
        """A retry due at once makes the job available (not scheduled) and wakes a waiter."""
        await _enqueue(transport)
        lease = await _claim_one(transport)

        async def retry() -> None:
            await _finalize(transport, lease, Retry(run_at=clock.now(), error="again"))

        await _wakes(transport, ["q"], retry)
        assert (await transport.get(lease.job_id)).state is JobState.AVAILABLE

    async def test_wait_for_work_wakes_on_reap(
        self, transport: Transport, clock: ManualClock
    ) -> None:
        """A waiter returns after a reap makes an expired job available."""
        await _enqueue(transport)
        await _claim_one(transport, ttl=10)
        clock.advance(11)

        async def reap() -> None:
            assert len(await transport.reap()) == 1

        await _wakes(transport, ["q"], reap)

    async def test_wait_for_work_wakes_when_a_reap_frees_a_concurrency_slot(
        self, transport: Transport, clock: ManualClock
    ) -> None:
        """A lease lost on its last attempt ends the job dead, and frees its key's slot: a
        waiter returns, since the job the key held back is claimable now."""
        await transport.set_limit("k", concurrency=1)
        await _enqueue(transport, concurrency_key="k", max_attempts=1)
        waiting = await _enqueue(transport, concurrency_key="k")
        await _claim_one(transport, ttl=10)
        assert await transport.claim("q", owner="w2", limit=1, ttl=TTL) == []
        clock.advance(11)

        async def reap() -> None:
            (reclaimed,) = await transport.reap()
            assert reclaimed.state is JobState.DEAD

        await _wakes(transport, ["q"], reap)
        assert (await _claim_one(transport, owner="w2")).job_id == waiting

    async def test_wait_for_work_wakes_when_a_finalize_frees_a_capped_queues_slot(
        self, transport: Transport
    ) -> None:
        """A job of a queue at its global cap that ends frees a slot: a waiter returns, since
        the job the cap held back is claimable now."""
        await transport.set_queue_config(QueueConfig(name="q", global_concurrency=1))
        await transport.enqueue_many([_request(), _request()])
        lease = await _claim_one(transport)
        assert await transport.claim("q", owner="w2", limit=1, ttl=TTL) == []

        async def complete() -> None:
            assert await _finalize(transport, lease, Complete()) is FinalizeResult.APPLIED

        await _wakes(transport, ["q"], complete)
        assert len(await transport.claim("q", owner="w2", limit=1, ttl=TTL)) == 1

    async def test_wait_for_work_wakes_on_a_snooze_due_now(
        self, transport: Transport, clock: ManualClock
    ) -> None:
        """A snooze due at once makes the job available and wakes a waiter."""
        await _enqueue(transport)
        lease = await _claim_one(transport)

        async def snooze() -> None:
            await _finalize(transport, lease, Snooze(run_at=clock.now()))

        await _wakes(transport, ["q"], snooze)
        assert (await transport.get(lease.job_id)).state is JobState.AVAILABLE

    async def test_wait_for_work_wakes_when_a_parents_end_makes_a_job_due(
        self, transport: Transport, clock: ManualClock
    ) -> None:
        """A job of another queue made due by its parent's end wakes that queue's waiters,
        whether the parent completed or lost its last lease (the job runs anyway)."""
        parents = await transport.enqueue_many(
            [_request(queue="p"), _request(queue="p", max_attempts=1)]
        )
        done, lost = (r.job_id for r in parents)
        await transport.enqueue_many(
            [
                _request(after=[done]),
                _request(after=[After(job_id=lost, on_failure=OnFailure.RUN)]),
            ]
        )
        first = await _claim_one(transport, "p")
        await _claim_one(transport, "p", ttl=10)

        async def enqueue() -> None:
            await transport.enqueue(_request())

        # A wake-up nobody waited for is kept for the next wait: this one takes those.
        await _wakes(transport, ["q"], enqueue)

        async def complete() -> None:
            assert await _finalize(transport, first, Complete()) is FinalizeResult.APPLIED

        await _wakes(transport, ["q"], complete)
        clock.advance(11)

        async def reap() -> None:
            (reclaimed,) = await transport.reap()
            assert reclaimed.state is JobState.DEAD

        await _wakes(transport, ["q"], reap)
        assert len(await transport.claim("q", owner="w", limit=10, ttl=TTL)) == 3

    async def test_wait_for_work_wakes_on_enqueue_of_a_job_whose_parent_succeeded(
        self, transport: Transport
    ) -> None:
        """A job enqueued after a parent that already succeeded is due at once: it wakes."""
        parent = await _enqueue(transport, queue="p")
        lease = await _claim_one(transport, "p")
        assert await _finalize(transport, lease, Complete()) is FinalizeResult.APPLIED

        async def enqueue() -> None:
            await transport.enqueue(_request(after=[parent]))

        await _wakes(transport, ["q"], enqueue)
        assert len(await transport.claim("q", owner="w", limit=10, ttl=TTL)) == 1

    async def test_wait_for_work_returns_after_aclose(self, transport: Transport) -> None:
        """A waiter returns when the transport closes, and later waits return at once."""
        await _wakes(transport, ["q"], transport.aclose)
        with anyio.fail_after(WAKE_TIMEOUT):
            await transport.wait_for_work(["q"])

    # --- queue config ----------------------------------------------------------------------

    async def test_queue_config_defaults_then_stored(self, transport: Transport) -> None:
        """An unset queue has default settings; set ones are read back and listed by name."""
        assert await transport.get_queue_config("zeta") == QueueConfig(name="zeta")
        assert await transport.list_queue_configs() == []
        zeta = QueueConfig(name="zeta", paused=True, concurrency=4, retention=3600.0)
        alpha = QueueConfig(name="alpha", concurrency=2)
        await transport.set_queue_config(zeta)
        await transport.set_queue_config(alpha)
        assert await transport.get_queue_config("zeta") == zeta
        assert await transport.list_queue_configs() == [alpha, zeta]
        resumed = QueueConfig(name="zeta", paused=False, concurrency=None, retention=None)
        await transport.set_queue_config(resumed)
        assert await transport.get_queue_config("zeta") == resumed
        assert await transport.list_queue_configs() == [alpha, resumed]

    # --- cleanup, counts, get, list --------------------------------------------------------

    async def _finished_jobs(self, transport: Transport) -> dict[str, int]:
        """Jobs in every state: three final ones at the current time, one per state."""
        ids = {}
        outcomes: list[tuple[str, Outcome]] = [
            ("succeeded", Complete()),
            ("dead", Discard(error="x")),
            ("cancelled", Cancel()),
        ]
        for name, outcome in outcomes:
            ids[name] = await _enqueue(transport, kind=name)
            lease = await _claim_one(transport)
            assert await _finalize(transport, lease, outcome) is FinalizeResult.APPLIED
        ids["cancelled_waiting"] = await _enqueue(transport, kind="cancelled_waiting")
        await transport.cancel(ids["cancelled_waiting"])
        ids["running"] = await _enqueue(transport, kind="running")
        await _claim_one(transport)
        ids["available"] = await _enqueue(transport, kind="available")
        ids["scheduled"] = await _enqueue(transport, kind="scheduled", delay=1000)
        return ids

    async def test_cleanup_deletes_only_old_final_jobs(
        self, transport: Transport, clock: ManualClock
    ) -> None:
        """Cleanup deletes final jobs finished before the horizon and nothing else."""
        old = await self._finished_jobs(transport)
        horizon = clock.advance(100)
        recent = await _enqueue(transport, queue="recent")
        await _finalize(transport, await _claim_one(transport, "recent"), Complete())
        # Finished exactly at the horizon is not before it.
        assert await transport.cleanup(finished_before=horizon - 100) == 0
        assert await transport.cleanup(finished_before=horizon) == 4
        for name in ("succeeded", "dead", "cancelled", "cancelled_waiting"):
            with pytest.raises(JobNotFound):
                await transport.get(old[name])
        for name in ("running", "available", "scheduled"):
            await transport.get(old[name])
        assert (await transport.get(recent)).state is JobState.SUCCEEDED
        assert await transport.cleanup(finished_before=horizon) == 0

    async def test_cleanup_respects_queue_and_limit(
        self, transport: Transport, clock: ManualClock
    ) -> None:
        """Cleanup touches only the given queue and deletes at most ``limit`` jobs."""
        for queue in ("a", "a", "a", "b"):
            await _enqueue(transport, queue=queue)
            await _finalize(transport, await _claim_one(transport, queue), Complete())
        horizon = clock.advance(1)
        assert await transport.cleanup(finished_before=horizon, queue="a", limit=2) == 2
        assert await transport.cleanup(finished_before=horizon, queue="a") == 1
        assert [c.queue for c in await transport.counts()] == ["b"]
        assert await transport.cleanup(finished_before=horizon, queue="b") == 1
        assert await transport.counts() == []

    async def test_counts_by_state_per_queue(
        self, transport: Transport, clock: ManualClock
    ) -> None:
        """Counts reports each queue that has jobs, by name, with a number per state."""
        await self._finished_jobs(transport)
        await _enqueue(transport, queue="other")
        counts = await transport.counts()
        assert [c.queue for c in counts] == ["other", "q"]
        other, q = counts
        assert other[JobState.AVAILABLE] == 1
        assert other.total == 1
        expected = {
            JobState.SUCCEEDED: 1,
            JobState.DEAD: 1,
            JobState.CANCELLED: 2,
            JobState.RUNNING: 1,
            JobState.AVAILABLE: 1,
            JobState.SCHEDULED: 1,
        }
        assert {state: q[state] for state in JobState if q[state]} == expected
        assert q.total == 7
        (only,) = await transport.counts("other")
        assert only.queue == "other"
        assert await transport.counts("empty") == []

    async def test_get_unknown_job_raises(self, transport: Transport) -> None:
        """Getting an id nobody has raises JobNotFound."""
        with pytest.raises(JobNotFound):
            await transport.get(987_654_321)

    async def test_list_jobs_filters_and_pages(
        self, transport: Transport, clock: ManualClock
    ) -> None:
        """list_jobs applies every filter, orders by id, and pages with after_id and limit."""
        ids = await self._finished_jobs(transport)
        other = await _enqueue(transport, queue="other", kind="available")
        everything = await transport.list_jobs()
        assert [job.id for job in everything] == sorted([*ids.values(), other])
        by_queue = await transport.list_jobs(JobFilter(queue="other"))
        assert [job.id for job in by_queue] == [other]
        by_state = await transport.list_jobs(JobFilter(states=[JobState.CANCELLED]))
        assert [job.id for job in by_state] == sorted([ids["cancelled"], ids["cancelled_waiting"]])
        by_kind = await transport.list_jobs(JobFilter(kind="available"))
        assert [job.id for job in by_kind] == sorted([ids["available"], other])
        combined = await transport.list_jobs(
            JobFilter(queue="q", states=[JobState.AVAILABLE], kind="available")
        )
        assert [job.id for job in combined] == [ids["available"]]
        pages: list[int] = []
        after = 0
        while page := await transport.list_jobs(after_id=after, limit=3):
            assert len(page) <= 3
            pages.extend(job.id for job in page)
            after = page[-1].id
        assert pages == [job.id for job in everything]
        newest: list[int] = []
        before: int | None = None
        while page := await transport.list_jobs(newest_first=True, before_id=before, limit=3):
            newest.extend(job.id for job in page)
            before = page[-1].id
        assert newest == pages[::-1]

    # --- bad input -------------------------------------------------------------------------

    @pytest.mark.parametrize("name", BAD_NAMES)
    async def test_bad_queue_names_are_rejected(self, transport: Transport, name: str) -> None:
        """A queue name with SQL metacharacters, spaces, or a bad length is a typed error."""
        with pytest.raises(InvalidQueueName):
            await transport.enqueue(EnqueueRequest(kind="k", queue=name))
        with pytest.raises(InvalidQueueName):
            await transport.enqueue(EnqueueRequest(kind=name))
        with pytest.raises(InvalidQueueName):
            await transport.claim(name, owner="w", limit=1, ttl=TTL)
        with pytest.raises(InvalidQueueName):
            await transport.get_queue_config(name)
        with pytest.raises(InvalidQueueName):
            await transport.counts(name)
        with pytest.raises(InvalidQueueName):
            await transport.cleanup(finished_before=0.0, queue=name)
        with pytest.raises(InvalidQueueName):
            JobFilter(queue=name)
        assert await transport.counts() == []
        assert await transport.list_queue_configs() == []

    @pytest.mark.parametrize("payload", NOT_JSON, ids=lambda p: type(p).__name__)
    async def test_unserialisable_payload_is_rejected(
        self, transport: Transport, payload: Any
    ) -> None:
        """A payload that is not JSON raises PayloadNotSerializable and writes nothing."""
        with pytest.raises(PayloadNotSerializable):
            await transport.enqueue(_request(payload=payload))
        assert await transport.counts() == []

    async def test_oversized_payload_is_rejected(self, transport: Transport) -> None:
        """A payload over max_payload_bytes raises PayloadTooLarge and writes nothing."""
        with pytest.raises(PayloadTooLarge):
            await transport.enqueue(_request(payload="x" * (transport.max_payload_bytes + 1)))
        assert await transport.counts() == []

    # --- lifecycle -------------------------------------------------------------------------

    async def test_aclose_twice_is_harmless(self, transport: Transport) -> None:
        """Closing an already closed transport does nothing and raises nothing."""
        await transport.aclose()
        await transport.aclose()

    async def test_use_after_close_raises(self, transport: Transport) -> None:
        """Every operation on a closed transport raises TransportClosed."""
        await _enqueue(transport)
        lease = await _claim_one(transport)
        await transport.aclose()
        calls: list[Callable[[], Any]] = [
            lambda: transport.enqueue(_request()),
            lambda: transport.enqueue_many([_request()]),
            lambda: transport.claim("q", owner="w", limit=1, ttl=TTL),
            lambda: transport.renew(
                [RenewRequest(job_id=lease.job_id, token=lease.token)], ttl=TTL
            ),
            lambda: transport.finalize(
                [FinalizeRequest(job_id=lease.job_id, token=lease.token, outcome=Complete())]
            ),
            lambda: transport.reap(),
            lambda: transport.cancel(lease.job_id),
            lambda: transport.acquire_leader("cron", holder="a", ttl=10),
            lambda: transport.release_leader("cron", holder="a"),
            lambda: transport.get_cursor("tick"),
            lambda: transport.advance_cursor("tick", expected=None, new=1.0),
            lambda: transport.get_queue_config("q"),
            lambda: transport.set_queue_config(QueueConfig(name="q")),
            lambda: transport.list_queue_configs(),
            lambda: transport.cleanup(finished_before=0.0),
            lambda: transport.counts(),
            lambda: transport.get(lease.job_id),
            lambda: transport.list_jobs(),
            lambda: transport.retry_jobs(JobFilter()),
            lambda: transport.discard_jobs(JobFilter(), reason="r"),
            lambda: transport.delete_jobs(JobFilter()),
            lambda: transport.cancel_jobs(JobFilter()),
        ]
        for call in calls:
            with pytest.raises(TransportClosed):
                await call()
