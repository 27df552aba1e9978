"""Fair share: a claim shares its queue among the partitions of its due jobs.

A job names a partition at enqueue (the tenant, say). These tests pin the rotation the claim
must follow on every backend (see *Fair share* in :mod:`transports._base`): the partitions
served least recently go first, whatever their backlogs; a claim takes their jobs round by
round; priorities order jobs inside a partition only; the jobs without a partition are one
partition; a partition whose jobs are all held by their keys waits without losing its turn;
and the rotation is the store's, shared by every node.
"""

from __future__ import annotations

from typing import ClassVar

import anyio
import pytest

from .._base import Transport
from .._errors import InvalidQueueName, InvalidRequest
from .._records import (
    MAX_PARTITION_COUNT,
    Complete,
    EnqueueRequest,
    FinalizeRequest,
    FinalizeResult,
    JobFilter,
    JobState,
    Lease,
    PartitionInfo,
    QueueConfig,
    Retry,
)
from ._clock import ManualClock
from ._flow import _claim as _flow_claim
from ._flow import _keyed

__all__ = ["TransportFairShare"]


async def _jobs(
    transport: Transport, partition: str | None, n: int = 1, **fields: object
) -> list[int]:
    key = fields.pop("concurrency_key", None)
    return await _keyed(transport, key, n, partition_key=partition, **fields)  # type: ignore[arg-type]


async def _claim(transport: Transport, limit: int = 1, owner: str = "w1") -> list[Lease]:
    """A claim of queue ``q``, of one job unless told."""
    return await _flow_claim(transport, limit, owner)


async def _partitions(transport: Transport, limit: int = 1) -> list[str | None]:
    return [lease.job.partition_key for lease in await _claim(transport, limit)]


