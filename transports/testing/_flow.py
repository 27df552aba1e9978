"""Flow control: the claim's per-key concurrency limits, on every backend.

A job names a concurrency key at enqueue; ``set_limit`` caps the jobs of that key holding a
live lease at once. These tests pin what the claim must do with such jobs (see *Flow control*
in :mod:`transports._base`): pass over a key at its limit without spending an attempt, start
the jobs of other keys behind it, count only live leases, and hold the cap however many
claimers race, on one node or two.
"""

from __future__ import annotations

from typing import ClassVar

import anyio
import anyio.lowlevel
import pytest

from .._base import Transport
from .._records import (
    Complete,
    EnqueueRequest,
    FinalizeRequest,
    FinalizeResult,
    JobState,
    KeyLimit,
    Lease,
    QueueConfig,
    Snooze,
)
from ._clock import ManualClock
from ._waking import spend_wake_ups

__all__ = ["TransportFlowControl", "TransportRateLimits"]

_TTL = 30.0


async def _keyed(transport: Transport, key: str | None, n: int = 1, **fields: object) -> list[int]:
    results = await transport.enqueue_many(
        [
            EnqueueRequest(kind="flow.job", queue="q", concurrency_key=key, **fields)  # type: ignore[arg-type]
            for _ in range(n)
        ]
    )
    return [result.job_id for result in results]


async def _claim(transport: Transport, limit: int = 10, owner: str = "w1") -> list[Lease]:
    return await transport.claim("q", owner=owner, limit=limit, ttl=_TTL)


async def _live(transport: Transport, key: str) -> int:
    (found,) = [limit for limit in await transport.list_limits() if limit.key == key]
    return found.running


