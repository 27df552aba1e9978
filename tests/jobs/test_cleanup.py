"""Cleanup: finished jobs are deleted past their queue's retention, by the leader only."""

from __future__ import annotations

import logging
import math
from random import Random

import anyio
import attrs
import pytest

from actors.core import VirtualClock
from actors.jobs import App, ConfigInvalid, Topology
from actors.jobs.lowlevel import Cleanup, RunNow
from transports import (
    EnqueueRequest,
    JobState,
    MemoryStore,
    MemoryTransport,
    QueueConfig,
    Transport,
)
from transports.lowlevel import Complete, Discard, FinalizeRequest

from ._support import START, FaultyTransport, start_node

pytestmark = pytest.mark.anyio


async def _finished(transport: Transport, queue: str) -> list[int]:
    """One succeeded, one dead and one cancelled job of ``queue``, finished now."""
    done, dead, cancelled = await transport.enqueue_many(
        [EnqueueRequest(kind="k", queue=queue) for _ in range(3)]
    )
    leases = await transport.claim(queue, owner="w", limit=2, ttl=60.0)
    await transport.finalize(
        [
            FinalizeRequest(job_id=leases[0].job_id, token=leases[0].token, outcome=Complete()),
            FinalizeRequest(
                job_id=leases[1].job_id, token=leases[1].token, outcome=Discard(error="x")
            ),
        ]
    )
    await transport.cancel(cancelled.job_id)
    return [done.job_id, dead.job_id, cancelled.job_id]


async def _active(transport: Transport, queue: str) -> list[int]:
    """A scheduled, an available and a running job of ``queue``."""
    results = await transport.enqueue_many(
        [
            EnqueueRequest(kind="k", queue=queue, delay=10_000_000.0),
            EnqueueRequest(kind="k", queue=queue),
            EnqueueRequest(kind="k", queue=queue),
        ]
    )
    await transport.claim(queue, owner="w", limit=1, ttl=10_000_000.0)
    return [r.job_id for r in results]


async def _exists(transport: Transport, ids: list[int]) -> list[bool]:
    jobs = {job.id for job in await transport.list_jobs(limit=10_000)}
    return [i in jobs for i in ids]


def _cleanup_node(
    transport: Transport, clock: VirtualClock, node_id: str, retention: float | None
) -> Topology:
    return Topology(App(), transport, node_id=node_id, clock=clock, rng=Random(0)).cleanup(
        default_retention=retention, interval=10.0
    )


async def test_only_the_leader_deletes_finished_jobs_past_retention(clock: VirtualClock) -> None:
    """Finished jobs older than the retention are deleted by the maintenance leader alone;
    active jobs stay; when the leader stops, the other node takes over."""
    store = MemoryStore()
    leader = FaultyTransport(MemoryTransport(clock=clock, store=store))
    follower = FaultyTransport(MemoryTransport(clock=clock, store=store))
    check = MemoryTransport(clock=clock, store=store)
    old = await _finished(check, "q")
    active = await _active(check, "q")
    async with clock.autojump(), anyio.create_task_group() as tg:
        first = await start_node(tg, _cleanup_node(leader, clock, "leader", 100.0))
        await clock.sleep(1.0)
        second = await start_node(tg, _cleanup_node(follower, clock, "follower", 100.0))
        await clock.sleep(50.0)
        assert await _exists(check, old) == [True] * 3  # not yet past the retention
        await clock.sleep(70.0)
        assert await _exists(check, old) == [False] * 3
        assert await _exists(check, active) == [True] * 3
        assert leader.calls["cleanup"] > 0
        assert follower.calls["cleanup"] == 0
        await first.stop()  # hands the maintenance lease over
        newer = await _finished(check, "later")
        await clock.sleep(125.0)
        assert await _exists(check, newer) == [False] * 3
        assert follower.calls["cleanup"] > 0
        await second.stop()
    assert await _exists(check, active) == [True] * 3
    states = {job.state for job in await check.list_jobs()}
    assert states == {JobState.SCHEDULED, JobState.AVAILABLE, JobState.RUNNING}


async def test_the_maintenance_lease_is_held_by_the_node_and_handed_back_when_it_stops(
    memory: MemoryTransport, clock: VirtualClock
) -> None:
    """The leader lease is named ``maintenance`` and held by the node id; a stopping leader
    releases it at once, rather than leave it live for its TTL (two intervals)."""
    async with clock.autojump(), anyio.create_task_group() as tg:
        node = await start_node(tg, _cleanup_node(memory, clock, "n1", 100.0))
        await clock.sleep(11.0)
        (lease,) = await memory.list_leaders()
        assert (lease.name, lease.holder) == ("maintenance", "n1")
        assert lease.expires_at == START + 30.0  # taken at the first tick, for two intervals
        await node.stop()
        assert await memory.list_leaders() == []


