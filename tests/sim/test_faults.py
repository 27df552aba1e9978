"""The faulty transport keeps the contract while it breaks the connection; the fault plan."""

from __future__ import annotations

import anyio
import attrs
import pytest

from actors.sim import FaultKind, FaultRates, SimConfig
from actors.sim._faults import PARTITION_TIMEOUT, StorageFault
from actors.sim.lowlevel import Fault, StorageCallFailed, WakeHub, parse_faults, plan_faults
from transports import ConnectionLost, JobState, QueueConfig
from transports.lowlevel import Complete, FinalizeRequest, FinalizeResult

from ._support import claim_one, job, make_rig

pytestmark = pytest.mark.anyio


async def test_a_healthy_link_passes_calls_through() -> None:
    """Without faults every call reaches the store and the checker sees what it did."""
    rig = make_rig()
    lease = await claim_one(rig)
    results = await rig.transport.finalize(
        [FinalizeRequest(job_id=lease.job_id, token=lease.token, outcome=Complete())]
    )
    assert results == [FinalizeResult.APPLIED]
    assert (await rig.oracle.get(lease.job_id)).state is JobState.SUCCEEDED
    assert rig.checker.claims == 1
    assert rig.checker.finalizes_applied == 1
    assert rig.transport.failed_calls == 0
    assert not rig.violations


async def test_a_failed_write_wrote_nothing_and_a_lost_reply_wrote_everything() -> None:
    """Under a failing store an enqueue either never reached it or reached it whole."""
    rig = make_rig(seed=3)
    rig.link.storage.append(StorageFault(mode="fail", level=1.0))
    for n in range(60):
        with pytest.raises(ConnectionLost):
            await rig.transport.enqueue(job(n))
    failures = [e.event for e in rig.trace.entries if type(e.event) is StorageCallFailed]
    assert len(failures) == 60
    applied = sum(f.applied for f in failures)
    assert 0 < applied < 60  # both kinds happened
    stored = await rig.oracle.list_jobs(limit=1000)
    assert len(stored) == applied
    assert len(rig.checker.jobs) == applied  # the checker learnt of the lost replies too


async def test_reads_never_pretend_to_have_written() -> None:
    """A failing read is a plain failure, never a lost reply."""
    rig = make_rig()
    rig.link.storage.append(StorageFault(mode="fail", level=1.0))
    for _ in range(20):
        with pytest.raises(ConnectionLost):
            await rig.transport.get_queue_config("q")
    assert not any(e.event.applied for e in rig.trace.entries)


async def test_a_partitioned_node_fails_after_its_timeout_and_writes_nothing() -> None:
    """Cut off from the store, a claim fails within the client timeout; the job stays put."""
    rig = make_rig()
    await rig.oracle.enqueue(job())
    rig.link.partitioned = 1
    async with rig.base.autojump():
        with pytest.raises(ConnectionLost):
            await rig.transport.claim("q", owner="w1", limit=1, ttl=10.0)
        assert rig.base.now() - 1_000.0 <= PARTITION_TIMEOUT
        with pytest.raises(ConnectionLost):
            await rig.transport.wait_for_work(["q"])
    assert (await rig.oracle.get(1)).state is JobState.AVAILABLE
    rig.link.heal()
    assert await rig.transport.claim("q", owner="w1", limit=1, ttl=10.0)


async def test_a_paused_node_acts_only_after_it_resumes() -> None:
    """A paused node's call waits for resume and then acts late, on the store's time."""
    rig = make_rig()
    await rig.oracle.enqueue(job())
    rig.clock.pause()
    claimed: list[float] = []

    async def claimer() -> None:
        await rig.transport.claim("q", owner="w1", limit=1, ttl=10.0)
        claimed.append(rig.base.now())

    async with rig.base.autojump(), anyio.create_task_group() as tg:
        tg.start_soon(claimer)
        await rig.base.sleep(100.0)
        assert not claimed
        assert (await rig.oracle.get(1)).state is JobState.AVAILABLE
        rig.clock.resume()
    assert claimed == [1_100.0]
    assert (await rig.oracle.get(1)).state is JobState.RUNNING


async def test_a_dead_node_cannot_write() -> None:
    """After a crash, the incarnation's calls fail before reaching the store."""
    rig = make_rig()
    rig.clock.kill()
    with pytest.raises(ConnectionLost):
        await rig.transport.enqueue(job())
    with pytest.raises(ConnectionLost):
        await rig.transport.wait_for_work(["q"])
    assert await rig.oracle.list_jobs() == []


async def test_slow_storage_delays_calls_but_they_succeed() -> None:
    """A slow store adds up to its latency to each call, in virtual time."""
    rig = make_rig(seed=1)
    rig.link.storage.append(StorageFault(mode="slow", level=5.0))
    async with rig.base.autojump():
        for _ in range(10):
            before = rig.base.now()
            await rig.transport.set_queue_config(QueueConfig(name="q"))
            assert 0.0 <= rig.base.now() - before <= 5.0
        assert rig.base.now() > 1_000.0
    assert rig.transport.failed_calls == 0


async def test_wake_hub_wakes_one_more_than_the_new_jobs_in_arrival_order() -> None:
    """n new jobs wake the n + 1 longest waiters, in the order they came; None wakes all."""
    hub = WakeHub()
    woke: list[int] = []

    async def waiter(i: int, *, task_status: anyio.abc.TaskStatus[None]) -> None:
        task_status.started()
        await hub.wait(["q"])
        woke.append(i)

    async with anyio.create_task_group() as tg:
        for i in range(6):
            await tg.start(waiter, i)
        await anyio.wait_all_tasks_blocked()
        hub.notify({"other": None, "q": 2})
        await anyio.wait_all_tasks_blocked()
        assert sorted(woke) == [0, 1, 2]
        hub.notify({"q": None})
    assert sorted(woke) == list(range(6))


def test_the_plan_is_a_function_of_the_config() -> None:
    """The same config plans the same faults, in time order, inside the faulty phase."""
    config = SimConfig(seed=5, nodes=4, duration=3600.0)
    plan = plan_faults(config)
    assert plan == plan_faults(config)
    assert [f.index for f in plan] == list(range(len(plan)))
    assert [f.at for f in plan] == sorted(f.at for f in plan)
    assert all(0 <= f.at < 3600.0 and 0 <= f.node < 4 for f in plan)
    assert {f.kind for f in plan} == {k for k in FaultKind if k is not FaultKind.HANG}
    assert plan != plan_faults(config.with_seed(6))


def test_turning_a_fault_kind_off_leaves_the_others_alone() -> None:
    """Each node and kind draws from its own stream: other kinds keep their timing."""
    config = SimConfig(seed=2, nodes=3, duration=7200.0)
    without_crashes = attrs.evolve(config, faults=config.faults - {FaultKind.CRASH})

    def others(plan: list[Fault]) -> list[tuple[float, int, FaultKind, float]]:
        return [(f.at, f.node, f.kind, f.duration) for f in plan if f.kind is not FaultKind.CRASH]

    assert others(plan_faults(config)) == others(plan_faults(without_crashes))
    assert plan_faults(attrs.evolve(config, faults=parse_faults("none"))) == []
    assert (
        plan_faults(
            attrs.evolve(config, rates=FaultRates(crash=0, pause=0, storage=0, partition=0, skew=0))
        )
        == []
    )