class TransportFlowControl:
    """Per-key concurrency limits enforced inside the claim."""

    pytestmark: ClassVar[list[pytest.MarkDecorator]] = [pytest.mark.anyio]

    async def test_a_key_at_its_limit_is_passed_over_for_other_keys(
        self, transport: Transport
    ) -> None:
        """A key at its limit starts no more; jobs of other keys behind it start; the passed
        over jobs stay available with their attempt unspent."""
        await transport.set_limit("stripe", concurrency=2)
        hot = await _keyed(transport, "stripe", 5, priority=-1)  # first in claim order
        other = await _keyed(transport, "mail", 2)
        plain = await _keyed(transport, None, 2)
        leases = await _claim(transport, limit=10)
        claimed = [lease.job_id for lease in leases]
        assert claimed == [*hot[:2], *other, *plain]
        assert [lease.job.concurrency_key for lease in leases[:3]] == ["stripe"] * 2 + ["mail"]
        for job_id in hot[2:]:
            job = await transport.get(job_id)
            assert job.state is JobState.AVAILABLE
            assert job.attempt == 0
        assert await _claim(transport) == []

    async def test_the_claim_starts_no_more_of_a_key_than_its_free_slots(
        self, transport: Transport
    ) -> None:
        """One claim of many jobs of one key takes exactly the key's free slots."""
        await transport.set_limit("k", concurrency=3)
        await _keyed(transport, "k", 10)
        assert len(await _claim(transport, limit=2)) == 2
        assert len(await _claim(transport, limit=10)) == 1
        assert await _claim(transport, limit=10) == []
        assert await _live(transport, "k") == 3

    async def test_finishing_or_expiring_frees_a_slot(
        self, transport: Transport, clock: ManualClock
    ) -> None:
        """A finalize frees its slot; so does a lease that expired, reaped or not."""
        await transport.set_limit("k", concurrency=1)
        await _keyed(transport, "k", 3)
        (first,) = await _claim(transport)
        assert await _claim(transport) == []
        await transport.finalize(
            [FinalizeRequest(job_id=first.job_id, token=first.token, outcome=Complete())]
        )
        (second,) = await _claim(transport)
        assert await _claim(transport) == []
        clock.advance(_TTL)  # second's lease expires now; nobody reaped it
        (third,) = await _claim(transport)
        assert third.job_id != second.job_id
        assert (await transport.get(second.job_id)).state is JobState.RUNNING
        assert await _live(transport, "k") == 1

    async def test_a_job_claimed_under_a_limit_names_its_holder(self, transport: Transport) -> None:
        """A claim while limits exist records its owner on the jobs it leases, as any claim."""
        await transport.set_limit("k", concurrency=2)
        await _keyed(transport, "k", 1)
        await _keyed(transport, None, 1)
        leases = await _claim(transport, owner="node-7/q")
        assert len(leases) == 2
        for lease in leases:
            assert lease.owner == "node-7/q"
            job = await transport.get(lease.job_id)
            assert job.state is JobState.RUNNING
            assert job.lease_owner == "node-7/q"

    async def test_a_key_without_a_limit_is_not_limited(self, transport: Transport) -> None:
        """Jobs of a key nobody limited start like any other; removing a limit frees them."""
        await _keyed(transport, "free", 3)
        assert len(await _claim(transport)) == 3
        await transport.set_limit("held", concurrency=0)
        await _keyed(transport, "held", 2)
        assert await _claim(transport) == []
        await transport.set_limit("held", concurrency=None)
        assert len(await _claim(transport)) == 2
        assert [limit.key for limit in await transport.list_limits()] == []

    async def test_a_limit_counts_jobs_started_before_it_was_set(
        self, transport: Transport
    ) -> None:
        """Lowering a limit below the current use stops nothing and starts nothing more."""
        await _keyed(transport, "k", 5)
        assert len(await _claim(transport, limit=3)) == 3
        await transport.set_limit("k", concurrency=2)
        assert await _claim(transport) == []
        assert await transport.list_limits() == [
            KeyLimit(key="k", concurrency=2, running=3, waiting=2)
        ]
        await transport.set_limit("k", concurrency=4)
        assert len(await _claim(transport)) == 1

    async def test_list_limits_reports_each_key_by_name(
        self, transport: Transport, clock: ManualClock
    ) -> None:
        """Each limited key with its limit, live leases and waiting jobs, by key."""
        await transport.set_limit("b", concurrency=1)
        await transport.set_limit("a", concurrency=5)
        await transport.set_limit("a", concurrency=4)  # a second set replaces the first
        await _keyed(transport, "a", 2)
        await _keyed(transport, "b", 2)
        await _keyed(transport, "b", 1, delay=60.0)  # scheduled: waiting too
        await _claim(transport)
        assert await transport.list_limits() == [
            KeyLimit(key="a", concurrency=4, running=2, waiting=0),
            KeyLimit(key="b", concurrency=1, running=1, waiting=2),
        ]
        clock.advance(_TTL)  # every lease expired: none is live
        assert [limit.running for limit in await transport.list_limits()] == [0, 0]

    async def test_the_key_is_stored_with_the_job(self, transport: Transport) -> None:
        """``concurrency_key`` reads back from ``get``, ``list_jobs`` and the lease."""
        (keyed,) = await _keyed(transport, "tenant:42")
        (plain,) = await _keyed(transport, None)
        assert (await transport.get(keyed)).concurrency_key == "tenant:42"
        assert (await transport.get(plain)).concurrency_key is None
        listed = {job.id: job.concurrency_key for job in await transport.list_jobs()}
        assert listed == {keyed: "tenant:42", plain: None}
        leases = await _claim(transport)
        assert {lease.job_id: lease.job.concurrency_key for lease in leases} == listed

    async def test_racing_claimers_never_exceed_the_limit(self, transport: Transport) -> None:
        """However many claims run at once, the key's live leases stay within its limit."""
        await transport.set_limit("k", concurrency=3)
        await _keyed(transport, "k", 30)
        await _keyed(transport, None, 10)
        got: list[Lease] = []

        async def claimer(n: int) -> None:
            got.extend(await _claim(transport, limit=2, owner=f"w{n}"))

        async with anyio.create_task_group() as tg:
            for n in range(16):
                tg.start_soon(claimer, n)
        keyed = [lease for lease in got if lease.job.concurrency_key == "k"]
        assert len(keyed) == 3
        assert len({lease.job_id for lease in got}) == len(got)
        assert await _live(transport, "k") == 3

    async def test_two_nodes_share_one_limit(
        self, transport: Transport, second_transport: Transport
    ) -> None:
        """The limit is cluster-wide: what one node started counts on the other."""
        await transport.set_limit("k", concurrency=2)
        await _keyed(transport, "k", 4)
        assert len(await _claim(transport, limit=1)) == 1
        assert len(await _claim(second_transport, limit=10, owner="w2")) == 1
        assert await _claim(transport) == []
        assert await second_transport.list_limits() == [
            KeyLimit(key="k", concurrency=2, running=2, waiting=2)
        ]

    async def test_the_candidates_are_the_first_due_jobs_of_keys_with_room(
        self, transport: Transport
    ) -> None:
        """The claim's candidates are its first ``limit`` due jobs of keys not full when it
        began; a key's candidates past its free slots stay due, and the next claim, for which
        that key is full, reaches the jobs behind them."""
        await transport.set_limit("k", concurrency=1)
        (k1, k2) = await _keyed(transport, "k", 2)
        (a,) = await _keyed(transport, "a")
        assert [lease.job_id for lease in await _claim(transport, limit=2)] == [k1]
        assert [lease.job_id for lease in await _claim(transport, limit=2)] == [a]
        assert (await transport.get(k2)).attempt == 0

    async def test_a_claim_stops_at_its_limit_of_candidates_past_a_full_key(
        self, transport: Transport
    ) -> None:
        """Jobs of a key past its free slots count among the claim's ``limit`` candidates even
        when unkeyed jobs follow them: of k1, k2 (key k, one slot), a and b, a claim of three
        starts k1 and a, and b waits for the next claim."""
        await transport.set_limit("k", concurrency=1)
        (k1, _k2) = await _keyed(transport, "k", 2)
        (a, b) = await _keyed(transport, None, 2)
        assert [lease.job_id for lease in await _claim(transport, limit=3)] == [k1, a]
        assert [lease.job_id for lease in await _claim(transport, limit=3)] == [b]

    async def test_a_key_keeps_counting_its_other_running_jobs_when_one_ends(
        self, transport: Transport
    ) -> None:
        """Of a key with two slots and two jobs running, one that ends frees one slot only."""
        await transport.set_limit("k", concurrency=2)
        await _keyed(transport, "k", 4)
        first, _second = await _claim(transport)
        await transport.finalize(
            [FinalizeRequest(job_id=first.job_id, token=first.token, outcome=Complete())]
        )
        assert len(await _claim(transport)) == 1

    async def test_a_queue_cap_holds_cluster_wide(
        self, transport: Transport, clock: ManualClock
    ) -> None:
        """A queue's ``global_concurrency`` caps its live leases: claims stop at it, a
        finalize or an expiry frees a slot, and other queues are not held."""
        await transport.set_queue_config(QueueConfig(name="q", global_concurrency=2))
        await _keyed(transport, None, 5)
        await transport.enqueue(EnqueueRequest(kind="flow.job", queue="other"))
        first = await _claim(transport, limit=10)
        assert len(first) == 2
        assert await _claim(transport) == []
        assert len(await transport.claim("other", owner="w1", limit=10, ttl=_TTL)) == 1
        await transport.finalize(
            [FinalizeRequest(job_id=first[0].job_id, token=first[0].token, outcome=Complete())]
        )
        assert len(await _claim(transport)) == 1
        clock.advance(_TTL)  # every lease expired, none reaped
        assert len(await _claim(transport)) == 2
        await transport.set_queue_config(QueueConfig(name="q", global_concurrency=0))
        assert await _claim(transport) == []
        assert (await transport.get_queue_config("q")).global_concurrency == 0

    async def test_a_queue_cap_and_key_limits_apply_together(self, transport: Transport) -> None:
        """Of the jobs the key limits let start, the queue's free slots take the first."""
        await transport.set_queue_config(QueueConfig(name="q", global_concurrency=3))
        await transport.set_limit("k", concurrency=1)
        (k1, _k2) = await _keyed(transport, "k", 2)
        (a, b, _c) = await _keyed(transport, None, 3)
        assert [lease.job_id for lease in await _claim(transport, limit=10)] == [k1, a, b]
        assert await _claim(transport) == []

    async def test_racing_claimers_never_exceed_a_queue_cap(self, transport: Transport) -> None:
        """However many claims run at once, the queue's live leases stay within its cap."""
        await transport.set_queue_config(QueueConfig(name="q", global_concurrency=5))
        await _keyed(transport, None, 30)
        got: list[Lease] = []

        async def claimer(n: int) -> None:
            got.extend(await _claim(transport, limit=2, owner=f"w{n}"))

        async with anyio.create_task_group() as tg:
            for n in range(16):
                tg.start_soon(claimer, n)
        assert len(got) == 5
        assert len({lease.job_id for lease in got}) == 5

    async def test_a_freed_slot_wakes_the_claimers(self, transport: Transport) -> None:
        """Completing a job of a full key wakes this transport's ``wait_for_work`` callers of
        its queue, so the next job of the key starts without waiting for a poll."""
        await transport.set_limit("k", concurrency=1)
        await _keyed(transport, "k", 2)
        (lease,) = await _claim(transport)
        await spend_wake_ups(transport, ["q"])
        started = anyio.Event()
        returned = anyio.Event()

        async def waiter() -> None:
            started.set()
            await transport.wait_for_work(["q"])
            returned.set()

        with anyio.fail_after(5):  # real seconds: a safety net, never a wait
            async with anyio.create_task_group() as tg:
                tg.start_soon(waiter)
                await started.wait()
                for _ in range(20):
                    await anyio.lowlevel.checkpoint()
                await transport.finalize(
                    [FinalizeRequest(job_id=lease.job_id, token=lease.token, outcome=Complete())]
                )
                await returned.wait()
        assert len(await _claim(transport)) == 1