async def test_each_queue_keeps_finished_jobs_for_its_own_retention(
    memory: MemoryTransport, clock: VirtualClock
) -> None:
    """``QueueConfig.retention`` overrides the node default per queue; with no default, queues
    without one keep their jobs."""
    await memory.set_queue_config(QueueConfig(name="short", retention=10.0))
    await memory.set_queue_config(QueueConfig(name="long", retention=1000.0))
    await memory.set_queue_config(QueueConfig(name="zero", retention=0.0))
    zero = await _finished(memory, "zero")
    short = await _finished(memory, "short")
    long = await _finished(memory, "long")
    forever = await _finished(memory, "forever")
    node = _cleanup_node(memory, clock, "n", None)
    async with clock.autojump(), anyio.create_task_group() as tg:
        running_node = await start_node(tg, node)
        cleanup = await running_node.node.child("cleanup")
        await clock.sleep(60.0)
        assert await _exists(memory, short + zero) == [False] * 6
        assert await _exists(memory, long + forever) == [True] * 6
        await clock.sleep_until(START + 1001.0)
        await cleanup.ask(lambda r: RunNow(reply_to=r), timeout=10.0)
        assert await _exists(memory, long) == [False] * 3
        assert await _exists(memory, forever) == [True] * 3
        await running_node.stop()


@pytest.mark.parametrize("bad", [-1.0, math.nan, math.inf, "10"])
async def test_a_bad_stored_retention_keeps_the_queues_jobs(
    memory: MemoryTransport, clock: VirtualClock, caplog: pytest.LogCaptureFixture, bad: object
) -> None:
    """A retention another tool stored out of range is ignored with one WARNING: that queue's
    finished jobs are kept (a negative one would otherwise delete every finished job, a NaN
    crash Cleanup at every tick), and the other queues are cleaned as usual."""
    with attrs.validators.disabled():
        memory.store.configs["odd"] = QueueConfig(name="odd", retention=bad)  # type: ignore[arg-type]
    await memory.set_queue_config(QueueConfig(name="short", retention=10.0))
    odd = await _finished(memory, "odd")
    short = await _finished(memory, "short")
    caplog.set_level(logging.WARNING, logger="actorq.cleanup")
    async with clock.autojump(), anyio.create_task_group() as tg:
        running_node = await start_node(tg, _cleanup_node(memory, clock, "n", 100.0))
        cleanup = await running_node.node.child("cleanup")
        await clock.sleep(60.0)
        await cleanup.ask(lambda r: RunNow(reply_to=r), timeout=10.0)
        assert await _exists(memory, short) == [False] * 3
        assert await _exists(memory, odd) == [True] * 3
        assert (await running_node.node.child("cleanup")) is cleanup  # never crashed
        await running_node.stop()
    (warning,) = [r for r in caplog.records if r.name == "actorq.cleanup" and "odd" in r.message]
    assert warning.getMessage() == (
        f"queue 'odd': ignoring the stored retention {bad!r} (must be a finite number >= 0), "
        "keeping its finished jobs"
    )
    assert warning.levelno == logging.WARNING
    assert (warning.queue, repr(warning.retention)) == ("odd", repr(bad))  # type: ignore[attr-defined]


def test_cleanup_settings_are_refused_by_name() -> None:
    """Each duration is named in its error (retentions and the release timeout may be 0, the
    interval may not); the batch is an integer from 1 to 1 000 000."""
    transport = MemoryTransport()
    for what, value, bound in [
        ("interval", 0, "> 0"),
        ("release_timeout", -1, ">= 0"),
        ("default_retention", -1, ">= 0"),
        ("stats_retention", -1, ">= 0"),
        ("node_retention", -1, ">= 0"),
        ("signal_retention", -1, ">= 0"),
        ("result_retention", -1, ">= 0"),
    ]:
        with pytest.raises(ConfigInvalid, match=rf"^Cleanup {what} must be {bound}, got"):
            Cleanup(transport=transport, node_id="n", **{what: value})
    for batch in (0, 1_000_001):
        with pytest.raises(
            ConfigInvalid, match=r"^Cleanup batch must be between 1 and 1000000, got"
        ):
            Cleanup(transport=transport, node_id="n", batch=batch)
    Cleanup(
        transport=transport,
        node_id="n",
        batch=1,
        release_timeout=0,
        default_retention=0,
        stats_retention=0,
        node_retention=0,
        signal_retention=0,
        result_retention=0,
    )
    Cleanup(transport=transport, node_id="n", batch=1_000_000)
