"""The memory transport: the conformance suite, plus what only the memory backend promises."""

from __future__ import annotations

import math
import random
import time
from typing import Any

import anyio
import anyio.lowlevel
import pytest

import transports
import transports.testing
from transports import (
    EnqueueRequest,
    InvalidRequest,
    JobState,
    MemoryTransport,
    QueueConfig,
    TransportClosed,
)
from transports._memory import MemoryStore
from transports.lowlevel import (
    Complete,
    FinalizeRequest,
    Outcome,
    Release,
    RenewRequest,
    RenewResult,
    Retry,
)
from transports.testing import ManualClock, TransportConformance, TransportFactory

pytestmark = pytest.mark.anyio


class TestMemoryConformance(TransportConformance):
    supports_second_instance = True

    @pytest.fixture
    def transport_factory(self) -> TransportFactory:
        store = MemoryStore()

        def make(clock: ManualClock) -> MemoryTransport:
            return MemoryTransport(clock=clock, store=store)

        return make


def _request(**fields: Any) -> EnqueueRequest:
    fields.setdefault("kind", "test.job")
    fields.setdefault("queue", "q")
    return EnqueueRequest(**fields)


def test_testing_exports_are_complete() -> None:
    """transports.testing exports exactly its public names, sorted."""
    assert transports.testing.__all__ == sorted(transports.testing.__all__)
    for name in transports.testing.__all__:
        assert getattr(transports.testing, name) is not None


def test_manual_clock_moves_only_by_hand() -> None:
    """ManualClock starts at 1_000_000, advances forward only, and can be set anywhere."""
    clock = ManualClock()
    assert clock.now() == 1_000_000.0
    assert clock.advance(2.5) == 1_000_002.5
    assert clock.now() == 1_000_002.5
    with pytest.raises(ValueError, match="negative"):
        clock.advance(-1)
    clock.set(10.0)
    assert clock.now() == 10.0
    assert "10.0" in repr(clock)


async def test_connect_memory_url_builds_a_memory_transport() -> None:
    """connect("memory://") gives a working MemoryTransport with the given clock."""
    clock = ManualClock()
    async with transports.connect("memory://", clock=clock, max_payload_bytes=64) as transport:
        assert isinstance(transport, MemoryTransport)
        assert transport.max_payload_bytes == 64
        job_id = (await transport.enqueue(_request())).job_id
        assert (await transport.get(job_id)).created_at == clock.now()


async def test_without_a_clock_time_is_the_wall_clock() -> None:
    """A transport built without a clock stamps jobs with the wall clock."""
    before = time.time()
    async with MemoryTransport() as transport:
        assert transport.clock is None
        job_id = (await transport.enqueue(_request())).job_id
        created = (await transport.get(job_id)).created_at
    assert before <= created <= time.time()
    clock = ManualClock()
    assert MemoryTransport(clock=clock).clock is clock  # and with one, it is that clock


async def test_wait_for_work_blocks_until_its_queue_gets_work() -> None:
    """A waiter is not woken by another queue's work, and is woken by its own queue's."""
    async with MemoryTransport(clock=ManualClock()) as transport:
        returned = anyio.Event()

        async def waiter() -> None:
            await transport.wait_for_work(["q"])
            returned.set()

        with anyio.fail_after(5):
            async with anyio.create_task_group() as tg:
                tg.start_soon(waiter)
                for _ in range(5):
                    await anyio.lowlevel.checkpoint()
                await transport.enqueue(_request(queue="other"))
                await transport.enqueue(_request(queue="q", delay=10))
                for _ in range(5):
                    await anyio.lowlevel.checkpoint()
                assert not returned.is_set()
                await transport.set_queue_config(QueueConfig(name="q", paused=False))
                await returned.wait()
        assert transport.store.waiters.queues() == []


async def test_closing_one_node_leaves_the_other_working() -> None:
    """Two transports on one store: closing one wakes only its waiters; the other still works."""
    store = MemoryStore()
    clock = ManualClock()
    first = MemoryTransport(clock=clock, store=store)
    async with MemoryTransport(clock=clock, store=store) as second:
        assert second.store is store
        woken: list[str] = []

        async def waiter(node: MemoryTransport, name: str) -> None:
            await node.wait_for_work(["q"])
            woken.append(name)

        with anyio.fail_after(5):
            async with anyio.create_task_group() as tg:
                tg.start_soon(waiter, first, "first")
                tg.start_soon(waiter, second, "second")
                for _ in range(5):
                    await anyio.lowlevel.checkpoint()
                await first.aclose()
                for _ in range(5):
                    await anyio.lowlevel.checkpoint()
                assert woken == ["first"]
                await second.enqueue(_request())
        assert woken == ["first", "second"]
        with pytest.raises(TransportClosed):
            await first.counts()
        (counts,) = await second.counts()
        assert counts.total == 1


async def test_a_call_cancelled_at_its_checkpoint_writes_nothing() -> None:
    """An enqueue cancelled before it runs leaves the store untouched."""
    async with MemoryTransport(clock=ManualClock()) as transport:
        with anyio.CancelScope() as scope:
            scope.cancel()
            await transport.enqueue(_request())
        assert scope.cancelled_caught
        assert await transport.counts() == []


