"""A storage outage mid-run: nothing crash-loops, nothing is lost, everything completes."""

from __future__ import annotations

import itertools
import logging
from typing import Any

import anyio
import attrs
import pytest

from actors.core import VirtualClock
from actors.jobs import (
    App,
    CronFired,
    CronSchedule,
    FinalizeRefused,
    JobContext,
    JobReclaimed,
    WorkerConfig,
    WorkerCrashed,
)
from transports import JobState, MemoryTransport

from ._support import START, FaultyTransport, running, topology, wait_final, wait_until

pytestmark = pytest.mark.anyio

TTL = 30.0
CONFIG = WorkerConfig(lease_ttl=TTL, poll_interval=1.0, error_backoff=1.0)


def _app(inner: MemoryTransport) -> App:
    app = App(inner)

    @app.task("work", max_attempts=5)
    async def work(ctx: JobContext, payload: int) -> None:
        await ctx.clock.sleep(1.0 + payload % 4)

    @app.task("beat")
    async def beat(ctx: JobContext, payload: Any) -> None:
        return None

    return app


@pytest.mark.parametrize("outage", [20.0, 90.0])
async def test_a_storage_outage_loses_nothing(clock: VirtualClock, outage: float) -> None:
    """With the store unreachable for a while (shorter or longer than the lease TTL), no
    actor crashes or spins, and once it is back every job completes. A short outage costs no
    extra attempt: results computed meanwhile are finalized when the store returns."""
    inner = MemoryTransport(clock=clock)
    faulty = FaultyTransport(inner)
    app = _app(inner)
    schedule = CronSchedule(name="beat", expression="* * * * * */10", kind="beat")
    ids = [(await app.enqueue("work", n)).job_id for n in range(40)]
    node = topology(app, faulty, clock, worker=CONFIG, concurrency=4, schedules=[schedule])
    async with clock.autojump(), running(node) as (running_node, events):
        await clock.sleep(5.0)
        faulty.calls.clear()
        faulty.down = True
        await clock.sleep(outage)
        during = sum(faulty.calls.values())
        faulty.down = False
        jobs = await wait_final(inner, clock, ids, timeout=600.0)
        await clock.sleep(25.0)
        children = await running_node.root.which_children()
    assert {job.state for job in jobs.values()} == {JobState.SUCCEEDED}
    assert events.of(WorkerCrashed) == []
    assert running_node.system.failures == []
    assert all(child.restarts == 0 for child in children)
    # Retries are paced by the clock: a few calls per actor per second, not a busy loop.
    assert during < outage * 40
    if outage < TTL:
        assert {job.attempt for job in jobs.values()} == {1}
        assert events.of(JobReclaimed) == []
        assert events.of(FinalizeRefused) == []
    else:
        assert max(job.attempt for job in jobs.values()) <= 2
    # Cron fires again after the outage.
    after = [e.tick for e in events.of(CronFired) if e.tick > START + 5 + outage]
    assert after


class _Timed(FaultyTransport):
    """Notes the clock time of each finalize call."""

    def __init__(self, inner: MemoryTransport, clock: VirtualClock) -> None:
        super().__init__(inner)
        self.node_clock = clock
        self.finalized_at: list[float] = []

    async def _before(self, name: str) -> None:
        if name == "finalize":
            self.finalized_at.append(self.node_clock.now())
        await super()._before(name)


async def test_a_finalize_the_store_refuses_warns_and_is_retried_with_a_doubling_pause(
    clock: VirtualClock, caplog: pytest.LogCaptureFixture
) -> None:
    """While the store refuses a finalize, the Claimer warns (its owner, how many jobs, the
    error) and tries again after ``error_backoff``, doubling the pause up to the renewal
    period; once the store answers, the outcome is stored."""
    caplog.set_level(logging.WARNING, logger="actorq.worker")
    inner = MemoryTransport(clock=clock)
    timed = _Timed(inner, clock)
    app = _app(inner)
    owners: list[str] = []

    @app.task("quick")
    async def quick(ctx: JobContext, payload: Any) -> None:
        owners.append(ctx.lease.owner)

    job_id = (await app.enqueue("quick", None)).job_id
    timed.failing.add("finalize")
    config = attrs.evolve(CONFIG, error_backoff=1.0, lease_ttl=30.0)  # renewals every 10 s
    async with clock.autojump(), running(topology(app, timed, clock, worker=config)):
        await wait_until(clock, lambda: len(timed.finalized_at) >= 7, timeout=120.0, what="7 tries")
        timed.failing.clear()
        (job,) = (await wait_final(inner, clock, [job_id])).values()
    assert job.state is JobState.SUCCEEDED
    tries = timed.finalized_at
    assert [b - a for a, b in itertools.pairwise(tries[:6])] == pytest.approx(
        [1.0, 2.0, 4.0, 8.0, 10.0]
    )
    (owner,) = owners
    warnings = [r.getMessage() for r in caplog.records if "finalize" in r.getMessage()]
    assert warnings[0] == f"{owner} could not finalize 1 job(s): injected outage in finalize"


async def test_a_normal_stop_stores_what_was_handed_back_once_the_store_answers(
    clock: VirtualClock,
) -> None:
    """A node stopping flushes the outcomes its Claimer holds, retrying while the store
    refuses them: a store back within the shutdown margin gets them."""
    inner = MemoryTransport(clock=clock)
    faulty = FaultyTransport(inner)
    app = _app(inner)
    job_id = (await app.enqueue("beat", None)).job_id
    config = attrs.evolve(CONFIG, shutdown_margin=3.0)
    faulty.failing.add("finalize")
    async with clock.autojump(), running(topology(app, faulty, clock, worker=config)) as (node, _):
        await wait_until(clock, lambda: faulty.calls["finalize"] >= 2, what="two tries")
        async with anyio.create_task_group() as tg:
            tg.start_soon(node.shutdown)
            await clock.sleep(1.0)
            faulty.failing.clear()
    assert (await inner.get(job_id)).state is JobState.SUCCEEDED


async def test_a_claim_the_store_refuses_warns_and_the_claimer_backs_off(
    clock: VirtualClock, caplog: pytest.LogCaptureFixture
) -> None:
    """A claim the store refuses is a WARNING (the owner, the queue, the error), and the
    Claimer claims again after ``error_backoff``, not after a poll interval."""
    caplog.set_level(logging.WARNING, logger="actorq.worker")
    inner = MemoryTransport(clock=clock)
    faulty = FaultyTransport(inner)
    app = _app(inner)
    owners: list[str] = []

    @app.task("quick")
    async def quick(ctx: JobContext, payload: Any) -> None:
        owners.append(ctx.lease.owner)

    job_id = (await app.enqueue("quick", None)).job_id
    faulty.failing.add("claim")
    config = attrs.evolve(CONFIG, error_backoff=1.0, poll_interval=100.0)
    async with clock.autojump(), running(topology(app, faulty, clock, worker=config)):
        await wait_until(clock, lambda: faulty.calls["claim"] >= 1, what="a claim", step=0.01)
        await clock.sleep(3.0)
        assert faulty.calls["claim"] <= 4  # once a second, though the job waits claimable
        failed_at = clock.now()
        faulty.failing.clear()
        (job,) = (await wait_final(inner, clock, [job_id])).values()
    assert job.finished_at is not None
    assert job.finished_at - failed_at < 1.5  # claimed again after the backoff, not a poll
    (owner,) = owners
    warnings = [r.getMessage() for r in caplog.records if "could not claim" in r.getMessage()]
    assert warnings[0] == f"{owner} could not claim from 'default': injected outage in claim"
