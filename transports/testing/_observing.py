"""Conformance of what operators watch: the node registry, leader leases and the history.

Mixed into :class:`~transports.testing.TransportConformance`, so every backend runs it on both
event loops. Time moves only through the test's :class:`ManualClock`.
"""

from __future__ import annotations

from typing import Any, ClassVar

import anyio
import pytest

from .._base import Transport
from .._observed import MINUTE, Histogram, NodeInfo, QueueStats, minute_of
from .._records import (
    EnqueueRequest,
    FinalizeRequest,
    JobFilter,
    Lease,
    Outcome,
    Release,
    Retry,
    Snooze,
)
from ._clock import ManualClock

__all__ = ["TransportObserving"]


def _node(node_id: str = "n1", **fields: Any) -> NodeInfo:
    values: dict[str, Any] = {
        "id": node_id,
        "host": "host-a",
        "pid": 4242,
        "queues": ("default", "mail"),
        "slots": 12,
        "version": "0.1.0",
        "started_at": 1000.0,
        "heartbeat": 10.0,
    }
    values.update(fields)
    return NodeInfo(**values)


def _stats(queue: str = "q", minute: float = 0.0, **fields: Any) -> QueueStats:
    return QueueStats(queue=queue, minute=minute, **fields)


async def _claim(transport: Transport, queue: str = "q", *, ttl: float = 30.0) -> Lease:
    (lease,) = await transport.claim(queue, owner="w", limit=1, ttl=ttl)
    return lease


async def _end(transport: Transport, lease: Lease, outcome: Outcome) -> None:
    await transport.finalize(
        [FinalizeRequest(job_id=lease.job_id, token=lease.token, outcome=outcome)]
    )