def _done(lease: Lease) -> FinalizeRequest:
    return FinalizeRequest(job_id=lease.job_id, token=lease.token, outcome=Complete())


def _cool(lease: Lease, until: float) -> FinalizeRequest:
    return FinalizeRequest(
        job_id=lease.job_id, token=lease.token, outcome=Snooze(run_at=until, cool_down=True)
    )


class TransportRateLimits:
    """Per-key rates (an exact sliding-window log) and cool-downs, enforced in the claim."""

    pytestmark: ClassVar[list[pytest.MarkDecorator]] = [pytest.mark.anyio]

    async def test_a_rate_caps_the_starts_of_a_window(
        self, transport: Transport, clock: ManualClock
    ) -> None:
        """At most ``rate`` starts in a window, however soon they finish; the jobs held
        stay available with their attempt unspent, and start once the window slides."""
        await transport.set_limit("api", rate=3, per=10.0)
        held = await _keyed(transport, "api", 5)
        (plain,) = await _keyed(transport, None)
        first = await _claim(transport)
        assert [lease.job_id for lease in first] == [*held[:3], plain]
        await transport.finalize([_done(lease) for lease in first])
        assert await _claim(transport) == []  # nothing runs, but the window is full
        for job_id in held[3:]:
            job = await transport.get(job_id)
            assert (job.state, job.attempt) == (JobState.AVAILABLE, 0)
        assert await transport.reopens_in("q") == pytest.approx(10.0)
        clock.advance(9.5)
        assert await _claim(transport) == []
        assert await transport.reopens_in("q") == pytest.approx(0.5)
        clock.advance(0.5)  # the first starts leave the window: (now - per, now]
        assert [lease.job_id for lease in await _claim(transport)] == held[3:]
        assert await transport.reopens_in("q") is None  # two starts of three: not held

    async def test_the_window_slides_start_by_start(
        self, transport: Transport, clock: ManualClock
    ) -> None:
        """The window is a log, not a bucket: each start leaves it ``per`` after it was made,
        so no interval of length ``per`` ever holds more than ``rate`` starts."""
        await transport.set_limit("api", rate=2, per=10.0)
        await _keyed(transport, "api", 6)
        assert len(await _claim(transport, limit=1)) == 1  # t=0
        clock.advance(6.0)
        assert len(await _claim(transport)) == 1  # t=6: the second of the window
        clock.advance(3.0)
        assert await _claim(transport) == []  # t=9
        assert await transport.reopens_in("q") == pytest.approx(1.0)
        clock.advance(1.0)
        assert len(await _claim(transport)) == 1  # t=10: the start of t=0 has left
        assert await _claim(transport) == []
        assert await transport.reopens_in("q") == pytest.approx(6.0)  # t=6 leaves at 16
        clock.advance(6.0)
        assert len(await _claim(transport)) == 1

    async def test_a_rate_and_a_concurrency_limit_hold_together(
        self, transport: Transport, clock: ManualClock
    ) -> None:
        """A key with both starts no more than either allows; its waiting jobs start as
        each comes free; a claim with both full still takes other keys' jobs."""
        await transport.set_limit("api", concurrency=1, rate=2, per=60.0)
        await _keyed(transport, "api", 4)
        (a,) = await _keyed(transport, "a")
        first = await _claim(transport)
        assert [lease.job.concurrency_key for lease in first] == ["api", "a"]
        assert await _claim(transport) == []  # concurrency 1 holds it
        assert await transport.reopens_in("q") is None  # held by concurrency only
        await transport.finalize([_done(first[0])])
        (second,) = await _claim(transport)
        await transport.finalize([_done(second)])
        assert await _claim(transport) == []  # the rate holds it: two in the window
        assert await transport.reopens_in("q") == pytest.approx(60.0)
        clock.advance(60.0)
        assert len(await _claim(transport)) == 1
        assert a in {lease.job_id for lease in first}

    async def test_changing_a_rate_keeps_its_log(
        self, transport: Transport, clock: ManualClock
    ) -> None:
        """The starts logged count against a new rate; removing the rate frees the key and
        forgets its log; a concurrency limit set alone removes a rate."""
        await transport.set_limit("api", rate=3, per=60.0)
        await _keyed(transport, "api", 8)
        assert len(await _claim(transport, limit=2)) == 2
        await transport.set_limit("api", rate=2, per=60.0)
        assert await _claim(transport) == []
        await transport.set_limit("api", rate=4, per=60.0)
        assert len(await _claim(transport)) == 2
        await transport.set_limit("api", concurrency=10)  # no rate now
        assert len(await _claim(transport)) == 4
        await transport.set_limit("api", rate=1, per=60.0)  # a fresh log
        assert len(await _claim(transport)) == 0  # 8 jobs live: all started, none waiting
        assert [(limit.rate, limit.started) for limit in await transport.list_limits()] == [(1, 0)]

    async def test_racing_claimers_never_exceed_a_rate(self, transport: Transport) -> None:
        """However many claims run at once, a window never holds more than the rate."""
        await transport.set_limit("api", rate=3, per=60.0)
        await _keyed(transport, "api", 30)
        got: list[Lease] = []

        async def claimer(n: int) -> None:
            got.extend(await _claim(transport, limit=2, owner=f"w{n}"))

        async with anyio.create_task_group() as tg:
            for n in range(16):
                tg.start_soon(claimer, n)
        assert len(got) == 3
        assert len({lease.job_id for lease in got}) == 3

    async def test_two_nodes_share_one_rate(
        self, transport: Transport, second_transport: Transport, clock: ManualClock
    ) -> None:
        """The rate is cluster-wide: what one node started counts on the other."""
        await transport.set_limit("api", rate=2, per=30.0)
        await _keyed(transport, "api", 4)
        assert len(await _claim(transport, limit=1)) == 1
        assert len(await _claim(second_transport, limit=10, owner="w2")) == 1
        assert await _claim(transport) == []
        assert await second_transport.reopens_in("q") == pytest.approx(30.0)
        (listed,) = await second_transport.list_limits()
        assert listed == KeyLimit(
            key="api", concurrency=None, running=2, waiting=2, rate=2, per=30.0, started=2
        )

    async def test_a_cool_down_holds_the_key_for_every_claimer(
        self, transport: Transport, second_transport: Transport, clock: ManualClock
    ) -> None:
        """A snooze that cools down gives the attempt back and holds every job of its key
        until its time, on every node, without any limit set; other keys run on."""
        await _keyed(transport, "api", 3)
        (other,) = await _keyed(transport, "other")
        (lease,) = await _claim(transport, limit=1)
        until = clock.now() + 30.0
        assert await transport.finalize([_cool(lease, until)]) == [FinalizeResult.APPLIED]
        job = await transport.get(lease.job_id)
        assert (job.state, job.attempt, job.run_at) == (JobState.SCHEDULED, 0, until)
        assert [lease.job_id for lease in await _claim(transport)] == [other]
        assert await _claim(second_transport, owner="w2") == []
        assert await second_transport.reopens_in("q") == pytest.approx(30.0)
        (listed,) = await second_transport.list_limits()
        assert (listed.key, listed.concurrency, listed.cooldown_until) == ("api", None, until)
        assert listed.waiting == 3
        clock.advance(29.0)
        assert await _claim(transport) == []
        clock.advance(1.0)
        assert len(await _claim(second_transport, owner="w2")) == 3
        assert await transport.list_limits() == []  # the cool-down is over
        assert await transport.reopens_in("q") is None

    async def test_a_cool_down_only_grows(self, transport: Transport, clock: ManualClock) -> None:
        """A shorter cool-down of a cooled key leaves the longer one; a limited key cools
        down too, and keeps its limit."""
        await transport.set_limit("api", concurrency=5)
        await _keyed(transport, "api", 4)
        first, second = await _claim(transport, limit=2)
        now = clock.now()
        await transport.finalize([_cool(first, now + 60.0)])
        await transport.finalize([_cool(second, now + 10.0)])
        (listed,) = await transport.list_limits()
        assert (listed.concurrency, listed.cooldown_until) == (5, now + 60.0)
        clock.advance(30.0)
        assert await _claim(transport) == []
        clock.advance(30.0)
        assert len(await _claim(transport)) == 4

    async def test_a_stale_finalize_cools_nothing(
        self, transport: Transport, clock: ManualClock
    ) -> None:
        """A finalize whose lease was lost is ``STALE`` and cools no key; a job without a
        key cools nothing when it snoozes so."""
        await _keyed(transport, "api", 2)
        (plain,) = await _keyed(transport, None)
        (old, _plain) = await _claim(transport, limit=2)
        clock.advance(_TTL)  # old's lease expires; a new claim takes its job over
        await transport.reap()
        taken = await _claim(transport, owner="w2")
        assert old.job_id in {lease.job_id for lease in taken}
        result = await transport.finalize([_cool(old, clock.now() + 60.0)])
        assert result == [FinalizeResult.STALE]
        plain_lease = next(lease for lease in taken if lease.job_id == plain)
        await transport.finalize([_cool(plain_lease, clock.now() + 60.0)])
        assert await transport.list_limits() == []
        assert await transport.reopens_in("q") is None

    async def test_a_cancel_still_cools_the_key(
        self, transport: Transport, clock: ManualClock
    ) -> None:
        """Cancel wins over the snooze (the job ends cancelled), but the remote's answer
        still cools the key: the finalize applied."""
        await _keyed(transport, "api", 2)
        (lease,) = await _claim(transport, limit=1)
        await transport.cancel(lease.job_id)
        assert await transport.finalize([_cool(lease, clock.now() + 20.0)]) == [
            FinalizeResult.APPLIED
        ]
        assert (await transport.get(lease.job_id)).state is JobState.CANCELLED
        assert await _claim(transport) == []
        clock.advance(20.0)
        assert len(await _claim(transport)) == 1

    async def test_one_batch_may_cool_one_key_twice(
        self, transport: Transport, clock: ManualClock
    ) -> None:
        """Two snoozes of one batch cooling one key: the key cools until the later."""
        await _keyed(transport, "api", 3)
        first, second = await _claim(transport, limit=2)
        now = clock.now()
        assert (
            await transport.finalize([_cool(first, now + 5.0), _cool(second, now + 9.0)])
            == [FinalizeResult.APPLIED] * 2
        )
        (listed,) = await transport.list_limits()
        assert listed.cooldown_until == now + 9.0