class TransportFairShare:
    """The fair-share claim: partitions in turn, least recently served first."""

    pytestmark: ClassVar[list[pytest.MarkDecorator]] = [pytest.mark.anyio]

    async def test_a_big_partition_cannot_starve_a_small_one(self, transport: Transport) -> None:
        """Claims alternate between a partition of 40 jobs and one of 3 enqueued after it:
        the small one's jobs start every other claim, not after the big one's backlog."""
        big = await _jobs(transport, "big", 40)
        small = await _jobs(transport, "small", 3)
        claimed = [lease.job_id for _ in range(8) for lease in await _claim(transport)]
        assert claimed == [big[0], small[0], big[1], small[1], big[2], small[2], big[3], big[4]]

    async def test_a_claim_serves_the_partitions_that_waited_longest(
        self, transport: Transport
    ) -> None:
        """Six partitions, claims of two: each claim takes the two served least recently, so
        every partition starts a job within ceil(6 / 2) = 3 claims."""
        for name in ["p0", "p1", "p2", "p3", "p4", "p5"]:
            await _jobs(transport, name, 3)
        seen = [await _partitions(transport, limit=2) for _ in range(4)]
        assert seen == [["p0", "p1"], ["p2", "p3"], ["p4", "p5"], ["p0", "p1"]]

    async def test_a_claim_takes_the_chosen_partitions_round_by_round(
        self, transport: Transport
    ) -> None:
        """With fewer partitions than the claim's limit it takes every partition's first job,
        then every second, and so on until it is full: a claim does not come back short while
        due jobs remain."""
        a = await _jobs(transport, "a", 5)
        b = await _jobs(transport, "b", 1)
        c = await _jobs(transport, "c", 2)
        leases = await _claim(transport, limit=6)
        assert [lease.job_id for lease in leases] == [a[0], b[0], c[0], a[1], c[1], a[2]]
        assert [lease.job_id for lease in await _claim(transport, limit=6)] == a[3:]

    async def test_priorities_order_the_jobs_of_a_partition_not_the_partitions(
        self, transport: Transport
    ) -> None:
        """A partition's urgent job runs before its other jobs, but a partition of urgent jobs
        still takes its turn like any other."""
        a_late = await _jobs(transport, "a", 2, priority=5)
        a_urgent = await _jobs(transport, "a", 1, priority=-5)
        b_urgent = await _jobs(transport, "b", 3, priority=-100)
        claimed = [lease.job_id for _ in range(4) for lease in await _claim(transport)]
        assert claimed == [a_urgent[0], b_urgent[0], a_late[0], b_urgent[1]]

    async def test_jobs_without_a_partition_are_one_partition(self, transport: Transport) -> None:
        """The queue's unpartitioned jobs share one turn, first among the never served."""
        plain = await _jobs(transport, None, 4)
        tenant = await _jobs(transport, "t", 4)
        leases = await _claim(transport, limit=2)
        assert [lease.job_id for lease in leases] == [plain[0], tenant[0]]
        leases = await _claim(transport, limit=3)
        assert [lease.job_id for lease in leases] == [plain[1], tenant[1], plain[2]]

    async def test_the_unpartitioned_jobs_take_turns_with_the_partitions(
        self, transport: Transport
    ) -> None:
        """Claims of one job alternate between the unpartitioned jobs and a partition: the
        unpartitioned turn goes to the back of the rotation like any other."""
        plain = await _jobs(transport, None, 2)
        tenant = await _jobs(transport, "t", 2)
        claimed = [(await _claim(transport))[0].job_id for _ in range(4)]
        assert claimed == [plain[0], tenant[0], plain[1], tenant[1]]

    async def test_a_partitions_job_behind_one_of_a_full_key_still_gets_its_turn(
        self, transport: Transport
    ) -> None:
        """A partition whose first due job is of a full key is still eligible through the
        job behind it, which starts while the first keeps its place."""
        await transport.set_limit("k", concurrency=0)
        held = await _jobs(transport, "a", 1, concurrency_key="k")
        free = await _jobs(transport, "a", 1)
        assert [lease.job_id for lease in await _claim(transport)] == free
        assert (await transport.get(held[0])).attempt == 0

    async def test_a_deleted_jobs_partition_is_passed_over(self, transport: Transport) -> None:
        """A partition whose only job was deleted has no turn: the claim serves the next."""
        gone = await _jobs(transport, "a", 1)
        kept = await _jobs(transport, "b", 1)
        assert await transport.delete_jobs(JobFilter(ids=tuple(gone))) == gone
        assert [lease.job_id for lease in await _claim(transport)] == kept

    async def test_a_partition_held_by_its_key_keeps_its_turn(self, transport: Transport) -> None:
        """A partition whose due jobs are all of a full key is not eligible: the others are
        served meanwhile, its attempts unspent, and once its key has room it goes first, as
        the partition that waited longest."""
        await transport.set_limit("k", concurrency=0)
        held = await _jobs(transport, "a", 2, concurrency_key="k")
        other = await _jobs(transport, "b", 3)
        assert [lease.job_id for lease in await _claim(transport)] == [other[0]]
        assert [lease.job_id for lease in await _claim(transport)] == [other[1]]
        assert (await transport.get(held[0])).attempt == 0
        await transport.set_limit("k", concurrency=None)
        assert [lease.job_id for lease in await _claim(transport)] == [held[0]]
        assert [lease.job_id for lease in await _claim(transport)] == [other[2]]

    async def test_a_key_limit_holds_across_fair_claims(self, transport: Transport) -> None:
        """Two partitions' jobs of one key with one slot: the first claim starts one, the next
        finds the key full while that job runs, and once it ends the other starts."""
        await transport.set_limit("k", concurrency=1)
        first = await _jobs(transport, "a", 1, concurrency_key="k")
        second = await _jobs(transport, "b", 1, concurrency_key="k")
        (lease,) = await _claim(transport)
        assert lease.job_id == first[0]
        assert await _claim(transport) == []
        await transport.finalize(
            [FinalizeRequest(job_id=lease.job_id, token=lease.token, outcome=Complete())]
        )
        assert [lease.job_id for lease in await _claim(transport)] == second

    async def test_a_partition_with_only_future_jobs_is_not_eligible(
        self, transport: Transport, clock: ManualClock
    ) -> None:
        """Scheduled jobs give their partition no turn until they are due."""
        later = await _jobs(transport, "a", 1, delay=60.0)
        now = await _jobs(transport, "b", 2)
        assert [lease.job_id for lease in await _claim(transport, limit=5)] == now
        clock.advance(60.0)
        assert [lease.job_id for lease in await _claim(transport, limit=5)] == later

    async def test_a_retried_job_goes_back_to_its_partition(self, transport: Transport) -> None:
        """A retry due now is its partition's job again, in the partition's turn."""
        (a,) = await _jobs(transport, "a")
        b = await _jobs(transport, "b", 2)
        (lease,) = await _claim(transport)
        assert lease.job_id == a
        request = FinalizeRequest(job_id=a, token=lease.token, outcome=Retry(run_at=0.0))
        assert await transport.finalize([request]) == [FinalizeResult.APPLIED]
        assert [lease.job_id for lease in await _claim(transport, limit=2)] == [b[0], a]

    async def test_the_partition_is_stored_with_the_job(self, transport: Transport) -> None:
        (job_id,) = await _jobs(transport, "tenant:42")
        assert (await transport.get(job_id)).partition_key == "tenant:42"
        (lease,) = await _claim(transport)
        assert lease.job.partition_key == "tenant:42"
        done = FinalizeRequest(job_id=job_id, token=lease.token, outcome=Complete())
        assert await transport.finalize([done]) == [FinalizeResult.APPLIED]
        assert (await transport.get(job_id)).partition_key == "tenant:42"
        assert (await transport.get(job_id)).state is JobState.SUCCEEDED

    async def test_a_paused_queue_yields_nothing_and_a_cap_still_holds(
        self, transport: Transport
    ) -> None:
        """Fair share changes the order of a claim, never what it may start."""
        await _jobs(transport, "a", 3)
        await _jobs(transport, "b", 3)
        await transport.set_queue_config(QueueConfig(name="q", paused=True))
        assert await _claim(transport, limit=5) == []
        await transport.set_queue_config(QueueConfig(name="q", global_concurrency=3))
        assert await _partitions(transport, limit=5) == ["a", "b", "a"]
        assert await _claim(transport, limit=5) == []

    async def test_racing_claimers_take_each_job_once(self, transport: Transport) -> None:
        """However many claims run at once, each job goes to one of them, and together they
        take jobs of every partition."""
        for name in ["a", "b", "c", "d"]:
            await _jobs(transport, name, 10)
        got: list[Lease] = []

        async def claimer(n: int) -> None:
            got.extend(await _claim(transport, limit=3, owner=f"w{n}"))

        async with anyio.create_task_group() as tg:
            for n in range(8):
                tg.start_soon(claimer, n)
        assert len({lease.job_id for lease in got}) == len(got) > 0
        assert {lease.job.partition_key for lease in got} == {"a", "b", "c", "d"}

    async def test_two_nodes_share_one_rotation(
        self, transport: Transport, second_transport: Transport
    ) -> None:
        """The rotation is the store's: a partition one node served waits its turn on the other."""
        await _jobs(transport, "a", 3)
        await _jobs(transport, "b", 3)
        assert await _partitions(transport) == ["a"]
        assert [
            lease.job.partition_key for lease in await _claim(second_transport, owner="w2")
        ] == ["b"]
        assert await _partitions(transport) == ["a"]

    async def test_list_partitions_shows_each_partitions_jobs_and_turn(
        self, transport: Transport, clock: ManualClock
    ) -> None:
        """Each partition with waiting jobs, by key, with its waiting and running jobs and its
        last turn; the unpartitioned jobs and other queues' partitions are not listed; a
        keyset pages through them."""
        await _jobs(transport, "b", 2)
        await _jobs(transport, "a", 3)
        await _jobs(transport, None, 2)
        await transport.enqueue(EnqueueRequest(kind="fair.job", queue="other", partition_key="c"))
        assert await transport.list_partitions("q") == [
            PartitionInfo(queue="q", key="a", waiting=3, running=0),
            PartitionInfo(queue="q", key="b", waiting=2, running=0),
        ]
        at = clock.now()
        assert await _partitions(transport, limit=2) == [None, "a"]
        assert await transport.list_partitions("q") == [
            PartitionInfo(queue="q", key="a", waiting=2, running=1, served_at=at),
            PartitionInfo(queue="q", key="b", waiting=2, running=0),
        ]
        assert await transport.list_partitions("q", after="a") == [
            PartitionInfo(queue="q", key="b", waiting=2, running=0),
        ]
        assert [p.key for p in await transport.list_partitions("q", limit=1)] == ["a"]
        assert await transport.list_partitions("q", after="b") == []
        assert await transport.list_partitions("none") == []

    async def test_list_partitions_counts_a_big_backlog_up_to_its_cap(
        self, transport: Transport
    ) -> None:
        """A partition's waiting jobs are counted up to MAX_PARTITION_COUNT."""
        for _ in range(2):
            await _jobs(transport, "big", MAX_PARTITION_COUNT // 2 + 1)
        (info,) = await transport.list_partitions("q")
        assert info.waiting == MAX_PARTITION_COUNT

    @pytest.mark.parametrize(
        ("args", "error"),
        [
            ({"queue": "bad queue"}, InvalidQueueName),
            ({"queue": "q", "limit": 0}, InvalidRequest),
            ({"queue": "q", "limit": True}, InvalidRequest),
            ({"queue": "q", "after": ""}, InvalidRequest),
            ({"queue": "q", "after": 5}, InvalidRequest),
        ],
    )
    async def test_list_partitions_refuses_bad_arguments(
        self, transport: Transport, args: dict[str, object], error: type[Exception]
    ) -> None:
        rest = dict(args)  # the parameters are shared by every loop's run
        queue = rest.pop("queue")
        with pytest.raises(error):
            await transport.list_partitions(queue, **rest)  # type: ignore[arg-type]