class TransportObserving:
    """Nodes register and heartbeat, leaders are listed, history rows add up."""

    pytestmark: ClassVar[list[pytest.MarkDecorator]] = [pytest.mark.anyio]

    # --- nodes -----------------------------------------------------------------------------

    async def test_register_node_stores_it_with_last_seen_now(
        self, transport: Transport, clock: ManualClock
    ) -> None:
        """A registration is stored as given, except last_seen, which is the store's now."""
        stored = await transport.register_node(_node(last_seen=5.0))
        assert stored == _node(last_seen=clock.now())
        assert await transport.list_nodes() == [stored]

    async def test_register_node_again_replaces_every_field(
        self, transport: Transport, clock: ManualClock
    ) -> None:
        """Registering an id again replaces the row (an upsert), never adds a second one."""
        await transport.register_node(_node())
        clock.advance(3)
        again = _node(host="host-b", pid=7, queues=(), slots=0, version="0.2", heartbeat=2.5)
        await transport.register_node(again)
        assert await transport.list_nodes() == [
            _node(
                host="host-b",
                pid=7,
                queues=(),
                slots=0,
                version="0.2",
                heartbeat=2.5,
                last_seen=clock.now(),
            )
        ]

    async def test_list_nodes_is_by_id(self, transport: Transport) -> None:
        """Nodes are listed by id whatever the order they registered in."""
        for node_id in ["n3", "n1", "n2"]:
            await transport.register_node(_node(node_id))
        assert [n.id for n in await transport.list_nodes()] == ["n1", "n2", "n3"]

    async def test_heartbeat_moves_last_seen(
        self, transport: Transport, clock: ManualClock
    ) -> None:
        """A heartbeat stamps last_seen with now; an unknown node's is False and adds none."""
        await transport.register_node(_node())
        clock.advance(7)
        assert await transport.node_heartbeat("n1") is True
        (node,) = await transport.list_nodes()
        assert node.last_seen == clock.now()
        assert node.started_at == 1000.0
        assert await transport.node_heartbeat("unknown") is False
        assert [n.id for n in await transport.list_nodes()] == ["n1"]

    async def test_gone_after_missed_heartbeats(
        self, transport: Transport, clock: ManualClock
    ) -> None:
        """A node is alive until three heartbeat intervals pass without one, then gone."""
        await transport.register_node(_node(heartbeat=10.0))
        clock.advance(29.5)
        (node,) = await transport.list_nodes()
        assert node.is_alive(clock.now())
        clock.advance(0.5)
        assert not node.is_alive(clock.now())
        assert node.is_alive(clock.now(), misses=4)
        await transport.node_heartbeat("n1")
        (node,) = await transport.list_nodes()
        assert node.is_alive(clock.now())

    async def test_forget_node(self, transport: Transport) -> None:
        """Forgetting removes one node; forgetting it again, or an unknown one, is False."""
        await transport.register_node(_node("n1"))
        await transport.register_node(_node("n2"))
        assert await transport.forget_node("n1") is True
        assert await transport.forget_node("n1") is False
        assert [n.id for n in await transport.list_nodes()] == ["n2"]
        assert await transport.node_heartbeat("n1") is False

    async def test_prune_nodes_forgets_those_not_seen_since(
        self, transport: Transport, clock: ManualClock
    ) -> None:
        """Pruning removes exactly the nodes last seen before the time (not at it)."""
        await transport.register_node(_node("old"))
        clock.advance(10)
        await transport.register_node(_node("edge"))
        clock.advance(10)
        await transport.register_node(_node("new"))
        assert await transport.prune_nodes(seen_before=clock.now() - 10) == 1
        assert [n.id for n in await transport.list_nodes()] == ["edge", "new"]
        assert await transport.prune_nodes(seen_before=clock.now() - 10) == 0

    async def test_nodes_are_shared_across_instances(
        self, transport: Transport, second_transport: Transport
    ) -> None:
        """A node registered through one instance is seen and heartbeats through another."""
        await transport.register_node(_node("n1"))
        assert [n.id for n in await second_transport.list_nodes()] == ["n1"]
        assert await second_transport.node_heartbeat("n1") is True

    # --- leaders ---------------------------------------------------------------------------

    async def test_list_leaders_shows_live_leases_only(
        self, transport: Transport, clock: ManualClock
    ) -> None:
        """Live leases are listed by name; released and expired ones are not."""
        assert await transport.list_leaders() == []
        cron = await transport.acquire_leader("cron", holder="a", ttl=10)
        maintenance = await transport.acquire_leader("maintenance", holder="b", ttl=30)
        await transport.acquire_leader("gone", holder="c", ttl=10)
        assert await transport.release_leader("gone", holder="c")
        assert await transport.list_leaders() == [cron, maintenance]
        clock.advance(10)  # cron's lease expires at exactly now
        assert await transport.list_leaders() == [maintenance]

    # --- recovery --------------------------------------------------------------------------

    async def test_a_claim_reports_when_the_previous_holder_lost_the_job(
        self, transport: Transport, clock: ManualClock
    ) -> None:
        """A reaped lease's expiry comes with every claim until a run ends; a release hands it
        on, any other applied finalize clears it."""
        await transport.enqueue(EnqueueRequest(kind="k", queue="q", max_attempts=5))
        first = await _claim(transport, ttl=10)
        assert first.lost_at is None  # never lost
        lost_at = first.expires_at
        clock.advance(12)
        await transport.reap()
        clock.advance(3)
        second = await _claim(transport)
        assert second.lost_at == lost_at
        await _end(transport, second, Release())
        third = await _claim(transport)
        assert third.lost_at == lost_at  # the released claim never ran: still recovering
        await _end(transport, third, Snooze(run_at=clock.now()))
        assert (await _claim(transport)).lost_at is None  # the recovered run ended

    async def test_each_reap_replaces_the_lost_time(
        self, transport: Transport, clock: ManualClock
    ) -> None:
        """A job lost again is recovering from its newest loss; a retried run clears it."""
        await transport.enqueue(EnqueueRequest(kind="k", queue="q", max_attempts=5))
        await _claim(transport, ttl=10)
        clock.advance(11)
        await transport.reap()
        again = await _claim(transport, ttl=5)
        clock.advance(6)
        await transport.reap()
        recovered = await _claim(transport)
        assert recovered.lost_at == again.expires_at
        await _end(transport, recovered, Retry(run_at=clock.now(), error="boom"))
        assert (await _claim(transport)).lost_at is None

    async def test_a_job_ended_or_retried_by_an_operator_is_no_recovery(
        self, transport: Transport, clock: ManualClock
    ) -> None:
        """A reap that ends the job, and an operator's retry, leave no lost time."""
        last = await transport.enqueue(EnqueueRequest(kind="k", queue="q", max_attempts=1))
        await _claim(transport, ttl=10)
        clock.advance(11)
        await transport.reap()  # dead: its last attempt
        assert await transport.retry_jobs(JobFilter.one(last.job_id)) == [last.job_id]
        assert (await _claim(transport)).lost_at is None
        other = await transport.enqueue(EnqueueRequest(kind="k", queue="r", max_attempts=5))
        await _claim(transport, "r", ttl=10)
        clock.advance(11)
        await transport.reap()  # available, recovering
        only = JobFilter.one(other.job_id)
        assert await transport.discard_jobs(only, reason="not now") == [other.job_id]
        assert await transport.retry_jobs(only) == [other.job_id]
        assert (await _claim(transport, "r")).lost_at is None

    # --- history ---------------------------------------------------------------------------

    async def test_add_stats_adds_up(self, transport: Transport) -> None:
        """Increments of one queue and minute add up, within a batch and across calls."""
        await transport.add_stats(
            [
                _stats(succeeded=2, wait=Histogram.of([0.01, 0.5])),
                _stats(failed=1, succeeded=1, run=Histogram.of([2.0])),
            ]
        )
        await transport.add_stats([_stats(succeeded=3, finalize_refused=1, reclaimed=2)])
        (row,) = await transport.list_stats()
        assert row == _stats(
            succeeded=6,
            failed=1,
            finalize_refused=1,
            reclaimed=2,
            wait=Histogram.of([0.01, 0.5]),
            run=Histogram.of([2.0]),
        )
        assert row.wait.quantile(0.5) == pytest.approx(0.01, rel=0.19)
        assert row.wait.quantile(0.99) == pytest.approx(0.5, rel=0.19)

    async def test_add_stats_of_zeros_writes_nothing(self, transport: Transport) -> None:
        """A row of zeros (or no rows) stores no row."""
        await transport.add_stats([_stats(), _stats("other", MINUTE)])
        await transport.add_stats([])
        assert await transport.list_stats() == []

    async def test_every_figure_round_trips(self, transport: Transport) -> None:
        """Each counter and every histogram bucket, the largest values included, is kept."""
        big = 2**62
        row = _stats(
            succeeded=1,
            failed=2,
            dead=3,
            cancelled=4,
            finalize_refused=5,
            leases_lost=6,
            reclaimed=7,
            deduplicated=big,
            wait=Histogram(buckets=tuple(range(97))),
            run=Histogram(buckets=(big,) + (0,) * 95 + (1,)),
            recovery=Histogram(buckets=(0,) * 40 + (3,) + (0,) * 55 + (big,)),
        )
        await transport.add_stats([row])
        assert await transport.list_stats() == [row]

    async def test_list_stats_filters_and_orders(self, transport: Transport) -> None:
        """Rows come by minute then queue, within [since, until) and of the queue asked."""
        await transport.add_stats(
            [
                _stats("b", 2 * MINUTE, dead=1),
                _stats("a", 2 * MINUTE, dead=2),
                _stats("b", 0.0, dead=3),
                _stats("a", MINUTE, dead=4),
            ]
        )
        everything = await transport.list_stats()
        assert [(r.minute, r.queue, r.dead) for r in everything] == [
            (0.0, "b", 3),
            (MINUTE, "a", 4),
            (2 * MINUTE, "a", 2),
            (2 * MINUTE, "b", 1),
        ]
        assert [r.dead for r in await transport.list_stats(since=MINUTE)] == [4, 2, 1]
        assert [r.dead for r in await transport.list_stats(until=2 * MINUTE)] == [3, 4]
        assert [r.dead for r in await transport.list_stats(queue="b")] == [3, 1]
        assert await transport.list_stats(queue="b", since=1.0, until=2 * MINUTE) == []
        assert await transport.list_stats(queue="nobody") == []

    async def test_prune_stats_deletes_rows_before(self, transport: Transport) -> None:
        """Pruning deletes the rows of minutes before the time and says how many."""
        await transport.add_stats(
            [
                _stats("a", 0.0, dead=1, run=Histogram.of([1.0])),
                _stats("b", 0.0, dead=1),
                _stats("a", MINUTE, dead=1),
            ]
        )
        assert await transport.prune_stats(before=MINUTE) == 2
        assert [(r.queue, r.minute) for r in await transport.list_stats()] == [("a", MINUTE)]
        assert await transport.prune_stats(before=MINUTE) == 0

    async def test_dedupe_folds_are_counted(self, transport: Transport, clock: ManualClock) -> None:
        """Each enqueue folded into an active job adds one to its queue's minute."""
        clock.set(10 * MINUTE + 5)
        request = EnqueueRequest(kind="k", queue="q", dedupe_key="one")
        await transport.enqueue_many([request, request])
        await transport.enqueue(request)
        await transport.enqueue(EnqueueRequest(kind="k", queue="other", dedupe_key="one"))
        (row,) = await transport.list_stats()
        assert (row.queue, row.minute, row.deduplicated) == ("q", 10 * MINUTE, 2)
        assert row.cells() == {"deduplicated": 2}

    async def test_concurrent_adds_lose_nothing(
        self, transport: Transport, second_transport: Transport
    ) -> None:
        """Nodes adding to one row at once lose no increment."""

        async def add(node: Transport) -> None:
            for _ in range(5):
                await node.add_stats([_stats(succeeded=1, run=Histogram.of([0.2]))])

        async with anyio.create_task_group() as tg:
            for n in range(4):
                tg.start_soon(add, transport if n % 2 else second_transport)
        (row,) = await transport.list_stats()
        assert row.succeeded == 20
        assert row.run.count == 20

    async def test_minute_of(self) -> None:
        """Every time belongs to the minute that starts at or before it."""
        assert minute_of(0.0) == 0.0
        assert minute_of(59.999) == 0.0
        assert minute_of(60.0) == MINUTE
        assert minute_of(1_700_000_001.5) == 1_700_000_001.5 // 60 * 60