async def test_unknown_outcome_is_rejected_before_any_write() -> None:
    """A finalize batch with an unknown outcome raises InvalidRequest and applies nothing."""
    async with MemoryTransport(clock=ManualClock()) as transport:
        await transport.enqueue_many([_request(), _request()])
        a, b = await transport.claim("q", owner="w", limit=2, ttl=30)
        with pytest.raises(InvalidRequest):
            await transport.finalize(
                [
                    FinalizeRequest(job_id=a.job_id, token=a.token, outcome=Complete()),
                    FinalizeRequest(job_id=b.job_id, token=b.token, outcome="done"),  # type: ignore[arg-type]
                ]
            )
        assert (await transport.get(a.job_id)).state is JobState.RUNNING


async def test_limits_below_one_are_rejected() -> None:
    """reap, cleanup and list_jobs reject a limit below one."""
    async with MemoryTransport(clock=ManualClock()) as transport:
        with pytest.raises(InvalidRequest):
            await transport.reap(limit=0)
        with pytest.raises(InvalidRequest):
            await transport.cleanup(finished_before=0.0, limit=0)
        with pytest.raises(InvalidRequest):
            await transport.list_jobs(limit=0)
        with pytest.raises(InvalidRequest):
            await transport.acquire_leader("cron", holder="a", ttl=0)


async def test_renewals_do_not_grow_the_expiry_index_without_bound() -> None:
    """Thousands of renewals of a few leases keep the expiry heap small, and the rebuilt
    heap still knows every lease: each is reaped once it lapses, and not before."""
    clock = ManualClock()
    async with MemoryTransport(clock=clock) as transport:
        await transport.enqueue_many([_request() for _ in range(10)])
        leases = await transport.claim("q", owner="w", limit=10, ttl=30)
        renewals = [RenewRequest(job_id=lease.job_id, token=lease.token) for lease in leases]
        for _ in range(1_000):
            before = len(transport.store.expiry)
            assert set(await transport.renew(renewals, ttl=30)) == {RenewResult.RENEWED}
            assert len(transport.store.expiry) <= 4 * 10 + 1024 + 10
            if len(transport.store.expiry) < before:
                break  # rebuilt just now: what follows checks the rebuilt heap alone
        else:
            pytest.fail("the expiry heap was never rebuilt")
        clock.advance(29)
        assert await transport.reap() == []
        clock.advance(1)
        assert {r.job_id for r in await transport.reap()} == {lease.job_id for lease in leases}


async def test_cancelled_waiting_jobs_leave_no_claimable_trace() -> None:
    """Claims skip the index entries of cancelled jobs and still take the rest in order."""
    async with MemoryTransport(clock=ManualClock()) as transport:
        results = await transport.enqueue_many([_request(payload=i) for i in range(10)])
        for result in results[::2]:
            await transport.cancel(result.job_id)
        leases = await transport.claim("q", owner="w", limit=10, ttl=30)
        assert [lease.job.payload for lease in leases] == [1, 3, 5, 7, 9]


async def _scripted_run(seed: int) -> list[object]:
    """A seeded, single-task workload; returns everything the transport answered."""
    rng = random.Random(seed)
    clock = ManualClock()
    trace: list[object] = []
    async with MemoryTransport(clock=clock) as transport:
        for _ in range(300):
            roll = rng.random()
            if roll < 0.4:
                trace.append(
                    await transport.enqueue(
                        _request(payload=rng.randint(0, 9), priority=rng.randint(0, 2))
                    )
                )
            elif roll < 0.8:
                for lease in await transport.claim("q", owner="w", limit=rng.randint(1, 3), ttl=10):
                    trace.append(lease)
                    if rng.random() < 0.7:
                        outcomes: list[Outcome] = [
                            Complete(),
                            Retry(run_at=clock.now() + 5),
                            Release(),
                        ]
                        outcome = rng.choice(outcomes)
                        trace.extend(
                            await transport.finalize(
                                [
                                    FinalizeRequest(
                                        job_id=lease.job_id, token=lease.token, outcome=outcome
                                    )
                                ]
                            )
                        )
            else:
                clock.advance(rng.choice([1.0, 11.0]))
                trace.extend(await transport.reap())
        trace.extend(await transport.list_jobs(limit=1000))
    return trace


async def test_same_seed_gives_the_same_trace() -> None:
    """Two runs of one seeded workload give identical answers, tokens and ids included."""
    first = await _scripted_run(7)
    assert first == await _scripted_run(7)
    assert first != await _scripted_run(8)


async def test_non_finite_times_are_rejected_before_any_write() -> None:
    """NaN or infinite run_at, delay and ttl raise InvalidRequest and write nothing."""
    async with MemoryTransport(clock=ManualClock()) as transport:
        with pytest.raises(InvalidRequest):
            await transport.enqueue_many([_request(), _request(run_at=math.nan)])
        with pytest.raises(InvalidRequest):
            await transport.enqueue(_request(delay=math.inf))
        assert await transport.counts() == []
        await transport.enqueue(_request())
        with pytest.raises(InvalidRequest):
            await transport.claim("q", owner="w", limit=1, ttl=math.inf)
        (lease,) = await transport.claim("q", owner="w", limit=1, ttl=30)
        with pytest.raises(InvalidRequest):
            await transport.finalize(
                [
                    FinalizeRequest(
                        job_id=lease.job_id, token=lease.token, outcome=Retry(run_at=math.nan)
                    )
                ]
            )
        assert (await transport.get(lease.job_id)).state is JobState.RUNNING
